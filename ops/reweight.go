package ops

import (
	"fmt"
	"math"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/svd"
)

// ReweightParams are the parameters of the KaSA-style offline re-weighting
// (merging notes §12). The zero value re-factors each module into its
// canonical SVD form unchanged.
type ReweightParams struct {
	// Fn is applied to the singular values σ of ΔW.
	Fn svd.Fn `json:"fn"`
	// Layout is the output layout: "" or "lora" for plain LoRA with the √σ
	// split (B′ = U_k·√σ′, A′ = √σ′·V_kᵀ, Scale 1), "kasa" for lora_B = U_k,
	// lora_diag = σ′, lora_A = V_kᵀ, Scale 1.
	Layout string `json:"layout,omitempty"`
}

// Validate checks Fn and Layout.
func (p ReweightParams) Validate() error {
	switch p.Layout {
	case "", "lora", "kasa":
	default:
		return fmt.Errorf("%w: layout %q (want lora or kasa)", ErrParams, p.Layout)
	}
	if err := p.Fn.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrParams, err)
	}
	return nil
}

// ReweightStats reports one module's spectrum before and after.
type ReweightStats struct {
	RankIn  int       `json:"rank_in"`
	RankOut int       `json:"rank_out"`
	NormIn  float64   `json:"norm_in"`  // ‖ΔW‖_F
	NormOut float64   `json:"norm_out"` // ‖ΔW′‖_F = ‖σ′‖₂
	Sigma   []float64 `json:"sigma"`    // σ′ written
}

// Reweight canonicalizes ΔW = s·B·D·A (D = lora_diag, lora_E or I) to its
// exact thin SVD by QR-core — the stored diagonal is not σ unless A and B
// are orthonormal — applies p.Fn to σ and emits the layout of p. Trailing
// zero singular values are dropped (at least one triplet is kept). A
// negative scale:λ multiplies ΔW by λ: σ scales by |λ| and B changes sign.
func Reweight(l *LowRank, p ReweightParams) (*LowRank, ReweightStats, error) {
	if err := p.Validate(); err != nil {
		return nil, ReweightStats{}, err
	}
	d, err := factored([]*LowRank{l}, []float64{1})
	if err != nil {
		return nil, ReweightStats{}, err
	}
	// The numerical rank: singular values at rounding level are not part of ΔW.
	var sig []float64
	if d.Len() > 0 {
		sig = d.Values()[:max(1, d.RankForEnergy(1))]
	}
	sig, err = p.Fn.Apply(sig)
	if err != nil {
		return nil, ReweightStats{}, fmt.Errorf("%w: %v", ErrParams, err)
	}
	k := len(sig)
	for k > 1 && sig[k-1] == 0 {
		k--
	}
	sig = sig[:k]
	st := ReweightStats{RankIn: l.Rank, RankOut: max(k, 1), NormIn: d.Norm(), Sigma: sig}
	for _, s := range sig {
		st.NormOut += s * s
	}
	st.NormOut = math.Sqrt(st.NormOut)
	m, n := d.Dims()
	res := &LowRank{Out: m, In: n, Scale: 1}
	if k == 0 { // zero module: keep one zero triplet
		res.Rank, res.B, res.A = 1, make([]float32, m), make([]float32, n)
		st.Sigma = []float64{0}
		if p.Layout == "kasa" {
			res.Diag = []float32{0}
		}
		return res, st, nil
	}
	res.Rank = k
	if p.Layout == "kasa" {
		res.B, res.A = d.Vectors(k)
		res.Diag = make([]float32, k)
		for i, s := range sig {
			res.Diag[i] = float32(s)
		}
	} else if res.B, res.A, err = d.SplitValues(sig); err != nil {
		return nil, ReweightStats{}, err
	}
	if p.Fn.Op == "scale" && p.Fn.Param < 0 {
		for i := range res.B {
			res.B[i] = -res.B[i]
		}
	}
	return res, st, nil
}

// ReweightAdapter re-weights the spectrum of every low-rank module of the
// adapter at path (KaSA lora_diag and AdaLoRA lora_E folded in before the
// SVD) and writes plain LoRA (√σ split) or the KaSA layout. DoRA modules
// keep their magnitude (lora layout only); modules_to_save pass through;
// other kinds are refused.
func ReweightAdapter(path string, p ReweightParams, o RunOptions) (*Report, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	dora := ""
	if p.Layout == "kasa" {
		dora = "the KaSA layout (lora_B, lora_diag, lora_A) has no magnitude vector, and dropping it changes the module's effect (--layout lora keeps it)"
	}
	return runSingle(path, singleOp{
		name: "reweight", params: p, dora: dora,
		refuse: func(k adapter.Kind) string {
			if p.Layout == "kasa" && (k == adapter.KindLoRAConv || k == adapter.KindLoRAEmbedding) {
				return "the KaSA layout exists for Linear layers only"
			}
			return ""
		},
		plan: func(m *adapter.Module, out, ink int) int {
			k := min(m.Rank, out, ink)
			if p.Fn.Op == "truncate" {
				k = min(k, int(p.Fn.Param))
			}
			return max(1, k)
		},
		do: func(name string, l *LowRank) (*LowRank, ModuleReport, bool, error) {
			res, st, err := Reweight(l, p)
			return res, ModuleReport{Reweight: &st}, false, err
		},
	}, o)
}
