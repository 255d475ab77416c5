package atz

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

func TestChunkRoundTrip(t *testing.T) {
	type tc struct {
		name string
		data []byte
		spec ChunkSpec
	}
	var cases []tc
	for _, n := range []int{0, 1, 7, 8, 31, 33, 1000, 1025, 65536 + 3} {
		cases = append(cases,
			tc{fmt.Sprintf("bf16/%d", n), normalBF16(n, 0.02, uint64(n)), ChunkSpec{2, true, true}},
			tc{fmt.Sprintf("f16/%d", n), normalF16(n, 0.02, uint64(n)), ChunkSpec{2, true, true}},
			tc{fmt.Sprintf("f32/%d", n), normalF32(n, 0.02, uint64(n)), ChunkSpec{4, true, true}},
			tc{fmt.Sprintf("f64-random/%d", n), randomBytes(8*n, uint64(n)), ChunkSpec{8, true, true}},
			tc{fmt.Sprintf("i32-random/%d", n), randomBytes(4*n, uint64(n)+1), ChunkSpec{4, false, false}},
			tc{fmt.Sprintf("bytes/%d", n), randomBytes(n, uint64(n)+2), ChunkSpec{1, false, false}},
			tc{fmt.Sprintf("zeros/%d", n), make([]byte, 4*n), ChunkSpec{4, true, true}},
			tc{fmt.Sprintf("text/%d", n), bytes.Repeat([]byte("lora_A.weight "), n)[:n], ChunkSpec{1, false, false}},
		)
	}
	for _, level := range []Level{LevelDefault, LevelFastest, LevelBest} {
		for _, c := range cases {
			enc, err := EncodeChunk(nil, c.data, nil, c.spec, level)
			if err != nil {
				t.Fatalf("%s level %d: %v", c.name, level, err)
			}
			if max := len(c.data) + chunkHeaderSize(c.spec.Width); len(enc) > max {
				t.Errorf("%s level %d: encoded %d bytes > %d (input + plane table)", c.name, level, len(enc), max)
			}
			got := make([]byte, len(c.data))
			if err := DecodeChunk(got, enc, nil, c.spec); err != nil {
				t.Fatalf("%s level %d: decode: %v", c.name, level, err)
			}
			if !bytes.Equal(got, c.data) {
				t.Fatalf("%s level %d: round trip differs", c.name, level)
			}
		}
	}
}

// TestChunkXORBase checks delta coding against a base: a fine-tuned tensor
// that differs from its base in 1% of the elements compresses far better
// with the base than without, and decodes exactly.
func TestChunkXORBase(t *testing.T) {
	base := normalBF16(100000, 0.02, 1)
	tuned := bytes.Clone(base)
	upd := normalBF16(1000, 0.001, 2)
	for i := 0; i < 1000; i++ {
		tuned[200*i] ^= upd[2*i]
	}
	spec := ChunkSpec{2, true, true}
	plain, err := EncodeChunk(nil, tuned, nil, spec, LevelDefault)
	if err != nil {
		t.Fatal(err)
	}
	delta, err := EncodeChunk(nil, tuned, base, spec, LevelDefault)
	if err != nil {
		t.Fatal(err)
	}
	if len(delta)*10 > len(plain) {
		t.Errorf("delta chunk %d bytes, plain %d: want < 1/10", len(delta), len(plain))
	}
	got := make([]byte, len(tuned))
	if err := DecodeChunk(got, delta, base, spec); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, tuned) {
		t.Fatal("delta round trip differs")
	}
	if err := DecodeChunk(got, delta, nil, spec); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(got, tuned) {
		t.Fatal("decoding a delta chunk without its base reproduced the data")
	}
}

// TestChunkRatio checks the compression ratios the codec exists for, on
// N(0, 0.02) data: the exponent plane carries ≈ 2.6 bits, which puts BF16
// near 16/(8+2.6+overhead) ≈ 1.5 and FP32 near 32/(24+2.6) ≈ 1.2.
func TestChunkRatio(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		spec ChunkSpec
		min  float64
	}{
		{"BF16", normalBF16(1<<17, 0.02, 5), ChunkSpec{2, true, true}, 1.48},
		{"F32", normalF32(1<<17, 0.02, 6), ChunkSpec{4, true, true}, 1.18},
	} {
		enc, err := EncodeChunk(nil, c.data, nil, c.spec, LevelDefault)
		if err != nil {
			t.Fatal(err)
		}
		r := float64(len(c.data)) / float64(len(enc))
		t.Logf("%s: ratio %.3f", c.name, r)
		if r < c.min {
			t.Errorf("%s: ratio %.3f < %.2f", c.name, r, c.min)
		}
	}
}

func TestDecodeChunkErrors(t *testing.T) {
	data := normalBF16(4096, 0.02, 3)
	spec := ChunkSpec{2, true, true}
	enc, err := EncodeChunk(nil, data, nil, spec, LevelDefault)
	if err != nil {
		t.Fatal(err)
	}
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(enc)) }
	for _, c := range []struct {
		name string
		src  []byte
		dst  int
		spec ChunkSpec
		want error
	}{
		{"empty", nil, len(data), spec, ErrFormat},
		{"truncated", enc[:len(enc)-1], len(data), spec, ErrFormat},
		{"trailing", append(bytes.Clone(enc), 0), len(data), spec, ErrFormat},
		{"bad codec", mod(func(b []byte) []byte { b[0] = 9; return b }), len(data), spec, ErrFormat},
		{"size overrun", mod(func(b []byte) []byte { b[1] = 0xFF; b[4] = 0xFF; return b }), len(data), spec, ErrFormat},
		{"wrong width", enc, len(data), ChunkSpec{4, true, true}, ErrFormat},
		{"odd length", enc, len(data) - 1, spec, ErrFormat},
		{"too large", enc, MaxChunkSize + 2, spec, ErrLimit},
		{"bad spec", enc, len(data), ChunkSpec{3, true, true}, ErrFormat},
	} {
		err := DecodeChunk(make([]byte, c.dst), c.src, nil, c.spec)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}
