package safetensors

import (
	"unsafe"
)

// hostLittleEndian reports whether the host stores integers little-endian,
// the byte order of safetensors data. On big-endian hosts every
// reinterpretation helper reports false and conversions decode explicitly.
var hostLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

func aligned(b []byte, size uintptr) bool {
	return len(b) == 0 || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%size == 0
}

// AsFloat32 reinterprets little-endian float32 data in place (zero-copy).
// It returns false when b is not 4-byte aligned, its length is not a
// multiple of 4 or the host is big-endian; the caller must then copy (see
// ToFloat32). The result aliases b.
func AsFloat32(b []byte) ([]float32, bool) {
	if len(b)%4 != 0 || !hostLittleEndian || !aligned(b, 4) {
		return nil, false
	}
	if len(b) == 0 {
		return []float32{}, true
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/4), true
}

// AsUint16 reinterprets little-endian 16-bit data (F16, BF16, U16) in place
// under the same conditions as AsFloat32.
func AsUint16(b []byte) ([]uint16, bool) {
	if len(b)%2 != 0 || !hostLittleEndian || !aligned(b, 2) {
		return nil, false
	}
	if len(b) == 0 {
		return []uint16{}, true
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/2), true
}

// Float32Bytes returns the bytes of s in host order without copying (the
// safetensors F32 encoding on little-endian hosts). It aliases s.
func Float32Bytes(s []float32) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*4)
}

// Uint16Bytes returns the bytes of s in host order without copying.
func Uint16Bytes(s []uint16) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*2)
}
