package safetensors

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// header20k builds a file of 20,000 zero-size-free small tensors (a
// ~1.3 MB header, the size of a large LLM checkpoint's header).
func header20k(tb testing.TB) []byte {
	ts := make([]Tensor, 20000)
	for i := range ts {
		ts[i] = Tensor{Name: fmt.Sprintf("model.layers.%d.self_attn.q_proj.lora_A.weight", i), DType: F16, Shape: []int{1}, Data: []byte{0, 0}}
	}
	var buf bytes.Buffer
	if err := Write(&buf, ts, map[string]string{"format": "pt"}); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func BenchmarkHeader20k(b *testing.B) {
	file := header20k(b)
	n := int64(len(file)) - 40000
	b.SetBytes(n)
	b.ReportAllocs()
	r := bytes.NewReader(file)
	for b.Loop() {
		h, err := ReadHeader(r, int64(len(file)))
		if err != nil || len(h.Tensors) != 20000 {
			b.Fatal(err)
		}
	}
}

// BenchmarkOverlapAttack: 100,000 entries all at [0,16] must fail fast.
func BenchmarkOverlapAttack100k(b *testing.B) {
	file := overlapFile(100_000)
	b.SetBytes(int64(len(file)))
	for b.Loop() {
		if _, err := ReadHeader(bytes.NewReader(file), int64(len(file))); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkFloat32(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	const n = 1 << 20
	for _, dt := range []DType{F32, F16, BF16, F8E4M3, I8} {
		src := alignedBuf(n * dt.Bits() / 8)
		for i := range src {
			src[i] = byte(r.Uint32() & 0x3f)
		}
		dst := make([]float32, n)
		b.Run("ToFloat32/"+dt.String(), func(b *testing.B) {
			b.SetBytes(int64(len(src) + 4*n))
			for b.Loop() {
				if err := ToFloat32(dst, src, dt); err != nil {
					b.Fatal(err)
				}
			}
		})
		out := alignedBuf(n * dt.Bits() / 8)
		b.Run("FromFloat32/"+dt.String(), func(b *testing.B) {
			b.SetBytes(int64(len(out) + 4*n))
			for b.Loop() {
				if err := FromFloat32(out, dst, dt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	// copy() of the same bytes as F16 → F32 (2n read + 4n written).
	src := make([]byte, 6*n/2)
	dst := make([]byte, 6*n/2)
	b.Run("copy/6MiB", func(b *testing.B) {
		b.SetBytes(int64(2 * len(src)))
		for b.Loop() {
			copy(dst, src)
		}
	})
}
