package safetensors

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/adaptool/adaptool/internal/provenance"
)

// RecastOptions says what Recast converts. The zero value is not usable:
// DType must be set.
type RecastOptions struct {
	// DType is the target dtype: F32, F16, BF16, F8_E4M3, F8_E5M2 or F64.
	DType DType
	// Only, when non-nil, limits the conversion to tensors whose name it
	// matches; every other tensor is copied unchanged.
	Only *regexp.Regexp
	// DryRun computes the report without writing anything.
	DryRun bool
	// Progress, when non-nil, is called after each tensor is written.
	Progress func(file, tensor string)
}

// RecastTensor reports one tensor of a recast.
type RecastTensor struct {
	File      string `json:"file"` // output file
	Name      string `json:"name"`
	From      DType  `json:"from"`
	To        DType  `json:"to"`
	Shape     []int  `json:"shape"`
	Converted bool   `json:"converted"`
	BytesIn   int64  `json:"bytes_in"`
	BytesOut  int64  `json:"bytes_out"`
}

// RecastReport is the outcome of Recast.
type RecastReport struct {
	Tensors  []RecastTensor `json:"tensors"`
	Copied   []string       `json:"copied,omitempty"`  // other files copied unchanged
	Indexes  []string       `json:"indexes,omitempty"` // shard indexes rewritten with the new total_size
	BytesIn  int64          `json:"bytes_in"`          // tensor bytes read
	BytesOut int64          `json:"bytes_out"`         // tensor bytes written
	DryRun   bool           `json:"dry_run,omitempty"` // nothing was written
}

// recastable lists the source dtypes Recast converts: the float dtypes with
// an exact float32 path (F64 rounds to float32 first). Every other dtype
// (integers, BOOL, C64, F8_E8M0, the FNUZ variants, F4/F6) is copied.
func recastable(dt DType) bool {
	switch dt {
	case F64, F32, F16, BF16, F8E4M3, F8E5M2:
		return true
	}
	return false
}

// recastChunk is the number of elements converted per step: memory use is
// bounded by a few buffers of this size whatever the tensor size.
var recastChunk int64 = 1 << 22

// Recast converts the float tensors of in to opts.DType and writes the
// result to out, streaming tensor by tensor through the canonical atomic
// writer (memory is bounded by one 4 Mi-element chunk, not by the file).
//
// in is a .safetensors file (out is then a file; an existing directory
// receives a file of the same base name), an index JSON (its directory is
// recast) or a directory: an adapter
// directory, a sharded checkpoint or any tree of them. For a directory every
// *.safetensors file is recast to the same relative path under out, each
// *.safetensors.index.json is rewritten with the new metadata.total_size
// (the weight map is unchanged since tensors keep their shard), and every
// other regular file is copied unchanged. Writing over the input (out == in)
// is safe: each file is replaced by rename after it is complete.
//
// Converted values follow ops/kernels: round to nearest even; F16/BF16
// overflow to ±Inf; F8_E4M3 saturates to ±448 (±Inf included) and F8_E5M2
// saturates finite overflow to ±57344; NaN stays NaN. This is a plain cast
// with no scale: for scaled FP8 use the quant package. Tensors already in the
// target dtype, tensors not matched by Only and non-float tensors keep their
// bytes.
//
// Each output file keeps its input file's __metadata__ and records the
// provenance of SPEC §1 (internal/provenance, replacing the record of any
// earlier operation): adaptool.operation "convert-dtype", adaptool.params
// (RecastParams) and adaptool.inputs, the path and sha256 of the input
// .safetensors file it was converted from (one per output file, so each
// shard records its own source shard). The sha256 is computed in a goroutine
// reading the input concurrently with the conversion (the bytes are read
// anyway, so the second read comes from the page cache and adds no serial
// pass; a memory-mapped input is hashed straight from its mapping); the
// header is written with a unique placeholder digest that is
// overwritten in place, in the temporary file, before it is renamed. The
// hash is never skipped: Recast reads named files only, never a stream. A
// dry run hashes nothing. Shard index files carry no __metadata__ and get
// no record.
func Recast(in, out string, opts RecastOptions) (*RecastReport, error) {
	if !recastTarget(opts.DType) {
		return nil, fmt.Errorf("safetensors: recast: target dtype %s is not one of F32, F16, BF16, F8_E4M3, F8_E5M2, F64", opts.DType)
	}
	if strings.HasSuffix(in, ".safetensors.index.json") {
		in = filepath.Dir(in) // a sharded checkpoint named by its index
	}
	st, err := os.Stat(in)
	if err != nil {
		return nil, err
	}
	rep := &RecastReport{DryRun: opts.DryRun}
	if !st.IsDir() {
		if ost, err := os.Stat(out); err == nil && ost.IsDir() {
			out = filepath.Join(out, filepath.Base(in))
		}
		return rep, recastFile(in, out, opts, rep)
	}
	if ost, err := os.Stat(out); err == nil && !ost.IsDir() {
		return nil, fmt.Errorf("safetensors: recast: %s is a directory but %s is a file", in, out)
	}
	// Every input file is checked before anything is written, so that a
	// malformed shard never leaves a half-written output tree behind.
	if err := recastPreflight(in); err != nil {
		return nil, err
	}
	if opts.DryRun {
		return rep, recastDir(in, out, opts, rep)
	}
	if _, err := os.Stat(out); err == nil {
		// An existing directory (possibly the input itself) is updated file
		// by file, each file atomically.
		return rep, recastDir(in, out, opts, rep)
	}
	// A new output directory is built under a temporary name beside it and
	// renamed into place: it appears whole or not at all.
	parent := filepath.Dir(out)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	stage, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return nil, err
	}
	renamed := false
	defer func() {
		// also when a panic unwinds through here: a memory fault on a
		// mapped input, which CatchFaults turns into an error
		if !renamed {
			os.RemoveAll(stage)
		}
	}()
	if err := os.Chmod(stage, 0o755); err != nil {
		return nil, err
	}
	if err := recastDir(in, stage, opts, rep); err != nil {
		return nil, err
	}
	if err := os.Rename(stage, out); err != nil {
		return nil, err
	}
	renamed = true
	for i := range rep.Tensors {
		if rel, err := filepath.Rel(stage, rep.Tensors[i].File); err == nil && !strings.HasPrefix(rel, "..") {
			rep.Tensors[i].File = filepath.Join(out, rel)
		}
	}
	return rep, nil
}

// recastPreflight opens every safetensors file under dir with the strict
// reader and every shard index with OpenCheckpoint, returning the first
// error.
func recastPreflight(dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		switch {
		case d.IsDir():
			if path != dir && strings.HasPrefix(name, ".") {
				return filepath.SkipDir
			}
		case strings.HasPrefix(name, "."):
		case strings.HasSuffix(name, ".safetensors"):
			f, err := Open(path)
			if err != nil {
				return err
			}
			return f.Close()
		case strings.HasSuffix(name, ".safetensors.index.json"):
			// The whole checkpoint is checked as OpenCheckpoint checks it
			// (shards inside the directory, weight_map = Σ shard tensors).
			c, err := OpenCheckpoint(path)
			if err != nil {
				return err
			}
			return c.Close()
		}
		return nil
	})
}

// recastDir recasts the tree in into the directory out.
func recastDir(in, out string, opts RecastOptions, rep *RecastReport) error {
	var indexes []string
	absOut, _ := filepath.Abs(out)
	err := filepath.WalkDir(in, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if abs, _ := filepath.Abs(path); d.IsDir() && path != in && abs == absOut {
			return filepath.SkipDir // the output lies inside the input: never recast it into itself
		}
		rel, err := filepath.Rel(in, path)
		if err != nil {
			return err
		}
		target := filepath.Join(out, rel)
		name := d.Name()
		switch {
		case d.IsDir():
			if path != in && strings.HasPrefix(name, ".") {
				return filepath.SkipDir
			}
			if opts.DryRun {
				return nil
			}
			return os.MkdirAll(target, 0o755)
		case strings.HasPrefix(name, "."): // hidden files, our own temporaries
			return nil
		case strings.HasSuffix(name, ".safetensors"):
			return recastFile(path, target, opts, rep)
		case strings.HasSuffix(name, ".safetensors.index.json"):
			indexes = append(indexes, rel) // after the shards are written
			return nil
		case !d.Type().IsRegular():
			return nil
		}
		rep.Copied = append(rep.Copied, rel)
		if opts.DryRun || sameFile(path, target) {
			return nil
		}
		return copyFileAtomic(path, target)
	})
	if err != nil {
		return err
	}
	for _, rel := range indexes {
		if err := recastIndex(filepath.Join(in, rel), filepath.Join(out, rel), rep); err != nil {
			return err
		}
		rep.Indexes = append(rep.Indexes, rel)
	}
	return nil
}

func recastTarget(dt DType) bool {
	switch dt {
	case F64, F32, F16, BF16, F8E4M3, F8E5M2:
		return true
	}
	return false
}

func sameFile(a, b string) bool {
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// copyFileAtomic copies src to dst through a temporary file and rename.
func copyFileAtomic(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	return atomicWrite(dst, func(w *os.File) error {
		_, err := io.Copy(w, f)
		return err
	})
}

// recastIndex rewrites an index with metadata.total_size recomputed from the
// tensors now in the output shards.
func recastIndex(in, out string, rep *RecastReport) error {
	b, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var idx Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidIndex, in, err)
	}
	size := map[string]int64{}
	for _, t := range rep.Tensors {
		size[filepath.Clean(t.File)+"\x00"+t.Name] = t.BytesOut
	}
	odir := filepath.Dir(out)
	var total int64
	for name, shard := range idx.WeightMap {
		s, ok := size[filepath.Join(odir, shard)+"\x00"+name]
		if !ok {
			return fmt.Errorf("%w: %s: tensor %q mapped to %q was not found in the recast shards", ErrInvalidIndex, in, name, shard)
		}
		total += s
	}
	if idx.Metadata == nil {
		idx.Metadata = map[string]any{}
	}
	idx.Metadata["total_size"] = total
	if rep.DryRun {
		return nil
	}
	return WriteIndex(out, &idx)
}

// RecastParams is the adaptool.params record of a Recast output.
type RecastParams struct {
	DType DType  `json:"dtype"`          // the target dtype
	Only  string `json:"only,omitempty"` // the Only pattern, when given
}

// recastFile streams one safetensors file.
func recastFile(in, out string, opts RecastOptions, rep *RecastReport) error {
	f, err := Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	var (
		tensors []Tensor
		bufs    recastBuffers
	)
	first := len(rep.Tensors)
	for _, t := range f.Tensors {
		conv := recastable(t.DType) && t.DType != opts.DType && (opts.Only == nil || opts.Only.MatchString(t.Name))
		to := t.DType
		if conv {
			to = opts.DType
		}
		bytesOut := (Tensor{DType: to, Shape: t.Shape}).Size()
		rep.Tensors = append(rep.Tensors, RecastTensor{File: out, Name: t.Name, From: t.DType, To: to,
			Shape: slices.Clone(t.Shape), Converted: conv, BytesIn: t.Size(), BytesOut: bytesOut})
		rep.BytesIn += t.Size()
		rep.BytesOut += bytesOut
		if !conv {
			// Copied as it is (inside the kernel when the files allow).
			ct, err := f.CopyTensor(t.Name)
			if err != nil {
				return err
			}
			if opts.Progress != nil {
				ct.done = func() { opts.Progress(out, ct.Name) }
			}
			tensors = append(tensors, ct)
			continue
		}
		tensors = append(tensors, Tensor{Name: t.Name, DType: to, Shape: t.Shape, WriteTo: func(w io.Writer) error {
			err := f.recastTo(w, t, to, &bufs)
			if err == nil && opts.Progress != nil {
				opts.Progress(out, t.Name)
			}
			return err
		}})
	}
	if opts.DryRun {
		return nil
	}
	if err := recastWrite(f, in, out, tensors, opts); err != nil {
		rep.Tensors = rep.Tensors[:first]
		return err
	}
	return nil
}

// recastWrite writes the tensors converted from the file in to out, as
// WriteFile does, with the provenance record: the input is hashed in the
// background while the tensors are written, and its digest replaces a
// random placeholder in the header of the temporary file before rename.
func recastWrite(f *File, in, out string, tensors []Tensor, opts RecastOptions) error {
	hash := provenance.HashMappedAsync(in, f.mapped) // zero-copy when mapped
	defer hash.Cancel()
	inMeta := f.Metadata
	marker := provenance.Placeholder()
	params := RecastParams{DType: opts.DType}
	if opts.Only != nil {
		params.Only = opts.Only.String()
	}
	meta := make(map[string]string, len(inMeta)+8)
	for k, v := range inMeta {
		meta[k] = v
	}
	provenance.Merge(meta, provenance.Record("convert-dtype", "", params, nil, nil,
		[]provenance.Input{{Path: in, SHA256: marker}}))
	return WriteFile(out, tensors, meta, WithDeferredValue(marker, func() (string, error) {
		sum, err := hash.Wait()
		if err != nil {
			return "", fmt.Errorf("%s: hashing the input for provenance: %w", in, err)
		}
		return sum, nil
	}))
}

// patchHeader replaces the one occurrence of marker in the header of the
// safetensors file being written to w by sum (of the same length).
func patchHeader(w *os.File, name, marker, sum string) error {
	var prefix [prefixSize]byte
	if _, err := w.ReadAt(prefix[:], 0); err != nil {
		return &WriteError{Path: name, Err: err}
	}
	var n uint64
	for i := range prefix {
		n |= uint64(prefix[i]) << (8 * i)
	}
	if n > MaxHeaderSize || len(sum) != len(marker) {
		return &WriteError{Path: name, Err: fmt.Errorf("provenance: header of %d bytes, digest of %d", n, len(sum))}
	}
	header := make([]byte, n)
	if _, err := w.ReadAt(header, prefixSize); err != nil {
		return &WriteError{Path: name, Err: err}
	}
	i := bytes.Index(header, []byte(marker))
	if i < 0 || bytes.Count(header, []byte(marker)) != 1 {
		return &WriteError{Path: name, Err: errors.New("provenance: digest placeholder not found once in the header")}
	}
	if _, err := w.WriteAt([]byte(sum), int64(prefixSize+i)); err != nil {
		return &WriteError{Path: name, Err: err}
	}
	return nil
}

// recastBuffers are the chunk buffers reused across the tensors of a file.
type recastBuffers struct {
	in  []byte
	f32 []float32
	out []byte
}

func grow[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

// recastTo converts tensor t to dtype to in chunks and writes the bytes.
func (f *File) recastTo(w io.Writer, t TensorInfo, to DType, bufs *recastBuffers) error {
	n := t.NumElements()
	inB, outB := int64(t.DType.Bits()/8), int64(to.Bits()/8)
	base := f.DataOffset() + t.Offsets[0]
	for i := int64(0); i < n; i += recastChunk {
		m := min(recastChunk, n-i)
		var raw []byte
		if f.mapped != nil {
			raw = f.mapped[base+i*inB : base+(i+m)*inB]
		} else {
			bufs.in = grow(bufs.in, int(m*inB))
			raw = bufs.in
			if _, err := f.r.ReadAt(raw, base+i*inB); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("reading data: %w", err)
			}
		}
		var vals []float32
		if t.DType == F32 {
			vals, _ = AsFloat32(raw)
		}
		if vals == nil {
			bufs.f32 = grow(bufs.f32, int(m))
			vals = bufs.f32
			if err := ToFloat32(vals, raw, t.DType); err != nil {
				return err
			}
		}
		var outBytes []byte
		if to == F32 {
			outBytes = Float32Bytes(vals)
			if !hostLittleEndian {
				bufs.out = grow(bufs.out, int(m*outB))
				outBytes = bufs.out
				if err := FromFloat32(outBytes, vals, to); err != nil {
					return err
				}
			}
		} else {
			bufs.out = grow(bufs.out, int(m*outB))
			outBytes = bufs.out
			if err := FromFloat32(outBytes, vals, to); err != nil {
				return err
			}
		}
		if _, err := w.Write(outBytes); err != nil {
			return err
		}
	}
	return nil
}
