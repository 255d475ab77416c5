package atz

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/adaptool/adaptool/internal/atomicfile"
)

// FileResult is one file of PackPath or UnpackPath.
type FileResult struct {
	Input         string  `json:"input"`
	Output        string  `json:"output"`
	Action        string  `json:"action"` // "pack", "unpack" or "copy"
	OriginalBytes int64   `json:"original_bytes"`
	PackedBytes   int64   `json:"packed_bytes"`
	Ratio         float64 `json:"ratio"`
	Seconds       float64 `json:"seconds"`
	MBPerSec      float64 `json:"mb_per_s"`
	SHA256        string  `json:"sha256"` // of the original file
	// SHA256Equal: the restored bytes were checked against the original
	// (pack with Verify, unpack always).
	SHA256Equal bool `json:"sha256_equal"`
	DeltaChunks int  `json:"delta_chunks,omitempty"`
	DryRun      bool `json:"dry_run,omitempty"` // nothing was written
}

// PathReport is the outcome of PackPath or UnpackPath.
type PathReport struct {
	Files         []FileResult `json:"files"`
	OriginalBytes int64        `json:"original_bytes"`
	PackedBytes   int64        `json:"packed_bytes"`
	Ratio         float64      `json:"ratio"`
	Seconds       float64      `json:"seconds"`
	MBPerSec      float64      `json:"mb_per_s"`
	DryRun        bool         `json:"dry_run,omitempty"` // nothing was written
}

// PathOptions configures PackPath and UnpackPath.
type PathOptions struct {
	// Level and Workers are those of PackOptions (PackPath only).
	Level   Level
	Workers int
	// Base is the base file, or for a directory the base directory whose
	// files of the same relative path are the bases, given to pack (see
	// PackOptions.Base); "" for none. A directory file without a
	// counterpart in Base is coded without one.
	Base string
	// Verify makes PackPath decode each container it wrote and compare it
	// with the input byte for byte.
	Verify bool
	// DryRun packs or decodes and checks everything but writes nothing and
	// creates no directory.
	DryRun bool
	// Progress, when set, is called after each file of a directory.
	Progress func(done, total int)
}

// PackPath packs in to out. A file is packed to the file out. A
// directory (an adapter, a sharded checkpoint, any tree) is copied to the
// directory out with every .safetensors file that is not already packed
// packed under its own name, and every other regular file copied, so that
// configs and shard indexes keep working (adaptool reads packed files
// transparently). Each file is written atomically.
func PackPath(in, out string, opt PathOptions) (*PathReport, error) {
	return walkPath(in, out, opt, true)
}

// UnpackPath restores in to out: a container file to the file out, or a
// packed directory to the directory out (containers restored, every other
// file copied). Every restored file's SHA-256 is checked before it is put
// in place.
func UnpackPath(in, out string, opt PathOptions) (*PathReport, error) {
	return walkPath(in, out, opt, false)
}

func walkPath(in, out string, opt PathOptions, packing bool) (*PathReport, error) {
	st, err := os.Stat(in)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	rep := &PathReport{DryRun: opt.DryRun}
	one := func(src, dst, base string) (FileResult, error) {
		if packing {
			return packOne(src, dst, base, opt)
		}
		return unpackOne(src, dst, base, opt)
	}
	if !st.IsDir() {
		r, err := one(in, out, opt.Base)
		if err != nil {
			return nil, err
		}
		rep.Files = append(rep.Files, r)
	} else {
		if s, err := os.Stat(out); err == nil && !s.IsDir() {
			return nil, fmt.Errorf("atz: %s is a directory, so the output must be one too (%s is a file)", in, out)
		}
		var files []string
		err := filepath.WalkDir(in, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		sort.Strings(files)
		for i, f := range files {
			rel, _ := filepath.Rel(in, f)
			dst := filepath.Join(out, rel)
			if !opt.DryRun {
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return nil, &atomicfile.WriteError{Path: filepath.Dir(dst), Err: err}
				}
			}
			var r FileResult
			if isCandidate(f, packing) {
				b := ""
				if opt.Base != "" {
					if _, err := os.Stat(filepath.Join(opt.Base, rel)); err == nil {
						b = filepath.Join(opt.Base, rel)
					}
				}
				r, err = one(f, dst, b)
			} else {
				r, err = copyPlain(f, dst, opt.DryRun)
			}
			if err != nil {
				return nil, err
			}
			rep.Files = append(rep.Files, r)
			if opt.Progress != nil {
				opt.Progress(i+1, len(files))
			}
		}
	}
	for _, f := range rep.Files {
		rep.OriginalBytes += f.OriginalBytes
		rep.PackedBytes += f.PackedBytes
	}
	rep.Seconds = time.Since(start).Seconds()
	if rep.PackedBytes > 0 {
		rep.Ratio = float64(rep.OriginalBytes) / float64(rep.PackedBytes)
	}
	if rep.Seconds > 0 {
		rep.MBPerSec = float64(rep.OriginalBytes) / 1e6 / rep.Seconds
	}
	return rep, nil
}

// isCandidate reports whether a file of a directory is packed (a
// .safetensors file that is not already packed) or unpacked (a container).
func isCandidate(name string, packing bool) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	prefix := make([]byte, len(Magic))
	n, _ := io.ReadFull(f, prefix)
	packed := Detect(prefix[:n])
	if packing {
		return !packed && filepath.Ext(name) == ".safetensors"
	}
	return packed
}

// openBase opens a base file for PackOptions.Base or WithBase.
func openBase(name string) (*os.File, int64, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, st.Size(), nil
}

func packOne(in, out, base string, opt PathOptions) (FileResult, error) {
	start := time.Now()
	po := PackOptions{Level: opt.Level, Workers: opt.Workers, DryRun: opt.DryRun}
	if base != "" {
		bf, size, err := openBase(base)
		if err != nil {
			return FileResult{}, err
		}
		defer bf.Close()
		po.Base, po.BaseSize = bf, size
	}
	st, err := PackFile(out, in, po)
	if err != nil {
		return FileResult{}, err
	}
	r := fileResult("pack", in, out, st, time.Since(start), opt.DryRun)
	if opt.Verify && !opt.DryRun {
		// Decode the written container and compare it with the source
		// byte for byte (exact, and cheaper than restoring it and
		// recomputing the SHA-256 that pack took from the same source).
		var opts []Option
		if po.Base != nil {
			opts = append(opts, WithBase(po.Base, po.BaseSize))
		}
		if err := VerifyFile(out, in, opts...); err != nil {
			return r, fmt.Errorf("verifying %s: %w", out, err)
		}
		r.SHA256Equal = true
	}
	return r, nil
}

func unpackOne(in, out, base string, opt PathOptions) (FileResult, error) {
	start := time.Now()
	var opts []Option
	if base != "" {
		bf, size, err := openBase(base)
		if err != nil {
			return FileResult{}, err
		}
		defer bf.Close()
		opts = append(opts, WithBase(bf, size))
	}
	var st Stats
	var err error
	if opt.DryRun {
		st, err = CheckFile(in, opts...)
	} else {
		st, err = UnpackFile(out, in, opts...)
	}
	if err != nil {
		return FileResult{}, err
	}
	r := fileResult("unpack", in, out, st, time.Since(start), opt.DryRun)
	r.SHA256Equal = true // both check the SHA-256 of the restored bytes before returning
	return r, nil
}

func fileResult(action, in, out string, st Stats, d time.Duration, dry bool) FileResult {
	r := FileResult{
		Input: in, Output: out, Action: action,
		OriginalBytes: st.OriginalSize, PackedBytes: st.PackedSize, Ratio: st.Ratio(),
		Seconds: d.Seconds(), SHA256: fmt.Sprintf("%x", st.SHA256), DeltaChunks: st.DeltaChunks, DryRun: dry,
	}
	if r.Seconds > 0 {
		r.MBPerSec = float64(st.OriginalSize) / 1e6 / r.Seconds
	}
	return r
}

// copyPlain copies a file of a directory that is not packed or unpacked
// (configs, shard indexes); with dry it only reads it.
func copyPlain(in, out string, dry bool) (FileResult, error) {
	b, err := os.ReadFile(in)
	if err != nil {
		return FileResult{}, err
	}
	if !dry {
		if err := atomicfile.WriteBytes(out, b); err != nil {
			return FileResult{}, err
		}
	}
	return FileResult{Input: in, Output: out, Action: "copy", OriginalBytes: int64(len(b)), PackedBytes: int64(len(b)), Ratio: 1, DryRun: dry}, nil
}
