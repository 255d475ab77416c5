package ops

import (
	"fmt"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
)

// singleOp describes a one-adapter operation for runSingle.
type singleOp struct {
	name   string
	params any
	// dora is why the operation refuses DoRA modules ("" keeps their
	// magnitude vector).
	dora string
	// refuse returns a reason to refuse a low-rank module ("" to accept).
	refuse func(kind adapter.Kind) string
	// plan returns the planned output rank of a low-rank module.
	plan func(m *adapter.Module, out, ink int) int
	// do transforms one module; drop=true removes it from the output.
	do func(name string, l *LowRank) (res *LowRank, mr ModuleReport, drop bool, err error)
	// prepare, when set, runs before do over every low-rank module (for
	// adapter-wide decisions such as module-fraction pruning).
	prepare func(slots []slot, in *inputSet, rep *Report) error
}

// runSingle runs op on the adapter at path: low-rank modules go through
// op.do, modules_to_save pass through, other kinds are refused.
func runSingle(path string, op singleOp, o RunOptions) (*Report, error) {
	dt, err := outDType(o.DType)
	if err != nil {
		return nil, err
	}
	in, err := open([]string{path}, o, !o.DryRun)
	if err != nil {
		return nil, err
	}
	defer in.close()
	a := in.ads[0]
	rep := &Report{Operation: op.name, Params: op.params, Inputs: in.infos, Output: o.Output, DType: dt.String(), DryRun: o.DryRun, Warnings: in.warnings}
	if w := dialectWarning(a); w != "" {
		rep.Warnings = append(rep.Warnings, w)
	}
	slots := union(in.ads)
	kinds := make([]adapter.Kind, len(slots))
	for i, s := range slots {
		m := s.mods[0]
		out, ink := dims(s)
		mr := ModuleReport{Name: s.name, Kind: string(m.Kind), Out: out, In: ink, InputRanks: []int{m.Rank}, Status: "matched"}
		if m.Kind == adapter.KindFull {
			mr.Status = "passthrough"
			for _, t := range m.Tensors {
				mr.Bytes += safetensors.TensorInfo{DType: dt, Shape: t.Shape}.Size()
			}
		} else {
			kind, _, _, reason := lowRankKind(s, op.dora)
			if reason == "" && op.refuse != nil {
				reason = op.refuse(m.Kind)
			}
			if st, why := rank0Status(s); reason == "" && st != "" {
				mr.Status, mr.Reason = st, why
			} else if reason != "" {
				mr.Status, mr.Reason = "refused", reason
			} else {
				mr.Rank = op.plan(m, out, ink)
				extra := 0
				if m.Kind == adapter.KindDoRA {
					extra = out
				}
				mr.Bytes = lowRankBytes(mr.Rank, out, ink, dt, extra)
			}
			kinds[i] = kind
		}
		rep.Modules = append(rep.Modules, mr)
	}
	if err := rep.planned(); err != nil {
		return rep, err
	}
	if err := allRank0(rep); err != nil {
		return rep, err
	}
	if op.prepare != nil {
		if err := op.prepare(slots, in, rep); err != nil {
			return rep, err
		}
	}
	if o.DryRun {
		rep.count()
		return rep, nil
	}
	fifo, err := fanInFanOut(in.ads)
	if err != nil {
		return rep, err
	}
	outMods := make([]*adapter.OutModule, len(slots))
	err = runPool(len(slots), o.Workers, o.Progress, func(i int) error {
		s, mr := slots[i], &rep.Modules[i]
		m := s.mods[0]
		switch mr.Status {
		case "removed":
			return nil
		case "passthrough":
			om := &adapter.OutModule{Name: m.Name, Kind: adapter.KindFull, Full: map[string]adapter.FullTensor{}}
			for role, t := range m.Tensors {
				v, err := a.File.Float32(t.Name)
				if err != nil {
					return err
				}
				om.Full[role] = adapter.FullTensor{Shape: t.Shape, Data: v}
			}
			outMods[i] = om
			return nil
		}
		l, f, err := lowRankOf(a, m)
		if err != nil {
			return err
		}
		res, got, drop, err := op.do(m.Name, l)
		if err != nil {
			return moduleErr(in, s, err)
		}
		if drop {
			mr.Status, mr.Rank, mr.Bytes = "removed", 0, 0
			return nil
		}
		kind := kinds[i]
		if res.Diag != nil && res != l {
			kind = adapter.KindKaSA
		}
		om := &adapter.OutModule{Name: m.Name, Kind: kind, Rank: res.Rank, In: f.In, Out: res.Out,
			Kernel: f.Kernel, Scale: res.Scale, A: res.A, B: res.B, Diag: res.Diag}
		if res == l { // unchanged module: keep KaSA's diagonal as such, fold AdaLoRA's E into A
			om.Diag = f.Diag
			if f.E != nil {
				om.A = l.foldedA()
			}
			if f.Diag != nil {
				om.Kind = adapter.KindKaSA
			}
		}
		if m.Kind == adapter.KindDoRA {
			om.Kind, om.Magnitude = adapter.KindDoRA, f.Magnitude
		}
		extra := 0
		if f.Bias != nil { // lora_B.bias is scaled like B·A
			om.Bias = make([]float32, len(f.Bias))
			for k, v := range f.Bias {
				om.Bias[k] = float32(f.Scale / res.Scale * float64(v))
			}
			extra += len(f.Bias)
		}
		extra += len(om.Diag) + len(om.Magnitude)
		mr.Rank, mr.Stats, mr.Reweight = res.Rank, got.Stats, got.Reweight
		mr.Bytes = lowRankBytes(res.Rank, res.Out, res.In, dt, extra)
		outMods[i] = om
		return nil
	})
	if err != nil {
		return rep, err
	}
	rep.count()
	var mods []adapter.OutModule
	for _, om := range outMods {
		if om != nil {
			mods = append(mods, *om)
		}
	}
	if len(mods) == 0 {
		return rep, fmt.Errorf("%w: %s would remove every module", errNoModules, op.name)
	}
	if err := checkOverflow(mods, dt); err != nil {
		return rep, err
	}
	meta := provenance(op.name, "", op.params, nil, nil, in.infos)
	return rep, write(o, outputConfig(a), fifo, mods, meta)
}
