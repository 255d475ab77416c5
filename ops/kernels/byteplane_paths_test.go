package kernels

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestPlanePaths runs SplitPlanes, MergePlanes and MergePlaneSlices with the
// assembly paths on and off (planeAsm; off is the pure-Go twin, and the only
// setting on builds without assembly) and checks both against the
// byte-by-byte definition (refSplit) on every length 0..300 elements, at
// source and destination offsets 0..3 (unaligned vectors), with guard bytes
// around every output, and for a parallel-size input.
func TestPlanePaths(t *testing.T) {
	saved := planeAsm
	defer func() { planeAsm = saved }()
	paths := []bool{false}
	if saved {
		paths = append(paths, true)
	}
	const guard = 0xA5
	rng := rand.New(rand.NewPCG(7, 7))
	for _, asm := range paths {
		planeAsm = asm
		for _, w := range []int{2, 4} {
			for _, rotate := range []bool{false, true} {
				for n := 0; n <= 300; n++ {
					for off := range 4 {
						name := fmt.Sprintf("asm=%v w=%d rotate=%v n=%d off=%d", asm, w, rotate, n, off)
						srcBuf := make([]byte, n*w+off)
						for i := range srcBuf {
							srcBuf[i] = byte(rng.Uint32())
						}
						src := srcBuf[off:]
						orig := bytes.Clone(src)
						buf := bytes.Repeat([]byte{guard}, n*w+off+40)
						dst := buf[off+8 : off+8+n*w]
						SplitPlanes(dst, src, w, rotate)
						if !bytes.Equal(dst, refSplit(orig, w, rotate)) {
							t.Fatalf("%s: split differs from the definition", name)
						}
						checkPlaneGuards(t, name+" split", buf, off+8, n*w, guard)
						if !bytes.Equal(src, orig) {
							t.Fatalf("%s: split modified its input", name)
						}
						// Merge from planes in separate buffers at odd offsets.
						planes := make([][]byte, w)
						for p := range w {
							pb := make([]byte, n+off)
							planes[p] = pb[off:]
							copy(planes[p], dst[p*n:(p+1)*n])
						}
						back := bytes.Repeat([]byte{guard}, n*w+off+40)
						MergePlaneSlices(back[off+8:off+8+n*w], planes, rotate)
						if !bytes.Equal(back[off+8:off+8+n*w], orig) {
							t.Fatalf("%s: merge(split(x)) != x", name)
						}
						checkPlaneGuards(t, name+" merge", back, off+8, n*w, guard)
						back2 := make([]byte, n*w)
						MergePlanes(back2, dst, w, rotate)
						if !bytes.Equal(back2, orig) {
							t.Fatalf("%s: MergePlanes(split(x)) != x", name)
						}
					}
				}
			}
			// Parallel path with a tail that is not a whole group.
			n := (4<<20)/w + 37
			src := make([]byte, n*w)
			for i := range src {
				src[i] = byte(rng.Uint32())
			}
			dst := make([]byte, len(src))
			SplitPlanes(dst, src, w, true)
			if !bytes.Equal(dst, refSplit(src, w, true)) {
				t.Fatalf("asm=%v w=%d: large split differs from the definition", asm, w)
			}
			back := make([]byte, len(src))
			MergePlanes(back, dst, w, true)
			if !bytes.Equal(back, src) {
				t.Fatalf("asm=%v w=%d: large round trip differs", asm, w)
			}
		}
	}
}

func checkPlaneGuards(t *testing.T, name string, buf []byte, start, n int, guard byte) {
	t.Helper()
	for i, b := range buf {
		if (i < start || i >= start+n) && b != guard {
			t.Fatalf("%s: guard byte %d overwritten", name, i)
		}
	}
}

// TestPlaneFastPathsDirect calls the fast-path wrappers alone: they must do
// exactly the whole 32-element groups (and nothing when the assembly is
// off), leaving every other byte of the destination untouched.
func TestPlaneFastPathsDirect(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for _, rotate := range []bool{false, true} {
		for n := 0; n <= 200; n++ {
			src := make([]byte, 4*n)
			for i := range src {
				src[i] = byte(rng.Uint32())
			}
			// width 2
			s2 := src[:2*n]
			d := bytes.Repeat([]byte{0xA5}, 2*n)
			k := split2Fast(d[:n], d[n:], s2, rotate)
			want := 0
			if planeAsm {
				want = n / 32 * 32
			}
			if k != want {
				t.Fatalf("split2Fast n=%d: did %d elements, want %d", n, k, want)
			}
			ref := refSplit(s2, 2, rotate)
			for p := range 2 {
				for i := range n {
					got, exp := d[p*n+i], ref[p*n+i]
					if i >= k {
						exp = 0xA5
					}
					if got != exp {
						t.Fatalf("split2Fast n=%d rotate=%v: plane %d byte %d = %#x, want %#x", n, rotate, p, i, got, exp)
					}
				}
			}
			m := bytes.Repeat([]byte{0xA5}, 2*n)
			if k2 := merge2Fast(m, ref[:n], ref[n:], rotate); k2 != k {
				t.Fatalf("merge2Fast n=%d: did %d elements, want %d", n, k2, k)
			}
			for i := range 2 * n {
				exp := s2[i]
				if i >= 2*k {
					exp = 0xA5
				}
				if m[i] != exp {
					t.Fatalf("merge2Fast n=%d rotate=%v: byte %d = %#x, want %#x", n, rotate, i, m[i], exp)
				}
			}
			// width 4, starting at element i0 = n/3 to test interior ranges
			i0 := n / 3
			d = bytes.Repeat([]byte{0xA5}, 4*n)
			e := split4Fast(d, src, n, rotate, i0, n)
			wantE := i0
			if planeAsm {
				wantE = i0 + (n-i0)/32*32
			}
			if e != wantE {
				t.Fatalf("split4Fast n=%d: stopped at %d, want %d", n, e, wantE)
			}
			ref = refSplit(src, 4, rotate)
			for p := range 4 {
				for i := range n {
					got, exp := d[p*n+i], ref[p*n+i]
					if i < i0 || i >= e {
						exp = 0xA5
					}
					if got != exp {
						t.Fatalf("split4Fast n=%d rotate=%v: plane %d byte %d = %#x, want %#x", n, rotate, p, i, got, exp)
					}
				}
			}
			m = bytes.Repeat([]byte{0xA5}, 4*n)
			planes := [][]byte{ref[:n], ref[n : 2*n], ref[2*n : 3*n], ref[3*n:]}
			if e2 := merge4Fast(m, planes, rotate, i0, n); e2 != e {
				t.Fatalf("merge4Fast n=%d: stopped at %d, want %d", n, e2, e)
			}
			for i := range 4 * n {
				exp := src[i]
				if i < 4*i0 || i >= 4*e {
					exp = 0xA5
				}
				if m[i] != exp {
					t.Fatalf("merge4Fast n=%d rotate=%v: byte %d = %#x, want %#x", n, rotate, i, m[i], exp)
				}
			}
		}
	}
}

// FuzzPlanes checks SplitPlanes and MergePlanes, assembly and pure-Go paths,
// against the byte-by-byte definition on arbitrary bytes, widths 2 and 4,
// with and without rotation, at an arbitrary source offset.
func FuzzPlanes(f *testing.F) {
	f.Add([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), uint8(0))
	f.Add(bytes.Repeat([]byte{0x80, 0x3f, 0xff, 0x7f}, 100), uint8(7))
	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		w := 2 << (sel & 1)
		rotate := sel&2 != 0
		off := int(sel>>2) % 4
		if len(data) < off {
			return
		}
		src := data[off:]
		src = src[:len(src)/w*w]
		want := refSplit(src, w, rotate)
		saved := planeAsm
		defer func() { planeAsm = saved }()
		for _, asm := range []bool{false, saved} {
			planeAsm = asm
			dst := make([]byte, len(src))
			SplitPlanes(dst, src, w, rotate)
			if !bytes.Equal(dst, want) {
				t.Fatalf("asm=%v w=%d rotate=%v n=%d: split differs", asm, w, rotate, len(src))
			}
			back := make([]byte, len(src))
			MergePlanes(back, dst, w, rotate)
			if !bytes.Equal(back, src) {
				t.Fatalf("asm=%v w=%d rotate=%v n=%d: round trip differs", asm, w, rotate, len(src))
			}
		}
	})
}
