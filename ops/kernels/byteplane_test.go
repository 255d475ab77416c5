package kernels

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// refRotate is the reference sign rotation, built on math/bits.
func refRotate(e []byte, w int) []byte {
	out := make([]byte, w)
	switch w {
	case 2:
		binary.LittleEndian.PutUint16(out, bits.RotateLeft16(binary.LittleEndian.Uint16(e), 1))
	case 4:
		binary.LittleEndian.PutUint32(out, bits.RotateLeft32(binary.LittleEndian.Uint32(e), 1))
	case 8:
		binary.LittleEndian.PutUint64(out, bits.RotateLeft64(binary.LittleEndian.Uint64(e), 1))
	default:
		panic("bad width")
	}
	return out
}

// refSplit is the definition: dst[p*n+i] = rot(src[i])[p].
func refSplit(src []byte, w int, rotate bool) []byte {
	n := len(src) / w
	dst := make([]byte, len(src))
	for i := range n {
		e := src[i*w : i*w+w]
		if rotate {
			e = refRotate(e, w)
		}
		for p := range w {
			dst[p*n+i] = e[p]
		}
	}
	return dst
}

func TestSplitMergePlanes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, w := range []int{1, 2, 3, 4, 5, 8, 16} {
		for _, rotate := range []bool{false, true} {
			if rotate && w != 2 && w != 4 && w != 8 {
				continue
			}
			for n := 0; n <= 300; n++ {
				for off := 0; off < 4; off += 3 {
					src := make([]byte, n*w+off+8)
					for i := range src {
						src[i] = byte(rng.Uint32())
					}
					in := src[off : off+n*w]
					orig := bytes.Clone(in)
					// Guard bytes around the destination catch overruns.
					buf := bytes.Repeat([]byte{0xA5}, n*w+16)
					dst := buf[8 : 8+n*w]
					SplitPlanes(dst, in, w, rotate)
					if want := refSplit(orig, w, rotate); !bytes.Equal(dst, want) {
						t.Fatalf("w=%d rotate=%v n=%d: split differs from definition", w, rotate, n)
					}
					if !bytes.Equal(in, orig) {
						t.Fatalf("w=%d n=%d: input modified", w, n)
					}
					if !bytes.Equal(buf[:8], bytes.Repeat([]byte{0xA5}, 8)) || !bytes.Equal(buf[8+n*w:], bytes.Repeat([]byte{0xA5}, 8)) {
						t.Fatalf("w=%d n=%d: guard bytes overwritten", w, n)
					}
					back := make([]byte, n*w)
					MergePlanes(back, dst, w, rotate)
					if !bytes.Equal(back, orig) {
						t.Fatalf("w=%d rotate=%v n=%d: merge(split(x)) != x", w, rotate, n)
					}
					// The same from planes in separate (copied) buffers.
					planes := make([][]byte, w)
					for p := range w {
						planes[p] = bytes.Clone(dst[p*n : (p+1)*n])
					}
					back2 := make([]byte, n*w)
					MergePlaneSlices(back2, planes, rotate)
					if !bytes.Equal(back2, orig) {
						t.Fatalf("w=%d rotate=%v n=%d: MergePlaneSlices differs", w, rotate, n)
					}
				}
			}
		}
	}
}

// TestSplitPlanesLarge covers the parallel path (inputs ≥ 4 MiB, with a tail
// that is not a multiple of 8 elements).
func TestSplitPlanesLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for _, w := range []int{2, 4, 8} {
		n := (5<<20)/w + 3
		src := make([]byte, n*w)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		dst := make([]byte, len(src))
		SplitPlanes(dst, src, w, true)
		if !bytes.Equal(dst, refSplit(src, w, true)) {
			t.Fatalf("w=%d: large split differs from definition", w)
		}
		back := make([]byte, len(src))
		MergePlanes(back, dst, w, true)
		if !bytes.Equal(back, src) {
			t.Fatalf("w=%d: large round trip differs", w)
		}
	}
}

// TestExponentPlane checks the point of the rotation against IEEE-754 field
// extraction: for BF16, F32 and F64 the top plane is the exponent (its top 8
// bits for F64) and the sign lands in bit 0 of plane 0.
func TestExponentPlane(t *testing.T) {
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 0.02, -0.02, 3.5e-3, -65504, math.Inf(1), math.Inf(-1), math.NaN(), 1e-40, 6.1e-5}
	n := len(vals)
	f32 := make([]byte, 4*n)
	bf := make([]byte, 2*n)
	f64 := make([]byte, 8*n)
	for i, v := range vals {
		u := math.Float32bits(float32(v))
		binary.LittleEndian.PutUint32(f32[4*i:], u)
		binary.LittleEndian.PutUint16(bf[2*i:], uint16(u>>16))
		binary.LittleEndian.PutUint64(f64[8*i:], math.Float64bits(v))
	}
	for _, tc := range []struct {
		name string
		src  []byte
		w    int
		exp  func(i int) byte
		sign func(i int) byte
	}{
		{"F32", f32, 4, func(i int) byte { return byte(math.Float32bits(float32(vals[i])) >> 23) }, func(i int) byte { return byte(math.Float32bits(float32(vals[i])) >> 31) }},
		{"BF16", bf, 2, func(i int) byte { return byte(math.Float32bits(float32(vals[i])) >> 23) }, func(i int) byte { return byte(math.Float32bits(float32(vals[i])) >> 31) }},
		{"F64", f64, 8, func(i int) byte { return byte(math.Float64bits(vals[i]) >> 55) }, func(i int) byte { return byte(math.Float64bits(vals[i]) >> 63) }},
	} {
		dst := make([]byte, len(tc.src))
		SplitPlanes(dst, tc.src, tc.w, true)
		for i := range n {
			if got, want := dst[(tc.w-1)*n+i], tc.exp(i); got != want {
				t.Errorf("%s %v: exponent plane %#x, want %#x", tc.name, vals[i], got, want)
			}
			if got, want := dst[i]&1, tc.sign(i); got != want {
				t.Errorf("%s %v: sign bit %d, want %d", tc.name, vals[i], got, want)
			}
		}
	}
}

func TestSplitPlanesPanics(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dst, src int
		w        int
		rotate   bool
	}{
		{"length mismatch", 8, 10, 2, false},
		{"not a multiple", 9, 9, 2, false},
		{"zero width", 4, 4, 0, false},
		{"rotate width 3", 9, 9, 3, true},
	} {
		for _, f := range []func(dst, src []byte, w int, rotate bool){SplitPlanes, MergePlanes} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s: no panic", tc.name)
					}
				}()
				f(make([]byte, tc.dst), make([]byte, tc.src), tc.w, tc.rotate)
			}()
		}
	}
}

func ExampleSplitPlanes() {
	// Two BF16 values: 1.0 (0x3F80) and -2.0 (0xC000), little-endian.
	src := []byte{0x80, 0x3F, 0x00, 0xC0}
	dst := make([]byte, 4)
	SplitPlanes(dst, src, 2, true)
	fmt.Printf("mantissa+sign plane % x, exponent plane % x\n", dst[:2], dst[2:])
	back := make([]byte, 4)
	MergePlanes(back, dst, 2, true)
	fmt.Printf("restored % x\n", back)
	// Output:
	// mantissa+sign plane 00 01, exponent plane 7f 80
	// restored 80 3f 00 c0
}

func TestMergePlaneSlicesPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for a short plane")
		}
	}()
	MergePlaneSlices(make([]byte, 8), [][]byte{make([]byte, 4), make([]byte, 3)}, true)
}
