package ops

import (
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/svd"
)

// r0Tensor is an F32 tensor of the given shape holding 0.1·(i+1)·sign.
func r0Tensor(name string, sign float32, shape ...int) safetensors.Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	b := make([]byte, 4*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(sign*0.1*float32(i%7+1)))
	}
	return safetensors.Tensor{Name: name, DType: safetensors.F32, Shape: shape, Data: b}
}

// r0Adapter writes a PEFT LoRA directory (r 2, alpha 4) whose modules have
// the given ranks (q_proj 8×8, v_proj 4×8); dora adds magnitude vectors.
func r0Adapter(t *testing.T, name string, rq, rv int, dora bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const p = "base_model.model.model.layers.0.self_attn."
	ts := []safetensors.Tensor{
		r0Tensor(p+"q_proj.lora_A.weight", 1, rq, 8), r0Tensor(p+"q_proj.lora_B.weight", -1, 8, rq),
		r0Tensor(p+"v_proj.lora_A.weight", 1, rv, 8), r0Tensor(p+"v_proj.lora_B.weight", 1, 4, rv),
	}
	cfg := `{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"], "rank_pattern": {"q_proj": ` +
		map[bool]string{true: "0", false: "2"}[rq == 0] + `}`
	if dora {
		ts = append(ts, r0Tensor(p+"q_proj.lora_magnitude_vector", 1, 8), r0Tensor(p+"v_proj.lora_magnitude_vector", 1, 4))
		cfg += `, "use_dora": true`
	}
	if err := safetensors.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), ts, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(cfg+"}"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Rank-0 modules mean ΔW = 0: a merge takes them as absent, every
// operation that writes a PEFT LoRA leaves them out with status "removed"
// (PEFT refuses r = 0; a module left out is the same no-op), an adapter
// of rank-0 modules only is refused (nothing to write) even in a dry run,
// and a rank-0 DoRA module, whose magnitude still rescales the base, is
// refused by name.
func TestRankZeroModules(t *testing.T) {
	mixed := r0Adapter(t, "mixed", 0, 2, false) // q_proj rank 0, v_proj rank 2
	other := r0Adapter(t, "other", 2, 2, false)
	zero := r0Adapter(t, "zero", 0, 0, false)
	dora := r0Adapter(t, "dora", 2, 0, true)
	fn, err := svd.ParseFn("scale:2")
	if err != nil {
		t.Fatal(err)
	}
	type run func(out string, dry bool) (*Report, error)
	merge := func(method string, paths ...string) run {
		return func(out string, dry bool) (*Report, error) {
			return Merge(paths, MergeParams{Method: method}, RunOptions{Output: out, DryRun: dry})
		}
	}
	resize := func(path string) run {
		return func(out string, dry bool) (*Report, error) {
			return ResizeAdapter(path, RankParams{Rank: 1}, RunOptions{Output: out, DryRun: dry})
		}
	}
	reweight := func(path string) run {
		return func(out string, dry bool) (*Report, error) {
			return ReweightAdapter(path, ReweightParams{Fn: fn}, RunOptions{Output: out, DryRun: dry})
		}
	}
	prune := func(path string) run {
		return func(out string, dry bool) (*Report, error) {
			return PruneAdapter(path, PruneParams{Rule: "top", Value: 1}, RunOptions{Output: out, DryRun: dry})
		}
	}
	tests := []struct {
		name    string
		run     run
		status  map[string]string // module → status
		ranks   map[string]int    // written module → rank (absent: not written)
		errText string            // "" = success
	}{
		{"merge-svd-self", merge("svd", mixed, mixed), map[string]string{"q_proj": "removed", "v_proj": "matched"}, map[string]int{"v_proj": 2}, ""},
		{"merge-svd-other", merge("svd", mixed, other), map[string]string{"q_proj": "partial", "v_proj": "matched"}, map[string]int{"q_proj": 2, "v_proj": 2}, ""},
		{"merge-cat-other", merge("cat", mixed, other), map[string]string{"q_proj": "partial", "v_proj": "matched"}, map[string]int{"q_proj": 2, "v_proj": 4}, ""},
		{"merge-linear-other", merge("linear", mixed, other), map[string]string{"q_proj": "partial", "v_proj": "matched"}, map[string]int{"q_proj": 2, "v_proj": 2}, ""},
		{"merge-ties-self", merge("ties", mixed, mixed), map[string]string{"q_proj": "removed", "v_proj": "matched"}, map[string]int{"v_proj": 2}, ""},
		{"resize", resize(mixed), map[string]string{"q_proj": "removed", "v_proj": "matched"}, map[string]int{"v_proj": 1}, ""},
		{"reweight", reweight(mixed), map[string]string{"q_proj": "removed", "v_proj": "matched"}, map[string]int{"v_proj": 2}, ""},
		{"prune", prune(mixed), map[string]string{"q_proj": "removed", "v_proj": "matched"}, map[string]int{"v_proj": 1}, ""},
		{"merge-all-zero", merge("svd", zero, zero), nil, nil, "every module has rank 0"},
		{"resize-all-zero", resize(zero), nil, nil, "every module has rank 0"},
		{"resize-dora", resize(dora), map[string]string{"v_proj": "refused"}, nil, "rank-0 DoRA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, dry := range []bool{true, false} {
				out := filepath.Join(t.TempDir(), "out")
				rep, err := tt.run(out, dry)
				if tt.errText != "" {
					if err == nil || !strings.Contains(err.Error(), tt.errText) {
						t.Fatalf("dry %v: err %v, want %q", dry, err, tt.errText)
					}
					if tt.errText == "every module has rank 0" && !errors.Is(err, errNoModules) {
						t.Errorf("err %v is not errNoModules", err)
					}
					if _, serr := os.Stat(out); serr == nil {
						t.Errorf("output written despite the error")
					}
				} else if err != nil {
					t.Fatalf("dry %v: %v", dry, err)
				}
				if rep != nil {
					for _, m := range rep.Modules {
						short := m.Name[strings.LastIndex(m.Name, ".")+1:]
						if want, ok := tt.status[short]; ok && m.Status != want {
							t.Errorf("dry %v: %s status %q (%s), want %q", dry, short, m.Status, m.Reason, want)
						}
					}
				}
				if dry || tt.errText != "" {
					continue
				}
				a, err := adapter.Load(out)
				if err != nil {
					t.Fatal(err)
				}
				got := map[string]int{}
				for _, m := range a.Modules {
					got[m.Name[strings.LastIndex(m.Name, ".")+1:]] = m.Rank
				}
				a.Close()
				if len(got) != len(tt.ranks) {
					t.Errorf("written modules %v, want %v", got, tt.ranks)
				}
				for k, r := range tt.ranks {
					if got[k] != r {
						t.Errorf("written modules %v, want %v", got, tt.ranks)
					}
				}
			}
		})
	}
}
