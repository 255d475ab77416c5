package ops

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// scaledWriter streams exactly what scaling the whole tensor at once gives:
// each value is λ·x rounded once when λ is a float32, and the float64
// product rounded to float32 otherwise, across chunk boundaries and for
// every float dtype.
func TestScaledWriterMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 7))
	n := 2*scaleChunk + 3
	src := make([]float32, n)
	for i := range src {
		src[i] = float32(rng.NormFloat64() * 0.02)
	}
	src[0], src[1], src[2] = 0, float32(math.Copysign(0, -1)), 1e-40 // zero, −0, subnormal
	for _, dt := range []safetensors.DType{safetensors.F32, safetensors.BF16, safetensors.F16, safetensors.F64} {
		raw := make([]byte, n*dt.Bits()/8)
		if err := safetensors.FromFloat32(raw, src, dt); err != nil {
			t.Fatal(err)
		}
		stored := make([]float32, n) // the values as the file holds them
		if err := safetensors.ToFloat32(stored, raw, dt); err != nil {
			t.Fatal(err)
		}
		for _, lambda := range []float64{0.5, -1, 3, 0.1, -2.7} {
			want := make([]float32, n)
			for i, x := range stored {
				want[i] = float32(lambda * float64(x)) // λ·x: exact product in float64, then one rounding to float32
			}
			wantRaw := make([]byte, len(raw))
			if err := safetensors.FromFloat32(wantRaw, want, dt); err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			ti := safetensors.TensorInfo{Name: "x", DType: dt, Shape: []int{n}}
			if err := scaledWriter(raw, ti, lambda, "f")(&got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), wantRaw) {
				for i := 0; i < len(raw); i++ {
					if got.Bytes()[i] != wantRaw[i] {
						t.Fatalf("%s λ=%v: first difference at byte %d (element %d)", dt, lambda, i, i/(dt.Bits()/8))
					}
				}
				t.Fatalf("%s λ=%v: %d bytes written, want %d", dt, lambda, got.Len(), len(wantRaw))
			}
		}
	}
}
