package safetensors

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/adaptool/adaptool/internal/testcorpus"
)

// corpusDir returns the corpus directory or skips the test when it is absent.
func corpusDir(t testing.TB) string { return testcorpus.Dir(t) }

func histogram(ts []TensorInfo) map[string]int {
	counts := map[string]int{}
	for _, t := range ts {
		counts[t.DType.String()]++
	}
	return counts
}

func TestCorpusConformance(t *testing.T) {
	root, rows := testcorpus.Manifest(t)
	for _, r := range rows {
		t.Run(r.Dir, func(t *testing.T) {
			f, err := Open(r.Path(root))
			if name := r.WantError(); name != "" {
				want := SentinelByName(name)
				if want == nil {
					t.Fatalf("unknown error name %q in MANIFEST.tsv", name)
				}
				if !errors.Is(err, want) {
					t.Fatalf("error %v, want %s", err, name)
				}
				for _, s := range sentinels {
					if s != want && errors.Is(err, s) {
						t.Fatalf("error %v also matches %v", err, s)
					}
				}
				return
			}
			if !r.OK() {
				t.Fatalf("unknown expectation %q", r.Expect)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if len(f.Tensors) != r.Tensors {
				t.Fatalf("%d tensors, manifest says %d", len(f.Tensors), r.Tensors)
			}
			if got := histogram(f.Tensors); !maps.Equal(got, r.DTypes) {
				t.Fatalf("dtypes %v, manifest says %v", got, r.DTypes)
			}
			// Every tensor converts to float32, and the header-only path agrees.
			for _, ti := range f.Tensors {
				v, err := f.Float32(ti.Name)
				if err != nil || int64(len(v)) != ti.NumElements() {
					t.Fatalf("Float32(%q): %d values, %v", ti.Name, len(v), err)
				}
			}
			h, err := OpenHeader(r.Path(root))
			if err != nil || len(h.Tensors) != r.Tensors {
				t.Fatalf("OpenHeader: %v", err)
			}
		})
	}
}

// The truncated file fails rule 8, but its header still lists 392 tensors.
func TestCorpusTruncatedHeader(t *testing.T) {
	p := filepath.Join(corpusDir(t), "qwen25vl7b-truncated", "adapter_model.safetensors")
	h, err := OpenHeader(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Tensors) != 392 || h.HeaderSize != 58360 || h.DataSize != 161480704 || h.FileSize != 262144 {
		t.Fatalf("header: %d tensors, N %d, data %d, file %d", len(h.Tensors), h.HeaderSize, h.DataSize, h.FileSize)
	}
}

// The unaligned ViT file (data section at offset 1740 ≡ 4 mod 8) reads
// correctly through both the mapped and the pread path.
func TestCorpusUnaligned(t *testing.T) {
	p := filepath.Join(corpusDir(t), "vit-custom-unaligned", "lora.safetensors")
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.HeaderSize != 1732 || f.DataOffset()%8 != 4 || f.Metadata != nil {
		t.Fatalf("N %d, data offset %d, metadata %v", f.HeaderSize, f.DataOffset(), f.Metadata)
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range f.Tensors {
		got, err := f.Float32(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		if ti.DType != F32 || !slices.Equal(ti.Shape, []int{4, 768}) {
			t.Fatalf("%q: %s %v", ti.Name, ti.DType, ti.Shape)
		}
		// Independent decode from the raw file bytes at an unaligned offset.
		off := int(f.DataOffset() + ti.Offsets[0])
		for i := range got {
			bits := uint32(raw[off+4*i]) | uint32(raw[off+4*i+1])<<8 | uint32(raw[off+4*i+2])<<16 | uint32(raw[off+4*i+3])<<24
			if f32bits(got[i]) != bits {
				t.Fatalf("%q[%d] differs", ti.Name, i)
			}
		}
	}
	// Misaligned data (shifted by one byte) is copied, not reinterpreted.
	d, _ := f.Data(f.Tensors[0].Name)
	if v, ok := AsFloat32(d); ok && len(v) > 0 && uintptrOf(d)%4 != 0 {
		t.Fatal("misaligned view accepted")
	}
	// Rewriting gives an aligned canonical file with identical tensors.
	var ts []Tensor
	for _, n := range f.Names() {
		c, _ := f.CopyTensor(n)
		ts = append(ts, c)
	}
	out := filepath.Join(t.TempDir(), "aligned.safetensors")
	if err := WriteFile(out, ts, nil); err != nil {
		t.Fatal(err)
	}
	g, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.DataOffset()%8 != 0 {
		t.Fatalf("rewritten data offset %d", g.DataOffset())
	}
	for _, n := range f.Names() {
		a, _ := f.Data(n)
		b, _ := g.Data(n)
		if !slices.Equal(a, b) {
			t.Fatalf("%q differs after rewrite", n)
		}
	}
}

// The MLX file: "__metadata__": null, JSON order differs from offset order.
func TestCorpusMLX(t *testing.T) {
	p := filepath.Join(corpusDir(t), "mlx-gemma2b-lora", "adapters.safetensors")
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Metadata != nil || len(f.Tensors) != 16 {
		t.Fatalf("metadata %v, %d tensors", f.Metadata, len(f.Tensors))
	}
	for i := 1; i < len(f.Tensors); i++ {
		if f.Tensors[i].Offsets[0] != f.Tensors[i-1].Offsets[1] {
			t.Fatal("tensors not in offset order")
		}
	}
	if slices.IsSorted(f.Names()) {
		t.Fatal("expected offset order to differ from name order in this file")
	}
}
