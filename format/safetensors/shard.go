package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// IndexFileName is the name of a sharded checkpoint's index, and
// SingleFileName the name of an unsharded checkpoint.
const (
	IndexFileName  = "model.safetensors.index.json"
	SingleFileName = "model.safetensors"
)

// DefaultMaxShardSize is the shard size limit used by WriteCheckpoint when
// maxShard ≤ 0 (decimal bytes, as huggingface_hub).
const DefaultMaxShardSize = 5_000_000_000

// ErrInvalidIndex reports an inconsistent sharded checkpoint: an index that
// does not decode, a weight_map entry naming a missing or unsafe file, a
// tensor listed but absent or present but not listed, or a tensor stored in
// two shards.
var ErrInvalidIndex = errors.New("safetensors: InvalidIndex: sharded checkpoint index is inconsistent")

func init() { sentinels = append(sentinels, ErrInvalidIndex) }

// Index is the decoded model.safetensors.index.json.
type Index struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// Checkpoint is an opened checkpoint: one safetensors file or the shards of
// an index. It is safe for concurrent use.
type Checkpoint struct {
	Path   string  // the path given to OpenCheckpoint
	Index  *Index  // nil for a single file
	Shards []*File // in weight_map file-name order (one for a single file)
	// TotalSize is Σ tensor bytes over all shards; DeclaredTotalSize is the
	// index's metadata.total_size (-1 when absent or not a number).
	TotalSize, DeclaredTotalSize int64
	// Warnings lists non-fatal findings (total_size mismatch).
	Warnings []string

	where map[string]*File
}

// OpenCheckpoint opens a checkpoint given as a .safetensors file, an index
// JSON file, or a directory holding model.safetensors.index.json (else a
// single *.safetensors.index.json, else model.safetensors, else a single
// *.safetensors file). Every shard is opened with Open (so each is fully
// validated, and registered containers are recognised). For an index it
// checks that every target file exists inside the index's directory, that
// the union of shard tensors equals the weight_map keys, and that no name
// is stored in two shards (ErrInvalidIndex); a metadata.total_size
// different from Σ tensor bytes is only a warning.
func OpenCheckpoint(path string, opts ...Option) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	target := path
	if st.IsDir() {
		if target, err = findCheckpoint(path); err != nil {
			return nil, err
		}
	}
	if !strings.HasSuffix(target, ".json") {
		f, err := Open(target, opts...)
		if err != nil {
			return nil, err
		}
		c := &Checkpoint{Path: path, Shards: []*File{f}, DeclaredTotalSize: -1, where: map[string]*File{}}
		for _, t := range f.Tensors {
			c.where[t.Name] = f
			c.TotalSize += t.Offsets[1] - t.Offsets[0]
		}
		return c, nil
	}
	return openIndex(path, target, opts)
}

func findCheckpoint(dir string) (string, error) {
	try := func(pattern string) (string, bool) {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		if len(m) == 1 {
			return m[0], true
		}
		return "", false
	}
	for _, p := range []string{IndexFileName, "*.safetensors.index.json", SingleFileName, "*.safetensors"} {
		if t, ok := try(p); ok {
			return t, nil
		}
	}
	return "", &TensorError{File: dir, Err: fmt.Errorf("%w: directory holds no single safetensors index or file", ErrInvalidIndex)}
}

// ReadIndex reads and checks a model.safetensors.index.json without
// opening any shard: at most MaxHeaderSize bytes, one JSON object (numbers
// kept as json.Number) with a weight_map whose values are plain file names
// in the index's directory. Errors wrap ErrInvalidIndex. Header-only tools
// use it; OpenCheckpoint adds the checks that need the shards.
func ReadIndex(indexPath string) (*Index, error) {
	fail := func(tensor string, format string, args ...any) error {
		return &TensorError{File: indexPath, Tensor: tensor, Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidIndex}, args...)...)}
	}
	st, err := os.Stat(indexPath)
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxHeaderSize {
		return nil, fail("", "index is %d bytes, larger than %d", st.Size(), MaxHeaderSize)
	}
	raw, err := os.ReadFile(indexPath)
	if err != nil {
		return nil, err
	}
	var idx Index
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&idx); err != nil {
		return nil, fail("", "invalid index JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail("", "trailing data after the index object")
	}
	if key, inMap, dup := duplicateIndexKey(raw); dup {
		if inMap {
			return nil, fail(key, "weight_map names this tensor twice")
		}
		return nil, fail("", "the key %q appears twice in the index object", key)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fail("", "no weight_map entries")
	}
	for _, n := range slices.Sorted(maps.Keys(idx.WeightMap)) {
		name := idx.WeightMap[n]
		if name == "" || !filepath.IsLocal(name) || strings.ContainsAny(name, `/\`) {
			return nil, fail(n, "weight_map file %q is not a plain file name in the index directory", name)
		}
	}
	return &idx, nil
}

// duplicateIndexKey finds a key that appears twice in the top-level object
// of a valid index JSON or in its weight_map (encoding/json silently keeps
// the last value, and merges two weight_map objects). inMap says which.
func duplicateIndexKey(raw []byte) (key string, inMap, dup bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	// object reads the keys of the object starting at the next token and
	// returns the first repeated one; inner, when not nil, reads the value
	// of a key instead of skipping it and may stop the walk.
	var object func(inner func(k string) (stop bool)) (string, bool)
	object = func(inner func(string) bool) (string, bool) {
		if t, err := dec.Token(); err != nil || t != json.Delim('{') {
			return "", false
		}
		seen := map[string]struct{}{}
		for dec.More() {
			t, err := dec.Token()
			k, ok := t.(string)
			if err != nil || !ok {
				return "", false
			}
			if _, d := seen[k]; d {
				return k, true
			}
			seen[k] = struct{}{}
			if inner != nil && k == "weight_map" {
				if inner(k) {
					return "", false
				}
				continue
			}
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return "", false
			}
		}
		return "", false
	}
	var mapKey string
	var mapDup bool
	top, topDup := object(func(string) bool {
		mapKey, mapDup = object(nil)
		if !mapDup {
			_, _ = dec.Token() // the closing brace of weight_map
		}
		return mapDup
	})
	switch {
	case mapDup:
		return mapKey, true, true
	case topDup:
		return top, false, true
	}
	return "", false, false
}

// Shards returns the distinct shard file names of the weight_map, sorted.
func (idx *Index) Shards() []string {
	return slices.Sorted(maps.Keys(invert(idx.WeightMap)))
}

func openIndex(path, indexPath string, opts []Option) (*Checkpoint, error) {
	fail := func(tensor string, format string, args ...any) error {
		return &TensorError{File: indexPath, Tensor: tensor, Err: fmt.Errorf("%w: "+format, append([]any{ErrInvalidIndex}, args...)...)}
	}
	idx, err := ReadIndex(indexPath)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(indexPath)
	files := idx.Shards()
	c := &Checkpoint{Path: path, Index: idx, DeclaredTotalSize: -1, where: make(map[string]*File, len(idx.WeightMap))}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	for _, name := range files {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			return nil, fail("", "shard %q: %v", name, err)
		}
		f, err := Open(p, opts...)
		if err != nil {
			return nil, err
		}
		c.Shards = append(c.Shards, f)
		for _, t := range f.Tensors {
			if prev, dup := c.where[t.Name]; dup {
				return nil, fail(t.Name, "stored in both %s and %s", filepath.Base(prev.Name()), name)
			}
			want, listed := idx.WeightMap[t.Name]
			if !listed {
				return nil, fail(t.Name, "stored in %s but absent from weight_map", name)
			}
			if want != name {
				return nil, fail(t.Name, "stored in %s but weight_map says %s", name, want)
			}
			c.where[t.Name] = f
			c.TotalSize += t.Offsets[1] - t.Offsets[0]
		}
	}
	for _, n := range slices.Sorted(maps.Keys(idx.WeightMap)) {
		if _, found := c.where[n]; !found {
			return nil, fail(n, "listed in weight_map for %s but not stored there", idx.WeightMap[n])
		}
	}
	if v, has := idx.Metadata["total_size"]; has {
		if num, isNum := v.(json.Number); isNum {
			if d, err := strconv.ParseInt(string(num), 10, 64); err == nil {
				c.DeclaredTotalSize = d
			}
		}
		if c.DeclaredTotalSize != c.TotalSize {
			c.Warnings = append(c.Warnings, fmt.Sprintf("metadata.total_size is %v, tensors hold %d bytes", v, c.TotalSize))
		}
	}
	ok = true
	return c, nil
}

func invert(m map[string]string) map[string]bool {
	s := make(map[string]bool)
	for _, v := range m {
		s[v] = true
	}
	return s
}

// Close closes every shard.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, f := range c.Shards {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// Names returns every tensor name, shard by shard in offset order.
func (c *Checkpoint) Names() []string {
	var s []string
	for _, f := range c.Shards {
		s = append(s, f.Names()...)
	}
	return s
}

// Tensors returns every tensor's description, shard by shard.
func (c *Checkpoint) Tensors() []TensorInfo {
	var s []TensorInfo
	for _, f := range c.Shards {
		s = append(s, f.Tensors...)
	}
	return s
}

// Tensor returns the named tensor's description.
func (c *Checkpoint) Tensor(name string) (TensorInfo, bool) {
	f, ok := c.where[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Tensor(name)
}

// Shard returns the file that stores the named tensor.
func (c *Checkpoint) Shard(name string) (*File, bool) {
	f, ok := c.where[name]
	return f, ok
}

func (c *Checkpoint) shard(name string) (*File, error) {
	f, ok := c.where[name]
	if !ok {
		return nil, &TensorError{File: c.Path, Tensor: name, Err: ErrTensorNotFound}
	}
	return f, nil
}

// Data returns the named tensor's raw bytes (see File.Data).
func (c *Checkpoint) Data(name string) ([]byte, error) {
	f, err := c.shard(name)
	if err != nil {
		return nil, err
	}
	return f.Data(name)
}

// Float32 returns the named tensor converted to float32 (see File.Float32).
func (c *Checkpoint) Float32(name string) ([]float32, error) {
	f, err := c.shard(name)
	if err != nil {
		return nil, err
	}
	return f.Float32(name)
}

// CopyTensor returns a Tensor streaming the named tensor unchanged (see
// File.CopyTensor).
func (c *Checkpoint) CopyTensor(name string) (Tensor, error) {
	f, err := c.shard(name)
	if err != nil {
		return Tensor{}, err
	}
	return f.CopyTensor(name)
}

// WriteIndex writes idx atomically (temporary file + rename) as JSON with
// two-space indentation, sorted keys and a trailing newline, as
// huggingface_hub does; a nil Metadata is written as {}.
func WriteIndex(path string, idx *Index) error {
	out := *idx
	if out.Metadata == nil {
		out.Metadata = map[string]any{}
	}
	if out.WeightMap == nil {
		out.WeightMap = map[string]string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&out); err != nil {
		return err
	}
	return atomicWrite(path, func(f *os.File) error {
		_, err := f.Write(buf.Bytes())
		return err
	})
}

// ShardFileName returns "model-%05d-of-%05d.safetensors" for shard i of n
// (i counts from 1).
func ShardFileName(i, n int) string {
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i, n)
}

var shardPattern = regexp.MustCompile(`^model-[0-9]{5,}-of-[0-9]{5,}\.safetensors$`)

// WriteCheckpoint writes tensors into dir as huggingface_hub does: walking
// the tensors in the given order, a tensor larger than maxShard (default
// DefaultMaxShardSize when ≤ 0) gets its own shard, and a new shard starts
// when the next tensor would push the current one over the limit. A single
// shard is written as model.safetensors with no index; otherwise shards are
// model-0000i-of-0000N.safetensors plus model.safetensors.index.json
// (metadata.total_size = Σ tensor bytes, metadata.total_parameters, sorted
// weight_map, indent 2). Each shard is a canonical file (see Write) with the
// given metadata plus "format":"pt", written atomically; the index is
// written last. Files of an earlier checkpoint in dir (model.safetensors,
// an index, model-*-of-*.safetensors) that are not part of the new one are
// removed afterwards.
func WriteCheckpoint(dir string, tensors []Tensor, metadata map[string]string, maxShard int64) error {
	if maxShard <= 0 {
		maxShard = DefaultMaxShardSize
	}
	var (
		shards  [][]Tensor
		cur     []Tensor
		curSize int64
		total   int64
		params  int64
	)
	for _, t := range tensors {
		size := t.Size()
		if size < 0 {
			// Let the writer report the precise error.
			_, err := makePlan([]Tensor{t}, nil, &writeOptions{name: dir})
			if err == nil {
				err = &TensorError{File: dir, Tensor: t.Name, Err: ErrValidationOverflow}
			}
			return err
		}
		total += size
		params += t.NumElements()
		if size > maxShard {
			shards = append(shards, []Tensor{t})
			continue
		}
		if curSize+size > maxShard && len(cur) > 0 {
			shards = append(shards, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, t)
		curSize += size
	}
	if len(cur) > 0 || len(shards) == 0 {
		shards = append(shards, cur)
	}
	// Reject duplicate names across shards before writing anything.
	seen := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		if seen[t.Name] {
			return &TensorError{File: dir, Tensor: t.Name, Err: fmt.Errorf("%w: two tensors have this name", ErrDuplicateKey)}
		}
		seen[t.Name] = true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	keep := map[string]bool{}
	if len(shards) == 1 {
		if err := WriteFile(filepath.Join(dir, SingleFileName), shards[0], metadata); err != nil {
			return err
		}
		keep[SingleFileName] = true
	} else {
		idx := &Index{
			Metadata:  map[string]any{"total_size": total, "total_parameters": params},
			WeightMap: map[string]string{},
		}
		for i, sh := range shards {
			name := ShardFileName(i+1, len(shards))
			if err := WriteFile(filepath.Join(dir, name), sh, metadata); err != nil {
				return err
			}
			keep[name] = true
			for _, t := range sh {
				idx.WeightMap[t.Name] = name
			}
		}
		if err := WriteIndex(filepath.Join(dir, IndexFileName), idx); err != nil {
			return err
		}
		keep[IndexFileName] = true
	}
	// Remove the files of a previous checkpoint.
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if keep[n] || e.IsDir() {
			continue
		}
		if n == SingleFileName || n == IndexFileName || shardPattern.MatchString(n) {
			if err := os.Remove(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	return nil
}
