package svd

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Fn is a pure function on a spectrum σ (descending), as defined in the
// project's merging notes §12 "offline re-weighting". Its zero value is the
// identity (scale:1 is written explicitly; Op "" keeps σ unchanged).
type Fn struct {
	// Op is one of "scale", "truncate", "energy", "soft", "shrink", "power",
	// "weights", or "" (identity).
	Op string `json:"op"`
	// Param is λ, K, E, t, β or γ.
	Param float64 `json:"param,omitempty"`
	// Weights are the explicit per-value multipliers of "weights".
	Weights []float64 `json:"weights,omitempty"`
}

// ParseFn parses "scale:λ", "truncate:K", "energy:E", "soft:t", "shrink:β",
// "power:γ" or "weights:w1,w2,…" and validates the parameter.
func ParseFn(s string) (Fn, error) {
	op, arg, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return Fn{}, fmt.Errorf("%w: %q: want OP:PARAM", ErrSpectrumFn, s)
	}
	f := Fn{Op: op}
	if op == "weights" {
		for _, w := range strings.Split(arg, ",") {
			v, err := strconv.ParseFloat(strings.TrimSpace(w), 64)
			if err != nil {
				return Fn{}, fmt.Errorf("%w: %q: %v", ErrSpectrumFn, s, err)
			}
			f.Weights = append(f.Weights, v)
		}
	} else {
		v, err := strconv.ParseFloat(strings.TrimSpace(arg), 64)
		if err != nil {
			return Fn{}, fmt.Errorf("%w: %q: %v", ErrSpectrumFn, s, err)
		}
		f.Param = v
	}
	return f, f.Validate()
}

// String returns the OP:PARAM spelling accepted by [ParseFn].
func (f Fn) String() string {
	if f.Op == "weights" {
		w := make([]string, len(f.Weights))
		for i, v := range f.Weights {
			w[i] = strconv.FormatFloat(v, 'g', -1, 64)
		}
		return "weights:" + strings.Join(w, ",")
	}
	if f.Op == "" {
		return ""
	}
	return f.Op + ":" + strconv.FormatFloat(f.Param, 'g', -1, 64)
}

// Validate checks the parameter range of f:
// scale λ finite; truncate K an integer ≥ 0; energy E in (0, 1];
// soft t ≥ 0; shrink β ≥ 0; power γ > 0; weights finite.
func (f Fn) Validate() error {
	p := f.Param
	bad := math.IsNaN(p) || math.IsInf(p, 0)
	switch f.Op {
	case "":
	case "scale":
	case "truncate":
		bad = bad || p < 0 || p != math.Trunc(p) || p > math.MaxInt32
	case "energy":
		bad = bad || !(p > 0 && p <= 1)
	case "soft", "shrink":
		bad = bad || p < 0
	case "power":
		bad = bad || p <= 0
	case "weights":
		if len(f.Weights) == 0 {
			bad = true
		}
		for _, w := range f.Weights {
			bad = bad || math.IsNaN(w) || math.IsInf(w, 0)
		}
	default:
		return fmt.Errorf("%w: unknown op %q (want scale, truncate, energy, soft, shrink, power or weights)", ErrSpectrumFn, f.Op)
	}
	if bad {
		return fmt.Errorf("%w: %s: parameter out of range", ErrSpectrumFn, f)
	}
	return nil
}

// Apply returns the new spectrum σ′ (a fresh slice, possibly shorter):
//
//	scale:λ     σ′ = |λ|·σ (a negative λ flips the sign of the matrix, which
//	            Apply cannot express on σ; callers negate a factor instead)
//	truncate:K  the first K values
//	energy:E    the first k values, k the smallest with Σ_{i≤k}σᵢ² ≥ E·Σσᵢ²
//	soft:t      max(σ − t, 0)
//	shrink:β    σ/(1+β)
//	power:γ     σ^γ·‖σ‖₂/‖σ^γ‖₂ (Frobenius norm kept)
//	weights:w…  wᵢ·σᵢ (σ beyond the list kept, a negative product is an error)
//
// Trailing zeros are not removed.
func (f Fn) Apply(sigma []float64) ([]float64, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	out := append([]float64(nil), sigma...)
	switch f.Op {
	case "scale":
		for i := range out {
			out[i] *= math.Abs(f.Param)
		}
	case "truncate":
		out = out[:min(len(out), int(f.Param))]
	case "energy":
		d := Decomposition{s: out}
		out = out[:d.RankForEnergy(f.Param)]
	case "soft":
		for i := range out {
			out[i] = math.Max(out[i]-f.Param, 0)
		}
	case "shrink":
		for i := range out {
			out[i] /= 1 + f.Param
		}
	case "power":
		n0 := math.Sqrt(sumSq(out))
		for i := range out {
			out[i] = math.Pow(out[i], f.Param)
		}
		if n1 := math.Sqrt(sumSq(out)); n1 > 0 {
			for i := range out {
				out[i] *= n0 / n1
			}
		}
	case "weights":
		for i := range out {
			if i < len(f.Weights) {
				out[i] *= f.Weights[i]
				if out[i] < 0 {
					return nil, fmt.Errorf("%w: weight %v gives negative σ", ErrSpectrumFn, f.Weights[i])
				}
			}
		}
	}
	return out, nil
}
