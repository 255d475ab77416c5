// gen.go generates ../kernels_amd64.s and its Go stubs with avo.
//
//	cd ops/kernels/_generate && go generate
//
// Every function processes a length that is a multiple of its vector width
// (8 float32 for AVX2, 16 for AVX-512; 16 for the reductions); the Go
// wrappers in dispatch_amd64.go run the twins on the remainder. The
// arithmetic uses separate multiply and add (except RankUpdate, which uses
// fused multiply-add like its twin's fma32), so results equal the pure-Go
// twins bit for bit. Functions ending in NT use non-temporal stores and need
// a destination aligned to 64 bytes.
package main

//go:generate go run gen.go -out ../kernels_amd64.s -stubs ../kernels_amd64.go -pkg kernels

import (
	"fmt"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// level is one instruction set: its name suffix, float32 lanes per vector
// and a register allocator.
type level struct {
	name   string
	w      int // float32 per vector
	vreg   func() VecVirtual
	avx512 bool
}

var (
	avx2   = level{"AVX2", 8, YMM, false}
	avx512 = level{"AVX512", 16, ZMM, true}
)

const unroll = 4

// stream is one array walked by a loop: its base register and the bytes per
// element.
type stream struct {
	p    Register
	size int
}

// loop emits: while n >= unroll·w { body(0..unroll-1) } while n >= w { body(0) }.
// body(j) handles vector j of the current block; streams advance afterwards.
func loop(prefix string, lv level, n Register, streams []stream, body func(j int)) {
	big := unroll * lv.w
	Label(prefix + "_loop4")
	CMPQ(n, U32(big))
	JL(LabelRef(prefix + "_loop1"))
	for j := 0; j < unroll; j++ {
		body(j)
	}
	for _, s := range streams {
		ADDQ(U32(big*s.size), s.p)
	}
	SUBQ(U32(big), n)
	JMP(LabelRef(prefix + "_loop4"))
	Label(prefix + "_loop1")
	CMPQ(n, U32(lv.w))
	JL(LabelRef(prefix + "_done"))
	body(0)
	for _, s := range streams {
		ADDQ(U32(lv.w*s.size), s.p)
	}
	SUBQ(U32(lv.w), n)
	JMP(LabelRef(prefix + "_loop1"))
	Label(prefix + "_done")
	fenceNT(prefix)
	VZEROUPPER()
	RET()
}

// zero clears v with an integer XOR (VXORPS on ZMM would need AVX512DQ).
func zero(lv level, v VecVirtual) {
	if lv.avx512 {
		VPXORD(v, v, v)
	} else {
		VPXOR(v, v, v)
	}
}

// fenceNT ends a function that used non-temporal stores (its name ends in
// NT) with SFENCE: those stores are weakly ordered, and the caller may hand
// the data to another goroutine right after (runtime·memmove does the same).
func fenceNT(name string) {
	if strings.HasSuffix(name, "NT") {
		SFENCE()
	}
}

func at(p Register, disp int) Mem { return Mem{Base: p, Disp: disp} }

func broadcastParam(name string, lv level) VecVirtual {
	a := lv.vreg()
	b, err := Param(name).Resolve()
	if err != nil {
		panic(err)
	}
	VBROADCASTSS(b.Addr, a)
	return a
}

// binary: dst[i] = op(dst[i], x[i]) (or op(x[i]) for unary/to-dst forms).
func genBinary(fn, doc string, lv level, op func(d Mem, x Mem, t VecVirtual)) {
	name := fn + lv.name
	TEXT(name, NOSPLIT, "func(dst, x []float32)")
	Pragma("noescape")
	Doc(name+" is "+doc, "len(x) must be a multiple of "+fmt.Sprint(lv.w)+" and len(dst) >= len(x).")
	d := Load(Param("dst").Base(), GP64())
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	ts := make([]VecVirtual, unroll)
	for j := range ts {
		ts[j] = lv.vreg()
	}
	loop(name, lv, n, []stream{{d, 4}, {x, 4}}, func(j int) {
		off := j * lv.w * 4
		op(at(d, off), at(x, off), ts[j])
		VMOVUPS(ts[j], at(d, off))
	})
}

func genAxpy(lv level) {
	name := "axpy" + lv.name
	TEXT(name, NOSPLIT, "func(alpha float32, x, y []float32)")
	Pragma("noescape")
	Doc(name+" is: for i, v := range x { y[i] += float32(alpha * v) } (multiply, then add).",
		"len(x) must be a multiple of "+fmt.Sprint(lv.w)+" and len(y) >= len(x).")
	a := broadcastParam("alpha", lv)
	x := Load(Param("x").Base(), GP64())
	y := Load(Param("y").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	ts := make([]VecVirtual, unroll)
	for j := range ts {
		ts[j] = lv.vreg()
	}
	loop(name, lv, n, []stream{{x, 4}, {y, 4}}, func(j int) {
		off := j * lv.w * 4
		VMULPS(at(x, off), a, ts[j])
		VADDPS(at(y, off), ts[j], ts[j])
		VMOVUPS(ts[j], at(y, off))
	})
}

func genScale(lv level) {
	name := "scale" + lv.name
	TEXT(name, NOSPLIT, "func(alpha float32, x []float32)")
	Pragma("noescape")
	Doc(name+" is: for i := range x { x[i] *= alpha }", "len(x) must be a multiple of "+fmt.Sprint(lv.w)+".")
	a := broadcastParam("alpha", lv)
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	ts := make([]VecVirtual, unroll)
	for j := range ts {
		ts[j] = lv.vreg()
	}
	loop(name, lv, n, []stream{{x, 4}}, func(j int) {
		off := j * lv.w * 4
		VMULPS(at(x, off), a, ts[j])
		VMOVUPS(ts[j], at(x, off))
	})
}

func genScaleTo(lv level, nt bool) {
	name := "scaleTo" + lv.name
	store := func(a, b Op) { VMOVUPS(a, b) }
	extra := ""
	if nt {
		name += "NT"
		store = func(a, b Op) { VMOVNTPS(a, b) }
		extra = " Non-temporal stores: dst must be 64-byte aligned."
	}
	TEXT(name, NOSPLIT, "func(dst []float32, alpha float32, x []float32)")
	Pragma("noescape")
	Doc(name+" is: for i, v := range x { dst[i] = alpha * v }", "len(x) must be a multiple of "+fmt.Sprint(lv.w)+" and len(dst) >= len(x)."+extra)
	a := broadcastParam("alpha", lv)
	d := Load(Param("dst").Base(), GP64())
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	ts := make([]VecVirtual, unroll)
	for j := range ts {
		ts[j] = lv.vreg()
	}
	loop(name, lv, n, []stream{{d, 4}, {x, 4}}, func(j int) {
		off := j * lv.w * 4
		VMULPS(at(x, off), a, ts[j])
		store(ts[j], at(d, off))
	})
}

var declared = map[string]Mem{}

// constant declares a 4-byte read-only constant once and returns it.
func constant(name string, c uint32) Mem {
	if m, ok := declared[name]; ok {
		return m
	}
	m := GLOBL(name, RODATA|NOPTR)
	DATA(0, U32(c))
	declared[name] = m
	return m
}

func bcast(lv level, m Mem) VecVirtual {
	v := lv.vreg()
	VPBROADCASTD(m, v)
	return v
}

func genNeg(lv level) {
	name := "neg" + lv.name
	TEXT(name, NOSPLIT, "func(x []float32)")
	Pragma("noescape")
	Doc(name+" is: for i := range x { x[i] = -x[i] } (sign-bit flip)", "len(x) must be a multiple of "+fmt.Sprint(lv.w)+".")
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	s := bcast(lv, constant("signbit", 0x80000000))
	ts := make([]VecVirtual, unroll)
	for j := range ts {
		ts[j] = lv.vreg()
	}
	loop(name, lv, n, []stream{{x, 4}}, func(j int) {
		off := j * lv.w * 4
		if lv.avx512 {
			VPXORD(at(x, off), s, ts[j])
		} else {
			VXORPS(at(x, off), s, ts[j])
		}
		VMOVUPS(ts[j], at(x, off))
	})
}

func genAbsMax(lv level) {
	name := "absMax" + lv.name
	TEXT(name, NOSPLIT, "func(x []float32) float32")
	Pragma("noescape")
	Doc(name+" is: m := 0; for _, v := range x { if |v| > m { m = |v| } } (NaN ignored)", "len(x) must be a multiple of "+fmt.Sprint(lv.w)+".")
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	abs := bcast(lv, constant("absmask", 0x7fffffff))
	acc := make([]VecVirtual, unroll)
	ts := make([]VecVirtual, unroll)
	for j := range acc {
		acc[j], ts[j] = lv.vreg(), lv.vreg()
		zero(lv, acc[j])
	}
	big := unroll * lv.w
	body := func(j, k int) {
		off := j * lv.w * 4
		if lv.avx512 {
			VPANDD(at(x, off), abs, ts[k])
		} else {
			VANDPS(at(x, off), abs, ts[k])
		}
		// Intel MAXPS returns the second source when either is NaN, so with
		// the accumulator second a NaN element leaves it unchanged.
		VMAXPS(acc[k], ts[k], acc[k])
	}
	Label(name + "_loop4")
	CMPQ(n, U32(big))
	JL(LabelRef(name + "_loop1"))
	for j := 0; j < unroll; j++ {
		body(j, j)
	}
	ADDQ(U32(big*4), x)
	SUBQ(U32(big), n)
	JMP(LabelRef(name + "_loop4"))
	Label(name + "_loop1")
	CMPQ(n, U32(lv.w))
	JL(LabelRef(name + "_reduce"))
	body(0, 0)
	ADDQ(U32(lv.w*4), x)
	SUBQ(U32(lv.w), n)
	JMP(LabelRef(name + "_loop1"))
	Label(name + "_reduce")
	// max is exact and order-free; no lane holds a NaN.
	VMAXPS(acc[1], acc[0], acc[0])
	VMAXPS(acc[3], acc[2], acc[2])
	VMAXPS(acc[2], acc[0], acc[0])
	var y VecVirtual
	if lv.avx512 {
		y = YMM()
		VEXTRACTF64X4(U8(1), acc[0], y)
		VMAXPS(y, acc[0].AsY(), y)
	} else {
		y = acc[0]
	}
	xm := XMM()
	VEXTRACTF128(U8(1), y.AsY(), xm)
	VMAXPS(xm, y.AsX(), xm)
	t := XMM()
	VPSHUFD(U8(0x4e), xm, t) // swap 64-bit halves
	VMAXPS(t, xm, xm)
	VPSHUFD(U8(0xb1), xm, t) // swap 32-bit pairs
	VMAXPS(t, xm, xm)
	VZEROUPPER()
	Store(xm, ReturnIndex(0))
	RET()
}

// genDot emits the 16-lane float64 reduction: lane l accumulates elements
// i ≡ l (mod 16); the fold is lanes j += j+8, j += j+4, j += j+2, j += j+1.
// AVX2 holds the lanes in four YMM (4 float64 each), AVX-512 in two ZMM.
func genDot(lv level, squares bool) {
	name := "dotLanes" + lv.name
	sig := "func(x, y []float32) float64"
	doc := name + " is: for i := range x { s[i%16] += float64(x[i]) * float64(y[i]) }; fold s (j += j+8, +4, +2, +1); return s[0]"
	if squares {
		name = "sumSquaresLanes" + lv.name
		sig = "func(x []float32) float64"
		doc = name + " is: for i := range x { s[i%16] += float64(x[i]) * float64(x[i]) }; fold s (j += j+8, +4, +2, +1); return s[0]"
	}
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape")
	Doc(doc, "len(x) must be a multiple of 16 (and len(y) >= len(x)). The float64 products are exact, so FMA equals multiply-then-add.")
	x := Load(Param("x").Base(), GP64())
	n := Load(Param("x").Len(), GP64())
	var y Register
	if !squares {
		y = Load(Param("y").Base(), GP64())
	}
	nacc := 4 // vectors of float64 per 16 lanes
	width := 4
	if lv.avx512 {
		nacc, width = 2, 8
	}
	acc := make([]VecVirtual, nacc)
	xs := make([]VecVirtual, nacc)
	ys := make([]VecVirtual, nacc)
	for j := range acc {
		acc[j], xs[j], ys[j] = lv.vreg(), lv.vreg(), lv.vreg()
		zero(lv, acc[j])
	}
	Label(name + "_loop")
	CMPQ(n, U32(16))
	JL(LabelRef(name + "_reduce"))
	for j := 0; j < nacc; j++ {
		VCVTPS2PD(at(x, j*width*4), xs[j])
		if squares {
			VFMADD231PD(xs[j], xs[j], acc[j])
		} else {
			VCVTPS2PD(at(y, j*width*4), ys[j])
			VFMADD231PD(ys[j], xs[j], acc[j])
		}
	}
	ADDQ(U32(64), x)
	if !squares {
		ADDQ(U32(64), y)
	}
	SUBQ(U32(16), n)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_reduce")
	var t VecVirtual // lanes 0..3 after the j += j+8 and j += j+4 folds
	if lv.avx512 {
		VADDPD(acc[1], acc[0], acc[0]) // j += j+8 → lanes 0..7
		t = YMM()
		VEXTRACTF64X4(U8(1), acc[0], t)
		VADDPD(t, acc[0].AsY(), t) // j += j+4
	} else {
		VADDPD(acc[2], acc[0], acc[0]) // lanes 0..3 += 8..11
		VADDPD(acc[3], acc[1], acc[1]) // lanes 4..7 += 12..15
		VADDPD(acc[1], acc[0], acc[0]) // j += j+4
		t = acc[0]
	}
	h := XMM()
	VEXTRACTF128(U8(1), t.AsY(), h)
	VADDPD(h, t.AsX(), h) // j += j+2
	l := XMM()
	VPERMILPD(U8(1), h, l)
	VADDSD(l, h, h) // j += j+1
	VZEROUPPER()
	Store(h, ReturnIndex(0))
	RET()
}

func genF16ToF32(lv level, nt bool) {
	name := "f16ToF32" + lv.name
	store := func(a, b Op) { VMOVUPS(a, b) }
	extra := ""
	if nt {
		name += "NT"
		store = func(a, b Op) { VMOVNTPS(a, b) }
		extra = " Non-temporal stores: dst must be 64-byte aligned."
	}
	TEXT(name, NOSPLIT, "func(dst []float32, src []uint16)")
	Pragma("noescape")
	Doc(name+" is: for i, h := range src { dst[i] = exact float32 of binary16 h } (VCVTPH2PS)", "len(src) must be a multiple of "+fmt.Sprint(lv.w)+"."+extra)
	d := Load(Param("dst").Base(), GP64())
	s := Load(Param("src").Base(), GP64())
	n := Load(Param("src").Len(), GP64())
	ts := make([]VecVirtual, unroll)
	for j := range ts {
		ts[j] = lv.vreg()
	}
	loop(name, lv, n, []stream{{d, 4}, {s, 2}}, func(j int) {
		VCVTPH2PS(at(s, j*lv.w*2), ts[j])
		store(ts[j], at(d, j*lv.w*4))
	})
}

func genF32ToF16(lv level, nt bool) {
	name := "f32ToF16" + lv.name
	extra := ""
	if nt {
		name += "NT"
		extra = " Non-temporal stores: dst must be 64-byte aligned."
	}
	TEXT(name, NOSPLIT, "func(dst []uint16, src []float32)")
	Pragma("noescape")
	Doc(name+" is: for i, v := range src { dst[i] = binary16 bits of v, round to nearest even } (VCVTPS2PH imm 0)", "len(src) must be a multiple of "+fmt.Sprint(lv.w)+"."+extra)
	d := Load(Param("dst").Base(), GP64())
	s := Load(Param("src").Base(), GP64())
	n := Load(Param("src").Len(), GP64())
	ts := make([]VecVirtual, unroll)
	for j := range ts {
		if lv.avx512 {
			ts[j] = YMM()
		} else {
			ts[j] = XMM()
		}
	}
	loop(name, lv, n, []stream{{d, 2}, {s, 4}}, func(j int) {
		v := lv.vreg()
		VMOVUPS(at(s, j*lv.w*4), v)
		if nt {
			VCVTPS2PH(U8(0), v, ts[j])
			VMOVNTDQ(ts[j], at(d, j*lv.w*2))
		} else {
			VCVTPS2PH(U8(0), v, at(d, j*lv.w*2))
		}
	})
}

func genBF16ToF32(lv level, nt bool) {
	name := "bf16ToF32" + lv.name
	store := func(a, b Op) { VMOVUPS(a, b) }
	extra := ""
	if nt {
		name += "NT"
		store = func(a, b Op) { VMOVNTPS(a, b) }
		extra = " Non-temporal stores: dst must be 64-byte aligned."
	}
	TEXT(name, NOSPLIT, "func(dst []float32, src []uint16)")
	Pragma("noescape")
	Doc(name+" is: for i, h := range src { dst[i] = math.Float32frombits(uint32(h) << 16) }", "len(src) must be a multiple of "+fmt.Sprint(lv.w)+"."+extra)
	d := Load(Param("dst").Base(), GP64())
	s := Load(Param("src").Base(), GP64())
	n := Load(Param("src").Len(), GP64())
	ts := make([]VecVirtual, unroll)
	for j := range ts {
		ts[j] = lv.vreg()
	}
	loop(name, lv, n, []stream{{d, 4}, {s, 2}}, func(j int) {
		VPMOVZXWD(at(s, j*lv.w*2), ts[j])
		VPSLLD(U8(16), ts[j], ts[j])
		store(ts[j], at(d, j*lv.w*4))
	})
}

// genF32ToBF16 rounds with integer ops: r = (u + 0x7fff + (u>>16 & 1)) >> 16,
// and a NaN (|u| > 0x7f800000) gives u>>16 | 0x40.
func genF32ToBF16(lv level, nt bool) {
	name := "f32ToBF16" + lv.name
	extra := ""
	if nt {
		name += "NT"
		extra = " Non-temporal stores: dst must be 64-byte aligned."
	}
	TEXT(name, NOSPLIT, "func(dst []uint16, src []float32)")
	Pragma("noescape")
	Doc(name+" is: for i, v := range src { u := bits(v); dst[i] = NaN ? u>>16|0x40 : (u + 0x7fff + (u>>16)&1) >> 16 }",
		"len(src) must be a multiple of "+fmt.Sprint(2*lv.w)+"."+extra)
	d := Load(Param("dst").Base(), GP64())
	s := Load(Param("src").Base(), GP64())
	n := Load(Param("src").Len(), GP64())
	one := bcast(lv, constant("one", 1))
	bias := bcast(lv, constant("bf16bias", 0x7fff))
	quiet := bcast(lv, constant("bf16quiet", 0x40))
	absm := bcast(lv, constant("absmask", 0x7fffffff))
	inf := bcast(lv, constant("infbits", 0x7f800000))
	round := func(src Mem) VecVirtual {
		u, t, r, a := lv.vreg(), lv.vreg(), lv.vreg(), lv.vreg()
		if lv.avx512 {
			VMOVDQU32(src, u)
		} else {
			VMOVDQU(src, u)
		}
		VPSRLD(U8(16), u, t) // t = u >> 16
		VPADDD(bias, u, r)   // r = u + 0x7fff
		if lv.avx512 {
			VPANDD(one, t, a)
		} else {
			VPAND(one, t, a) // a = (u>>16)&1
		}
		VPADDD(a, r, r)
		VPSRLD(U8(16), r, r)
		if lv.avx512 {
			VPORD(quiet, t, t) // t = NaN result
			VPANDD(absm, u, a)
			k := K()
			VPCMPGTD(inf, a, k)
			VPBLENDMD(t, r, k, r)
		} else {
			VPOR(quiet, t, t)
			VPAND(absm, u, a)
			VPCMPGTD(inf, a, a) // a = |u| > inf (signed compare is fine: both non-negative)
			VPBLENDVB(a, t, r, r)
		}
		return r
	}
	// Each step handles 2·w floats (AVX2: two YMM packed into one YMM of
	// uint16; AVX-512: one ZMM narrowed to a YMM, twice).
	step := 2 * lv.w
	Label(name + "_loop")
	CMPQ(n, U32(step))
	JL(LabelRef(name + "_done"))
	if lv.avx512 {
		for j := 0; j < 2; j++ {
			r := round(at(s, j*lv.w*4))
			if nt {
				y := YMM()
				VPMOVDW(r, y)
				VMOVNTDQ(y, at(d, j*lv.w*2))
			} else {
				VPMOVDW(r, at(d, j*lv.w*2))
			}
		}
	} else {
		r0 := round(at(s, 0))
		r1 := round(at(s, 32))
		p := YMM()
		VPACKUSDW(r1, r0, p)   // qwords: r0[0:4] r1[0:4] r0[4:8] r1[4:8]
		VPERMQ(U8(0xd8), p, p) // → r0[0:8] r1[0:8]
		if nt {
			VMOVNTDQ(p, at(d, 0))
		} else {
			VMOVDQU(p, at(d, 0))
		}
	}
	ADDQ(U32(step*4), s)
	ADDQ(U32(step*2), d)
	SUBQ(U32(step), n)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_done")
	fenceNT(name)
	VZEROUPPER()
	RET()
}

// genRankRow: for each block of columns, keep W in registers while adding the
// r rows of A: w[j] = fma32(c[k], a[k*stride+j], w[j]) for k = 0..r-1 in
// order (VFMADD231PS, one rounding per term, as the twin's fma32).
func genRankRow(lv level) {
	name := "rankRow" + lv.name
	TEXT(name, NOSPLIT, "func(w, c, a []float32, stride int)")
	Pragma("noescape")
	Doc(name+" is: for k := range c { for j := range w { w[j] = fma32(c[k], a[k*stride+j], w[j]) } }",
		"len(w) must be a multiple of "+fmt.Sprint(lv.w)+" and len(c) ≥ 1. Each W element is loaded and stored once.")
	wp := Load(Param("w").Base(), GP64())
	n := Load(Param("w").Len(), GP64())
	cp := Load(Param("c").Base(), GP64())
	r := Load(Param("c").Len(), GP64())
	ap := Load(Param("a").Base(), GP64())
	stride := Load(Param("stride"), GP64())
	SHLQ(U8(2), stride) // bytes
	acc := make([]VecVirtual, unroll)
	for j := range acc {
		acc[j] = lv.vreg()
	}
	ck := lv.vreg()
	k, ak := GP64(), GP64()
	blk := func(nv int, lbl string) {
		for j := 0; j < nv; j++ {
			VMOVUPS(at(wp, j*lv.w*4), acc[j])
		}
		XORQ(k, k)
		MOVQ(ap, ak)
		Label(lbl)
		VBROADCASTSS(Mem{Base: cp, Index: k, Scale: 4}, ck)
		for j := 0; j < nv; j++ {
			VFMADD231PS(at(ak, j*lv.w*4), ck, acc[j])
		}
		ADDQ(stride, ak)
		INCQ(k)
		CMPQ(k, r)
		JL(LabelRef(lbl))
		for j := 0; j < nv; j++ {
			VMOVUPS(acc[j], at(wp, j*lv.w*4))
		}
	}
	big := unroll * lv.w
	Label(name + "_loop4")
	CMPQ(n, U32(big))
	JL(LabelRef(name + "_loop1"))
	blk(unroll, name+"_k4")
	ADDQ(U32(big*4), wp)
	ADDQ(U32(big*4), ap)
	SUBQ(U32(big), n)
	JMP(LabelRef(name + "_loop4"))
	Label(name + "_loop1")
	CMPQ(n, U32(lv.w))
	JL(LabelRef(name + "_done"))
	blk(1, name+"_k1")
	ADDQ(U32(lv.w*4), wp)
	ADDQ(U32(lv.w*4), ap)
	SUBQ(U32(lv.w), n)
	JMP(LabelRef(name + "_loop1"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// genRank4 is the register-blocked form for four rows of W at once: each
// vector of A is loaded once and used for the four rows (AVX-512: 4 rows × 4
// vectors = 16 ZMM accumulators; AVX2: 4 × 2 YMM within the 16 VEX
// registers). Per element the r terms are still added in order k = 0..r-1,
// each by a fused multiply-add (one rounding, as the twin's fma32). The caller blocks A's columns so the
// r×n block of A stays in L1 across row groups; while a 4×(V vectors) block
// of W is in registers, the same columns of the next four rows (w + 4·ldw,
// which the caller's next call reads) are prefetched.
func genRank4(lv level) {
	name := "rank4Rows" + lv.name
	TEXT(name, NOSPLIT, "func(w []float32, ldw int, c []float32, a []float32, lda int, n int)")
	Pragma("noescape")
	Doc(name+" is: for q := 0; q < 4; q++ { for k := 0; k < r; k++ { for j := 0; j < n; j++ {",
		"	w[q*ldw+j] = fma32(c[q*r+k], a[k*lda+j], w[q*ldw+j]) } } } with r = len(c)/4.",
		"n must be a multiple of "+fmt.Sprint(lv.w)+"; w must hold 3*ldw+n elements and a (r-1)*lda+n.",
		"Rows 4..7 of w (w[4*ldw:]) are prefetched, never loaded.")
	w0 := Load(Param("w").Base(), GP64())
	L := Load(Param("ldw"), GP64())
	SHLQ(U8(2), L)
	L3 := GP64()
	LEAQ(Mem{Base: L, Index: L, Scale: 2}, L3)
	pf := GP64() // w + 4·ldw: the next row group, prefetched
	LEAQ(Mem{Base: w0, Index: L, Scale: 4}, pf)
	cbase := Load(Param("c").Base(), GP64())
	R4 := Load(Param("c").Len(), GP64()) // len(c) = 4r elements = r*4 bytes, the stride of c's rows
	R12 := GP64()
	LEAQ(Mem{Base: R4, Index: R4, Scale: 2}, R12)
	cend := GP64()
	LEAQ(Mem{Base: cbase, Index: R4, Scale: 1}, cend)
	ap := Load(Param("a").Base(), GP64())
	lda := Load(Param("lda"), GP64())
	SHLQ(U8(2), lda)
	n := Load(Param("n"), GP64())
	ck, ak := GP64(), GP64()
	rowMem := func(base Register, disp int, q int) Mem {
		switch q {
		case 0:
			return Mem{Base: base, Disp: disp}
		case 1:
			return Mem{Base: base, Index: L, Scale: 1, Disp: disp}
		case 2:
			return Mem{Base: base, Index: L, Scale: 2, Disp: disp}
		}
		return Mem{Base: base, Index: L3, Scale: 1, Disp: disp}
	}
	cMem := func(q int) Mem {
		switch q {
		case 0:
			return Mem{Base: ck}
		case 1:
			return Mem{Base: ck, Index: R4, Scale: 1}
		case 2:
			return Mem{Base: ck, Index: R4, Scale: 2}
		}
		return Mem{Base: ck, Index: R12, Scale: 1}
	}
	V := 2
	if lv.avx512 {
		V = 4
	}
	acc := make([][]VecVirtual, 4)
	for q := range acc {
		acc[q] = make([]VecVirtual, V)
		for v := range acc[q] {
			acc[q][v] = lv.vreg()
		}
	}
	av := make([]VecVirtual, V)
	for v := range av {
		av[v] = lv.vreg()
	}
	cv := lv.vreg()
	blk := func(nv int, lbl string) {
		for q := 0; q < 4; q++ {
			for v := 0; v < nv; v++ {
				VMOVUPS(rowMem(w0, v*lv.w*4, q), acc[q][v])
			}
		}
		if nv == V {
			for q := 0; q < 4; q++ {
				for off := 0; off < V*lv.w*4; off += 64 {
					PREFETCHT0(rowMem(pf, off, q))
				}
			}
		}
		MOVQ(cbase, ck)
		MOVQ(ap, ak)
		Label(lbl)
		for v := 0; v < nv; v++ {
			VMOVUPS(at(ak, v*lv.w*4), av[v])
		}
		for q := 0; q < 4; q++ {
			VBROADCASTSS(cMem(q), cv)
			for v := 0; v < nv; v++ {
				VFMADD231PS(av[v], cv, acc[q][v])
			}
		}
		ADDQ(lda, ak)
		ADDQ(U8(4), ck)
		CMPQ(ck, cend)
		JL(LabelRef(lbl))
		for q := 0; q < 4; q++ {
			for v := 0; v < nv; v++ {
				VMOVUPS(acc[q][v], rowMem(w0, v*lv.w*4, q))
			}
		}
	}
	big := V * lv.w
	Label(name + "_loopV")
	CMPQ(n, U32(big))
	JL(LabelRef(name + "_loop1"))
	blk(V, name+"_kV")
	ADDQ(U32(big*4), w0)
	ADDQ(U32(big*4), pf)
	ADDQ(U32(big*4), ap)
	SUBQ(U32(big), n)
	JMP(LabelRef(name + "_loopV"))
	Label(name + "_loop1")
	CMPQ(n, U32(lv.w))
	JL(LabelRef(name + "_done"))
	blk(1, name+"_k1")
	ADDQ(U32(lv.w*4), w0)
	ADDQ(U32(lv.w*4), ap)
	SUBQ(U32(lv.w), n)
	JMP(LabelRef(name + "_loop1"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// genF8ToF32 widens F8 codes through binary16: an E5M2 code is the top byte
// of a binary16 value; an E4M3FN code c maps to the binary16 bits
// (c&0x80)<<8 | (c&0x7f)<<7, whose value times 2⁸ is the E4M3 value (normal
// and subnormal alike), except the NaN codes S.1111.111, which come out as
// ±480 and are replaced by sign|0x7fc00000 — the twin's decoding.
func genF8ToF32(lv level, e4m3, nt bool) {
	name := "f8E5M2ToF32" + lv.name
	doc := name + " is: for i, c := range src { dst[i] = F16ToF32 of uint16(c) << 8 }"
	if e4m3 {
		name = "f8E4M3ToF32" + lv.name
		doc = name + " is: for i, c := range src { dst[i] = E4M3FN value of c; NaN codes → sign|0x7fc00000 }"
	}
	store := func(a, b Op) { VMOVUPS(a, b) }
	extra := ""
	if nt {
		name += "NT"
		doc = strings.Replace(doc, lv.name+" is", lv.name+"NT is", 1)
		store = func(a, b Op) { VMOVNTPS(a, b) }
		extra = " Non-temporal stores: dst must be 64-byte aligned."
	}
	TEXT(name, NOSPLIT, "func(dst []float32, src []uint8)")
	Pragma("noescape")
	Doc(doc, "len(src) must be a multiple of "+fmt.Sprint(lv.w)+"."+extra)
	d := Load(Param("dst").Base(), GP64())
	s := Load(Param("src").Base(), GP64())
	n := Load(Param("src").Len(), GP64())
	half := func() VecVirtual { // the binary16 words: XMM for AVX2, YMM for AVX-512
		if lv.avx512 {
			return YMM()
		}
		return XMM()
	}
	var m7f00, m8000, scale, absm, v480, qnan, sgn VecVirtual
	if e4m3 {
		bw := func(c uint32) VecVirtual { // broadcast a word constant
			v := half()
			VPBROADCASTW(constant(fmt.Sprintf("w%04x", c), c), v)
			return v
		}
		m7f00, m8000 = bw(0x7f00), bw(0x8000)
		scale = lv.vreg()
		VBROADCASTSS(constant("f256", 0x43800000), scale)
		absm = bcast(lv, constant("absmask", 0x7fffffff))
		v480 = bcast(lv, constant("f480", 0x43f00000))
		qnan = bcast(lv, constant("qnan", 0x7fc00000))
		sgn = bcast(lv, constant("signbit", 0x80000000))
	}
	ts := make([]VecVirtual, 2)
	for j := range ts {
		ts[j] = lv.vreg()
	}
	const un = 2
	loopN(name, lv, n, un, []stream{{d, 4}, {s, 1}}, func(j int) {
		h := half()
		VPMOVZXBW(at(s, j*lv.w), h)
		VPSLLW(U8(8), h, h)
		if e4m3 {
			e := half()
			VPAND(m7f00, h, e)
			VPSRLW(U8(1), e, e)
			VPAND(m8000, h, h)
			VPOR(e, h, h)
		}
		r := ts[j]
		VCVTPH2PS(h, r)
		if e4m3 {
			VMULPS(scale, r, r)
			a, nv := lv.vreg(), lv.vreg()
			if lv.avx512 {
				VPANDD(absm, r, a)
				k := K()
				VPCMPEQD(v480, a, k)
				VPANDD(sgn, r, nv)
				VPORD(qnan, nv, nv)
				VPBLENDMD(nv, r, k, r)
			} else {
				VPAND(absm, r, a)
				VPCMPEQD(v480, a, a)
				VPAND(sgn, r, nv)
				VPOR(qnan, nv, nv)
				VPBLENDVB(a, nv, r, r)
			}
		}
		store(r, at(d, j*lv.w*4))
	})
}

// f8fmt holds the constants of an F8 encoder (see f32BitsToE4M3 and
// f32BitsToE5M2 in generic.go, which this mirrors lane by lane).
type f8fmt struct {
	name      string
	minNormal uint32 // bits of the smallest normal
	subScale  uint32 // bits of 2^(bias-1+mbits): subnormal code = RNE(|x|·subScale)
	roundBias uint32 // 2^(23-mbits-1) - 1
	shift     uint64 // 23 - mbits
	rebias    uint32 // (127-bias) << mbits
	satAbove  uint32 // |x| bits above this saturate
	satCode   uint32
	infCode   uint32 // 0: no infinity (Inf saturates)
}

var (
	e4m3 = f8fmt{"E4M3", 0x3c800000, 0x44000000, 0x7ffff, 20, 120 << 3, 0x43dfffff, 0x7e, 0}
	e5m2 = f8fmt{"E5M2", 0x38800000, 0x47800000, 0xfffff, 21, 112 << 2, 0x476fffff, 0x7b, 0x7c}
)

// vec32 declares a 32-byte read-only constant of eight copies of c once: a
// memory operand for AVX2 instructions (which have no embedded broadcast)
// and the source of VPBROADCASTD for AVX-512.
func vec32(name string, c uint32) Mem {
	if m, ok := declared[name]; ok {
		return m
	}
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < 8; i++ {
		DATA(4*i, U32(c))
	}
	declared[name] = m
	return m
}

// genF32ToF8 rounds float32 to F8 codes with integer SIMD: the normal code
// (a + roundBias + lsb) >> shift - rebias, the subnormal code from rounding
// |x|·2^k to an integer (VROUNDPS/VRNDSCALEPS imm 0: nearest even), then
// saturation, infinity and NaN by compare and blend, the sign ORed in.
// 32 floats per step. AVX2 reads its constants from memory, so that it
// needs no more than the 16 VEX-addressable registers.
func genF32ToF8(lv level, ff f8fmt) {
	name := "f32ToF8" + ff.name + lv.name
	TEXT(name, NOSPLIT, "func(dst []uint8, src []float32)")
	Pragma("noescape")
	Doc(name+" is: for i, v := range src { dst[i] = f32BitsTo"+ff.name+"(math.Float32bits(v)) } (see generic.go)",
		"len(src) must be a multiple of 32.")
	d := Load(Param("dst").Base(), GP64())
	sp := Load(Param("src").Base(), GP64())
	n := Load(Param("src").Len(), GP64())
	c := func(tag string, v uint32) Op {
		m := vec32(fmt.Sprintf("v8_%s_%08x", tag, v), v)
		if lv.avx512 {
			return bcast(lv, m)
		}
		return m
	}
	absm := c("abs", 0x7fffffff)
	one := c("one", 1)
	rb := c("rb", ff.roundBias)
	reb := c("reb", ff.rebias)
	minN1 := c("minn1", ff.minNormal-1)
	sub := c("sub", ff.subScale)
	satA := c("sata", ff.satAbove)
	satC := c("satc", ff.satCode)
	inf := c("inf", 0x7f800000)
	nanC := c("nanc", 0x7f)
	s80 := c("s80", 0x80)
	var infC Op
	if ff.infCode != 0 {
		infC = c("infc", ff.infCode)
	}
	and := func(a, b, dst Op) {
		if lv.avx512 {
			VPANDD(a, b, dst)
		} else {
			VPAND(a, b, dst)
		}
	}
	or := func(a, b, dst Op) {
		if lv.avx512 {
			VPORD(a, b, dst)
		} else {
			VPOR(a, b, dst)
		}
	}
	// sel: code = (y > x, or y == x when eq) ? v : code; with keep, the
	// opposite: code = mask ? code : v.
	sel := func(code VecVirtual, v Op, eq, keep bool, x Op, y VecVirtual) {
		if lv.avx512 {
			k := K()
			if eq {
				VPCMPEQD(x, y, k)
			} else {
				VPCMPGTD(x, y, k)
			}
			if keep {
				VPBLENDMD(code, v, k, code)
			} else {
				VPBLENDMD(v, code, k, code)
			}
			return
		}
		m := lv.vreg()
		if eq {
			VPCMPEQD(x, y, m)
		} else {
			VPCMPGTD(x, y, m)
		}
		if keep {
			VPBLENDVB(m, code, v, code)
		} else {
			VPBLENDVB(m, v, code, code)
		}
	}
	encode := func(src Mem) VecVirtual {
		u, a, t, code, f := lv.vreg(), lv.vreg(), lv.vreg(), lv.vreg(), lv.vreg()
		if lv.avx512 {
			VMOVDQU32(src, u)
		} else {
			VMOVDQU(src, u)
		}
		and(absm, u, a)
		VPSRLD(U8(ff.shift), a, t)
		and(one, t, t)
		VPADDD(rb, a, code)
		VPADDD(t, code, code)
		VPSRLD(U8(ff.shift), code, code)
		VPSUBD(reb, code, code)
		VMULPS(sub, a, f) // a's bits are |x|
		if lv.avx512 {
			VRNDSCALEPS(U8(0), f, f)
		} else {
			VROUNDPS(U8(0), f, f)
		}
		VCVTTPS2DQ(f, f)
		sel(code, f, false, true, minN1, a) // a ≥ minNormal keeps the normal code, else subnormal
		sel(code, satC, false, false, satA, a)
		if infC != nil {
			sel(code, infC, true, false, inf, a)
		}
		sel(code, nanC, false, false, inf, a)
		VPSRLD(U8(24), u, t)
		and(s80, t, t)
		or(t, code, code)
		return code
	}
	var perm Mem
	if !lv.avx512 {
		perm = permConst()
	}
	Label(name + "_loop")
	CMPQ(n, U32(32))
	JL(LabelRef(name + "_done"))
	if lv.avx512 {
		for j := 0; j < 2; j++ {
			r := encode(at(sp, j*64))
			VPMOVDB(r, at(d, j*16))
		}
	} else {
		r0, r1, r2, r3 := encode(at(sp, 0)), encode(at(sp, 32)), encode(at(sp, 64)), encode(at(sp, 96))
		VPACKUSDW(r1, r0, r0)
		VPACKUSDW(r3, r2, r2)
		VPACKUSWB(r2, r0, r0) // dword groups r0.lo r1.lo r2.lo r3.lo r0.hi r1.hi r2.hi r3.hi
		p := YMM()
		VMOVDQU(perm, p)
		VPERMD(r0, p, r0)
		VMOVDQU(r0, at(d, 0))
	}
	ADDQ(U32(128), sp)
	ADDQ(U32(32), d)
	SUBQ(U32(32), n)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// permConst is the VPERMD index [0 4 1 5 2 6 3 7] that restores element
// order after VPACKUSDW/VPACKUSWB.
func permConst() Mem {
	if m, ok := declared["f8perm"]; ok {
		return m
	}
	m := GLOBL("f8perm", RODATA|NOPTR)
	for i, v := range []uint32{0, 4, 1, 5, 2, 6, 3, 7} {
		DATA(4*i, U32(v))
	}
	declared["f8perm"] = m
	return m
}

// loopN is loop with a chosen unroll factor.
func loopN(prefix string, lv level, n Register, un int, streams []stream, body func(j int)) {
	big := un * lv.w
	Label(prefix + "_loopN")
	CMPQ(n, U32(big))
	JL(LabelRef(prefix + "_loop1"))
	for j := 0; j < un; j++ {
		body(j)
	}
	for _, s := range streams {
		ADDQ(U32(big*s.size), s.p)
	}
	SUBQ(U32(big), n)
	JMP(LabelRef(prefix + "_loopN"))
	Label(prefix + "_loop1")
	CMPQ(n, U32(lv.w))
	JL(LabelRef(prefix + "_done"))
	body(0)
	for _, s := range streams {
		ADDQ(U32(lv.w*s.size), s.p)
	}
	SUBQ(U32(lv.w), n)
	JMP(LabelRef(prefix + "_loop1"))
	Label(prefix + "_done")
	fenceNT(prefix)
	VZEROUPPER()
	RET()
}

func main() {
	ConstraintExpr("amd64,!noasm,gc")
	for _, lv := range []level{avx2, avx512} {
		genAxpy(lv)
		genScale(lv)
		genScaleTo(lv, false)
		genScaleTo(lv, true)
		genBinary("add", "for i, v := range x { dst[i] += v }", lv, func(d, x Mem, t VecVirtual) {
			VMOVUPS(d, t)
			VADDPS(x, t, t)
		})
		genBinary("sub", "for i, v := range x { dst[i] -= v }", lv, func(d, x Mem, t VecVirtual) {
			VMOVUPS(d, t)
			VSUBPS(x, t, t)
		})
		genBinary("mul", "for i, v := range x { dst[i] *= v }", lv, func(d, x Mem, t VecVirtual) {
			VMOVUPS(d, t)
			VMULPS(x, t, t)
		})
		genNeg(lv)
		genAbsMax(lv)
		genDot(lv, false)
		genDot(lv, true)
		for _, nt := range []bool{false, true} {
			genF16ToF32(lv, nt)
			genF32ToF16(lv, nt)
			genBF16ToF32(lv, nt)
			genF32ToBF16(lv, nt)
			genF8ToF32(lv, true, nt)
			genF8ToF32(lv, false, nt)
		}
		genRankRow(lv)
		genRank4(lv)
		genF32ToF8(lv, e4m3)
		genF32ToF8(lv, e5m2)
	}
	Generate()
}
