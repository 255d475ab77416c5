package inspect

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// corpusDir locates ../shared/corpus relative to the module root (the
// directory holding go.mod), or skips the test when it is absent.
func corpusDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("no go.mod above the test directory")
		}
		dir = parent
	}
	c := filepath.Join(dir, "..", "shared", "corpus")
	if _, err := os.Stat(filepath.Join(c, "MANIFEST.tsv")); err != nil {
		t.Skipf("corpus not present at %s: %v", c, err)
	}
	return c
}

// manifestRow is one row of MANIFEST.tsv.
type manifestRow struct {
	dir, file, kind, peftType, rank, expect string
	tensors                                 int
	dtypes                                  map[string]int
}

func readManifest(t testing.TB, corpus string) []manifestRow {
	f, err := os.Open(filepath.Join(corpus, "MANIFEST.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []manifestRow
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue
		}
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 11 {
			t.Fatalf("manifest row has %d columns: %q", len(c), sc.Text())
		}
		r := manifestRow{dir: c[0], file: c[1], kind: c[5], peftType: c[6], rank: c[7], expect: c[10], dtypes: map[string]int{}}
		if c[8] != "-" {
			r.tensors, err = strconv.Atoi(c[8])
			if err != nil {
				t.Fatal(err)
			}
		}
		if c[9] != "-" {
			for _, d := range strings.Split(c[9], ",") {
				k, v, _ := strings.Cut(d, ":")
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("dtype column %q", c[9])
				}
				r.dtypes[k] = n
			}
		}
		rows = append(rows, r)
	}
	if len(rows) != 30 {
		t.Fatalf("manifest has %d rows, want 30", len(rows))
	}
	return rows
}

func TestSummarizeCorpus(t *testing.T) {
	corpus := corpusDir(t)
	for _, row := range readManifest(t, corpus) {
		t.Run(row.dir, func(t *testing.T) {
			for _, path := range []string{filepath.Join(corpus, row.dir, row.file), filepath.Join(corpus, row.dir)} {
				s, err := Summarize(path, Options{})
				if strings.HasPrefix(row.expect, "error:") {
					want := strings.TrimPrefix(row.expect, "error:")
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("%s: error %v, want %s", path, err, want)
					}
					if want == "MetadataIncompleteBuffer" {
						// header intact: tensors still listed
						if s == nil || len(s.Tensors) != row.tensors || s.Error == "" {
							t.Fatalf("truncated file: summary %v", s)
						}
						checkDTypes(t, s, row)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				if len(s.Tensors) != row.tensors || s.Totals.Tensors != row.tensors {
					t.Errorf("%s: %d tensors, manifest %d", path, len(s.Tensors), row.tensors)
				}
				checkDTypes(t, s, row)
			}
		})
	}
}

func checkDTypes(t *testing.T, s *Summary, row manifestRow) {
	t.Helper()
	if len(s.Totals.DTypes) != len(row.dtypes) {
		t.Errorf("dtypes %v, manifest %v", s.Totals.DTypes, row.dtypes)
	}
	for k, v := range row.dtypes {
		if s.Totals.DTypes[k] != v {
			t.Errorf("dtype %s: %d tensors, manifest %d", k, s.Totals.DTypes[k], v)
		}
	}
}
