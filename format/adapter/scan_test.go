package adapter

import (
	"bytes"
	"math"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// scanFloats counts NaN, ±Inf and non-zero values (−0 is zero) and finds
// the first non-finite index, across chunk boundaries, for every dtype it
// has a kernel for and for the fallback encodings.
func TestScanFloatsKernelPath(t *testing.T) {
	const n = 3*scanBufSize/4 + 5 // several chunks for the 8-, 4- and 2-byte encodings
	vals := make([]float32, n)
	for i := range vals {
		vals[i] = float32(i%7) * 0.25 // zeros every 7th value
	}
	vals[1] = float32(math.Copysign(0, -1))
	firstBad := n - 3 // in the last chunk
	vals[firstBad] = float32(math.NaN())
	vals[n-2] = float32(math.Inf(1))
	vals[n-1] = float32(math.Inf(-1))
	wantNonzero := int64(0)
	for _, v := range vals {
		if v != 0 {
			wantNonzero++ // NaN != 0 is true, so NaN counts as non-zero
		}
	}
	for _, dt := range []safetensors.DType{safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64, safetensors.F8E5M2} {
		raw := make([]byte, n*dt.Bits()/8)
		if err := safetensors.FromFloat32(raw, vals, dt); err != nil {
			t.Fatal(err)
		}
		st, err := scanFloats(bytes.NewReader(raw), dt, make([]byte, scanBufSize))
		if err != nil {
			t.Fatal(err)
		}
		if st.nan != 1 || st.inf != 2 || st.first != int64(firstBad) || st.nonzero != wantNonzero {
			t.Errorf("%s: nan %d inf %d first %d nonzero %d; want 1, 2, %d, %d", dt, st.nan, st.inf, st.first, st.nonzero, firstBad, wantNonzero)
		}
	}
	// E4M3FN has no Inf (±Inf saturate to ±448 when written): only the NaN.
	raw := make([]byte, n)
	if err := safetensors.FromFloat32(raw, vals, safetensors.F8E4M3); err != nil {
		t.Fatal(err)
	}
	if st, err := scanFloats(bytes.NewReader(raw), safetensors.F8E4M3, nil); err != nil || st.nan != 1 || st.inf != 0 || st.first != int64(firstBad) {
		t.Errorf("F8_E4M3: %+v, %v", st, err)
	}
}
