package inspect

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/mat"
)

// LowRank is a module delta in factored form, ΔW = Scale·B·diag(Diag)·A, in
// the module's (out,in) frame. A is Rank×In and B is Out×Rank, both float32
// row-major. Diag is optional (nil means all ones); it carries KaSA's
// lora_diag or AdaLoRA's lora_E. Conv kernels are flattened so that In =
// in_channels·k…; embeddings may stay in either orientation since
// transposition changes no statistic computed here.
type LowRank struct {
	Out, In, Rank int
	A, B          []float32
	Diag          []float64
	Scale         float64
}

// ErrShape reports factors whose lengths disagree with their declared shape.
var ErrShape = errors.New("inspect: factor shape mismatch")

// ErrRankTooLarge reports a rank whose r×r Gram matrices would exceed the
// memory bound (MaxGramRank).
var ErrRankTooLarge = errors.New("inspect: rank too large for the r×r Gram matrices")

// MaxGramRank bounds the rank analysed through r×r Gram matrices (two
// float64 matrices of 2048² = 32 MiB each); higher-rank modules get no
// spectrum instead of an unbounded allocation.
const MaxGramRank = 2048

func (f *LowRank) check() error {
	if f.Out < 0 || f.In < 0 || f.Rank < 0 {
		return fmt.Errorf("%w: negative dimension (out %d, in %d, rank %d)", ErrShape, f.Out, f.In, f.Rank)
	}
	if len(f.A) != f.Rank*f.In {
		return fmt.Errorf("%w: A has %d values, want rank %d × in %d", ErrShape, len(f.A), f.Rank, f.In)
	}
	if len(f.B) != f.Out*f.Rank {
		return fmt.Errorf("%w: B has %d values, want out %d × rank %d", ErrShape, len(f.B), f.Out, f.Rank)
	}
	if f.Diag != nil && len(f.Diag) != f.Rank {
		return fmt.Errorf("%w: diag has %d values, want rank %d", ErrShape, len(f.Diag), f.Rank)
	}
	if f.Rank > MaxGramRank {
		return fmt.Errorf("%w: rank %d > %d", ErrRankTooLarge, f.Rank, MaxGramRank)
	}
	return nil
}

// gramRows returns X·Yᵀ (rx×ry) for row-major X (rx×n) and Y (ry×n), in float64.
func gramRows(x []float32, rx int, y []float32, ry int, n int) []float64 {
	g := make([]float64, rx*ry)
	for i := 0; i < rx; i++ {
		xi := x[i*n : (i+1)*n]
		for j := 0; j < ry; j++ {
			yj := y[j*n : (j+1)*n]
			var s0, s1, s2, s3 float64
			k := 0
			for ; k+4 <= n; k += 4 {
				s0 += float64(xi[k]) * float64(yj[k])
				s1 += float64(xi[k+1]) * float64(yj[k+1])
				s2 += float64(xi[k+2]) * float64(yj[k+2])
				s3 += float64(xi[k+3]) * float64(yj[k+3])
			}
			for ; k < n; k++ {
				s0 += float64(xi[k]) * float64(yj[k])
			}
			g[i*ry+j] = (s0 + s1) + (s2 + s3)
		}
	}
	return g
}

// gramCols returns Xᵀ·Y (cx×cy) for row-major X (n×cx) and Y (n×cy), in float64.
func gramCols(x []float32, cx int, y []float32, cy int, n int) []float64 {
	g := make([]float64, cx*cy)
	for o := 0; o < n; o++ {
		xo := x[o*cx : (o+1)*cx]
		yo := y[o*cy : (o+1)*cy]
		for i, xv := range xo {
			if xv == 0 {
				continue
			}
			row := g[i*cy : (i+1)*cy]
			xf := float64(xv)
			for j, yv := range yo {
				row[j] += xf * float64(yv)
			}
		}
	}
	return g
}

// diagScale returns D1·G·D2 for an r1×r2 matrix G (nil diagonals mean ones).
func diagScale(g []float64, r1, r2 int, d1, d2 []float64) []float64 {
	if d1 == nil && d2 == nil {
		return g
	}
	out := make([]float64, len(g))
	for i := 0; i < r1; i++ {
		for j := 0; j < r2; j++ {
			v := g[i*r2+j]
			if d1 != nil {
				v *= d1[i]
			}
			if d2 != nil {
				v *= d2[j]
			}
			out[i*r2+j] = v
		}
	}
	return out
}

// Gram holds the r×r Gram matrices of one factored delta.
type Gram struct {
	Rank  int
	Scale float64
	GA    []float64 // D·A·Aᵀ·D (r×r)
	GB    []float64 // Bᵀ·B (r×r)
	Out   int
	In    int
}

// NewGram computes the Gram matrices of f in O((out+in)·r²) time.
func NewGram(f LowRank) (*Gram, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	ga := diagScale(gramRows(f.A, f.Rank, f.A, f.Rank, f.In), f.Rank, f.Rank, f.Diag, f.Diag)
	gb := gramCols(f.B, f.Rank, f.B, f.Rank, f.Out)
	return &Gram{Rank: f.Rank, Scale: f.Scale, GA: ga, GB: gb, Out: f.Out, In: f.In}, nil
}

// FroNorm returns ‖ΔW‖_F = |s|·sqrt(Σᵢⱼ G_A,ij·G_B,ij).
func (g *Gram) FroNorm() float64 {
	return math.Abs(g.Scale) * math.Sqrt(math.Max(0, frobDot(g.GA, g.GB)))
}

// NormA returns ‖D·A‖_F (the Frobenius norm of the A factor, diag folded in).
func (g *Gram) NormA() float64 { return math.Sqrt(math.Max(0, trace(g.GA, g.Rank))) }

// NormB returns ‖B‖_F.
func (g *Gram) NormB() float64 { return math.Sqrt(math.Max(0, trace(g.GB, g.Rank))) }

func frobDot(x, y []float64) float64 {
	var s float64
	for i := range x {
		s += x[i] * y[i]
	}
	return s
}

func trace(g []float64, r int) float64 {
	var s float64
	for i := 0; i < r; i++ {
		s += g[i*r+i]
	}
	return s
}

// SingularValues returns the singular values of ΔW in descending order; at
// most min(rank, out, in) values are returned since rank(ΔW) cannot exceed that.
// They are the square roots of the eigenvalues of s²·S·G_B·S with S = G_A^{1/2}.
func (g *Gram) SingularValues() ([]float64, error) {
	r := g.Rank
	k := min(r, g.Out, g.In)
	if k == 0 {
		return []float64{}, nil
	}
	sq, err := symSqrt(g.GA, r)
	if err != nil {
		return nil, err
	}
	// M = S·G_B·S
	S := mat.NewDense(r, r, sq)
	GB := mat.NewDense(r, r, append([]float64(nil), g.GB...))
	var t, m mat.Dense
	t.Mul(S, GB)
	m.Mul(&t, S)
	sym := mat.NewSymDense(r, nil)
	for i := 0; i < r; i++ {
		for j := i; j < r; j++ {
			sym.SetSym(i, j, 0.5*(m.At(i, j)+m.At(j, i)))
		}
	}
	var es mat.EigenSym
	if !es.Factorize(sym, false) {
		return nil, fmt.Errorf("inspect: eigen decomposition of the %d×%d core did not converge", r, r)
	}
	ev := es.Values(nil)
	sort.Sort(sort.Reverse(sort.Float64Slice(ev)))
	s2 := g.Scale * g.Scale
	out := make([]float64, k)
	for i := 0; i < k; i++ {
		out[i] = math.Sqrt(math.Max(0, ev[i]*s2))
	}
	return out, nil
}

// symSqrt returns the symmetric positive semi-definite square root of the r×r
// matrix g (negative rounding eigenvalues are clipped to zero).
func symSqrt(g []float64, r int) ([]float64, error) {
	sym := mat.NewSymDense(r, nil)
	for i := 0; i < r; i++ {
		for j := i; j < r; j++ {
			sym.SetSym(i, j, 0.5*(g[i*r+j]+g[j*r+i]))
		}
	}
	var es mat.EigenSym
	if !es.Factorize(sym, true) {
		return nil, fmt.Errorf("inspect: eigen decomposition of the %d×%d Gram matrix did not converge", r, r)
	}
	vals := es.Values(nil)
	var v mat.Dense
	es.VectorsTo(&v)
	out := make([]float64, r*r)
	for k, l := range vals {
		if l <= 0 {
			continue
		}
		sl := math.Sqrt(l)
		for i := 0; i < r; i++ {
			vik := v.At(i, k) * sl
			if vik == 0 {
				continue
			}
			for j := 0; j < r; j++ {
				out[i*r+j] += vik * v.At(j, k)
			}
		}
	}
	return out, nil
}

// Inner returns ⟨ΔW_f, ΔW_g⟩ (the Frobenius inner product) computed from the
// factors through the r_f×r_g cross-Gram matrices. Both deltas must have the
// same (out,in) shape.
func Inner(f, g LowRank) (float64, error) {
	if err := f.check(); err != nil {
		return 0, err
	}
	if err := g.check(); err != nil {
		return 0, err
	}
	if f.Out != g.Out || f.In != g.In {
		return 0, fmt.Errorf("%w: deltas are %d×%d and %d×%d", ErrShape, f.Out, f.In, g.Out, g.In)
	}
	ga := diagScale(gramRows(f.A, f.Rank, g.A, g.Rank, f.In), f.Rank, g.Rank, f.Diag, g.Diag)
	gb := gramCols(f.B, f.Rank, g.B, g.Rank, f.Out)
	return f.Scale * g.Scale * frobDot(ga, gb), nil
}

// Spectrum summarizes the singular values of one delta.
type Spectrum struct {
	FroNorm        float64   `json:"delta_fro_norm"`
	SingularValues []float64 `json:"singular_values"`
	EffectiveRank  float64   `json:"effective_rank"`
	StableRank     float64   `json:"stable_rank"`
	Rank90         int       `json:"rank_energy_90"`
	Rank99         int       `json:"rank_energy_99"`
}

// NewSpectrum derives the spectrum statistics from singular values sorted
// in descending order and the Frobenius norm.
func NewSpectrum(sv []float64, fro float64) Spectrum {
	return Spectrum{
		FroNorm:        fro,
		SingularValues: sv,
		EffectiveRank:  EffectiveRank(sv),
		StableRank:     StableRank(sv, fro),
		Rank90:         EnergyRank(sv, 0.90),
		Rank99:         EnergyRank(sv, 0.99),
	}
}

// EffectiveRank returns exp(H(p)) with pᵢ = σᵢ/Σσⱼ, the entropy-based
// effective rank of Roy & Vetterli (2007). It is 0 for an all-zero spectrum,
// 1 for a rank-one matrix and k for k equal singular values.
func EffectiveRank(sv []float64) float64 {
	var sum float64
	for _, s := range sv {
		if s > 0 {
			sum += s
		}
	}
	if sum == 0 || math.IsNaN(sum) || math.IsInf(sum, 0) {
		return 0
	}
	var h float64
	for _, s := range sv {
		if s > 0 {
			p := s / sum
			h -= p * math.Log(p)
		}
	}
	return math.Exp(h)
}

// StableRank returns ‖ΔW‖_F²/σ₁² (0 when σ₁ = 0).
func StableRank(sv []float64, fro float64) float64 {
	if len(sv) == 0 || sv[0] == 0 {
		return 0
	}
	return fro * fro / (sv[0] * sv[0])
}

// EnergyRank returns the smallest k such that the k largest singular values
// hold at least the fraction e of Σσᵢ² (0 for an all-zero spectrum).
func EnergyRank(sv []float64, e float64) int {
	var total float64
	for _, s := range sv {
		total += s * s
	}
	if total == 0 || math.IsNaN(total) {
		return 0
	}
	var acc float64
	for i, s := range sv {
		acc += s * s
		// a tiny relative slack keeps exact boundaries (e.g. 9 equal values
		// out of 10 at e = 0.9) from flipping on the last rounding bit
		if acc >= e*total*(1-1e-12) {
			return i + 1
		}
	}
	return len(sv)
}

// Compare returns the cosine of ΔW_f and ΔW_g, their relative distance
// ‖ΔW_f−ΔW_g‖_F/‖ΔW_f‖_F and the norm ratio ‖ΔW_g‖_F/‖ΔW_f‖_F, all exact from
// the factors. Undefined values (a zero norm) are NaN.
func Compare(f, g LowRank) (cosine, relDist, normRatio float64, err error) {
	fg, err := Inner(f, g)
	if err != nil {
		return 0, 0, 0, err
	}
	ff, _ := Inner(f, f)
	gg, _ := Inner(g, g)
	nf, ng := math.Sqrt(math.Max(ff, 0)), math.Sqrt(math.Max(gg, 0))
	cosine, relDist, normRatio = math.NaN(), math.NaN(), math.NaN()
	if nf > 0 && ng > 0 {
		cosine = math.Max(-1, math.Min(1, fg/(nf*ng)))
	}
	if nf > 0 {
		relDist = math.Sqrt(math.Max(0, ff+gg-2*fg)) / nf
		normRatio = ng / nf
	}
	return cosine, relDist, normRatio, nil
}
