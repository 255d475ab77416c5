package inspect

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/gguf"
	"github.com/adaptool/adaptool/format/safetensors"
)

// adapterFiles are the weight files of the known adapter directory layouts,
// in the order they are looked for.
var adapterFiles = []string{"adapter_model.safetensors", "adapters.safetensors", "pytorch_lora_weights.safetensors", "lora.safetensors"}

// layout says what a path is and which safetensors files hold its tensors.
type layout struct {
	kind   string   // "safetensors", "sharded", "gguf", "adapter-dir"
	files  []string // safetensors files, in order
	index  string   // the index file of a sharded checkpoint
	weight map[string]string
	config string // adapter_config.json if present
	// opened is files[0] already opened and fully validated (Summarize of a
	// single file), so that its header is parsed once; nil otherwise.
	opened *safetensors.File
}

// resolveLayout classifies path without reading tensor data.
func resolveLayout(path string) (*layout, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		switch {
		case strings.HasSuffix(path, ".gguf") || gguf.IsGGUF(path):
			return &layout{kind: "gguf", files: []string{path}}, nil
		case strings.HasSuffix(path, ".index.json"):
			return readIndex(path)
		}
		l := &layout{kind: "safetensors", files: []string{path}}
		// as format/adapter does: the config beside a file is used only for
		// the PEFT and MLX weight file names
		if b := filepath.Base(path); b == "adapter_model.safetensors" || b == "adapters.safetensors" {
			if c := filepath.Join(filepath.Dir(path), "adapter_config.json"); fileExists(c) {
				l.config = c
			}
		}
		return l, nil
	}
	l := &layout{kind: "adapter-dir"}
	if c := filepath.Join(path, "adapter_config.json"); fileExists(c) {
		l.config = c
	}
	for _, name := range adapterFiles {
		if p := filepath.Join(path, name); fileExists(p) {
			l.files = []string{p}
			return l, nil
		}
	}
	idx, _ := filepath.Glob(filepath.Join(path, "*.safetensors.index.json"))
	if len(idx) == 1 {
		return readIndex(idx[0])
	}
	if len(idx) > 1 {
		return nil, asInput(fmt.Errorf("inspect: %s: %d index files, name one of them", path, len(idx)))
	}
	st2, _ := filepath.Glob(filepath.Join(path, "*.safetensors"))
	switch len(st2) {
	case 0:
		if gg, _ := filepath.Glob(filepath.Join(path, "*.gguf")); len(gg) == 1 {
			return &layout{kind: "gguf", files: gg}, nil
		}
		for _, pat := range []string{"*.bin", "*.pt", "*.pth"} {
			if pk, _ := filepath.Glob(filepath.Join(path, pat)); len(pk) > 0 {
				return nil, asInput(fmt.Errorf("inspect: %s: no .safetensors file, only pickled PyTorch weights (%s), which are never unpickled; convert them to safetensors first", path, filepath.Base(pk[0])))
			}
		}
		return nil, asInput(fmt.Errorf("inspect: %s: no .safetensors file (looked for %s, an index, or a single *.safetensors)", path, strings.Join(adapterFiles, ", ")))
	case 1:
		l.files = st2
		return l, nil
	}
	sort.Strings(st2)
	return &layout{kind: "sharded", files: st2}, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// readIndex reads a sharded checkpoint index with safetensors.ReadIndex
// (header-only): the shard files, sorted. safetensors.OpenCheckpoint is not
// used because it opens and fully validates every shard (data included) and
// stops at the first inconsistency; inspect reads headers only and lists
// every problem.
func readIndex(path string) (*layout, error) {
	idx, err := safetensors.ReadIndex(path)
	if err != nil {
		return nil, asInput(err)
	}
	dir := filepath.Dir(path)
	var files []string
	for _, shard := range idx.Shards() {
		files = append(files, filepath.Join(dir, shard))
	}
	return &layout{kind: "sharded", files: files, index: path, weight: idx.WeightMap}, nil
}

// headerSet is the header-only view of one or more safetensors files.
type headerSet struct {
	files   []FileInfo
	tensors []TensorSummary
	meta    map[string]string
	errs    []error
	infos   map[string]safetensors.TensorInfo // several files: every tensor
	single  *safetensors.Header               // one file: its header
}

// Tensor returns a tensor's header entry (quant.Header).
func (hs *headerSet) Tensor(name string) (safetensors.TensorInfo, bool) {
	if hs.single != nil {
		return hs.single.Tensor(name)
	}
	t, ok := hs.infos[name]
	return t, ok
}

// readHeaders reads only the headers of the layout's files (l.opened's is
// already parsed). A file whose header is unreadable is recorded in errs; a
// file whose header is valid but whose data section is truncated (rule 8)
// still lists its tensors.
func readHeaders(l *layout) *headerSet {
	hs := &headerSet{}
	// One file cannot hold a name twice (the strict reader rejects
	// duplicate keys) and has no index: only several files need the maps.
	multi := len(l.files) > 1 || l.weight != nil
	var where map[string]string
	if multi {
		hs.infos = map[string]safetensors.TensorInfo{}
		where = map[string]string{}
	}
	for _, p := range l.files {
		var h *safetensors.Header
		var err error
		if l.opened != nil && p == l.files[0] {
			h = l.opened.Header
		} else {
			h, err = safetensors.OpenHeader(p)
		}
		if err != nil {
			hs.errs = append(hs.errs, err)
			hs.files = append(hs.files, FileInfo{Path: p, Error: err.Error()})
			continue
		}
		if !multi {
			hs.single = h
		}
		fi := FileInfo{Path: p, HeaderBytes: h.HeaderSize, DataBytes: h.DataSize, FileBytes: h.FileSize, Tensors: len(h.Tensors)}
		if want := h.DataOffset() + h.DataSize; want != h.FileSize {
			err := &safetensors.TensorError{File: p, Err: fmt.Errorf("%w: header declares %d data bytes (file should be %d bytes) but the file is %d bytes",
				safetensors.ErrMetadataIncompleteBuffer, h.DataSize, want, h.FileSize)}
			hs.errs = append(hs.errs, err)
			fi.Error = err.Error()
		}
		hs.files = append(hs.files, fi)
		if h.Metadata != nil && hs.meta == nil {
			hs.meta = h.Metadata
		}
		if hs.tensors == nil {
			hs.tensors = make([]TensorSummary, 0, len(h.Tensors))
		}
		for _, t := range h.Tensors {
			// the header's shapes are never modified: share them (but a
			// scalar's shape is [] in JSON, never null)
			shape := t.Shape
			if len(shape) == 0 {
				shape = []int{}
			}
			ts := TensorSummary{Name: t.Name, DType: t.DType.String(), Shape: shape, Bytes: t.Size()}
			if len(l.files) > 1 {
				ts.File = filepath.Base(p)
			}
			if multi {
				if prev, dup := where[t.Name]; dup {
					hs.errs = append(hs.errs, asInput(fmt.Errorf("inspect: tensor %q is in both %s and %s", t.Name, prev, p)))
				}
				where[t.Name] = p
				hs.infos[t.Name] = t
			}
			hs.tensors = append(hs.tensors, ts)
		}
	}
	if l.weight != nil {
		for name, shard := range l.weight {
			got, ok := where[name]
			if !ok {
				hs.errs = append(hs.errs, asInput(fmt.Errorf("inspect: %s: tensor %q is listed in the index (shard %s) but is in no shard header", l.index, name, shard)))
			} else if filepath.Base(got) != shard {
				hs.errs = append(hs.errs, asInput(fmt.Errorf("inspect: %s: tensor %q is listed in shard %s but found in %s", l.index, name, shard, filepath.Base(got))))
			}
		}
		if len(where) != len(l.weight) {
			for name, p := range where {
				if _, ok := l.weight[name]; !ok {
					hs.errs = append(hs.errs, asInput(fmt.Errorf("inspect: %s: tensor %q of %s is missing from the index", l.index, name, filepath.Base(p))))
				}
			}
		}
	}
	byName := func(a, b TensorSummary) int { return strings.Compare(a.Name, b.Name) }
	if !slices.IsSortedFunc(hs.tensors, byName) {
		slices.SortStableFunc(hs.tensors, byName)
	}
	sortErrors(hs.errs)
	return hs
}

func sortErrors(errs []error) {
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Error() < errs[j].Error() })
}

// firstFormatError returns the first error carrying a safetensors sentinel.
func firstFormatError(errs []error) error {
	for _, e := range errs {
		if safetensors.IsFormatError(e) {
			return e
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}
