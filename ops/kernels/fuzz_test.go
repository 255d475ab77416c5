package kernels

import (
	"encoding/binary"
	"math"
	"slices"
	"testing"
)

// The fuzz targets feed raw bytes as float32/uint16 data to every path and
// require the twin's result. Run e.g.
//
//	go test -run '^$' -fuzz FuzzAxpy -fuzztime 1m ./ops/kernels/

func floatsFrom(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func u16From(b []byte) []uint16 {
	out := make([]uint16, len(b)/2)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return out
}

func seedFloats(f *testing.F) {
	f.Add([]byte{}, uint32(0x3fc00000), uint8(0))
	f.Add(make([]byte, 4*37), uint32(0x80000000), uint8(1))
	b := make([]byte, 4*100)
	for i := range 100 {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(i)*0x01234567+0x3f000000)
	}
	f.Add(b, uint32(0xbf99999a), uint8(3))
	nan := []byte{0, 0, 0xc0, 0x7f, 1, 0, 0x80, 0x7f, 0, 0, 0x80, 0xff, 0, 0, 0, 0x80, 1, 0, 0, 0}
	f.Add(repeatBytes(nan, 20), uint32(0x7f800000), uint8(2))
}

func repeatBytes(b []byte, times int) []byte {
	var out []byte
	for range times {
		out = append(out, b...)
	}
	return out
}

func FuzzAxpy(f *testing.F) {
	seedFloats(f)
	f.Fuzz(func(t *testing.T, data []byte, alphaBits uint32, off uint8) {
		all := floatsFrom(data)
		o := min(int(off%4), len(all))
		x := all[o:]
		y0 := slices.Clone(all[:len(all)-o])
		slices.Reverse(y0)
		alpha := math.Float32frombits(alphaBits)
		want := slices.Clone(y0)
		axpyGeneric(alpha, x, want)
		wantRank := slices.Clone(y0)
		if len(x) > 0 {
			rankUpdateGeneric(wantRank, 1, len(x), alpha, []float32{1.5}, x, 1)
		}
		for _, impl := range implLevels() {
			restore := setImpl(impl.name)
			y := slices.Clone(y0)
			Axpy(alpha, x, y)
			w := slices.Clone(y0)
			if len(x) > 0 {
				RankUpdate(w, 1, len(x), alpha, []float32{1.5}, x, 1)
			}
			dot, dotRef := Dot(x, y0), refSum(x, y0)
			restore()
			for i := range y {
				if !same(y[i], want[i]) {
					t.Fatalf("%s Axpy [%d] = %#08x, twin %#08x", impl.name, i, math.Float32bits(y[i]), math.Float32bits(want[i]))
				}
				if !same(w[i], wantRank[i]) {
					t.Fatalf("%s RankUpdate [%d] = %#08x, twin %#08x", impl.name, i, math.Float32bits(w[i]), math.Float32bits(wantRank[i]))
				}
			}
			if !sameValue(dot, dotRef) && !(math.IsNaN(dot) && math.IsNaN(dotRef)) {
				t.Fatalf("%s Dot = %v, twin %v", impl.name, dot, dotRef)
			}
		}
	})
}

func FuzzConvertF32(f *testing.F) {
	seedFloats(f)
	f.Fuzz(func(t *testing.T, data []byte, _ uint32, off uint8) {
		all := floatsFrom(data)
		src := all[min(int(off%4), len(all)):]
		n := len(src)
		w16, wb16 := make([]uint16, n), make([]uint16, n)
		w4, w5 := make([]uint8, n), make([]uint8, n)
		f32ToF16Generic(w16, src)
		f32ToBF16Generic(wb16, src)
		f32ToF8E4M3Generic(w4, src)
		f32ToF8E5M2Generic(w5, src)
		for i, v := range src { // and the twins against the float64 reference
			x := float64(v)
			if !math.IsNaN(x) && !sameValue(refF16.decode(uint32(w16[i])), refF16.ieeeRound(x)) {
				t.Fatalf("twin F32ToF16(%#08x) = %#04x", math.Float32bits(v), w16[i])
			}
			if !math.IsNaN(x) && !sameValue(refE4M3.decode(uint32(w4[i])), refE4M3.satRound(x, true)) {
				t.Fatalf("twin F32ToF8E4M3(%#08x) = %#02x", math.Float32bits(v), w4[i])
			}
		}
		for _, impl := range implLevels() {
			for _, ntm := range []int{1 << 20, 64} {
				restore, restoreNT := setImpl(impl.name), setNTMin(ntm)
				g16, gb16 := make([]uint16, n), make([]uint16, n)
				g4, g5 := make([]uint8, n), make([]uint8, n)
				F32ToF16(g16, src)
				F32ToBF16(gb16, src)
				F32ToF8E4M3(g4, src)
				F32ToF8E5M2(g5, src)
				restoreNT()
				restore()
				if !slices.Equal(g16, w16) || !slices.Equal(gb16, wb16) || !slices.Equal(g4, w4) || !slices.Equal(g5, w5) {
					t.Fatalf("%s (ntMin %d): narrowing differs from the twin", impl.name, ntm)
				}
			}
		}
	})
}

func FuzzConvertHalf(f *testing.F) {
	f.Add([]byte{0, 0x7c, 1, 0x7c, 0, 0xfe, 1, 0, 0xff, 0x7b}, uint8(1))
	f.Add(repeatBytes([]byte{0x12, 0x34, 0x01, 0x7d, 0x80, 0xff}, 50), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, off uint8) {
		all := u16From(data)
		src := all[min(int(off%4), len(all)):]
		n := len(src)
		w16, wb16 := make([]float32, n), make([]float32, n)
		f16ToF32Generic(w16, src)
		bf16ToF32Generic(wb16, src)
		b8 := make([]uint8, n)
		for i, h := range src {
			b8[i] = uint8(h)
		}
		w4, w5 := make([]float32, n), make([]float32, n)
		f8E4M3ToF32Generic(w4, b8)
		f8E5M2ToF32Generic(w5, b8)
		for _, impl := range implLevels() {
			restore, restoreNT := setImpl(impl.name), setNTMin(64)
			g16, gb16 := make([]float32, n), make([]float32, n)
			g4, g5 := make([]float32, n), make([]float32, n)
			F16ToF32(g16, src)
			BF16ToF32(gb16, src)
			F8E4M3ToF32(g4, b8)
			F8E5M2ToF32(g5, b8)
			restoreNT()
			restore()
			for i := range n {
				for _, p := range [][2]float32{{g16[i], w16[i]}, {gb16[i], wb16[i]}, {g4[i], w4[i]}, {g5[i], w5[i]}} {
					if math.Float32bits(p[0]) != math.Float32bits(p[1]) {
						t.Fatalf("%s: widening %#04x gives %#08x, twin %#08x", impl.name, src[i], math.Float32bits(p[0]), math.Float32bits(p[1]))
					}
				}
			}
		}
	})
}

func FuzzTopK(f *testing.F) {
	seedFloats(f)
	f.Fuzz(func(t *testing.T, data []byte, kk uint32, _ uint8) {
		x := floatsFrom(data)
		k := int(kk % uint32(len(x)+2))
		want, thr := refTopK(x, refOrder(x), k)
		mask := make([]bool, len(x))
		TopKMask(mask, x, k)
		if !slices.Equal(mask, want) {
			t.Fatalf("TopKMask(k=%d) differs from the sort reference", k)
		}
		if got := AbsThreshold(x, k); !sameValue(float64(got), float64(thr)) {
			t.Fatalf("AbsThreshold(k=%d) = %v, want %v", k, got, thr)
		}
	})
}

func FuzzRankUpdate(f *testing.F) {
	seedFloats(f)
	f.Fuzz(func(t *testing.T, data []byte, sBits uint32, shape uint8) {
		vals := floatsFrom(data)
		out, r := 1+int(shape%9), 1+int(shape/9%5)
		// W out×in, B out×r, A r×in drawn from vals (cycled).
		in := len(vals) / (out + r)
		if in == 0 || len(vals) == 0 {
			return
		}
		at := func(i int) float32 { return vals[i%len(vals)] }
		w0 := make([]float32, out*in)
		b := make([]float32, out*r)
		a := make([]float32, r*in)
		for i := range w0 {
			w0[i] = at(i)
		}
		for i := range b {
			b[i] = at(3*i + 1)
		}
		for i := range a {
			a[i] = at(5*i + 2)
		}
		s := math.Float32frombits(sBits)
		want := slices.Clone(w0)
		rankUpdateGeneric(want, out, in, s, b, a, r)
		for _, impl := range implLevels() {
			restore := setImpl(impl.name)
			got := slices.Clone(w0)
			RankUpdate(got, out, in, s, b, a, r)
			restore()
			for i := range got {
				if !same(got[i], want[i]) {
					t.Fatalf("%s RankUpdate %d×%d r=%d: [%d] = %#08x, twin %#08x", impl.name, out, in, r, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
				}
			}
		}
	})
}
