package inspect

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/internal/testgen"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenAdapter writes the small seeded adapter behind the golden files:
// two layers of q/v, a rank > width module and a modules_to_save head.
func goldenAdapter(t *testing.T) string {
	dir := filepath.Join(t.TempDir(), "golden-adapter")
	_, err := testgen.WriteLoRA(dir, testgen.LoRA{Seed: 42, R: 4, Alpha: 8,
		Modules: []testgen.Module{
			{Name: "model.layers.0.self_attn.q_proj", In: 8, Out: 8},
			{Name: "model.layers.0.self_attn.v_proj", In: 8, Out: 4},
			{Name: "model.layers.1.self_attn.q_proj", In: 8, Out: 8},
			{Name: "model.layers.1.self_attn.v_proj", In: 8, Out: 4},
			{Name: "model.layers.1.mlp.tiny", In: 2, Out: 3},
		},
		Full: map[string][]int{"score.weight": {2, 8}}})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// normalize marshals v the way printJSON does and replaces the temporary
// directory by a fixed token.
func normalize(t *testing.T, v any, dir string) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return []byte(strings.ReplaceAll(string(b), dir, "$ADAPTER"))
}

// jsonClose compares two JSON documents: identical structure, strings and
// booleans, numbers within 1e-9 relative (the last bits of a float can
// change with the BLAS path, e.g. under -tags noasm).
func jsonClose(path string, got, want any) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: got %v, want %v", path, got, want)
		}
		for k := range w {
			if err := jsonClose(path+"."+k, g[k], w[k]); err != nil {
				return err
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: got %v, want %v", path, got, want)
		}
		for i := range w {
			if err := jsonClose(fmt.Sprintf("%s[%d]", path, i), g[i], w[i]); err != nil {
				return err
			}
		}
	case float64:
		g, ok := got.(float64)
		if !ok || math.Abs(g-w) > 1e-9*math.Max(1, math.Abs(w)) {
			return fmt.Errorf("%s: got %v, want %v", path, got, want)
		}
	default:
		if got != want {
			return fmt.Errorf("%s: got %v, want %v", path, got, want)
		}
	}
	return nil
}

func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		os.MkdirAll("testdata", 0o755)
		if err := os.WriteFile(p, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantB, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -run Golden -update to create it)", err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(wantB, &w); err != nil {
		t.Fatal(err)
	}
	if err := jsonClose("$", g, w); err != nil {
		t.Errorf("%s: %v", name, err)
	}
}

func TestGolden(t *testing.T) {
	dir := goldenAdapter(t)
	s, err := Summarize(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "inspect.golden.json", normalize(t, s, dir))
	s, err = Summarize(dir, Options{Stats: true, Hashes: true})
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "inspect-stats.golden.json", normalize(t, s, dir))
	d, err := Diff(dir, dir, DiffOptions{Dense: true})
	if err != nil {
		t.Fatal(err)
	}
	checkGolden(t, "diff-self.golden.json", normalize(t, d, dir))
}
