// Package testcorpus gives tests the shared corpus of real adapter files
// (../shared/corpus beside the repository) and its MANIFEST.tsv.
//
// Tests call Dir or Manifest; both skip the test, saying why, when the corpus
// folder is absent (outside CI), and fail it when the folder is there but
// the manifest is malformed.
package testcorpus

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Row is one row of MANIFEST.tsv: what a corpus file must yield.
type Row struct {
	Dir      string         // folder under the corpus root
	File     string         // file name inside Dir
	Source   string         // repository@commit:path it came from
	SHA256   string         // hex digest of the file
	Bytes    int64          // file size
	Kind     string         // e.g. peft-lora, mlx-lm-lora, corrupt-stub
	PeftType string         // LORA, IA3, ... or "" for "-"
	Rank     int            // 0 for "-"
	Tensors  int            // tensor count (0 for "-")
	DTypes   map[string]int // dtype histogram, e.g. {"F32": 50}
	Expect   string         // "ok" or "error:<SentinelName>"
	Notes    string
}

// Path returns the file's path under the corpus root.
func (r Row) Path(root string) string { return filepath.Join(root, r.Dir, r.File) }

// DirPath returns the row's folder under the corpus root.
func (r Row) DirPath(root string) string { return filepath.Join(root, r.Dir) }

// OK reports whether the file must load without error.
func (r Row) OK() bool { return r.Expect == "ok" }

// WantError returns the sentinel name of an "error:X" row, or "".
func (r Row) WantError() string {
	name, ok := strings.CutPrefix(r.Expect, "error:")
	if !ok {
		return ""
	}
	return name
}

// Locate returns the corpus root: ../shared/corpus next to the directory that
// holds go.mod, found by walking up from the working directory.
func Locate() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
	root := filepath.Join(dir, "..", "shared", "corpus")
	if _, err := os.Stat(filepath.Join(root, "MANIFEST.tsv")); err != nil {
		return "", err
	}
	return root, nil
}

// Dir returns the corpus root, or skips the test when it is absent.
func Dir(t testing.TB) string {
	t.Helper()
	root, err := Locate()
	if err != nil {
		t.Skipf("corpus not available (../shared/corpus beside the repository): %v", err)
	}
	return root
}

// Manifest returns the corpus root and every row of its MANIFEST.tsv, or
// skips the test when the corpus is absent.
func Manifest(t testing.TB) (string, []Row) {
	t.Helper()
	root := Dir(t)
	rows, err := ReadManifest(filepath.Join(root, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	return root, rows
}

// ReadManifest parses a MANIFEST.tsv file.
func ReadManifest(name string) ([]Row, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows []Row
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if line == 1 {
			continue // column names
		}
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		r, err := parseRow(strings.Split(sc.Text(), "\t"))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no rows", name)
	}
	return rows, nil
}

func parseRow(c []string) (Row, error) {
	if len(c) < 11 {
		return Row{}, fmt.Errorf("%d columns, want at least 11", len(c))
	}
	r := Row{Dir: c[0], File: c[1], Source: c[2], SHA256: c[3], Kind: c[5], Expect: c[10], DTypes: map[string]int{}}
	if len(c) > 11 {
		r.Notes = c[11]
	}
	var err error
	if r.Bytes, err = strconv.ParseInt(c[4], 10, 64); err != nil {
		return Row{}, fmt.Errorf("bytes column %q: %w", c[4], err)
	}
	if c[6] != "-" {
		r.PeftType = c[6]
	}
	if r.Rank, err = dash(c[7]); err != nil {
		return Row{}, fmt.Errorf("rank column %q: %w", c[7], err)
	}
	if r.Tensors, err = dash(c[8]); err != nil {
		return Row{}, fmt.Errorf("tensors column %q: %w", c[8], err)
	}
	if c[9] != "-" {
		for _, d := range strings.Split(c[9], ",") {
			k, v, ok := strings.Cut(d, ":")
			n, err := strconv.Atoi(v)
			if !ok || err != nil {
				return Row{}, fmt.Errorf("dtypes column %q", c[9])
			}
			r.DTypes[k] = n
		}
	}
	return r, nil
}

func dash(s string) (int, error) {
	if s == "-" {
		return 0, nil
	}
	return strconv.Atoi(s)
}
