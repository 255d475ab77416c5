package atz_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/adaptool/adaptool/format/atz"
)

// A tiny safetensors file: one BF16 tensor "w" of 4096 values.
func exampleFile() []byte {
	hdr := []byte(`{"w":{"dtype":"BF16","shape":[4096],"data_offsets":[0,8192]}}`)
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	b = append(b, hdr...)
	for i := range 4096 {
		v := float32(0.02 * math.Sin(float64(i)*0.37) * math.Cos(float64(i)*0.011))
		b = binary.LittleEndian.AppendUint16(b, uint16(math.Float32bits(v)>>16))
	}
	return b
}

func Example() {
	orig := exampleFile()

	// Pack into any io.Writer.
	var packed bytes.Buffer
	st, err := atz.Pack(&packed, bytes.NewReader(orig), int64(len(orig)), atz.PackOptions{})
	if err != nil {
		panic(err)
	}
	fmt.Println("smaller:", st.PackedSize < st.OriginalSize)

	// Unpack restores the original bytes exactly.
	var restored bytes.Buffer
	if _, err := atz.Unpack(&restored, bytes.NewReader(packed.Bytes()), int64(packed.Len())); err != nil {
		panic(err)
	}
	fmt.Println("identical:", sha256.Sum256(restored.Bytes()) == sha256.Sum256(orig))

	// Random access: one tensor, decoding only its chunks.
	rd, err := atz.NewReader(bytes.NewReader(packed.Bytes()), int64(packed.Len()))
	if err != nil {
		panic(err)
	}
	w, err := rd.Tensor("w")
	if err != nil {
		panic(err)
	}
	fmt.Println("tensor w:", len(w), "bytes, equal:", bytes.Equal(w, orig[len(orig)-8192:]))
	// Output:
	// smaller: true
	// identical: true
	// tensor w: 8192 bytes, equal: true
}
