//go:build amd64 && !noasm && gc

package quant

import (
	"math"
	"testing"
)

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

// TestPackFP4Kernel checks the FP4 VBMI kernel against the Go loop on
// scaled values with −0, NaN, tiny negatives and every threshold.
func TestPackFP4Kernel(t *testing.T) {
	if !hasNF4VBMI {
		t.Skip("CPU lacks AVX512_VBMI: the FP4 kernel is not used")
	}
	x := normals(1<<12, 6)
	am := refAbsMax(x)
	for i := range x {
		x[i] /= am
	}
	for i, th := range fp4Thresholds {
		x[16*i], x[16*i+1], x[16*i+2] = th, -th, -math.Nextafter32(th, 2)
	}
	x[200], x[201], x[202] = float32(math.NaN()), float32(math.Copysign(0, -1)), -1e-3
	want := make([]byte, len(x)/2)
	got := make([]byte, len(x)/2)
	packFP4(want, x, 1)
	packFP4VBMI(&got[0], &x[0], len(x), 1, &fp4Base128, &fp4LUT128.th, &fp4SB128, &fp4RankCode32)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("byte %d = %#02x, Go loop %#02x (x %v)", i, got[i], want[i], x[2*i:2*i+2])
		}
	}
}
