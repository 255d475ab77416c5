package ops

import (
	"fmt"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/ops/kernels"
	"gonum.org/v1/gonum/mat"
)

// Dense deltas of the adapter kinds without a B·A form (LoHa, LoKr, VeRA),
// built in float64 in the module's logical (out, in·∏k) frame from the raw
// tensors (adapter-formats.md §5):
//
//	LoHa: ΔW = s·(W1a·W1b) ⊙ (W2a·W2b); with hada_t1/hada_t2 (CP form) each
//	      factor is Σ_ab t[a,b,k…]·wa[a,o]·wb[b,n] reshaped (out, in·∏k)
//	LoKr: ΔW = s·kron(W1, W2), W1 = lokr_w1 or lokr_w1_a·lokr_w1_b, W2 =
//	      lokr_w2 or lokr_w2_a·lokr_w2_b or the CP form with lokr_t2, each
//	      viewed as a matrix (rows, ∏ rest)
//	VeRA: ΔW = diag(λ_b)·vera_B[:out,:]·diag(λ_d)·vera_A[:,:in] (shared
//	      projections; refused when the file does not hold them)

// denseFactor is one matrix factor read from adapter tensors.
type denseFactor struct {
	rows, cols int
	v          []float64 // nil when only the shape was asked for
}

// tensorMat reads tensor ref as a rows × (∏ rest) matrix.
func tensorMat(a *adapter.Adapter, ref adapter.TensorRef, read bool) (denseFactor, error) {
	if len(ref.Shape) < 2 {
		return denseFactor{}, fmt.Errorf("%w: %s: tensor %s has shape %v, want a matrix", ErrIncompatible, a.WeightsPath, ref.Name, ref.Shape)
	}
	f := denseFactor{rows: ref.Shape[0], cols: prodShape(ref.Shape[1:])}
	if !read {
		return f, nil
	}
	v, err := a.File.Float32(ref.Name)
	if err != nil {
		return f, err
	}
	if len(v) != f.rows*f.cols {
		return f, fmt.Errorf("%w: %s: tensor %s has %d values for shape %v", ErrIncompatible, a.WeightsPath, ref.Name, len(v), ref.Shape)
	}
	f.v = make([]float64, len(v))
	for i, x := range v {
		f.v[i] = float64(x)
	}
	return f, nil
}

// matmul64 returns the (m×n) product of x (m×k) and y (k×n).
func matmul64(x, y []float64, m, k, n int) []float64 {
	out := make([]float64, m*n)
	for i := 0; i < m; i++ {
		row := out[i*n : (i+1)*n]
		for p := 0; p < k; p++ {
			c := x[i*k+p]
			if c == 0 {
				continue
			}
			for j, yv := range y[p*n : (p+1)*n] {
				row[j] += c * yv
			}
		}
	}
	return out
}

// factorOf builds one LoHa/LoKr factor: the whole tensor `whole` when
// present, else the CP form t·wa·wb when tensor `t` is present (t (r1,r2,k…),
// wa (r1,out), wb (r2,in) → (out, in·∏k)), else wa·wb with wa (out,r) and
// wb (r, in[,k…]).
func factorOf(a *adapter.Adapter, m *adapter.Module, whole, wa, wb, t string, read bool) (denseFactor, error) {
	if whole != "" {
		if ref, ok := m.Tensors[whole]; ok {
			return tensorMat(a, ref, read)
		}
	}
	ra, okA := m.Tensors[wa]
	rb, okB := m.Tensors[wb]
	if !okA || !okB {
		return denseFactor{}, fmt.Errorf("%w: %s: module %s lacks %s or %s", ErrIncompatible, a.WeightsPath, m.Name, wa, wb)
	}
	fa, err := tensorMat(a, ra, read)
	if err != nil {
		return fa, err
	}
	fb, err := tensorMat(a, rb, read)
	if err != nil {
		return fb, err
	}
	if rt, ok := m.Tensors[t]; ok && t != "" {
		if len(rt.Shape) < 2 || rt.Shape[0] != fa.rows || rt.Shape[1] != fb.rows || len(ra.Shape) != 2 || len(rb.Shape) != 2 {
			return denseFactor{}, fmt.Errorf("%w: %s: CP core %s has shape %v, with %s %v and %s %v (want (r1, r2, k…), (r1, out), (r2, in))",
				ErrIncompatible, a.WeightsPath, rt.Name, rt.Shape, ra.Name, ra.Shape, rb.Name, rb.Shape)
		}
		r1, r2, out, in := fa.rows, fb.rows, fa.cols, fb.cols
		k := prodShape(rt.Shape[2:])
		f := denseFactor{rows: out, cols: in * k}
		if !read {
			return f, nil
		}
		ft, err := tensorMat(a, rt, true)
		if err != nil {
			return f, err
		}
		// f[o, n·k+t] = Σ_ab core[a,b,t]·wa[a,o]·wb[b,n]
		f.v = make([]float64, out*in*k)
		for p := 0; p < r1; p++ {
			for q := 0; q < r2; q++ {
				core := ft.v[(p*r2+q)*k : (p*r2+q+1)*k]
				for o := 0; o < out; o++ {
					ao := fa.v[p*out+o]
					if ao == 0 {
						continue
					}
					for n := 0; n < in; n++ {
						c := ao * fb.v[q*in+n]
						dst := f.v[o*in*k+n*k : o*in*k+(n+1)*k]
						for t, cv := range core {
							dst[t] += c * cv
						}
					}
				}
			}
		}
		return f, nil
	}
	if fa.cols != fb.rows || len(ra.Shape) != 2 {
		return denseFactor{}, fmt.Errorf("%w: %s: %s %v and %s %v do not multiply", ErrIncompatible, a.WeightsPath, ra.Name, ra.Shape, rb.Name, rb.Shape)
	}
	f := denseFactor{rows: fa.rows, cols: fb.cols}
	if read {
		f.v = matmul64(fa.v, fb.v, fa.rows, fa.cols, fb.cols)
	}
	return f, nil
}

// denseDelta returns m's ΔW (times the module's scale, without λ) as a
// rows×cols float64 matrix; with read false only the dimensions are checked
// (v is nil).
func denseDelta(a *adapter.Adapter, m *adapter.Module, rows, cols int, read bool) ([]float64, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: module %s (%s): %s", ErrIncompatible, a.WeightsPath, m.Name, m.Kind, fmt.Sprintf(format, args...))
	}
	switch m.Kind {
	case adapter.KindLoHa:
		f1, err := factorOf(a, m, "", "hada_w1_a", "hada_w1_b", "hada_t1", read)
		if err != nil {
			return nil, err
		}
		f2, err := factorOf(a, m, "", "hada_w2_a", "hada_w2_b", "hada_t2", read)
		if err != nil {
			return nil, err
		}
		if f1.rows != rows || f1.cols != cols || f2.rows != rows || f2.cols != cols {
			return nil, bad("factors are %d×%d and %d×%d, the base weight %d×%d", f1.rows, f1.cols, f2.rows, f2.cols, rows, cols)
		}
		if !read {
			return nil, nil
		}
		for i := range f1.v {
			f1.v[i] *= f2.v[i] * m.Scale
		}
		return f1.v, nil
	case adapter.KindLoKr:
		f1, err := factorOf(a, m, "lokr_w1", "lokr_w1_a", "lokr_w1_b", "", read)
		if err != nil {
			return nil, err
		}
		f2, err := factorOf(a, m, "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2", read)
		if err != nil {
			return nil, err
		}
		if f1.rows*f2.rows != rows || f1.cols*f2.cols != cols {
			return nil, bad("kron of %d×%d and %d×%d is not the base weight's %d×%d", f1.rows, f1.cols, f2.rows, f2.cols, rows, cols)
		}
		if !read {
			return nil, nil
		}
		scale, err := lokrScale(a, m)
		if err != nil {
			return nil, err
		}
		d := make([]float64, rows*cols)
		for i := 0; i < f1.rows; i++ {
			for j := 0; j < f1.cols; j++ {
				c := f1.v[i*f1.cols+j] * scale
				for k := 0; k < f2.rows; k++ {
					dst := d[(i*f2.rows+k)*cols+j*f2.cols : (i*f2.rows+k)*cols+(j+1)*f2.cols]
					for l, w := range f2.v[k*f2.cols : (k+1)*f2.cols] {
						dst[l] = c * w
					}
				}
			}
		}
		return d, nil
	case adapter.KindVeRA:
		ra, okA := a.Shared["vera_A"]
		rb, okB := a.Shared["vera_B"]
		if !okA || !okB {
			return nil, bad("the shared projections base_model.vera_A/vera_B are not in the file (saved with save_projection=False); they come from torch's random generator and cannot be reproduced")
		}
		lb, okb := m.Tensors["vera_lambda_b"]
		ld, okd := m.Tensors["vera_lambda_d"]
		if !okb || !okd {
			return nil, bad("vera_lambda_b or vera_lambda_d missing")
		}
		fa, err := tensorMat(a, ra, read)
		if err != nil {
			return nil, err
		}
		fb, err := tensorMat(a, rb, read)
		if err != nil {
			return nil, err
		}
		r := fa.rows
		if fb.cols != r || prodShape(ld.Shape) != r || prodShape(lb.Shape) != rows {
			return nil, bad("vera_A %v, vera_B %v, lambda_d %v, lambda_b %v do not fit rank %d and %d outputs", ra.Shape, rb.Shape, ld.Shape, lb.Shape, r, rows)
		}
		if fa.cols < cols || fb.rows < rows {
			return nil, bad("shared projections vera_A %v / vera_B %v are smaller than the base weight %d×%d", ra.Shape, rb.Shape, rows, cols)
		}
		if !read {
			return nil, nil
		}
		vb, err := a.File.Float32(lb.Name)
		if err != nil {
			return nil, err
		}
		vd, err := a.File.Float32(ld.Name)
		if err != nil {
			return nil, err
		}
		// ΔW[o,i] = λb[o]·Σ_k B[o,k]·λd[k]·A[k,i] for i < cols.
		d := make([]float64, rows*cols)
		for o := 0; o < rows; o++ {
			row := d[o*cols : (o+1)*cols]
			for k := 0; k < r; k++ {
				c := float64(vb[o]) * fb.v[o*r+k] * float64(vd[k]) * m.Scale
				if c == 0 {
					continue
				}
				for i, x := range fa.v[k*fa.cols : k*fa.cols+cols] {
					row[i] += c * x
				}
			}
		}
		return d, nil
	}
	return nil, bad("no dense delta for this kind")
}

// lokrScale returns the LoKr module's scale alpha/r. When both factors are
// whole matrices (no _a/_b pair) the file does not show the rank and the
// adapter model leaves Scale at 0; PEFT still scales by the config's
// alpha/r, so it is taken from the config.
func lokrScale(a *adapter.Adapter, m *adapter.Module) (float64, error) {
	if m.Rank > 0 || a.Config == nil {
		return m.Scale, nil
	}
	_, _, s, err := a.Config.ModuleScale(m.Name, adapter.PatternsModern)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: module %s: %v", ErrIncompatible, a.WeightsPath, m.Name, err)
	}
	return s, nil
}

// lohaDelta32 returns (W1a·W1b) ⊙ (W2a·W2b) (without the scale) in
// float32 by the RankUpdate kernel, for the plain (non-CP) LoHa form; ok is
// false for the CP form (use denseDelta).
func lohaDelta32(a *adapter.Adapter, m *adapter.Module, rows, cols int) (d []float32, ok bool, err error) {
	if _, cp := m.Tensors["hada_t1"]; cp {
		return nil, false, nil
	}
	if _, cp := m.Tensors["hada_t2"]; cp {
		return nil, false, nil
	}
	if _, err := denseDelta(a, m, rows, cols, false); err != nil {
		return nil, false, err
	}
	product := func(wa, wb string) ([]float32, error) {
		ra, rb := m.Tensors[wa], m.Tensors[wb]
		x, err := a.File.Float32(ra.Name)
		if err != nil {
			return nil, err
		}
		y, err := a.File.Float32(rb.Name)
		if err != nil {
			return nil, err
		}
		r := ra.Shape[1]
		if len(x) != rows*r || len(y) != r*cols {
			return nil, fmt.Errorf("%w: %s: %s/%s have %d/%d values for %d×%d and %d×%d", ErrIncompatible, a.WeightsPath, ra.Name, rb.Name, len(x), len(y), rows, r, r, cols)
		}
		p := make([]float32, rows*cols)
		kernels.RankUpdate(p, rows, cols, 1, x, y, r)
		return p, nil
	}
	p1, err := product("hada_w1_a", "hada_w1_b")
	if err != nil {
		return nil, false, err
	}
	p2, err := product("hada_w2_a", "hada_w2_b")
	if err != nil {
		return nil, false, err
	}
	kernels.Mul(p1, p2)
	return p1, true, nil
}

// checkDense checks at plan time that m's dense delta fits base tensor t.
func checkDense(a *adapter.Adapter, m *adapter.Module, t safetensors.TensorInfo) string {
	rows, cols := frame(m, t)
	if _, err := denseDelta(a, m, rows, cols, false); err != nil {
		return err.Error()
	}
	return ""
}

// truncate64 subtracts the r smallest singular triplets of the rows×cols
// matrix w (in place): w becomes its best rank-(min(rows,cols)−r)
// approximation (KaSA's base truncation), by an exact float64 SVD.
func truncate64(w []float64, rows, cols, r int) error {
	k := min(rows, cols)
	if r <= 0 {
		return nil
	}
	if r >= k {
		return fmt.Errorf("%w: KaSA rank %d ≥ min(%d, %d)", ErrIncompatible, r, rows, cols)
	}
	var svd mat.SVD
	if !svd.Factorize(mat.NewDense(rows, cols, append([]float64(nil), w...)), mat.SVDThin) {
		return fmt.Errorf("%w: SVD of the %d×%d base weight did not converge", ErrIncompatible, rows, cols)
	}
	var u, v mat.Dense
	svd.UTo(&u)
	svd.VTo(&v)
	s := svd.Values(nil)
	vi := make([]float64, cols)
	for i := k - r; i < k; i++ {
		for j := range vi {
			vi[j] = v.At(j, i)
		}
		for o := 0; o < rows; o++ {
			c := s[i] * u.At(o, i)
			if c == 0 {
				continue
			}
			row := w[o*cols : (o+1)*cols]
			for j, x := range vi {
				row[j] -= c * x
			}
		}
	}
	return nil
}
