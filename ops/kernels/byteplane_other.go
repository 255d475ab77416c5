//go:build !amd64 || noasm || !gc

package kernels

// planeAsm is false: there are no assembly byte-plane paths on this build
// (the pure-Go loops of byteplane.go run alone).
var planeAsm = false

func split2Fast(d0, d1, src []byte, rotate bool) int { return 0 }

func merge2Fast(dst, s0, s1 []byte, rotate bool) int { return 0 }

func split4Fast(dst, src []byte, n int, rotate bool, i0, i1 int) int { return i0 }

func merge4Fast(dst []byte, planes [][]byte, rotate bool, i0, i1 int) int { return i0 }
