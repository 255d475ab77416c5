package testgen

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
)

// WriteHeaderOnly writes a safetensors file that has the 8-byte prefix and
// a header describing tensors of the given dtype ("F16", "BF16", ...) and
// shapes, laid out in name order, but no data section: the "header-only
// copy" of a base model that header-only commands (check, inspect) accept
// and that full readers reject with MetadataIncompleteBuffer. bytesPer is
// the dtype's element size.
func WriteHeaderOnly(path, dtype string, bytesPer int, shapes map[string][]int) error {
	hdr := map[string]any{}
	var off int64
	for _, n := range slices.Sorted(maps.Keys(shapes)) {
		size := int64(bytesPer)
		for _, d := range shapes[n] {
			size *= int64(d)
		}
		hdr[n] = map[string]any{"dtype": dtype, "shape": shapes[n], "data_offsets": []int64{off, off + size}}
		off += size
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("testgen: header-only %s: %w", path, err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	b := make([]byte, 8, 8+len(js))
	binary.LittleEndian.PutUint64(b, uint64(len(js)))
	return os.WriteFile(path, append(b, js...), 0o644)
}
