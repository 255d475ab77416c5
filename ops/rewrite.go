package ops

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/atomicfile"
	prov "github.com/adaptool/adaptool/internal/provenance"
)

// ScaleParams is the parameter of scale (and of neg, λ = −1).
type ScaleParams struct {
	// By is λ: LoRA deltas become λ·ΔW (B multiplied by λ, lora_B.bias
	// too); full-size deltas (diff, diff_b) are multiplied by λ; IA3
	// vectors become 1 + λ·(l − 1).
	By float64 `json:"by"`
	// KeepFull passes modules_to_save (whole-module replacements) through
	// unchanged instead of refusing the adapter.
	KeepFull bool `json:"keep_full,omitempty"`
}

// NegateAdapter writes −ΔW of the adapter at path: B (and lora_B.bias)
// negated, IA3 vectors 2 − l; keepFull passes modules_to_save through
// unchanged. See ScaleAdapter.
func NegateAdapter(path string, keepFull bool, o RunOptions) (*Report, error) {
	return rewrite(path, "neg", ScaleParams{By: -1, KeepFull: keepFull}, o)
}

// ScaleAdapter writes λ·ΔW of the adapter at path by rewriting only the B
// tensors (and lora_B.bias, diff and diff_b, and IA3 vectors as
// 1 + λ(l − 1)) in their own
// dtype and layout: the dialect, key names, every other tensor's bytes and
// the config are kept, so neg is exact in every dtype and scale rounds only
// the rewritten tensors. DoRA (the magnitude is normalised against the
// base), modules_to_save, LoHa/LoKr/VeRA and prompt modules are refused.
//
// The output is a directory holding the input's weights file name (and a
// copy of its config) unless o.Output ends in ".safetensors", which writes
// that file alone.
func ScaleAdapter(path string, p ScaleParams, o RunOptions) (*Report, error) {
	return rewrite(path, "scale", p, o)
}

func rewrite(path, op string, p ScaleParams, o RunOptions) (*Report, error) {
	if math.IsNaN(p.By) || math.IsInf(p.By, 0) {
		return nil, fmt.Errorf("%w: scale factor %v", ErrParams, p.By)
	}
	// The input is hashed for provenance while the output is written (see
	// below), not before, so the hash costs no serial pass over the file.
	in, err := open([]string{path}, o, false)
	if err != nil {
		return nil, err
	}
	defer in.close()
	a := in.ads[0]
	rep := &Report{Operation: op, Params: p, Inputs: in.infos, Output: o.Output, DryRun: o.DryRun, DType: "as input", Warnings: in.warnings}
	// tensor name → how to rewrite it: 'b' multiply by λ, 'i' IA3.
	how := map[string]byte{}
	for _, m := range a.Modules {
		mr := ModuleReport{Name: m.Name, Kind: string(m.Kind), Status: "matched", Rank: m.Rank, Out: m.OutFeatures, In: m.InFeatures, InputRanks: []int{m.Rank}}
		for _, t := range m.Tensors {
			if ti, ok := a.File.Tensor(t.Name); ok {
				mr.Bytes += ti.Size()
			}
		}
		switch m.Kind {
		case adapter.KindLoRA, adapter.KindLoRAEmbedding, adapter.KindLoRAConv, adapter.KindAdaLoRA, adapter.KindKaSA:
			b, ok := m.Tensors[adapter.RoleB]
			if !ok {
				mr.Status, mr.Reason = "refused", "no lora_B tensor"
				break
			}
			how[b.Name] = 'b'
			if t, ok := m.Tensors[adapter.RoleLoRABias]; ok {
				how[t.Name] = 'b'
			}
		case adapter.KindDiff:
			for _, r := range []string{adapter.RoleDiff, adapter.RoleDiffBias} {
				if t, ok := m.Tensors[r]; ok {
					how[t.Name] = 'b'
				}
			}
		case adapter.KindIA3:
			how[m.Tensors[adapter.RoleIA3].Name] = 'i'
		case adapter.KindDoRA:
			mr.Status, mr.Reason = "refused", "DoRA: the magnitude vector is normalised against the base weight, so scaling B does not scale the module's effect"
		case adapter.KindFull:
			if p.KeepFull {
				mr.Status = "passthrough"
			} else {
				mr.Status, mr.Reason = "refused", "modules_to_save replaces the whole module; a replacement cannot be scaled or negated (--keep-full passes it through unchanged)"
			}
		default:
			mr.Status, mr.Reason = "refused", fmt.Sprintf("module kind %s is not supported by %s", m.Kind, op)
		}
		rep.Modules = append(rep.Modules, mr)
	}
	f := a.File
	for _, t := range f.Tensors {
		if how[t.Name] != 0 && !t.DType.IsFloat() {
			return rep, fmt.Errorf("%w: %s: tensor %q has dtype %s; only float tensors can be scaled", ErrUnsupported, a.WeightsPath, t.Name, t.DType)
		}
	}
	rep.count()
	rep.Bytes = 0
	for _, t := range f.Tensors {
		rep.Bytes += t.Size() // every tensor is written, rewritten or copied
	}
	if err := rep.refusedError(); err != nil {
		return rep, err
	}
	if len(how) == 0 {
		return rep, errNoModules
	}
	target, cfgDst, err := rewriteTargets(a, o.Output)
	if err != nil {
		return rep, err
	}
	rep.Output = target
	if o.DryRun {
		return rep, nil
	}
	tensors := make([]safetensors.Tensor, 0, len(f.Tensors))
	for _, t := range f.Tensors {
		st := safetensors.Tensor{Name: t.Name, DType: t.DType, Shape: t.Shape}
		if h := how[t.Name]; h == 'b' {
			raw, err := f.Data(t.Name)
			if err != nil {
				return rep, err
			}
			st.WriteTo = scaledWriter(raw, t, p.By, a.WeightsPath)
		} else if h == 'i' {
			v, err := f.Float32(t.Name)
			if err != nil {
				return rep, err
			}
			buf := make([]byte, t.Size())
			if err := safetensors.FromFloat32(buf, ScaleIA3(v, p.By), t.DType); err != nil {
				return rep, fmt.Errorf("%s: tensor %q: %w", a.WeightsPath, t.Name, err)
			}
			st.Data = buf
		} else {
			// Copied unchanged (inside the kernel when the files allow).
			ct, err := f.CopyTensor(t.Name)
			if err != nil {
				return rep, err
			}
			st = ct
		}
		tensors = append(tensors, st)
	}
	meta := map[string]string{}
	for k, v := range a.Metadata {
		if !strings.HasPrefix(k, "adaptool.") {
			meta[k] = v
		}
	}
	hash := prov.HashAsync(a.WeightsPath)
	defer hash.Cancel()
	marker := prov.Placeholder()
	in.infos[0].SHA256 = marker
	for k, v := range provenance(op, "", p, nil, nil, in.infos) {
		meta[k] = v
	}
	if cfgDst != "" || filepath.Dir(target) != "." {
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return rep, err
		}
	}
	var sum string
	err = safetensors.WriteFile(target, tensors, meta, safetensors.WithDeferredValue(marker, func() (string, error) {
		var err error
		sum, err = hash.Wait()
		if err != nil {
			return "", fmt.Errorf("%s: hashing the input for provenance: %w", a.WeightsPath, err)
		}
		return sum, nil
	}))
	if err != nil {
		return rep, err
	}
	in.infos[0].SHA256 = sum
	if cfgDst != "" {
		data, err := os.ReadFile(a.ConfigPath)
		if err != nil {
			return rep, err
		}
		if err := atomicfile.WriteBytes(cfgDst, data); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// scaleChunk is how many elements scaledWriter converts at a time.
const scaleChunk = 1 << 18

// scaledWriter streams λ·x for the float tensor t whose stored bytes are
// raw, converting scaleChunk elements at a time, so scaling a file never
// holds more than one chunk of any tensor in memory.
func scaledWriter(raw []byte, t safetensors.TensorInfo, lambda float64, file string) func(io.Writer) error {
	return func(w io.Writer) error {
		es := t.DType.Bits() / 8
		n := len(raw) / es
		out := make([]byte, min(n, scaleChunk)*es)
		src, srcOK := safetensors.AsFloat32(raw)
		dst, dstOK := safetensors.AsFloat32(out)
		if t.DType == safetensors.F32 && srcOK && dstOK {
			// Little-endian F32: scaled straight from the mapping into the
			// output buffer, with no conversion copies.
			for off := 0; off < n; off += scaleChunk {
				k := min(scaleChunk, n-off)
				scaleTo(dst[:k], lambda, src[off:off+k])
				if _, err := w.Write(out[:k*es]); err != nil {
					return err
				}
			}
			return nil
		}
		if t.DType == safetensors.F64 {
			// F64 is scaled in float64 and rounded once: through float32 it
			// would lose 29 bits of every value.
			for off := 0; off < n; off += scaleChunk {
				k := min(scaleChunk, n-off)
				o := out[:k*es]
				for i := 0; i < k; i++ {
					x := math.Float64frombits(binary.LittleEndian.Uint64(raw[(off+i)*8:]))
					binary.LittleEndian.PutUint64(o[i*8:], math.Float64bits(lambda*x))
				}
				if _, err := w.Write(o); err != nil {
					return err
				}
			}
			return nil
		}
		vals := make([]float32, min(n, scaleChunk))
		for off := 0; off < n; off += scaleChunk {
			k := min(scaleChunk, n-off)
			v, o := vals[:k], out[:k*es]
			if err := safetensors.ToFloat32(v, raw[off*es:(off+k)*es], t.DType); err != nil {
				return fmt.Errorf("%s: tensor %q: %w", file, t.Name, err)
			}
			scaleTo(v, lambda, v)
			if err := safetensors.FromFloat32(o, v, t.DType); err != nil {
				return fmt.Errorf("%s: tensor %q: %w", file, t.Name, err)
			}
			if _, err := w.Write(o); err != nil {
				return err
			}
		}
		return nil
	}
}

// rewriteTargets returns the weights file and config file (or "") to write.
func rewriteTargets(a *adapter.Adapter, out string) (weights, config string, err error) {
	if out == "" {
		return "", "", fmt.Errorf("%w: no output path", ErrParams)
	}
	if strings.HasSuffix(out, ".safetensors") {
		return out, "", nil
	}
	weights = filepath.Join(out, filepath.Base(a.WeightsPath))
	if a.ConfigPath != "" {
		config = filepath.Join(out, filepath.Base(a.ConfigPath))
	}
	return weights, config, nil
}
