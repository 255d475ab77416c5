package svd

import (
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/adaptool/adaptool/ops/kernels"
	"gonum.org/v1/gonum/mat"
)

// LowRank is a factored delta ΔW = Scale·B·diag(Diag)·A (Out×In): A is
// Rank×In and B is Out×Rank, float32 row-major. Diag is optional (nil means
// all ones): KaSA's lora_diag or AdaLoRA's lora_E. Conv kernels are
// flattened (In = in_channels·k…); the orientation (embeddings,
// fan_in_fan_out) changes no quantity computed here.
type LowRank struct {
	Out, In, Rank int
	A, B          []float32
	Diag          []float64
	Scale         float64
}

// ErrRankTooLarge reports a rank whose r×r Gram matrices would exceed
// MaxGramRank.
var ErrRankTooLarge = errors.New("svd: rank too large for the r×r Gram matrices")

// MaxGramRank bounds the rank analysed through r×r Gram matrices (two
// float64 matrices of 2048² = 32 MiB each), so that a hostile header cannot
// cause an unbounded allocation.
const MaxGramRank = 2048

// Check returns [ErrShape] for negative dimensions or factor lengths that
// disagree with them, and [ErrRankTooLarge] for Rank > MaxGramRank.
func (f *LowRank) Check() error {
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

// rowGram returns X·Yᵀ (rx×ry, float64) for row-major X (rx×n) and Y
// (ry×n): every entry one kernels.Dot (float64 products of float32 values
// are exact, sums in float64).
func rowGram(x []float32, rx int, y []float32, ry int, n int) []float64 {
	g := make([]float64, rx*ry)
	for i := 0; i < rx; i++ {
		for j := 0; j < ry; j++ {
			g[i*ry+j] = kernels.Dot(x[i*n:(i+1)*n], y[j*n:(j+1)*n])
		}
	}
	return g
}

// transposed returns the c×n transpose of the row-major n×c matrix x.
func transposed(x []float32, n, c int) []float32 {
	t := make([]float32, len(x))
	for i := 0; i < n; i++ {
		for j := 0; j < c; j++ {
			t[j*n+i] = x[i*c+j]
		}
	}
	return t
}

// crossGrams returns G_A = D_f·A_f·A_gᵀ·D_g (r_f×r_g) and G_B = B_fᵀ·B_g
// (r_f×r_g), so that ⟨ΔW_f, ΔW_g⟩ = s_f·s_g·Σᵢⱼ G_A,ij·G_B,ij.
func crossGrams(f, g *LowRank) (ga, gb []float64) {
	ga = rowGram(f.A, f.Rank, g.A, g.Rank, f.In)
	bf := transposed(f.B, f.Out, f.Rank)
	bg := bf
	if g != f {
		bg = transposed(g.B, g.Out, g.Rank)
	}
	gb = rowGram(bf, f.Rank, bg, g.Rank, f.Out)
	if f.Diag != nil || g.Diag != nil {
		for i := 0; i < f.Rank; i++ {
			for j := 0; j < g.Rank; j++ {
				if f.Diag != nil {
					ga[i*g.Rank+j] *= f.Diag[i]
				}
				if g.Diag != nil {
					ga[i*g.Rank+j] *= g.Diag[j]
				}
			}
		}
	}
	return ga, gb
}

// Gram holds the r×r Gram matrices of one factored delta: GA = D·A·Aᵀ·D
// and GB = BᵀB, float64 row-major. Every norm of ΔW follows from them in
// O(r²) without forming the Out×In matrix.
type Gram struct {
	Out, In, Rank int
	Scale         float64
	GA, GB        []float64
}

// NewGram computes the Gram matrices of f in O((Out+In)·r²) time and O(r²)
// memory. Errors as [LowRank.Check].
func NewGram(f LowRank) (*Gram, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	ga, gb := crossGrams(&f, &f)
	return &Gram{Out: f.Out, In: f.In, Rank: f.Rank, Scale: f.Scale, GA: ga, GB: gb}, nil
}

// FroNorm returns ‖ΔW‖_F = |s|·√(Σᵢⱼ GA_ij·GB_ij) (a negative sum from
// rounding gives 0).
func (g *Gram) FroNorm() float64 {
	return math.Abs(g.Scale) * sqrtPos(frobDot(g.GA, g.GB))
}

// NormA returns ‖D·A‖_F = √tr GA (the A factor with the diagonal folded in).
func (g *Gram) NormA() float64 { return sqrtPos(trace(g.GA, g.Rank)) }

// NormB returns ‖B‖_F = √tr GB.
func (g *Gram) NormB() float64 { return sqrtPos(trace(g.GB, g.Rank)) }

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

// SingularValues returns the singular values of ΔW, descending, exactly
// min(Rank, Out, In) values (rank(ΔW) cannot exceed that): the square roots
// of the eigenvalues of s²·S·GB·S with S = GA^{1/2} the symmetric square
// root. The Gram route squares the condition number: values below about
// 1e-8·σ₁ are not resolved (use [LowRank.SingularValues] for the QR-core
// route).
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
		return nil, fmt.Errorf("%w: eigen decomposition of the %d×%d core", ErrNoConvergence, r, r)
	}
	ev := es.Values(nil)
	sort.Sort(sort.Reverse(sort.Float64Slice(ev)))
	s2 := g.Scale * g.Scale
	out := make([]float64, k)
	for i := range out {
		out[i] = sqrtPos(ev[i] * s2)
	}
	return out, nil
}

// symSqrt returns the symmetric positive semi-definite square root of the
// r×r matrix g (negative rounding eigenvalues clipped to zero).
func symSqrt(g []float64, r int) ([]float64, error) {
	sym := mat.NewSymDense(r, nil)
	for i := 0; i < r; i++ {
		for j := i; j < r; j++ {
			sym.SetSym(i, j, 0.5*(g[i*r+j]+g[j*r+i]))
		}
	}
	var es mat.EigenSym
	if !es.Factorize(sym, true) {
		return nil, fmt.Errorf("%w: eigen decomposition of the %d×%d Gram matrix", ErrNoConvergence, r, r)
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

// maxStackedElems bounds the float64 stacked factors of the QR-core route
// of [LowRank.SingularValues] (64 Mi elements = 512 MiB).
const maxStackedElems = 1 << 26

// SingularValues returns the singular values of ΔW, descending, exactly
// min(Rank, Out, In) values, by the QR-core SVD of the factors ([Factored]);
// factors too large for its float64 stacking (more than 64 Mi elements), or
// a core that does not converge, go through the r×r Gram route
// ([Gram.SingularValues]). The QR-core route takes Diag as float32 (exact
// for diagonals read from float32 or narrower tensors). Errors as
// [LowRank.Check], and [ErrNonFinite].
func (f LowRank) SingularValues() ([]float64, error) {
	if err := f.Check(); err != nil {
		return nil, err
	}
	k := min(f.Rank, f.Out, f.In)
	if k == 0 {
		return []float64{}, nil
	}
	gramRoute := func() ([]float64, error) {
		g, err := NewGram(f)
		if err != nil {
			return nil, err
		}
		return g.SingularValues()
	}
	if int64(f.Out+f.In)*int64(f.Rank) > maxStackedElems {
		return gramRoute()
	}
	t := Term{B: f.B, A: f.A, Rank: f.Rank, Weight: f.Scale}
	if f.Diag != nil {
		t.Diag = make([]float32, len(f.Diag))
		for i, d := range f.Diag {
			t.Diag[i] = float32(d)
		}
	}
	d, err := Factored(f.Out, f.In, []Term{t})
	if errors.Is(err, ErrNonFinite) {
		return nil, err
	}
	if err != nil {
		return gramRoute()
	}
	v := d.Values()
	for i := range v {
		v[i] = math.Abs(v[i])
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(v)))
	for len(v) < k {
		v = append(v, 0)
	}
	return v[:k], nil
}

// Inner returns the Frobenius inner product ⟨ΔW_f, ΔW_g⟩ = Σᵢⱼ ΔW_f,ij·ΔW_g,ij
// = s_f·s_g·Σᵢⱼ (D_f·A_f·A_gᵀ·D_g)ᵢⱼ·(B_fᵀ·B_g)ᵢⱼ through the r_f×r_g
// cross-Gram matrices: float64, O((Out+In)·r_f·r_g) time, O(r_f·r_g)
// memory. Both deltas must have the same Out×In shape ([ErrShape]).
func (f LowRank) Inner(g LowRank) (float64, error) {
	if err := f.Check(); err != nil {
		return 0, err
	}
	if err := g.Check(); err != nil {
		return 0, err
	}
	if f.Out != g.Out || f.In != g.In {
		return 0, fmt.Errorf("%w: deltas are %d×%d and %d×%d", ErrShape, f.Out, f.In, g.Out, g.In)
	}
	ga, gb := crossGrams(&f, &g)
	return f.Scale * g.Scale * frobDot(ga, gb), nil
}

// Compare returns the cosine ⟨ΔW_f,ΔW_g⟩/(‖ΔW_f‖‖ΔW_g‖) (clamped to
// [−1, 1]), the relative distance ‖ΔW_f−ΔW_g‖_F/‖ΔW_f‖_F and the norm
// ratio ‖ΔW_g‖_F/‖ΔW_f‖_F, all from [LowRank.Inner]. Undefined values (a
// zero norm) are NaN.
func (f LowRank) Compare(g LowRank) (cosine, relDist, normRatio float64, err error) {
	fg, err := f.Inner(g)
	if err != nil {
		return 0, 0, 0, err
	}
	ff, _ := f.Inner(f)
	gg, _ := g.Inner(g)
	cosine, relDist, normRatio = CompareInner(fg, ff, gg)
	return cosine, relDist, normRatio, nil
}

// CompareInner turns the inner products fg = ⟨X,Y⟩, ff = ‖X‖², gg = ‖Y‖²
// into the cosine, the relative distance ‖X−Y‖/‖X‖ and the norm ratio
// ‖Y‖/‖X‖ (NaN where a norm is zero).
func CompareInner(fg, ff, gg float64) (cosine, relDist, normRatio float64) {
	nf, ng := sqrtPos(ff), sqrtPos(gg)
	cosine, relDist, normRatio = math.NaN(), math.NaN(), math.NaN()
	if nf > 0 && ng > 0 {
		cosine = math.Max(-1, math.Min(1, fg/(nf*ng)))
	}
	if nf > 0 {
		relDist = sqrtPos(ff+gg-2*fg) / nf
		normRatio = ng / nf
	}
	return cosine, relDist, normRatio
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
// effective rank of Roy & Vetterli (2007): 0 for an all-zero (or
// non-finite) spectrum, 1 for a rank-one matrix, k for k equal values.
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

// EnergyRank returns the smallest k whose k largest singular values (sv
// descending) hold at least the fraction e of Σσᵢ²:
//
//	total := Σ σᵢ²; cum := 0
//	for i := range sv { cum += σᵢ²; if cum >= e·total { return i+1 } }
//
// e ≤ 0 (or NaN) and an all-zero spectrum give 0; e ≥ 1 gives the index of
// the last value at which cum reaches total. This is the one definition
// of the energy rank ([Decomposition.RankForEnergy] for e < 1 is the same
// loop).
func EnergyRank(sv []float64, e float64) int {
	var total float64
	for _, s := range sv {
		total += s * s
	}
	if !(e > 0) || total == 0 || math.IsNaN(total) {
		return 0
	}
	var cum float64
	for i, s := range sv {
		cum += s * s
		if cum >= e*total {
			return i + 1
		}
	}
	return len(sv)
}
