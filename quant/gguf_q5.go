package quant

import "encoding/binary"

// quantizeBlockQ5_0 is quantize_row_q5_0_ref for one block of 32: as Q4_0
// with d = max/−16, q = min(31, trunc(x·id + 16.5)); the low 4 bits in qs
// (element j low nibble, j+16 high nibble) and bit 4 of element i in bit i
// of the little-endian u32 qh.
func quantizeBlockQ5_0(dst []byte, x []float32) (float32, float32) {
	var amax, mx float32
	for _, v := range x[:32] {
		if amax < fabs(v) {
			amax = fabs(v)
			mx = v
		}
	}
	d := mx / -16
	var id float32
	if d != 0 {
		id = 1 / d
	}
	var qh uint32
	qs := dst[6:22]
	for j := 0; j < 16; j++ {
		x0 := float32(x[j] * id)
		x1 := float32(x[16+j] * id)
		xi0 := uint8(min(31, int8(x0+16.5)))
		xi1 := uint8(min(31, int8(x1+16.5)))
		qs[j] = xi0&0x0F | (xi1&0x0F)<<4
		qh |= uint32(xi0&0x10) >> 4 << j
		qh |= uint32(xi1&0x10) >> 4 << (j + 16)
	}
	binary.LittleEndian.PutUint32(dst[2:6], qh)
	return d, 0
}

func dequantizeBlockQ5_0(y []float32, b []byte, d, _ float32) {
	qh := binary.LittleEndian.Uint32(b[2:6])
	qs := b[6:22]
	for j := 0; j < 16; j++ {
		xh0 := uint8(qh>>j<<4) & 0x10
		xh1 := uint8(qh>>(j+12)) & 0x10
		y[j] = float32(int32(qs[j]&0x0F|xh0)-16) * d
		y[j+16] = float32(int32(qs[j]>>4|xh1)-16) * d
	}
}

// quantizeBlockQ5_1 is quantize_row_q5_1_ref for one block of 32: as Q4_1
// with d = (max−min)/31 and q = trunc((x−min)·id + 0.5).
func quantizeBlockQ5_1(dst []byte, x []float32) (float32, float32) {
	lo, hi := float32(math32MaxFloat), float32(-math32MaxFloat)
	for _, v := range x[:32] {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	d := (hi - lo) / 31
	var id float32
	if d != 0 {
		id = 1 / d
	}
	var qh uint32
	qs := dst[8:24]
	for j := 0; j < 16; j++ {
		x0 := float32((x[j] - lo) * id)
		x1 := float32((x[16+j] - lo) * id)
		xi0 := uint8(x0 + 0.5)
		xi1 := uint8(x1 + 0.5)
		qs[j] = xi0&0x0F | (xi1&0x0F)<<4
		qh |= uint32(xi0&0x10) >> 4 << j
		qh |= uint32(xi1&0x10) >> 4 << (j + 16)
	}
	binary.LittleEndian.PutUint32(dst[4:8], qh)
	return d, lo
}

func dequantizeBlockQ5_1(y []float32, b []byte, d, m float32) {
	qh := binary.LittleEndian.Uint32(b[4:8])
	qs := b[8:24]
	for j := 0; j < 16; j++ {
		xh0 := uint8(qh>>j<<4) & 0x10
		xh1 := uint8(qh>>(j+12)) & 0x10
		y[j] = float32(float32(qs[j]&0x0F|xh0)*d) + m
		y[j+16] = float32(float32(qs[j]>>4|xh1)*d) + m
	}
}
