package kernels

import "strconv"

func mismatch(fn, a string, na int, b string, nb int) {
	panic("kernels: " + fn + ": len(" + a + ")=" + strconv.Itoa(na) + " != len(" + b + ")=" + strconv.Itoa(nb))
}

// Axpy adds alpha·x to y:
//
//	for i, v := range x { y[i] += float32(alpha * v) }
//
// The product is rounded to float32 before the add (no fused multiply-add)
// on every path. It panics if len(x) != len(y).
func Axpy(alpha float32, x, y []float32) {
	if len(x) != len(y) {
		mismatch("Axpy", "x", len(x), "y", len(y))
	}
	f := cur.axpy
	if len(x) < parMin {
		f(alpha, x, y)
		return
	}
	parallel(len(x), func(lo, hi int) { f(alpha, x[lo:hi], y[lo:hi]) })
}

// Scale multiplies x by alpha in place:
//
//	for i := range x { x[i] *= alpha }
func Scale(alpha float32, x []float32) {
	f := cur.scale
	if len(x) < parMin {
		f(alpha, x)
		return
	}
	parallel(len(x), func(lo, hi int) { f(alpha, x[lo:hi]) })
}

// ScaleTo writes alpha·x to dst:
//
//	for i, v := range x { dst[i] = alpha * v }
//
// It panics if len(dst) != len(x).
func ScaleTo(dst []float32, alpha float32, x []float32) {
	if len(dst) != len(x) {
		mismatch("ScaleTo", "dst", len(dst), "x", len(x))
	}
	f := cur.scaleTo
	if len(x) < parMin {
		f(dst, alpha, x)
		return
	}
	parallel(len(x), func(lo, hi int) { f(dst[lo:hi], alpha, x[lo:hi]) })
}

// Add adds x to dst:
//
//	for i, v := range x { dst[i] += v }
//
// It panics if len(dst) != len(x).
func Add(dst, x []float32) {
	if len(dst) != len(x) {
		mismatch("Add", "dst", len(dst), "x", len(x))
	}
	f := cur.add
	if len(x) < parMin {
		f(dst, x)
		return
	}
	parallel(len(x), func(lo, hi int) { f(dst[lo:hi], x[lo:hi]) })
}

// Sub subtracts x from dst:
//
//	for i, v := range x { dst[i] -= v }
//
// It panics if len(dst) != len(x).
func Sub(dst, x []float32) {
	if len(dst) != len(x) {
		mismatch("Sub", "dst", len(dst), "x", len(x))
	}
	f := cur.sub
	if len(x) < parMin {
		f(dst, x)
		return
	}
	parallel(len(x), func(lo, hi int) { f(dst[lo:hi], x[lo:hi]) })
}

// Neg negates x in place by flipping the sign bit (so +0 ↔ −0 and a NaN
// keeps its payload):
//
//	for i := range x { x[i] = -x[i] }
func Neg(x []float32) {
	f := cur.neg
	if len(x) < parMin {
		f(x)
		return
	}
	parallel(len(x), func(lo, hi int) { f(x[lo:hi]) })
}

// Mul multiplies dst by x elementwise:
//
//	for i, v := range x { dst[i] *= v }
//
// It panics if len(dst) != len(x).
func Mul(dst, x []float32) {
	if len(dst) != len(x) {
		mismatch("Mul", "dst", len(dst), "x", len(x))
	}
	f := cur.mul
	if len(x) < parMin {
		f(dst, x)
		return
	}
	parallel(len(x), func(lo, hi int) { f(dst[lo:hi], x[lo:hi]) })
}
