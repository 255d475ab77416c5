package atz

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
)

// normalF32 returns n float32 values drawn from N(0, sigma²), little-endian.
func normalF32(n int, sigma float64, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(float32(rng.NormFloat64()*sigma)))
	}
	return b
}

// normalBF16 returns n bfloat16 values drawn from N(0, sigma²) (rounded to
// nearest even from float32), little-endian.
func normalBF16(n int, sigma float64, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 9))
	b := make([]byte, 2*n)
	for i := range n {
		u := math.Float32bits(float32(rng.NormFloat64() * sigma))
		u += 0x7FFF + (u>>16)&1
		binary.LittleEndian.PutUint16(b[2*i:], uint16(u>>16))
	}
	return b
}

// normalF16 returns n IEEE half values drawn from N(0, sigma²) (truncated
// from float32; exactness of rounding does not matter for compression).
func normalF16(n int, sigma float64, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 11))
	b := make([]byte, 2*n)
	for i := range n {
		f := float32(rng.NormFloat64() * sigma)
		u := math.Float32bits(f)
		sign := uint16(u>>16) & 0x8000
		exp := int((u>>23)&0xFF) - 127 + 15
		var h uint16
		switch {
		case exp <= 0:
			h = sign // flush tiny values to zero
		case exp >= 31:
			h = sign | 0x7C00
		default:
			h = sign | uint16(exp)<<10 | uint16((u>>13)&0x3FF)
		}
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return b
}

// randomBytes returns n uniformly random bytes.
func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 13))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}
