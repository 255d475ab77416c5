package adapter

import (
	"fmt"
	"strings"
)

// Shapes of the PEFT LoHa / LoKr / VeRA tensors (adapter-formats.md §5,
// peft tuners/{loha,lokr,vera}/layer.py):
//
//	LoHa plain:  hada_w{1,2}_a (out, r), hada_w{1,2}_b (r, in)        — conv without
//	             use_effective_conv2d: hada_w*_b (r, in·∏k)
//	LoHa CP:     hada_t{1,2} (r, r, k…), hada_w{1,2}_a (r, out), hada_w{1,2}_b (r, in)
//	LoKr w1:     lokr_w1 (out_l, in_m)  or  lokr_w1_a (out_l, r), lokr_w1_b (r, in_m)
//	LoKr w2:     lokr_w2 (out_k, in_n[, k…])  or  lokr_w2_a (out_k, r), lokr_w2_b (r, in_n[·∏k])
//	             or CP: lokr_t2 (r, r, k…), lokr_w2_a (r, out_k), lokr_w2_b (r, in_n)
//	             out = out_l·out_k, in = in_m·in_n
//	VeRA:        vera_lambda_b (out,), vera_lambda_d (r,); shared base_model.vera_A
//	             (r, max_in), base_model.vera_B (max_out, r)

// lohaDims fills Rank, InFeatures, OutFeatures and Kernel of a LoHa module.
func lohaDims(m *Module) {
	w1a, w1b := m.tensorRef("hada_w1_a"), m.tensorRef("hada_w1_b")
	if t1, cp := m.tensor("hada_t1"); cp { // effective conv: w1_a (r,out), w1_b (r,in)
		m.Rank, m.OutFeatures, m.InFeatures = dim(w1a.Shape, 0), dim(w1a.Shape, 1), dim(w1b.Shape, 1)
		if len(t1.Shape) > 2 {
			m.Kernel = append([]int(nil), t1.Shape[2:]...)
		}
		return
	}
	// w1_a (out,r), w1_b (r,in): a conv without use_effective_conv2d has
	// w1_b (r, in·kh·kw), so InFeatures is that product and the kernel is
	// not recorded (the shapes do not separate it).
	m.Rank, m.OutFeatures, m.InFeatures = dim(w1a.Shape, 1), dim(w1a.Shape, 0), dim(w1b.Shape, 1)
	if len(w1b.Shape) > 2 {
		m.Kernel = append([]int(nil), w1b.Shape[2:]...)
	}
}

// lokrDims fills Rank (0 when both factors are whole matrices: the shapes
// then hold no rank), InFeatures, OutFeatures and Kernel of a LoKr module.
func lokrDims(m *Module) {
	var outL, inM int
	if w1, ok := m.tensor("lokr_w1"); ok {
		outL, inM = dim(w1.Shape, 0), dim(w1.Shape, 1)
	} else {
		outL, inM = dim(m.tensorRef("lokr_w1_a").Shape, 0), dim(m.tensorRef("lokr_w1_b").Shape, 1)
	}
	var outK, inN int
	w2a, w2b := m.tensorRef("lokr_w2_a"), m.tensorRef("lokr_w2_b")
	t2, cp := m.tensor("lokr_t2")
	switch w2, whole := m.tensor("lokr_w2"); {
	case whole: // (out_k, in_n[, k…])
		outK, inN = dim(w2.Shape, 0), dim(w2.Shape, 1)
		if len(w2.Shape) > 2 {
			m.Kernel = append([]int(nil), w2.Shape[2:]...)
		}
	case cp: // t2 (r,r,k…), w2_a (r,out_k), w2_b (r,in_n)
		outK, inN = dim(w2a.Shape, 1), dim(w2b.Shape, 1)
		if len(t2.Shape) > 2 {
			m.Kernel = append([]int(nil), t2.Shape[2:]...)
		}
	default: // w2_a (out_k,r), w2_b (r, in_n[·∏k]) — kernel not separable
		outK, inN = dim(w2a.Shape, 0), dim(w2b.Shape, 1)
		for _, k := range w2b.Shape[min(2, len(w2b.Shape)):] {
			inN *= k
		}
	}
	m.OutFeatures, m.InFeatures = outL*outK, inM*inN
	switch {
	case hasRole(m, "lokr_w1_a"):
		m.Rank = dim(m.tensorRef("lokr_w1_a").Shape, 1)
	case cp:
		m.Rank = dim(t2.Shape, 0)
	case hasRole(m, "lokr_w2_a"):
		m.Rank = dim(w2a.Shape, 1)
	}
}

// lokrShapeRank reports whether a LoKr module's shapes show its rank (some
// factor is decomposed).
func lokrShapeRank(m *Module) bool {
	return hasRole(m, "lokr_w1_a") || hasRole(m, "lokr_w2_a") || hasRole(m, "lokr_t2")
}

// veraDims fills Rank and OutFeatures of a VeRA module from its own
// vectors; InFeatures is set later by veraIn.
func veraDims(m *Module) {
	m.OutFeatures = dim(m.tensorRef("vera_lambda_b").Shape, 0)
	m.Rank = dim(m.tensorRef("vera_lambda_d").Shape, 0)
}

// veraIn sets InFeatures of the VeRA modules where the file determines it.
// PEFT sizes the shared vera_A (r, max_in) / vera_B (max_out, r) by the
// largest in and out over all targeted layers and slices A[:, :in] per
// layer, so in is known only when one module is adapted (in = max_in, and
// its out must then be max_out). Otherwise in is not in the file: it stays 0
// with a warning, and the base weight must supply it.
func (cl *classification) veraIn() {
	var vera []*Module
	for _, m := range cl.modules {
		if m.Kind == KindVeRA {
			vera = append(vera, m)
		}
	}
	if len(vera) == 0 {
		return
	}
	va, okA := cl.shared["vera_A"]
	vb, okB := cl.shared["vera_B"]
	if len(vera) == 1 && okA && okB && len(va.Shape) == 2 && len(vb.Shape) == 2 && dim(vb.Shape, 0) == vera[0].OutFeatures {
		vera[0].InFeatures = va.Shape[1]
		return
	}
	if !okA || !okB {
		return // Validate reports the missing projections
	}
	names := make([]string, 0, 3)
	for _, m := range vera {
		names = append(names, m.Name)
	}
	cl.warnings = append(cl.warnings, fmt.Sprintf("VeRA: in_features of %d modules (%s) is not recorded in the adapter: the shared vera_A %v is sliced A[:, :in] per layer and only the largest in is stored; InFeatures is 0 — take it from the base weight",
		len(vera), strings.Join(firstN(names, 3), ", "), va.Shape))
}
