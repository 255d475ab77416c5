package safetensors

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

type corpusRow struct {
	dir, file, kind, tensors, dtypes, expect string
}

// findCorpus locates ../shared/corpus relative to the module root (the
// directory holding go.mod).
func findCorpus() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			c := filepath.Join(d, "..", "shared", "corpus")
			if _, err := os.Stat(filepath.Join(c, "MANIFEST.tsv")); err != nil {
				return "", fmt.Errorf("corpus not found at %s: %w", c, err)
			}
			return c, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s", wd)
		}
	}
}

// corpusDir returns the corpus directory or skips the test when it is absent.
func corpusDir(t testing.TB) string {
	t.Helper()
	c, err := findCorpus()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	return c
}

func corpusRows(t testing.TB) []corpusRow {
	dir := corpusDir(t)
	f, err := os.Open(filepath.Join(dir, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var head []string
	var rows []corpusRow
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if head == nil {
			head = cols
			continue
		}
		get := func(name string) string {
			i := slices.Index(head, name)
			if i < 0 || i >= len(cols) {
				t.Fatalf("MANIFEST.tsv: no column %q in %q", name, sc.Text())
			}
			return cols[i]
		}
		rows = append(rows, corpusRow{dir: get("dir"), file: get("file"), kind: get("kind"),
			tensors: get("tensors"), dtypes: get("dtypes"), expect: get("expect")})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 {
		t.Fatal("MANIFEST.tsv has no rows")
	}
	return rows
}

func (r corpusRow) path(t testing.TB) string {
	return filepath.Join(corpusDir(t), r.dir, r.file)
}

func readCorpusFile(t testing.TB, r corpusRow) []byte {
	b, err := os.ReadFile(r.path(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var errorByName = map[string]error{
	"HeaderTooSmall": ErrHeaderTooSmall, "HeaderTooLarge": ErrHeaderTooLarge,
	"InvalidHeaderLength": ErrInvalidHeaderLength, "InvalidHeader": ErrInvalidHeader,
	"InvalidHeaderDeserialization": ErrInvalidHeaderDeserialization, "InvalidOffset": ErrInvalidOffset,
	"ValidationOverflow": ErrValidationOverflow, "MisalignedSlice": ErrMisalignedSlice,
	"TensorInvalidInfo": ErrTensorInvalidInfo, "MetadataIncompleteBuffer": ErrMetadataIncompleteBuffer,
	"DuplicateKey": ErrDuplicateKey,
}

func histogram(ts []TensorInfo) string {
	counts := map[string]int{}
	for _, t := range ts {
		counts[t.DType.String()]++
	}
	var parts []string
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range counts {
			if !yield(k) {
				return
			}
		}
	}) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, counts[k]))
	}
	return strings.Join(parts, ",")
}

func normHistogram(s string) string {
	parts := strings.Split(s, ",")
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func TestCorpusConformance(t *testing.T) {
	for _, r := range corpusRows(t) {
		t.Run(r.dir, func(t *testing.T) {
			f, err := Open(r.path(t))
			if name, ok := strings.CutPrefix(r.expect, "error:"); ok {
				want := errorByName[name]
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
			if r.expect != "ok" {
				t.Fatalf("unknown expectation %q", r.expect)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			n, err := strconv.Atoi(r.tensors)
			if err != nil {
				t.Fatalf("tensors column %q", r.tensors)
			}
			if len(f.Tensors) != n {
				t.Fatalf("%d tensors, manifest says %d", len(f.Tensors), n)
			}
			if got := histogram(f.Tensors); got != normHistogram(r.dtypes) {
				t.Fatalf("dtypes %s, manifest says %s", got, r.dtypes)
			}
			// Every tensor converts to float32, and the header-only path agrees.
			for _, ti := range f.Tensors {
				v, err := f.Float32(ti.Name)
				if err != nil || int64(len(v)) != ti.NumElements() {
					t.Fatalf("Float32(%q): %d values, %v", ti.Name, len(v), err)
				}
			}
			h, err := OpenHeader(r.path(t))
			if err != nil || len(h.Tensors) != n {
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
