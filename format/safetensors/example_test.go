package safetensors_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/format/safetensors"
)

// Write a file, open it, list its tensors and read one as float32.
func Example() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	name := filepath.Join(dir, "adapter_model.safetensors")

	// Writing: values are converted to the tensor's dtype first.
	a := []float32{0.5, -1, 2, 0.25, 3, -4}
	aBytes := make([]byte, 2*len(a))
	if err := safetensors.FromFloat32(aBytes, a, safetensors.BF16); err != nil {
		log.Fatal(err)
	}
	tensors := []safetensors.Tensor{
		{Name: "lora_A.weight", DType: safetensors.BF16, Shape: []int{2, 3}, Data: aBytes},
		{Name: "alpha", DType: safetensors.F32, Shape: []int{}, Data: safetensors.Float32Bytes([]float32{16})},
	}
	if err := safetensors.WriteFile(name, tensors, nil); err != nil {
		log.Fatal(err)
	}

	// Reading.
	f, err := safetensors.Open(name)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	fmt.Println("metadata:", f.Metadata)
	for _, t := range f.Tensors {
		fmt.Printf("%s %s %v bytes [%d,%d)\n", t.Name, t.DType, t.Shape, t.Offsets[0], t.Offsets[1])
	}
	v, err := f.Float32("lora_A.weight")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v)
	// Output:
	// metadata: map[format:pt]
	// alpha F32 [] bytes [0,4)
	// lora_A.weight BF16 [2 3] bytes [4,16)
	// [0.5 -1 2 0.25 3 -4]
}

// Errors name the file, the tensor and the rule, and match a sentinel.
func ExampleOpen_error() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	name := filepath.Join(dir, "bad.safetensors")
	// N = 60 but the file ends after the prefix.
	os.WriteFile(name, []byte{60, 0, 0, 0, 0, 0, 0, 0}, 0o644)
	_, err := safetensors.Open(name)
	fmt.Println(safetensors.IsFormatError(err))
	fmt.Println(errors.Is(err, safetensors.ErrInvalidHeaderLength))
	// Output:
	// true
	// true
}

// A sharded checkpoint: tensors are split at the size limit and an index
// written; OpenCheckpoint reads it back as one set of tensors.
func ExampleWriteCheckpoint() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	var ts []safetensors.Tensor
	for i := range 3 {
		ts = append(ts, safetensors.Tensor{Name: fmt.Sprintf("layer.%d.weight", i), DType: safetensors.F32,
			Shape: []int{4}, Data: safetensors.Float32Bytes([]float32{1, 2, 3, float32(i)})})
	}
	if err := safetensors.WriteCheckpoint(dir, ts, nil, 32); err != nil {
		log.Fatal(err)
	}
	c, err := safetensors.OpenCheckpoint(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	fmt.Println(len(c.Shards), "shards,", c.TotalSize, "bytes")
	v, _ := c.Float32("layer.2.weight")
	fmt.Println(v)
	// Output:
	// 2 shards, 48 bytes
	// [1 2 3 2]
}
