package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// corpusRoot returns ../shared/corpus relative to the module root, or skips.
func corpusRoot(t *testing.T) string {
	t.Helper()
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		if filepath.Dir(dir) == dir {
			t.Skip("no go.mod above the test directory")
		}
		dir = filepath.Dir(dir)
	}
	c := filepath.Join(dir, "..", "shared", "corpus")
	if _, err := os.Stat(filepath.Join(c, "MANIFEST.tsv")); err != nil {
		t.Skipf("corpus absent at %s", c)
	}
	return c
}

type corpusEntry struct {
	dir, file, expect string
	tensors           int
	dtypes            map[string]int
}

func corpusEntries(t *testing.T, root string) []corpusEntry {
	f, err := os.Open(filepath.Join(root, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []corpusEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	sc.Scan() // header
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		e := corpusEntry{dir: c[0], file: c[1], expect: c[10], dtypes: map[string]int{}}
		e.tensors, _ = strconv.Atoi(c[8])
		if c[9] != "-" {
			for _, d := range strings.Split(c[9], ",") {
				k, v, _ := strings.Cut(d, ":")
				e.dtypes[k], _ = strconv.Atoi(v)
			}
		}
		out = append(out, e)
	}
	if len(out) != 30 {
		t.Fatalf("%d manifest rows", len(out))
	}
	return out
}

// TestInspectCommandsCorpus runs inspect (plain, --stats, --hashes), diff,
// check and report over every corpus entry: exit codes as documented,
// tensor counts and dtypes as the manifest says, and no panic.
func TestInspectCommandsCorpus(t *testing.T) {
	root := corpusRoot(t)
	tmp := t.TempDir()
	for _, e := range corpusEntries(t, root) {
		t.Run(e.dir, func(t *testing.T) {
			file := filepath.Join(root, e.dir, e.file)
			dir := filepath.Join(root, e.dir)
			bad := strings.HasPrefix(e.expect, "error:")
			wantCode := 0
			if bad {
				wantCode = 2
			}
			for _, args := range [][]string{
				{"inspect", file, "--json"},
				{"inspect", dir, "--json", "--stats"},
				{"inspect", file, "--json", "--hashes"},
			} {
				code, out, stderr := runCLI(t, args...)
				if code != wantCode {
					t.Fatalf("%v: exit %d, want %d\n%s", args, code, wantCode, stderr)
				}
				if bad {
					if !strings.Contains(stderr, strings.TrimPrefix(e.expect, "error:")) {
						t.Errorf("%v: stderr %q lacks %s", args, stderr, e.expect)
					}
					if e.tensors == 0 {
						continue
					}
				}
				var doc struct {
					Format  string `json:"format"`
					Tensors []struct {
						Name  string `json:"name"`
						DType string `json:"dtype"`
						Shape []int  `json:"shape"`
					} `json:"tensors"`
					Modules []map[string]any `json:"modules"`
					Totals  struct {
						Tensors int            `json:"tensors"`
						DTypes  map[string]int `json:"dtypes"`
					} `json:"totals"`
				}
				if err := json.Unmarshal([]byte(out), &doc); err != nil {
					t.Fatalf("%v: invalid JSON: %v", args, err)
				}
				if len(doc.Tensors) != e.tensors || doc.Totals.Tensors != e.tensors {
					t.Errorf("%v: %d tensors, manifest %d", args, len(doc.Tensors), e.tensors)
				}
				for k, v := range e.dtypes {
					if doc.Totals.DTypes[k] != v {
						t.Errorf("%v: dtype %s ×%d, manifest %d", args, k, doc.Totals.DTypes[k], v)
					}
				}
				if args[len(args)-1] == "--stats" {
					for _, m := range doc.Modules {
						if _, ok := m["delta_fro_norm"]; !ok && (m["kind"] == "lora" || m["kind"] == "lora_conv") {
							t.Errorf("module %v lacks delta_fro_norm", m["name"])
						}
					}
				}
			}
			// text output too
			if code, out, _ := runCLI(t, "inspect", dir, "--stats"); code != wantCode || !strings.Contains(out, "container:") {
				t.Errorf("text inspect: exit %d", code)
			}
			if bad {
				for _, args := range [][]string{
					{"diff", dir, dir},
					{"check", "--base", file, dir},
					{"report", dir, "-o", filepath.Join(tmp, e.dir+".html")},
				} {
					if code, _, _ := runCLI(t, args...); code != 2 {
						t.Errorf("%v: exit %d, want 2", args, code)
					}
				}
				return
			}
			code, out, stderr := runCLI(t, "diff", dir, dir, "--json", "--dense")
			if code != 0 {
				t.Fatalf("diff: exit %d: %s", code, stderr)
			}
			var d struct {
				Modules []struct {
					Name             string   `json:"name"`
					Cosine           *float64 `json:"cosine"`
					RelativeDistance *float64 `json:"relative_distance"`
					Compared         string   `json:"compared"`
				} `json:"modules"`
			}
			if err := json.Unmarshal([]byte(out), &d); err != nil {
				t.Fatal(err)
			}
			for _, m := range d.Modules {
				if m.Compared == "delta" && m.Cosine != nil && (*m.Cosine < 1-1e-9 || *m.RelativeDistance > 1e-6) {
					t.Errorf("self-diff %s: cosine %v distance %v", m.Name, *m.Cosine, *m.RelativeDistance)
				}
			}
			// the adapter file's own header as the "base": runs end to end
			// (most modules are missing there, so exit 1 is expected)
			if code, out, stderr := runCLI(t, "check", "--base", file, dir, "--json"); code != 0 && code != 1 || !json.Valid([]byte(out)) {
				t.Errorf("check: exit %d %s", code, stderr)
			}
			html := filepath.Join(tmp, e.dir+".html")
			if code, _, stderr := runCLI(t, "report", dir, "-o", html); code != 0 {
				t.Errorf("report: exit %d %s", code, stderr)
			} else if b, err := os.ReadFile(html); err != nil || !strings.Contains(string(b), "</html>") {
				t.Errorf("report HTML: %v", err)
			}
		})
	}
}

func TestInspectUsage(t *testing.T) {
	for _, args := range [][]string{{"inspect"}, {"diff", "a"}, {"check", "x"}, {"report", "x"}} {
		if code, _, _ := runCLI(t, args...); code != 3 {
			t.Errorf("%v: exit %d, want 3 (usage)", args, code)
		}
	}
	if code, _, _ := runCLI(t, "inspect", "/nonexistent/adapter"); code != 2 {
		t.Errorf("missing input: exit %d, want 2", code)
	}
}
