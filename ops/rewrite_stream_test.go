package ops

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// scaledWriter streams exactly what scaling the whole tensor at once gives:
// each value is λ·x rounded once when λ is a float32, and the float64
// product rounded to float32 otherwise (F64: the float64 product, rounded
// once), across chunk boundaries and for every float dtype.
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
			if dt == safetensors.F64 { // F64: λ·x rounded once to float64, never through float32
				for i, x := range stored {
					binary.LittleEndian.PutUint64(wantRaw[8*i:], math.Float64bits(lambda*float64(x)))
				}
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

// neg and scale of an F64 tensor keep float64 precision: each value is
// λ·x rounded once to float64. They went through float32, so neg turned
// 0.1 into −0.10000000149011612 (SPEC §5.5: exact in every dtype).
func TestScaledWriterF64Precision(t *testing.T) {
	vals := []float64{0.1, -1.0 / 3, math.Pi * 1e-300, 1e300, math.SmallestNonzeroFloat64, 0, math.Copysign(0, -1), 123456789.123456789}
	raw := make([]byte, 8*len(vals))
	for i, x := range vals {
		binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(x))
	}
	for _, lambda := range []float64{-1, 0.5, 3, -2.7, 1e-10} {
		var got bytes.Buffer
		ti := safetensors.TensorInfo{Name: "x", DType: safetensors.F64, Shape: []int{len(vals)}}
		if err := scaledWriter(raw, ti, lambda, "f")(&got); err != nil {
			t.Fatal(err)
		}
		for i, x := range vals {
			g := math.Float64frombits(binary.LittleEndian.Uint64(got.Bytes()[8*i:]))
			if w := lambda * x; math.Float64bits(g) != math.Float64bits(w) {
				t.Errorf("λ=%v x=%v: got %v, want %v", lambda, x, g, w)
			}
		}
	}
}
