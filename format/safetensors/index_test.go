package safetensors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// rawHeaderFile builds a file from header entries written in the given
// order (each "name": {dtype F32, shape [1], 4 bytes}), with data offsets
// following offsetOrder, so that header order and offset order differ.
func rawHeaderFile(names []string, offsetOrder []int) []byte {
	var h strings.Builder
	h.WriteString("{")
	pos := make([]int, len(names))
	for rank, i := range offsetOrder {
		pos[i] = rank
	}
	for i, n := range names {
		if i > 0 {
			h.WriteString(",")
		}
		fmt.Fprintf(&h, "%q:{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[%d,%d]}", n, 4*pos[i], 4*pos[i]+4)
	}
	h.WriteString("}")
	b := binary.LittleEndian.AppendUint64(nil, uint64(h.Len()))
	b = append(b, h.String()...)
	return append(b, make([]byte, 4*len(names))...)
}

// TestHeaderIndex: Index and Tensor find every tensor of headers whose
// header order and offset order differ, whose index had to grow (short
// names: more entries than the header length suggests) or not, and find no
// other name.
func TestHeaderIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{0, 1, 2, 7, 8, 100, 5000, 40000} {
		for _, short := range []bool{true, false} {
			names := make([]string, n)
			for i := range names {
				names[i] = fmt.Sprintf("%x", i)
				if !short {
					names[i] = fmt.Sprintf("base_model.model.model.layers.%d.mlp.experts.%d.down_proj.lora_A.weight", i/7, i)
				}
			}
			order := r.Perm(n)
			file := rawHeaderFile(names, order)
			h, err := ReadHeader(bytes.NewReader(file), int64(len(file)))
			if err != nil {
				t.Fatal(err)
			}
			for i, name := range names {
				j, ok := h.Index(name)
				ti, ok2 := h.Tensor(name)
				if !ok || !ok2 || h.Tensors[j].Name != name || ti.Name != name || ti.Offsets[0] != int64(4*slicesIndex(order, i)) {
					t.Fatalf("n=%d: %q: Index %d %v, Tensor %+v %v", n, name, j, ok, ti, ok2)
				}
			}
			for _, miss := range []string{"", "x", "base_model", names0(names) + "."} {
				if _, ok := h.Index(miss); ok {
					t.Errorf("n=%d: found %q", n, miss)
				}
			}
			// a Header built by hand (no index) is searched
			plain := &Header{Tensors: h.Tensors}
			for _, name := range names[:min(n, 50)] {
				if i, ok := plain.Index(name); !ok || plain.Tensors[i].Name != name {
					t.Errorf("unindexed %q: %d %v", name, i, ok)
				}
			}
		}
	}
}

func slicesIndex(s []int, v int) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func names0(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return names[0]
}

// TestHeaderIndexLenient: with duplicate names the last entry wins, at the
// position of the first, and the index points at it.
func TestHeaderIndexLenient(t *testing.T) {
	hdr := `{"a":{"dtype":"F32","shape":[9],"data_offsets":[0,36]},"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`
	file := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	file = append(append(file, hdr...), make([]byte, 12)...)
	if _, err := ReadHeader(bytes.NewReader(file), int64(len(file))); err == nil {
		t.Fatal("duplicate accepted without WithLenient")
	}
	h, err := ReadHeader(bytes.NewReader(file), int64(len(file)), WithLenient())
	if err != nil {
		t.Fatal(err)
	}
	a, ok := h.Tensor("a")
	if !ok || len(h.Tensors) != 2 || a.Shape[0] != 2 || a.Offsets != [2]int64{4, 12} {
		t.Errorf("a = %+v (%v), %d tensors", a, ok, len(h.Tensors))
	}
	if i, ok := h.Index("b"); !ok || i != 0 {
		t.Errorf("b at %d %v", i, ok)
	}
}

// TestHeaderShapes: the shapes share one array but an append to one never
// reaches the next; a scalar's shape is empty, not nil; names with escapes
// are decoded.
func TestHeaderShapes(t *testing.T) {
	hdr := `{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"m":{"dtype":"F32","shape":[2,3],"data_offsets":[4,28]},"e\u0073c\"q":{"dtype":"F32","shape":[1,1,1],"data_offsets":[28,32]}}`
	file := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	file = append(append(file, hdr...), make([]byte, 32)...)
	h, err := ReadHeader(bytes.NewReader(file), int64(len(file)))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := h.Tensor("s")
	m, _ := h.Tensor("m")
	e, ok := h.Tensor("esc\"q")
	if s.Shape == nil || len(s.Shape) != 0 || !ok || len(e.Shape) != 3 {
		t.Fatalf("shapes %#v %#v %#v", s.Shape, m.Shape, e.Shape)
	}
	_ = append(m.Shape, 99)
	_ = append(s.Shape, 98)
	if e.Shape[0] != 1 || m.Shape[1] != 3 || e.Shape[2] != 1 {
		t.Errorf("an append changed another shape: %v %v", m.Shape, e.Shape)
	}
}

// TestHeaderAllocs: a tensor entry costs no allocation of its own (names
// go to shared chunks, shapes to one array).
func TestHeaderAllocs(t *testing.T) {
	file := header20k(t)
	r := bytes.NewReader(file)
	allocs := testing.AllocsPerRun(5, func() {
		if _, err := ReadHeader(r, int64(len(file))); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 100 {
		t.Errorf("%v allocations for 20,000 tensors, want < 100", allocs)
	}
}
