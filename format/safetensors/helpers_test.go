package safetensors

import (
	"math"
	"unsafe"
)

func f32bits(f float32) uint32 { return math.Float32bits(f) }

func uintptrOf(b []byte) uintptr {
	if len(b) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&b[0]))
}
