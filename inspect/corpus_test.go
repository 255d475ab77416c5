package inspect

import (
	"strings"
	"testing"

	"github.com/adaptool/adaptool/internal/testcorpus"
)

func TestSummarizeCorpus(t *testing.T) {
	corpus, rows := testcorpus.Manifest(t)
	for _, row := range rows {
		t.Run(row.Dir, func(t *testing.T) {
			for _, path := range []string{row.Path(corpus), row.DirPath(corpus)} {
				s, err := Summarize(path, Options{})
				if !row.OK() {
					want := row.WantError()
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("%s: error %v, want %s", path, err, want)
					}
					if want == "MetadataIncompleteBuffer" {
						// header intact: tensors still listed
						if s == nil || len(s.Tensors) != row.Tensors || s.Error == "" {
							t.Fatalf("truncated file: summary %v", s)
						}
						checkDTypes(t, s, row)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				if len(s.Tensors) != row.Tensors || s.Totals.Tensors != row.Tensors {
					t.Errorf("%s: %d tensors, manifest %d", path, len(s.Tensors), row.Tensors)
				}
				checkDTypes(t, s, row)
			}
		})
	}
}

func checkDTypes(t *testing.T, s *Summary, row testcorpus.Row) {
	t.Helper()
	if len(s.Totals.DTypes) != len(row.DTypes) {
		t.Errorf("dtypes %v, manifest %v", s.Totals.DTypes, row.DTypes)
	}
	for k, v := range row.DTypes {
		if s.Totals.DTypes[k] != v {
			t.Errorf("dtype %s: %d tensors, manifest %d", k, s.Totals.DTypes[k], v)
		}
	}
}
