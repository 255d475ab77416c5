//go:build amd64 && !noasm && gc

package quant

import "testing"

// TestPackNF4Kernels runs both AVX-512 kernels (gather and VBMI) against
// the Go loop where the CPU has them.
func TestPackNF4Kernels(t *testing.T) {
	x := normals(1<<12, 5)
	am := refAbsMax(x)
	inv := 1 / am
	want := make([]byte, len(x)/2)
	packNF4(want, x, inv)
	for _, k := range []struct {
		name string
		on   bool
		run  func(out []byte)
	}{
		{"avx512-gather", hasNF4AVX512, func(out []byte) {
			packNF4AVX512(&out[0], &x[0], len(x), inv, &nf4Base32, &nf4LUT.th, &nf4ScaleBias)
		}},
		{"avx512-vbmi", hasNF4VBMI, func(out []byte) {
			packNF4VBMI(&out[0], &x[0], len(x), inv, &nf4Base128, &nf4LUT.th, &nf4SB128)
		}},
	} {
		if !k.on {
			t.Logf("%s: not supported by this CPU", k.name)
			continue
		}
		got := make([]byte, len(want))
		k.run(got)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: byte %d = %#02x, Go loop %#02x", k.name, i, got[i], want[i])
			}
		}
	}
}

func BenchmarkPackNF4Kernels(b *testing.B) {
	x := normals(1<<12, 5)
	inv := 1 / refAbsMax(x)
	out := make([]byte, len(x)/2)
	b.Run("go", func(b *testing.B) {
		b.SetBytes(int64(len(x) * 4))
		for b.Loop() {
			packNF4(out, x, inv)
		}
	})
	b.Run("gather", func(b *testing.B) {
		b.SetBytes(int64(len(x) * 4))
		for b.Loop() {
			packNF4AVX512(&out[0], &x[0], len(x), inv, &nf4Base32, &nf4LUT.th, &nf4ScaleBias)
		}
	})
	if hasNF4VBMI {
		b.Run("vbmi", func(b *testing.B) {
			b.SetBytes(int64(len(x) * 4))
			for b.Loop() {
				packNF4VBMI(&out[0], &x[0], len(x), inv, &nf4Base128, &nf4LUT.th, &nf4SB128)
			}
		})
	}
}
