package quant

import (
	"math"
	"strings"

	"github.com/adaptool/adaptool/ops/kernels"
)

// Stats is the error of one quantized tensor against its source.
type Stats struct {
	RMSE        float64 `json:"rmse"`          // √(Σ(x−y)²/n)
	MaxAbsError float64 `json:"max_abs_error"` // max |x−y|
	// SNRdB is 10·log10(Σx²/Σ(x−y)²); +Inf (reported as null in JSON by
	// the caller) when the round trip is exact.
	SNRdB float64 `json:"snr_db"`
}

// ErrorStats compares the source x with its round trip y (same length),
// accumulating in float64.
func ErrorStats(x, y []float32) Stats {
	if len(x) != len(y) {
		panic("quant: ErrorStats length mismatch")
	}
	var se, maxe float64
	for i, v := range x {
		d := float64(v) - float64(y[i])
		se += d * d
		maxe = max(maxe, math.Abs(d))
	}
	sx := kernels.SumSquares(x)
	s := Stats{MaxAbsError: maxe}
	if len(x) > 0 {
		s.RMSE = math.Sqrt(se / float64(len(x)))
	}
	switch {
	case se == 0:
		s.SNRdB = math.Inf(1)
	case sx == 0:
		s.SNRdB = math.Inf(-1)
	default:
		s.SNRdB = 10 * math.Log10(sx/se)
	}
	return s
}

// LoRAError is the effect of quantizing a LoRA pair on its product
// ΔW = s·B·A (the scale s cancels in relative errors).
type LoRAError struct {
	Module string `json:"module"`
	A      string `json:"a"`
	B      string `json:"b"`
	Rank   int    `json:"rank"`
	// RelErrorA is ‖B(A′−A)‖/‖BA‖ (only A quantized), RelErrorB is
	// ‖(B′−B)A‖/‖BA‖, RelError is ‖B′A′−BA‖/‖BA‖ (both), all Frobenius.
	RelErrorA float64 `json:"rel_error_a_only"`
	RelErrorB float64 `json:"rel_error_b_only"`
	RelError  float64 `json:"rel_error"`
	// RelErrorFactorA/B are the factors' own relative errors ‖A′−A‖/‖A‖.
	RelErrorFactorA float64 `json:"rel_error_factor_a"`
	RelErrorFactorB float64 `json:"rel_error_factor_b"`
	// Worse names the factor whose quantization hurts ΔW more: "A" or "B".
	Worse string `json:"worse_factor"`
}

// gramRows returns M·Mᵀ (k×k, float64) of a k×n row-major matrix, each
// entry a kernels.Dot of two rows.
func gramRows(m []float32, k, n int) []float64 {
	g := make([]float64, k*k)
	for a := 0; a < k; a++ {
		for b := a; b < k; b++ {
			v := kernels.Dot(m[a*n:(a+1)*n], m[b*n:(b+1)*n])
			g[a*k+b], g[b*k+a] = v, v
		}
	}
	return g
}

// transpose returns the n×k transpose of a k×n row-major matrix.
func transpose(m []float32, k, n int) []float32 {
	t := make([]float32, len(m))
	for i := 0; i < k; i++ {
		for j := 0; j < n; j++ {
			t[j*k+i] = m[i*n+j]
		}
	}
	return t
}

// traceProd is tr(X·Y) = Σ X_ij·Y_ji of two k×k matrices.
func traceProd(x, y []float64, k int) float64 {
	var s float64
	for i := 0; i < k; i++ {
		for j := 0; j < k; j++ {
			s += x[i*k+j] * y[j*k+i]
		}
	}
	return s
}

// LoRAProductError computes the relative errors of ΔW ∝ B·A when A (r×in)
// and B (out×r) are replaced by Aq and Bq, from r×r and 2r×2r Gram
// matrices: ‖L·R‖² = tr((LᵀL)(RRᵀ)), so the dense out×in product is never
// formed (cost O((in+out)·r²)).
func LoRAProductError(a, aq, b, bq []float32, r, in, out int) LoRAError {
	// R-side Grams (rows of A), L-side Grams (columns of B = rows of Bᵀ).
	bt, bqt := transpose(b, out, r), transpose(bq, out, r)
	ga := gramRows(a, r, in)
	gb := gramRows(bt, r, out)
	da := make([]float32, len(a))
	for i := range a {
		da[i] = aq[i] - a[i]
	}
	dbt := make([]float32, len(bt))
	for i := range bt {
		dbt[i] = bqt[i] - bt[i]
	}
	ref := traceProd(gb, ga, r)
	eA := traceProd(gb, gramRows(da, r, in), r)
	eB := traceProd(gramRows(dbt, r, out), ga, r)
	// Both: B′A′ − BA = [B′ −B]·[A′; A].
	stackR := append(append([]float32{}, aq...), a...)
	negBt := make([]float32, len(bt))
	for i, v := range bt {
		negBt[i] = -v
	}
	stackL := append(append([]float32{}, bqt...), negBt...)
	eBoth := traceProd(gramRows(stackL, 2*r, out), gramRows(stackR, 2*r, in), 2*r)
	rel := func(e float64) float64 {
		if ref <= 0 {
			if e <= 0 {
				return 0
			}
			return math.Inf(1)
		}
		return math.Sqrt(max(e, 0) / ref)
	}
	le := LoRAError{Rank: r, RelErrorA: rel(eA), RelErrorB: rel(eB), RelError: rel(eBoth)}
	le.RelErrorFactorA = relNorm(a, aq)
	le.RelErrorFactorB = relNorm(b, bq)
	le.Worse = "A"
	if le.RelErrorB > le.RelErrorA {
		le.Worse = "B"
	}
	return le
}

func relNorm(x, y []float32) float64 {
	var se float64
	for i := range x {
		d := float64(x[i]) - float64(y[i])
		se += d * d
	}
	sx := kernels.SumSquares(x)
	if sx == 0 {
		return 0
	}
	return math.Sqrt(se / sx)
}

// loraPair is a LoRA factor pair found by name.
type loraPair struct {
	module, a, b string
	// mlx: a is in×r and b is r×out (ΔWᵀ = a·b); else a is r×in, b out×r.
	mlx bool
}

// loraPairs pairs LoRA factor tensors by their names: PEFT "X.lora_A[.name].weight"
// with "X.lora_B…", kohya "X.lora_down.weight" with "X.lora_up.weight", MLX
// "X.lora_a" with "X.lora_b".
func loraPairs(names []string) []loraPair {
	set := map[string]bool{}
	for _, n := range names {
		set[n] = true
	}
	var out []loraPair
	for _, n := range names {
		for _, pat := range []struct{ a, b string }{{".lora_A.", ".lora_B."}, {".lora_down.", ".lora_up."}} {
			if i := strings.LastIndex(n, pat.a); i >= 0 {
				bn := n[:i] + pat.b + n[i+len(pat.a):]
				if set[bn] {
					out = append(out, loraPair{module: n[:i], a: n, b: bn})
				}
			}
		}
		if m, ok := strings.CutSuffix(n, ".lora_a"); ok && set[m+".lora_b"] {
			out = append(out, loraPair{module: m, a: n, b: m + ".lora_b", mlx: true})
		}
	}
	return out
}
