package ops

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/atomicfile"
)

// allIA3 reports whether every module of every input is an (IA)³ vector.
func allIA3(ads []*adapter.Adapter) bool {
	for _, a := range ads {
		if len(a.Modules) == 0 {
			return false
		}
		for _, m := range a.Modules {
			if m.Kind != adapter.KindIA3 {
				return false
			}
		}
	}
	return true
}

// mergeIA3 merges (IA)³ adapters in l − 1 space (merging notes §11): the
// hidden change of a vector l is l − 1, so the additive methods (svd, cat,
// task_arithmetic, linear) give l′ = 1 + Σ wᵢ·(lᵢ − 1), and the elementwise
// methods (ties, dare_*, magnitude_prune) run PEFT's merge_utils on the
// tensors lᵢ − 1 (absent modules count as l = 1). With PEFTCompat the
// tensors are the lᵢ themselves (PEFT's additive ia3_l = Σ wᵢ·lᵢ). The
// output is a PEFT IA3 directory whose target_modules and
// feedforward_modules list the full module names.
func mergeIA3(p MergeParams, o RunOptions, in *inputSet, rep *Report) (*Report, error) {
	dt, err := outDType(o.DType)
	if err != nil {
		return nil, err
	}
	slots := union(in.ads)
	for _, s := range slots {
		first := s.mods[firstPresent(s)]
		mr := ModuleReport{Name: s.name, Kind: string(adapter.KindIA3), Status: "matched", InputRanks: make([]int, len(s.mods)), Out: first.OutFeatures, In: first.InFeatures}
		t0 := first.Tensors[adapter.RoleIA3]
		for i, m := range s.mods {
			if m == nil {
				mr.Status = "partial"
				continue
			}
			t := m.Tensors[adapter.RoleIA3]
			if !slices.Equal(t.Shape, t0.Shape) || m.Feedforward != first.Feedforward {
				mr.Status, mr.Reason = "refused", fmt.Sprintf("IA3 vectors differ between inputs (shape %v feedforward %v vs %v %v in input %d)", t0.Shape, first.Feedforward, t.Shape, m.Feedforward, i+1)
				break
			}
		}
		if mr.Status != "refused" {
			mr.Bytes = safetensors.TensorInfo{DType: dt, Shape: t0.Shape}.Size()
		}
		rep.Modules = append(rep.Modules, mr)
	}
	rep.count()
	if err := rep.refusedError(); err != nil {
		return rep, err
	}
	if o.DryRun {
		return rep, nil
	}
	base := strings.TrimSuffix(p.method(), "_svd")
	switch base {
	case "svd", "cat", "linear":
		base = "task_arithmetic"
	}
	w := p.weights(len(in.ads))
	var tensors []safetensors.Tensor
	var targets, ff []string
	for i, s := range slots {
		ts := make([][]float32, len(s.mods))
		var shape []int
		for j, m := range s.mods {
			if m == nil {
				continue
			}
			t := m.Tensors[adapter.RoleIA3]
			v, err := in.ads[j].File.Float32(t.Name)
			if err != nil {
				return rep, err
			}
			for k, x := range v {
				if x-x != 0 {
					return rep, fmt.Errorf("%w: %s: tensor %s: %v at index %d", ErrNonFinite, in.ads[j].WeightsPath, t.Name, x, k)
				}
				if !p.PEFTCompat {
					v[k] = x - 1
				}
			}
			ts[j], shape = v, t.Shape
		}
		res, err := elementwise(base, ts, w, p.ElementwiseParams, seedKey(s.name, "ia3_l"))
		if err != nil {
			return rep, moduleErr(in, s, err)
		}
		if !p.PEFTCompat {
			for k := range res {
				res[k]++
			}
		}
		buf := make([]byte, safetensors.TensorInfo{DType: dt, Shape: shape}.Size())
		if err := safetensors.FromFloat32(buf, res, dt); err != nil {
			return rep, err
		}
		tensors = append(tensors, safetensors.Tensor{Name: "base_model.model." + s.name + ".ia3_l", DType: dt, Shape: shape, Data: buf})
		targets = append(targets, s.name)
		if s.mods[firstPresent(s)].Feedforward {
			ff = append(ff, s.name)
		}
		if o.Progress != nil {
			o.Progress(i+1, len(slots))
		}
	}
	cfg := map[string]any{}
	if c := in.ads[0].Config; c != nil && !c.IsMLX() {
		for k, v := range c.Raw {
			cfg[k] = v
		}
	}
	cfg["peft_type"] = "IA3"
	cfg["target_modules"] = targets
	if ff == nil {
		ff = []string{}
	}
	cfg["feedforward_modules"] = ff
	cfg["inference_mode"] = true
	cfgBytes, err := adapter.MarshalPython(cfg)
	if err != nil {
		return rep, err
	}
	var seed *uint64
	if strings.HasPrefix(base, "dare") {
		seed = &p.Seed
	}
	if o.Output == "" {
		return rep, fmt.Errorf("%w: no output directory", ErrParams)
	}
	if err := os.MkdirAll(o.Output, 0o755); err != nil {
		return rep, err
	}
	meta := provenance("merge", p.Method, p, w, seed, in.infos)
	meta["format"] = "pt"
	if err := safetensors.WriteFile(filepath.Join(o.Output, adapter.PEFTWeightsFile), tensors, meta); err != nil {
		return rep, err
	}
	return rep, atomicfile.WriteBytes(filepath.Join(o.Output, adapter.ConfigFile), cfgBytes)
}
