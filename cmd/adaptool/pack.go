package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/adaptool/adaptool/format/atz"
	"github.com/adaptool/adaptool/internal/atomicfile"
)

func init() { register(newPackCommand) }

// packFileResult is one file of the pack/unpack report (--json).
type packFileResult struct {
	Input         string  `json:"input"`
	Output        string  `json:"output"`
	Action        string  `json:"action"` // "pack", "unpack" or "copy"
	OriginalBytes int64   `json:"original_bytes"`
	PackedBytes   int64   `json:"packed_bytes"`
	Ratio         float64 `json:"ratio"`
	Seconds       float64 `json:"seconds"`
	MBPerSec      float64 `json:"mb_per_s"`
	SHA256        string  `json:"sha256"`
	SHA256Equal   bool    `json:"sha256_equal"`
	DeltaChunks   int     `json:"delta_chunks,omitempty"`
	DryRun        bool    `json:"dry_run,omitempty"` // nothing was written
}

// packReport is the --json document of pack and unpack.
type packReport struct {
	Files         []packFileResult `json:"files"`
	OriginalBytes int64            `json:"original_bytes"`
	PackedBytes   int64            `json:"packed_bytes"`
	Ratio         float64          `json:"ratio"`
	Seconds       float64          `json:"seconds"`
	MBPerSec      float64          `json:"mb_per_s"`
	DryRun        bool             `json:"dry_run,omitempty"` // nothing was written
}

func newPackCommand() *cli.Command {
	return &cli.Command{
		Name:      "pack",
		Usage:     "compress a safetensors file, adapter directory or sharded checkpoint losslessly (.atz)",
		ArgsUsage: "IN -o OUT",
		Description: "A file is packed to OUT (conventionally NAME.atz). A directory is copied to the directory OUT\n" +
			"with every .safetensors file packed under its own name, so index.json and adapter_config.json\n" +
			"keep working: adaptool reads packed files transparently. Each packed file is decoded again and\n" +
			"compared with the original byte for byte (skip with --no-verify). --dry-run compresses\n" +
			"everything and reports the sizes and ratio, writing nothing.",
		Flags: commonFlags(
			outputFlag("output file (or directory when IN is a directory)"),
			&cli.StringFlag{Name: "base", Usage: "base file (or directory) the input was fine-tuned from: tensors are XOR-coded against it; unpack then needs it too"},
			&cli.StringFlag{Name: "level", Value: "default", Usage: "fastest, default or best"},
			&cli.BoolFlag{Name: "no-verify", Usage: "do not decode the written container to compare it with the input"},
			dryRunFlag(),
		),
		Action: runPack,
	}
}

func parseLevel(s string) (atz.Level, error) {
	switch s {
	case "", "default":
		return atz.LevelDefault, nil
	case "fastest":
		return atz.LevelFastest, nil
	case "best":
		return atz.LevelBest, nil
	}
	return 0, usagef("pack: --level must be fastest, default or best, not %q", s)
}

func runPack(c *cli.Context) error {
	args, err := requireArgs(c, 1, 1, "IN")
	if err != nil {
		return err
	}
	out, err := requireOutput(c)
	if err != nil {
		return err
	}
	level, err := parseLevel(c.String("level"))
	if err != nil {
		return err
	}
	verify := !c.Bool("no-verify")
	base := c.String("base")
	one := func(in, out, base string, dry bool) (packFileResult, error) {
		return packOne(in, out, base, level, verify, dry)
	}
	return runTree(c, "packing", args[0], out, base, true, one)
}

// runTree applies one to a file, or to every file of a directory tree
// (pack: *.safetensors, unpack: files starting with the atz magic; other
// files are copied), and prints the report. With --dry-run every file is
// encoded or decoded as usual but nothing is written or created.
func runTree(c *cli.Context, label, in, out, base string, packing bool, one func(in, out, base string, dry bool) (packFileResult, error)) error {
	st, err := os.Stat(in)
	if err != nil {
		return exitErr(exitInput, err)
	}
	start := time.Now()
	dry := c.Bool("dry-run")
	rep := packReport{DryRun: dry}
	if !st.IsDir() {
		r, err := one(in, out, base, dry)
		if err != nil {
			return err
		}
		rep.Files = append(rep.Files, r)
	} else {
		if s, err := os.Stat(out); err == nil && !s.IsDir() {
			return usagef("%s: IN is a directory, so -o must be a directory (%s is a file)", c.Command.Name, out)
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
			return exitErr(exitInput, err)
		}
		sort.Strings(files)
		prog := newProgress(c, label, len(files))
		for _, f := range files {
			rel, _ := filepath.Rel(in, f)
			dst := filepath.Join(out, rel)
			if !dry {
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return exitErr(exitFailed, err)
				}
			}
			var r packFileResult
			if isCandidate(f, packing) {
				b := ""
				if base != "" {
					if _, err := os.Stat(filepath.Join(base, rel)); err == nil {
						b = filepath.Join(base, rel)
					}
				}
				r, err = one(f, dst, b, dry)
			} else {
				r, err = copyFile(f, dst, dry)
			}
			if err != nil {
				return err
			}
			rep.Files = append(rep.Files, r)
			prog.Add(1)
		}
		prog.Done()
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
	if wantJSON(c) {
		return printJSON(c, rep)
	}
	w := stdout(c)
	if dry {
		fmt.Fprintln(w, "dry run: nothing written")
	}
	for _, f := range rep.Files {
		if f.Action == "copy" {
			fmt.Fprintf(w, "copy    %s -> %s (%d bytes)\n", f.Input, f.Output, f.OriginalBytes)
			continue
		}
		eq := "sha256 equal"
		switch {
		case dry && f.Action == "pack":
			eq = "not written"
		case !f.SHA256Equal:
			eq = "sha256 not verified"
		}
		fmt.Fprintf(w, "%-7s %s -> %s: %d -> %d bytes, ratio %.3f, %.0f MB/s, %s (%s)\n",
			f.Action, f.Input, f.Output, f.OriginalBytes, f.PackedBytes, f.Ratio, f.MBPerSec, eq, f.SHA256)
	}
	if len(rep.Files) > 1 {
		fmt.Fprintf(w, "total: %d -> %d bytes, ratio %.3f, %.0f MB/s\n", rep.OriginalBytes, rep.PackedBytes, rep.Ratio, rep.MBPerSec)
	}
	return nil
}

// isCandidate reports whether a file of a directory is packed (a
// .safetensors file that is not already packed) or unpacked (an atz file).
func isCandidate(name string, packing bool) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	prefix := make([]byte, len(atz.Magic))
	n, _ := io.ReadFull(f, prefix)
	isAtz := atz.Detect(prefix[:n])
	if packing {
		return !isAtz && filepath.Ext(name) == ".safetensors"
	}
	return isAtz
}

func packOne(in, out, base string, level atz.Level, verify, dry bool) (packFileResult, error) {
	start := time.Now()
	opt := atz.PackOptions{Level: level, DryRun: dry}
	if base != "" {
		bf, err := os.Open(base)
		if err != nil {
			return packFileResult{}, exitErr(exitInput, err)
		}
		defer bf.Close()
		st, err := bf.Stat()
		if err != nil {
			return packFileResult{}, exitErr(exitInput, err)
		}
		opt.Base, opt.BaseSize = bf, st.Size()
	}
	st, err := atz.PackFile(out, in, opt)
	if err != nil {
		return packFileResult{}, err
	}
	r := result("pack", in, out, st, time.Since(start))
	r.DryRun = dry
	if verify && !dry {
		// Decode the written container and compare it with the source
		// byte for byte (exact, and cheaper than restoring it and
		// recomputing the SHA-256 that pack took from the same source).
		var opts []atz.Option
		if opt.Base != nil {
			opts = append(opts, atz.WithBase(opt.Base, opt.BaseSize))
		}
		if err := atz.VerifyFile(out, in, opts...); err != nil {
			return r, fmt.Errorf("verifying %s: %w", out, err)
		}
		r.SHA256Equal = true
	}
	return r, nil
}

func result(action, in, out string, st atz.Stats, d time.Duration) packFileResult {
	r := packFileResult{
		Input: in, Output: out, Action: action,
		OriginalBytes: st.OriginalSize, PackedBytes: st.PackedSize, Ratio: st.Ratio(),
		Seconds: d.Seconds(), SHA256: fmt.Sprintf("%x", st.SHA256), DeltaChunks: st.DeltaChunks,
	}
	if r.Seconds > 0 {
		r.MBPerSec = float64(st.OriginalSize) / 1e6 / r.Seconds
	}
	return r
}

// copyFile copies a non-tensor file of a directory (configs, index.json);
// with dry it only reads it.
func copyFile(in, out string, dry bool) (packFileResult, error) {
	b, err := os.ReadFile(in)
	if err != nil {
		return packFileResult{}, exitErr(exitInput, err)
	}
	if !dry {
		if err := atomicfile.WriteBytes(out, b); err != nil {
			return packFileResult{}, err
		}
	}
	return packFileResult{Input: in, Output: out, Action: "copy", OriginalBytes: int64(len(b)), PackedBytes: int64(len(b)), Ratio: 1, DryRun: dry}, nil
}
