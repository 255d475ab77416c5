package testgen

import (
	"fmt"

	"github.com/adaptool/adaptool/format/safetensors"
)

// WriteMoE writes the big-header case as a PEFT weights file: n MoE expert
// modules base_model.model.model.layers.{i/64}.mlp.experts.{i%64}.down_proj,
// each with an all-zero F32 1×4 lora_A and 4×1 lora_B (2n tensors, about
// 136 header bytes per tensor).
func WriteMoE(path string, n int) error { return WriteMoEExperts(path, n, 64) }

// WriteMoEExperts is WriteMoE with the given number of experts a layer.
func WriteMoEExperts(path string, n, experts int) error {
	ts := make([]safetensors.Tensor, 0, 2*n)
	data := make([]byte, 16)
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("base_model.model.model.layers.%d.mlp.experts.%d.down_proj", i/experts, i%experts)
		ts = append(ts,
			safetensors.Tensor{Name: name + ".lora_A.weight", DType: safetensors.F32, Shape: []int{1, 4}, Data: data},
			safetensors.Tensor{Name: name + ".lora_B.weight", DType: safetensors.F32, Shape: []int{4, 1}, Data: data})
	}
	return safetensors.WriteFile(path, ts, nil)
}
