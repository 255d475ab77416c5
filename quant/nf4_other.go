//go:build !amd64 || noasm || !gc

package quant

// packNF4Fast is packNF4 (no assembly on this platform or build).
func packNF4Fast(out []byte, x []float32, inv float32) { packNF4(out, x, inv) }

// packFP4Fast is packFP4 (no assembly on this platform or build).
func packFP4Fast(out []byte, x []float32, inv float32) { packFP4(out, x, inv) }

// unpack4Fast reports false: no assembly on this platform or build.
func unpack4Fast(dst []float32, src []byte, absmax []float32, code *[16]float32, bs, b0, b1 int) bool {
	return false
}

// quantNF4Fast reports false: no assembly on this platform or build.
func quantNF4Fast(dst []byte, absmax []float32, src []float32, bs, b0, b1 int) bool { return false }

// quantFP4Fast reports false: no assembly on this platform or build.
func quantFP4Fast(dst []byte, absmax []float32, src []float32, bs, b0, b1 int) bool { return false }
