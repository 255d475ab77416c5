//go:build !amd64 || noasm || !gc

package quant

// packNF4Fast is packNF4 (no assembly on this platform or build).
func packNF4Fast(out []byte, x []float32, inv float32) { packNF4(out, x, inv) }

// packFP4Fast is packFP4 (no assembly on this platform or build).
func packFP4Fast(out []byte, x []float32, inv float32) { packFP4(out, x, inv) }
