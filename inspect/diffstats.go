package inspect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/ops/kernels"
)

// diffChunk is the most of a tensor diffStats holds at once.
const diffChunk = 1 << 20

// fullSizeNote is the note of a full-size delta module's statistics.
const fullSizeNote = "full-size additive delta (W += diff, no scale): ‖ΔW‖_F = ‖diff‖_F; it has no factors, and an SVD of a full-size matrix is not computed (no spectrum)"

// diffStats computes the statistics of a module of kind diff, an additive
// full-size delta (W += diff, bias += diff_b, no scale): ΔW is the diff
// tensor itself, so ‖ΔW‖_F = ‖diff‖_F, summed in float64 as the tensor
// streams through one chunk. The factor norms and the spectrum are left
// undefined (FullSize): inspect does not take the SVD of a full-size
// matrix. A module with only a bias delta leaves the weight unchanged
// (‖ΔW‖_F = 0). ‖diff_b‖ goes in the note. Non-finite values leave the
// module without statistics, with a warning, as for low-rank factors.
func diffStats(a *adapter.Adapter, m *adapter.Module) (*ModuleStats, []string) {
	norm := func(role string) (float64, bool, []string) {
		t, ok := m.Tensors[role]
		if !ok {
			return 0, false, nil
		}
		ss, finite, err := sumSquares(a.File, t.Name)
		if err != nil {
			return 0, true, []string{fmt.Sprintf("module %q: tensor %q: %v", m.Name, t.Name, err)}
		}
		if !finite {
			return 0, true, []string{fmt.Sprintf("module %q: %s tensor %q has NaN or Inf values", m.Name, role, t.Name)}
		}
		n := math.Sqrt(ss)
		if math.IsInf(n, 0) {
			return 0, true, []string{fmt.Sprintf("module %q: ‖%s‖ is not finite: statistics not computed", m.Name, role)}
		}
		return n, true, nil
	}
	dw, _, w := norm(adapter.RoleDiff)
	db, hasBias, wb := norm(adapter.RoleDiffBias)
	if w = append(w, wb...); len(w) > 0 {
		return nil, w
	}
	st := &ModuleStats{DeltaFroNorm: dw, SingularValues: []float64{}, FullSize: true, Note: fullSizeNote}
	if _, ok := m.Tensors[adapter.RoleDiff]; !ok {
		st.Note = "full-size additive delta of the bias only (bias += diff_b): the weight is unchanged, ‖ΔW‖_F = 0"
	}
	if hasBias {
		st.Note += fmt.Sprintf("; ‖diff_b‖ = %.6g", db)
	}
	return st, nil
}

// sumSquares returns Σx² over the values of the named tensor of f, in
// float64, and whether every value is finite. The tensor is read through a
// buffer of at most diffChunk bytes: float32 values (every dtype but F64
// converts exactly or by round-to-nearest with safetensors.ToFloat32) go
// through kernels.SumSquares, F64 values are squared as they are.
func sumSquares(f *safetensors.File, name string) (float64, bool, error) {
	t, ok := f.Tensor(name)
	if !ok {
		return 0, false, &safetensors.TensorError{File: f.Name(), Tensor: name, Err: safetensors.ErrTensorNotFound}
	}
	bits := t.DType.Bits()
	if bits == 0 || bits%8 != 0 || t.DType == safetensors.C64 {
		return 0, false, fmt.Errorf("inspect: ‖·‖ is not computed for dtype %s", t.DType)
	}
	size := bits / 8
	sec, err := f.Section(name)
	if err != nil {
		return 0, false, err
	}
	total := t.Offsets[1] - t.Offsets[0]
	buf := make([]byte, min(max(total, int64(size)), diffChunk)/int64(size)*int64(size))
	var vals []float32
	if t.DType != safetensors.F64 {
		vals = make([]float32, len(buf)/size)
	}
	var sum float64
	finite := true
	for {
		n, rerr := io.ReadFull(sec, buf)
		n -= n % size
		if t.DType == safetensors.F64 {
			for i := 0; i < n; i += 8 {
				x := math.Float64frombits(binary.LittleEndian.Uint64(buf[i:]))
				if math.IsNaN(x) || math.IsInf(x, 0) {
					finite = false
				}
				sum += x * x
			}
		} else {
			v := vals[:n/size]
			if err := safetensors.ToFloat32(v, buf[:n], t.DType); err != nil {
				return 0, false, err
			}
			s := kernels.SumSquares(v)
			if math.IsNaN(s) || math.IsInf(s, 0) { // a float32 squared cannot overflow float64
				finite = false
			}
			sum += s
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			return sum, finite, nil
		}
		if rerr != nil {
			return 0, false, rerr
		}
	}
}
