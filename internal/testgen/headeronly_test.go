package testgen

import (
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// A header-only file lists its tensors through OpenHeader and is refused by
// a full Open (its data section is missing).
func TestWriteHeaderOnly(t *testing.T) {
	p := filepath.Join(t.TempDir(), "base.safetensors")
	shapes := map[string][]int{"b.weight": {4, 3}, "a.weight": {2}, "c.bias": {}}
	if err := WriteHeaderOnly(p, "BF16", 2, shapes); err != nil {
		t.Fatal(err)
	}
	h, err := safetensors.OpenHeader(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Names(); !slices.Equal(got, []string{"a.weight", "b.weight", "c.bias"}) {
		t.Errorf("names %v", got)
	}
	if ti, _ := h.Tensor("b.weight"); ti.DType != safetensors.BF16 || !slices.Equal(ti.Shape, []int{4, 3}) || ti.Size() != 24 {
		t.Errorf("b.weight = %+v", ti)
	}
	if h.DataSize != 2*2+24+2 {
		t.Errorf("declared data %d bytes, want 30", h.DataSize)
	}
	if _, err := safetensors.Open(p); !errors.Is(err, safetensors.ErrMetadataIncompleteBuffer) {
		t.Errorf("Open = %v, want MetadataIncompleteBuffer", err)
	}
}
