package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestImpl checks that the fastest path the CPU has is the default.
func TestImpl(t *testing.T) {
	levels := implLevels()
	if Impl() != levels[0].name {
		t.Fatalf("Impl() = %q, want the fastest level %q", Impl(), levels[0].name)
	}
	if levels[len(levels)-1] != genericImpl {
		t.Fatal("the generic twin must always be a level")
	}
	t.Logf("levels: %d, active %s", len(levels), Impl())
}

// guarded16 / guarded8 are guarded() for the narrow element types.
func guarded16(vals []uint16, off int) (inner, buf []uint16) {
	buf = make([]uint16, off+len(vals)+guardLen)
	for i := range buf {
		buf[i] = 0xa5a5
	}
	inner = buf[off : off+len(vals) : off+len(vals)]
	copy(inner, vals)
	return inner, buf
}

func checkGuards16(t *testing.T, what string, buf []uint16, off, n int) {
	t.Helper()
	for i, v := range buf {
		if (i < off || i >= off+n) && v != 0xa5a5 {
			t.Fatalf("%s: guard at %d (off %d, n %d) overwritten with %#04x", what, i, off, n, v)
		}
	}
}

// TestConvertPathsVsTwin runs the four f16/bf16 conversions on every path
// for lengths 0..300 and large sizes, start offsets 0..3 of source and
// destination, with and without non-temporal stores, and requires the twin's
// bits exactly (NaN payloads included) and intact guards.
func TestConvertPathsVsTwin(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	lens := append([]int{}, testLens[:301]...)
	lens = append(lens, 4099, 70001)
	for _, ntm := range []int{1 << 20, 64} {
		restoreNT := setNTMin(ntm)
		for _, impl := range implLevels() {
			restore := setImpl(impl.name)
			for _, n := range lens {
				fv := randomF32(rng, n)
				hv := make([]uint16, n)
				for i := range hv {
					hv[i] = uint16(rng.Uint32())
				}
				for off := range 4 {
					doff := (off * 3) % 4
					// f32 → f16 and bf16
					src, _ := guarded(fv, off)
					for _, c := range []struct {
						name string
						f    func([]uint16, []float32)
						ref  func(uint32) uint16
					}{{"F32ToF16", F32ToF16, f32BitsToF16Bits}, {"F32ToBF16", F32ToBF16, f32BitsToBF16Bits}} {
						dst, db := guarded16(make([]uint16, n), doff)
						c.f(dst, src)
						checkGuards16(t, impl.name+" "+c.name, db, doff, n)
						for i := range n {
							if want := c.ref(math.Float32bits(fv[i])); dst[i] != want {
								t.Fatalf("%s nt=%d %s n=%d off=%d: [%d] %#08x → %#04x, twin %#04x", impl.name, ntm, c.name, n, off, i, math.Float32bits(fv[i]), dst[i], want)
							}
						}
					}
					// f32 → F8 codes, with guard bytes
					for _, c := range []struct {
						name string
						f    func([]uint8, []float32)
						ref  func(uint32) uint8
					}{{"F32ToF8E4M3", F32ToF8E4M3, f32BitsToE4M3}, {"F32ToF8E5M2", F32ToF8E5M2, f32BitsToE5M2}} {
						buf := make([]uint8, doff+n+guardLen)
						for i := range buf {
							buf[i] = 0xa5
						}
						dst := buf[doff : doff+n : doff+n]
						c.f(dst, src)
						for i, v := range buf {
							if (i < doff || i >= doff+n) && v != 0xa5 {
								t.Fatalf("%s %s: guard byte %d overwritten", impl.name, c.name, i)
							}
						}
						for i := range n {
							if want := c.ref(math.Float32bits(fv[i])); dst[i] != want {
								t.Fatalf("%s %s n=%d off=%d: [%d] %#08x → %#02x, twin %#02x", impl.name, c.name, n, off, i, math.Float32bits(fv[i]), dst[i], want)
							}
						}
					}
					// f16 and bf16 → f32
					hs, _ := guarded16(hv, off)
					for _, c := range []struct {
						name string
						f    func([]float32, []uint16)
						ref  func(uint16) uint32
					}{{"F16ToF32", F16ToF32, f16BitsToF32Bits}, {"BF16ToF32", BF16ToF32, func(h uint16) uint32 { return uint32(h) << 16 }}} {
						dst, db := guarded(make([]float32, n), doff)
						c.f(dst, hs)
						checkGuards(t, impl.name+" "+c.name, db, doff, n)
						for i := range n {
							if got, want := math.Float32bits(dst[i]), c.ref(hv[i]); got != want {
								t.Fatalf("%s nt=%d %s n=%d off=%d: [%d] %#04x → %#08x, twin %#08x", impl.name, ntm, c.name, n, off, i, hv[i], got, want)
							}
						}
					}
					// F8 codes → f32
					bv := make([]uint8, n)
					for i, h := range hv {
						bv[i] = uint8(h)
					}
					bs := make([]uint8, n+4)[off : off+n]
					copy(bs, bv)
					for _, c := range []struct {
						name string
						f    func([]float32, []uint8)
						ref  func(uint8) uint32
					}{{"F8E4M3ToF32", F8E4M3ToF32, e4m3BitsToF32Bits}, {"F8E5M2ToF32", F8E5M2ToF32, e5m2BitsToF32Bits}} {
						dst, db := guarded(make([]float32, n), doff)
						c.f(dst, bs)
						checkGuards(t, impl.name+" "+c.name, db, doff, n)
						for i := range n {
							if got, want := math.Float32bits(dst[i]), c.ref(bv[i]); got != want {
								t.Fatalf("%s nt=%d %s n=%d off=%d: [%d] %#02x → %#08x, twin %#08x", impl.name, ntm, c.name, n, off, i, bv[i], got, want)
							}
						}
					}
					// ScaleTo with non-temporal stores.
					d, db := guarded(make([]float32, n), doff)
					ScaleTo(d, 3, src)
					checkGuards(t, impl.name+" ScaleTo", db, doff, n)
					for i := range n {
						if !same(d[i], 3*fv[i]) {
							t.Fatalf("%s nt=%d ScaleTo n=%d: [%d] = %v, want %v", impl.name, ntm, n, i, d[i], 3*fv[i])
						}
					}
				}
			}
			restore()
		}
		restoreNT()
	}
}
