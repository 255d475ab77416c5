package ops

import (
	"fmt"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"gonum.org/v1/gonum/mat"
)

// The kinds without a B·A form (LoHa, LoKr, VeRA) are applied through
// adapter.Delta64: their dense ΔW with the module's scale (without λ), in
// float64, in the logical (out, in·∏k) frame (adapter-formats.md §5).

// inFrame returns m with its frame set to (rows, cols) of the base weight
// when the adapter does not record it (shapeFromBase: VeRA in_features when
// several modules are adapted, LoKr conv kernels); other modules as they are.
func inFrame(m *adapter.Module, rows, cols int) *adapter.Module {
	if !shapeFromBase(m) {
		return m
	}
	mc := *m
	mc.OutFeatures, mc.InFeatures, mc.Kernel = rows, cols, nil
	return &mc
}

// denseDelta returns m's ΔW (times the module's scale, without λ) as a
// rows×cols float64 matrix.
func denseDelta(a *adapter.Adapter, m *adapter.Module, rows, cols int) ([]float64, error) {
	d, v, err := a.Delta64(inFrame(m, rows, cols))
	if err != nil {
		return nil, err
	}
	if d.Out != rows || d.Cols() != cols {
		return nil, fmt.Errorf("%w: %s: module %s (%s): ΔW is %d×%d, the base weight %d×%d", ErrIncompatible, a.WeightsPath, m.Name, m.Kind, d.Out, d.Cols(), rows, cols)
	}
	return v, nil
}

// checkDense checks at plan time, from the shapes alone, that m's dense
// delta fits base tensor t.
func checkDense(a *adapter.Adapter, m *adapter.Module, t safetensors.TensorInfo) string {
	rows, cols := frame(m, t)
	mf := inFrame(m, rows, cols)
	if err := a.CheckDelta(mf); err != nil {
		return err.Error()
	}
	if ink := mf.InFeatures * prodShape(mf.Kernel); mf.OutFeatures != rows || ink != cols {
		return fmt.Sprintf("ΔW is %d×%d, the base weight %d×%d", mf.OutFeatures, ink, rows, cols)
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
