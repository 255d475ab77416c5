package convert

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
)

// LoHa, LoKr and DoRA between PEFT and kohya/LyCORIS.
//
// The LoHa and LoKr tensors have the same names, shapes and meaning in
// both dialects (peft tuners/{loha,lokr}/layer.py and LyCORIS
// modules/{loha,lokr}.py build them alike: hada_w{1,2}_a (out,r) ·
// hada_w{1,2}_b (r,in·∏k) or the CP form hada_t (r,r,k…) with w_a (r,out),
// w_b (r,in); lokr_w1 or lokr_w1_a·lokr_w1_b, lokr_w2 (out_k,in_n[,k…]),
// lokr_w2_a·lokr_w2_b or lokr_t2 with w2_a (r,out_k), w2_b (r,in_n)), so
// their bytes are copied verbatim; only the scale needs care:
//
//   - PEFT scales every LoHa/LoKr module by α/r (config r, alpha and the
//     patterns).
//   - LyCORIS and ComfyUI scale by .alpha / r with r the rank in the shapes
//     (ComfyUI: hada_w1_b rows; lokr_w2_b rows, else lokr_w1_b), but a LoKr
//     module whose w1 and w2 are both whole matrices has scale 1 whatever
//     .alpha holds (LyCORIS forces alpha = lora_dim; ComfyUI has no rank
//     to divide by).
//
// So a PEFT LoKr module with whole w1 and w2 and a scale other than 1 has
// no kohya form as it stands; it is written with w1 split exactly into an
// identity and w1 itself (lokr_w1_a·lokr_w1_b, rank min(out_l, in_m);
// lokr_w2 stays whole, so a conv kernel stays visible) and .alpha =
// s·rank. ToPEFT recognises that identity factor and writes the whole
// lokr_w1 back, so PEFT → kohya → PEFT restores PEFT's own layout.
//
// DoRA: PEFT's magnitude m (lora_magnitude_vector, (out,) or (1,out,1,1)
// for conv) rescales each output row: W' = m·(W+s·BA)/‖W+s·BA‖_row.
// LyCORIS' dora_scale has that meaning only in its wd_on_out layout
// (out,1[,1,1]); its other layout (1,in[,1,1]) — the default of older
// LyCORIS and of early ComfyUI — normalises input columns, which no PEFT
// magnitude can express, so it is refused.

// isLyco reports whether k is LoHa or LoKr.
func isLyco(k adapter.Kind) bool { return k == adapter.KindLoHa || k == adapter.KindLoKr }

// lycoRoles are the LoHa/LoKr tensor roles, in the order they are written.
var lycoRoles = []string{
	"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2",
	"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2",
}

func isLycoRole(r string) bool {
	for _, x := range lycoRoles {
		if x == r {
			return true
		}
	}
	return false
}

// raw returns a tensor's stored bytes (quantized tensors are refused).
func raw(a *adapter.Adapter, t adapter.TensorRef) ([]byte, error) {
	if d, ok := a.Quantized[t.Name]; ok {
		return nil, fmt.Errorf("%s: tensor %q: %w: stored %s (%s layout); run adaptool dequantize first", a.WeightsPath, t.Name, adapter.ErrQuantized, d.Scheme, d.Layout)
	}
	switch t.DType {
	case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
	default:
		return nil, fmt.Errorf("%w: %s: tensor %q: dtype %s is not a float type", ErrRefused, a.WeightsPath, t.Name, t.DType)
	}
	return a.File.Data(t.Name)
}

// checkLyco refuses LoHa/LoKr modules holding tensors other than their
// factors and .alpha (LyCORIS weight decomposition dora_scale is allowed
// only when withDoRA).
func checkLyco(a *adapter.Adapter, m *adapter.Module, to string, withDoRA bool) error {
	for role, t := range m.Tensors {
		switch {
		case isLycoRole(role), role == adapter.RoleAlpha:
		case role == adapter.RoleMagnitude && withDoRA:
		case role == adapter.RoleMagnitude:
			return fmt.Errorf("%w: %s: tensor %q: %s module %q has a LyCORIS weight decomposition (dora_scale); %s has no %s+DoRA form", ErrRefused, a.WeightsPath, t.Name, m.Kind, m.Name, to, m.Kind)
		default:
			return fmt.Errorf("%w: %s: tensor %q: role %s is not part of a %s module", ErrUnmapped, a.WeightsPath, t.Name, role, m.Kind)
		}
	}
	return nil
}

// lokrWhole reports whether a LoKr module has both factors whole.
func lokrWhole(m *adapter.Module) bool {
	_, w1 := m.Tensors["lokr_w1"]
	_, w2 := m.Tensors["lokr_w2"]
	return w1 && w2
}

// lycoRank is the rank the kohya/LyCORIS scale divides by: hada_w1_b rows
// (LoHa), lokr_w2_b rows, else lokr_w1_b rows (LoKr) — ComfyUI's rule
// (comfy/weight_adapter/lokr.py); 0 for a LoKr with both factors whole.
func lycoRank(m *adapter.Module) int {
	for _, r := range []string{"hada_w1_b", "lokr_w2_b", "lokr_w1_b"} {
		if t, ok := m.Tensors[r]; ok && len(t.Shape) > 0 {
			return t.Shape[0]
		}
	}
	return 0
}

// lycoTensors copies m's LoHa/LoKr tensors verbatim as prefix.<role>.
func lycoTensors(a *adapter.Adapter, m *adapter.Module, prefix string) ([]safetensors.Tensor, error) {
	var out []safetensors.Tensor
	for _, role := range lycoRoles {
		t, ok := m.Tensors[role]
		if !ok {
			continue
		}
		b, err := raw(a, t)
		if err != nil {
			return nil, err
		}
		out = append(out, safetensors.Tensor{Name: prefix + "." + role, DType: t.DType, Shape: append([]int(nil), t.Shape...), Data: b})
	}
	return out, nil
}

// identity returns the n×n identity in dtype dt.
func identity(n int, dt safetensors.DType) ([]byte, error) {
	v := make([]float32, n*n)
	for i := 0; i < n; i++ {
		v[i*n+i] = 1
	}
	return encode(v, dt)
}

// splitWholeW1 rewrites a whole lokr_w1 (out_l, in_m) as the exact
// product lokr_w1_a·lokr_w1_b with one identity factor: I (out_l) · w1
// when out_l ≤ in_m, else w1 · I (in_m). It returns the two tensors
// (replacing lokr_w1) and the rank.
func splitWholeW1(a *adapter.Adapter, m *adapter.Module, prefix string) ([]safetensors.Tensor, int, error) {
	t := m.Tensors["lokr_w1"]
	if len(t.Shape) != 2 {
		return nil, 0, fmt.Errorf("%w: %s: tensor %q: lokr_w1 shape %v, want (out_l, in_m)", ErrRefused, a.WeightsPath, t.Name, t.Shape)
	}
	b, err := raw(a, t)
	if err != nil {
		return nil, 0, err
	}
	rows, cols := t.Shape[0], t.Shape[1]
	r := min(rows, cols)
	id, err := identity(r, t.DType)
	if err != nil {
		return nil, 0, err
	}
	wa := safetensors.Tensor{Name: prefix + ".lokr_w1_a", DType: t.DType, Shape: []int{rows, r}, Data: b}
	wb := safetensors.Tensor{Name: prefix + ".lokr_w1_b", DType: t.DType, Shape: []int{r, cols}, Data: b}
	if rows <= cols {
		wa.Data = id
	} else {
		wb.Data = id
	}
	return []safetensors.Tensor{wa, wb}, r, nil
}

// identityW1 reports which factor of a LoKr module's lokr_w1_a·lokr_w1_b
// holds w1 when the other is exactly an identity matrix and lokr_w2 is
// whole (the form splitWholeW1 writes): "lokr_w1_b" or "lokr_w1_a", or ""
// when the module is not of that form.
func identityW1(a *adapter.Adapter, m *adapter.Module) (string, error) {
	ta, okA := m.Tensors["lokr_w1_a"]
	tb, okB := m.Tensors["lokr_w1_b"]
	if _, w2 := m.Tensors["lokr_w2"]; !okA || !okB || !w2 || len(ta.Shape) != 2 || len(tb.Shape) != 2 {
		return "", nil
	}
	isID := func(t adapter.TensorRef) (bool, error) {
		if t.Shape[0] != t.Shape[1] {
			return false, nil
		}
		if _, err := raw(a, t); err != nil {
			return false, err
		}
		v, err := a.File.Float32(t.Name)
		if err != nil {
			return false, err
		}
		n := t.Shape[0]
		for i, x := range v {
			diag := i/n == i%n
			if (diag && x != 1) || (!diag && x != 0) {
				return false, nil
			}
		}
		return true, nil
	}
	for _, c := range []struct {
		id   adapter.TensorRef
		keep string
	}{{ta, "lokr_w1_b"}, {tb, "lokr_w1_a"}} {
		ok, err := isID(c.id)
		if err != nil {
			return "", err
		}
		if ok {
			return c.keep, nil
		}
	}
	return "", nil
}

func product(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// kohyaLyco returns the kohya/LyCORIS tensors of a LoHa or LoKr module
// named kn: its factors, a scalar F32 .alpha reproducing the scale under
// LyCORIS' rules, and a dora_scale copied as it is (kohya sources only).
func kohyaLyco(a *adapter.Adapter, m *module, kn string, res *Result) ([]safetensors.Tensor, float64, int, error) {
	src := m.src
	if err := checkLyco(a, src, ToKohyaName, a.Dialect == adapter.DialectKohya); err != nil {
		return nil, 0, 0, err
	}
	ts, err := lycoTensors(a, src, kn)
	if err != nil {
		return nil, 0, 0, err
	}
	r := lycoRank(src)
	var alpha float64
	switch {
	case src.Kind == adapter.KindLoKr && lokrWhole(src) && src.Scale == 1:
		// LyCORIS: full matrices, scale 1 whatever alpha is (it stores
		// lora_dim); keep the source's alpha, else r, else 1.
		alpha = src.Alpha
		if a32 := float32(alpha); alpha <= 0 || isNaN(alpha) || math.IsInf(float64(a32), 0) {
			// any alpha gives scale 1 here: one float32 holds
			alpha = float64(max(src.Rank, 1))
		}
	case src.Kind == adapter.KindLoKr && lokrWhole(src):
		split, rank, err := splitWholeW1(a, src, kn)
		if err != nil {
			return nil, 0, 0, err
		}
		kept := []safetensors.Tensor{}
		for _, t := range ts {
			if t.Name != kn+".lokr_w1" {
				kept = append(kept, t)
			}
		}
		ts, r = append(split, kept...), rank
		var exact bool
		alpha, exact = alphaFor(src.Scale, r, 0, true)
		res.warn("module %q: LoKr with whole lokr_w1 and lokr_w2 has scale %v, but LyCORIS/ComfyUI use scale 1 for whole factors; lokr_w1 written as the exact product lokr_w1_a·lokr_w1_b (an identity factor, rank %d) with alpha %v", src.Name, src.Scale, r, alpha)
		if !exact {
			res.warn("module %q: scale %v is not alpha/r for any float32 alpha at r=%d; alpha %v changes it by ≤1 ulp", src.Name, src.Scale, r, alpha)
		}
	default:
		if r <= 0 {
			return nil, 0, 0, fmt.Errorf("%w: %s: module %q (%s): no rank in the factor shapes", ErrRefused, a.WeightsPath, src.Name, src.Kind)
		}
		var exact bool
		alpha, exact = alphaFor(src.Scale, r, src.Alpha, true)
		if !exact {
			res.warn("module %q: scale %v is not alpha/r for any float32 alpha at r=%d; alpha %v changes it by ≤1 ulp", src.Name, src.Scale, r, alpha)
		}
	}
	if err := kohyaAlpha(a, src, kn, r, alpha); err != nil {
		return nil, 0, 0, err
	}
	ab, _ := encode([]float32{float32(alpha)}, safetensors.F32)
	ts = append(ts, safetensors.Tensor{Name: kn + ".alpha", DType: safetensors.F32, Shape: []int{}, Data: ab})
	if t, ok := src.Tensors[adapter.RoleMagnitude]; ok {
		b, err := raw(a, t)
		if err != nil {
			return nil, 0, 0, err
		}
		ts = append(ts, safetensors.Tensor{Name: kn + ".dora_scale", DType: t.DType, Shape: append([]int(nil), t.Shape...), Data: b})
	}
	return ts, alpha, r, nil
}

// doraAxisOK checks that a DoRA module's magnitude rescales output rows
// (the only DoRA PEFT has). kohya/LyCORIS dora_scale: (out,1[,1…]) is
// LyCORIS' wd_on_out layout (ComfyUI: dora_scale.shape[0] == out); any
// other shape is the input-column layout (1,in[,1…]) and is refused.
// PEFT: (out,) or (1,out,1…) for conv; MLX .m (out,).
func doraAxisOK(a *adapter.Adapter, m *adapter.Module) error {
	t, ok := m.Tensors[adapter.RoleMagnitude]
	if !ok {
		return nil
	}
	s, out := t.Shape, m.OutFeatures
	switch {
	case len(s) == 1 && s[0] == out:
		return nil
	case len(s) >= 2 && s[0] == out && product(s[1:]) == 1:
		return nil
	case a.Dialect != adapter.DialectKohya && len(s) >= 2 && s[0] == 1 && s[1] == out && product(s[2:]) == 1:
		return nil
	}
	return fmt.Errorf("%w: %s: tensor %q: DoRA magnitude shape %v of module %q (out %d, in %d) normalises input columns (LyCORIS/ComfyUI (1,in[,1…]) layout); PEFT's magnitude, and adaptool's DoRA model, normalise output rows — only a (out,1[,1…]) dora_scale (LyCORIS wd_on_out) converts",
		ErrRefused, a.WeightsPath, t.Name, s, m.Name, out, m.InFeatures)
}

// magnitudeTensor returns a DoRA module's magnitude bytes (verbatim, source
// dtype) under name with the given shape.
func magnitudeTensor(a *adapter.Adapter, m *adapter.Module, name string, shape []int) (safetensors.Tensor, error) {
	t := m.Tensors[adapter.RoleMagnitude]
	b, err := raw(a, t)
	if err != nil {
		return safetensors.Tensor{}, err
	}
	if product(shape) != product(t.Shape) {
		return safetensors.Tensor{}, fmt.Errorf("%w: %s: tensor %q: magnitude shape %v does not hold %d values", ErrRefused, a.WeightsPath, t.Name, t.Shape, product(shape))
	}
	return safetensors.Tensor{Name: name, DType: t.DType, Shape: shape, Data: b}, nil
}

// kohyaDoRAShape is LyCORIS' wd_on_out dora_scale shape: (out, 1[, 1…]).
func kohyaDoRAShape(f *adapter.Factors) []int {
	s := []int{f.Out, 1}
	for range f.Kernel {
		s = append(s, 1)
	}
	return s
}

// peftDoRAShape is PEFT's lora_magnitude_vector shape: (out,), or
// (1, out, 1…) for a conv layer (the keepdim norm, transposed).
func peftDoRAShape(f *adapter.Factors) []int {
	if len(f.Kernel) == 0 {
		return []int{f.Out}
	}
	s := []int{1, f.Out}
	for range f.Kernel {
		s = append(s, 1)
	}
	return s
}

// groupMethod returns the PEFT method of one output directory's modules:
// "LORA" (LoRA, conv, embedding), "DORA" (all DoRA), "LOHA" or "LOKR". A
// PEFT adapter has one method (and use_dora is global), so mixtures are
// refused.
func groupMethod(a *adapter.Adapter, g []*module) (string, error) {
	count := map[string][]string{}
	for _, m := range g {
		k := "LORA"
		switch m.src.Kind {
		case adapter.KindDoRA:
			k = "DORA"
		case adapter.KindLoHa:
			k = "LOHA"
		case adapter.KindLoKr:
			k = "LOKR"
		}
		count[k] = append(count[k], m.src.Name)
	}
	if len(count) == 1 {
		for k := range count {
			return k, nil
		}
	}
	var parts []string
	for _, k := range sortedKeys(count) {
		parts = append(parts, fmt.Sprintf("%s: %s", k, strings.Join(firstN(count[k], 3), ", ")))
	}
	return "", fmt.Errorf("%w: %s: a PEFT adapter holds one method (one peft_type; use_dora is global), the input mixes %s — split it first", ErrRefused, a.WeightsPath, strings.Join(parts, "; "))
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(append([]string(nil), s[:n]...), fmt.Sprintf("… %d more", len(s)-n))
	}
	return s
}

// peftFactorization is peft's lokr factorization(dimension, factor).
func peftFactorization(dimension, factor int) (int, int) {
	if factor > 0 && dimension%factor == 0 {
		return factor, dimension / factor
	}
	if factor == -1 {
		factor = dimension
	}
	m, n := 1, dimension
	length := m + n
	for m < n {
		newM := m + 1
		for dimension%newM != 0 {
			newM++
		}
		newN := dimension / newM
		if newM+newN > length || newM > factor {
			break
		}
		m, n = newM, newN
	}
	if m > n {
		m, n = n, m
	}
	return m, n
}

// lokrDims returns (out_l, in_m, out_k, in_n) of a LoKr module from its
// shapes; in_n includes the kernel for the lokr_w2_a·lokr_w2_b conv form.
func lokrDims(m *adapter.Module) (outL, inM, outK, inN int) {
	if w1, ok := m.Tensors["lokr_w1"]; ok {
		outL, inM = w1.Shape[0], w1.Shape[1]
	} else {
		outL, inM = m.Tensors["lokr_w1_a"].Shape[0], m.Tensors["lokr_w1_b"].Shape[1]
	}
	switch w2, whole := m.Tensors["lokr_w2"]; {
	case whole:
		outK, inN = w2.Shape[0], w2.Shape[1]
	case m.Tensors["lokr_t2"].Name != "":
		outK, inN = m.Tensors["lokr_w2_a"].Shape[1], m.Tensors["lokr_w2_b"].Shape[1]
	default:
		outK, inN = m.Tensors["lokr_w2_a"].Shape[0], product(m.Tensors["lokr_w2_b"].Shape[1:])
	}
	return
}

func ceilHalf(n int) int { return (n + 1) / 2 }

// lycoPEFT writes one PEFT LoHa/LoKr group: tensors under
// base_model.model.<path>.<role> (verbatim) and the config that makes PEFT
// rebuild the same layers with the same scales: per module r (the shape
// rank; for a LoKr with whole factors the smallest r for which PEFT keeps
// both whole) and alpha = s·r exactly, as r/alpha plus anchored
// rank_pattern/alpha_pattern; use_effective_conv2d when a CP form occurs;
// decompose_both when a lokr_w1_a occurs. Forms PEFT's update_layer would
// not build at that r, and factorizations other than PEFT's default, are
// warned about (the ΔW is exact; peft's loader may reject the shapes).
func lycoPEFT(a *adapter.Adapter, method string, g []*module, res *Result) ([]safetensors.Tensor, map[string]any, error) {
	var tensors []safetensors.Tensor
	ranks := make([]int, len(g))
	alphas := make([]float64, len(g))
	w1From := make([]string, len(g)) // the non-identity factor of an identity-split lokr_w1
	cp, decBoth := false, false
	for i, m := range g {
		if err := checkLyco(a, m.src, ToPEFTName, false); err != nil {
			return nil, nil, err
		}
		_, t1 := m.src.Tensors["hada_t1"]
		_, t2 := m.src.Tensors["lokr_t2"]
		_, w1a := m.src.Tensors["lokr_w1_a"]
		if m.src.Kind == adapter.KindLoKr {
			f, err := identityW1(a, m.src)
			if err != nil {
				return nil, nil, err
			}
			w1From[i] = f
		}
		cp = cp || t1 || t2
		decBoth = decBoth || (w1a && w1From[i] == "")
	}
	factor := chooseFactor(g)
	for i, m := range g {
		src := m.src
		r := lycoRank(src)
		if src.Kind == adapter.KindLoKr {
			outL, inM, outK, inN := lokrDims(src)
			if lokrWhole(src) || w1From[i] != "" {
				r = ceilHalf(max(outK, inN))
				if decBoth {
					r = max(r, ceilHalf(max(outL, inM)))
				}
			}
			useW1 := !(decBoth && 2*r < max(outL, inM))
			useW2 := !(2*r < max(outK, inN))
			_, hasW1 := src.Tensors["lokr_w1"]
			_, hasW2 := src.Tensors["lokr_w2"]
			hasW1 = hasW1 || w1From[i] != ""
			if useW1 != hasW1 || useW2 != hasW2 {
				res.warn("module %q: PEFT's LoKr update_layer at r=%d (decompose_both=%v) builds w1 %s / w2 %s, the file has w1 %s / w2 %s: the ΔW is exact but peft may refuse the shapes", src.Name, r, decBoth, form(useW1), form(useW2), form(hasW1), form(hasW2))
			}
			if !factorFits(src, factor) {
				res.warn("module %q: its kron split (out %d·%d, in %d·%d) is not PEFT's factorization(·, decompose_factor=%d), which no single decompose_factor gives for every module; peft may refuse the shapes", src.Name, outL, outK, inM, inN, factor)
			}
		}
		if r <= 0 {
			return nil, nil, fmt.Errorf("%w: %s: module %q (%s): no rank in the factor shapes", ErrRefused, a.WeightsPath, src.Name, src.Kind)
		}
		alpha, exact := alphaFor(src.Scale, r, src.Alpha, false)
		if !exact {
			res.warn("module %q: no alpha reproduces scale %v exactly at r=%d; alpha %v used (≤1 ulp)", src.Name, src.Scale, r, alpha)
		}
		ranks[i], alphas[i] = r, alpha
		prefix := "base_model.model." + m.path
		ts, err := lycoTensors(a, src, prefix)
		if err != nil {
			return nil, nil, err
		}
		if w1From[i] != "" { // write the whole lokr_w1 back (exact: the other factor is I)
			t := src.Tensors[w1From[i]]
			kept := []safetensors.Tensor{}
			for _, x := range ts {
				switch x.Name {
				case prefix + ".lokr_w1_a", prefix + ".lokr_w1_b":
				default:
					kept = append(kept, x)
				}
			}
			b, err := raw(a, t)
			if err != nil {
				return nil, nil, err
			}
			outL, inM, _, _ := lokrDims(src)
			ts = append([]safetensors.Tensor{{Name: prefix + ".lokr_w1", DType: t.DType, Shape: []int{outL, inM}, Data: b}}, kept...)
		}
		tensors = append(tensors, ts...)
	}
	r0, a0 := mostCommon(ranks), mostCommon(alphas)
	rp, ap := newOrdered(), newOrdered()
	targets := map[string]bool{}
	for i, m := range g {
		key := adapter.PatternKey(m.path)
		if ranks[i] != r0 {
			rp.set(key, ranks[i])
		}
		if alphas[i] != a0 {
			ap.set(key, jsonNumber(alphas[i]))
		}
		targets[m.path] = true
	}
	cfg := map[string]any{
		"peft_type": method, "r": r0, "alpha": jsonNumber(a0), "rank_pattern": rp, "alpha_pattern": ap,
		"use_effective_conv2d": cp, "target_modules": sortedKeys(targets), "exclude_modules": nil,
		"rank_dropout": 0.0, "module_dropout": 0.0, "init_weights": true, "layers_to_transform": nil,
		"layers_pattern": nil, "modules_to_save": nil, "inference_mode": true,
	}
	if method == "LOKR" {
		cfg["decompose_both"], cfg["decompose_factor"], cfg["rank_dropout_scale"] = decBoth, factor, false
	}
	for i, m := range g {
		res.Modules = append(res.Modules, Mapping{From: m.src.Name, To: m.path, Kind: string(m.src.Kind), Rank: ranks[i], Scale: m.src.Scale})
	}
	return tensors, cfg, nil
}

func form(whole bool) string {
	if whole {
		return "whole"
	}
	return "decomposed"
}

// unfusable moves LoHa, LoKr and DoRA modules that sd-scripts' Flux layout
// would fuse (to_q/to_k/to_v → qkv, linear1) to unmapped: only plain LoRA
// parts fuse exactly.
func unfusable(mods []*module, unmapped *[]string) []*module {
	var out []*module
	for _, m := range mods {
		if m.comp == CompTransformer && (isLyco(m.src.Kind) || m.src.Kind == adapter.KindDoRA) {
			if _, ok := fluxToBFL(m.path); !ok {
				if _, fused, _, ok := fusedTarget(m.path); ok {
					for _, k := range m.keys() {
						*unmapped = append(*unmapped, fmt.Sprintf("%s (%s module %q would be fused into %s: only plain LoRA parts fuse exactly)", k, m.src.Kind, m.src.Name, fused))
					}
					continue
				}
			}
		}
		out = append(out, m)
	}
	return out
}

// factorFits reports whether PEFT's factorization(·, factor) of a LoKr
// module's out (and in, where the shapes separate it from the kernel:
// whole lokr_w2 or the CP form) gives the module's kron split.
func factorFits(m *adapter.Module, factor int) bool {
	outL, inM, outK, inN := lokrDims(m)
	if l, k := peftFactorization(outL*outK, factor); l != outL || k != outK {
		return false
	}
	_, whole := m.Tensors["lokr_w2"]
	_, cp := m.Tensors["lokr_t2"]
	if whole || cp {
		if l, k := peftFactorization(inM*inN, factor); l != inM || k != inN {
			return false
		}
	}
	return true
}

// chooseFactor returns PEFT's decompose_factor for a group of LoKr
// modules: -1 (the default, LyCORIS' default factor too) when it fits
// every module, else the first w1 dimension that does (LyCORIS trained
// with factor=f puts f there), else -1.
func chooseFactor(g []*module) int {
	var lokr []*adapter.Module
	cands := []int{-1}
	seen := map[int]bool{}
	for _, m := range g {
		if m.src.Kind != adapter.KindLoKr {
			continue
		}
		lokr = append(lokr, m.src)
		outL, inM, _, _ := lokrDims(m.src)
		for _, c := range []int{outL, inM} {
			if c > 1 && !seen[c] {
				seen[c] = true
				cands = append(cands, c)
			}
		}
	}
	sort.Ints(cands[1:])
	for _, f := range cands {
		fits := true
		for _, m := range lokr {
			fits = fits && factorFits(m, f)
		}
		if fits {
			return f
		}
	}
	return -1
}

func isNaN(x float64) bool { return x != x }
