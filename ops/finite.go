package ops

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/svd"
)

// finiteChunk is how many values checkFinite decodes at a time, so that a
// large modules_to_save tensor is scanned without a full float32 copy.
const finiteChunk = 1 << 16

// checkFinite fails with ErrNonFinite, naming the adapter file, the module,
// the tensor, the value and its index, when a float tensor of module m of
// a (and, for VeRA, a shared projection) holds a NaN or ±Inf. Apply runs
// it before folding a module in, so that an adapter whose own values are
// not finite is a bad input (exit 2), as in the merges (lowRankOf), and
// not taken for an overflow of the result. Quantized tensors (their stored
// bytes are not the values) and non-float tensors are skipped.
func checkFinite(a *adapter.Adapter, m *adapter.Module) error {
	roles := make([]string, 0, len(m.Tensors))
	for r := range m.Tensors {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	refs := make([]adapter.TensorRef, 0, len(roles)+2)
	for _, r := range roles {
		refs = append(refs, m.Tensors[r])
	}
	if m.Kind == adapter.KindVeRA {
		for _, k := range []string{"vera_A", "vera_B"} {
			if t, ok := a.Shared[k]; ok {
				refs = append(refs, t)
			}
		}
	}
	for _, t := range refs {
		if _, q := a.Quantized[t.Name]; q {
			continue
		}
		i, v, err := firstNonFinite(a.File, t)
		if err != nil {
			return err
		}
		if i >= 0 {
			return fmt.Errorf("%w: %s: module %s: tensor %s: %v at index %d", ErrNonFinite, a.WeightsPath, m.Name, t.Name, v, i)
		}
	}
	return nil
}

// firstNonFinite returns the index and value of the first NaN or ±Inf of
// the float tensor t of f (-1 when there is none, or t is not a float
// tensor).
func firstNonFinite(f *safetensors.File, t adapter.TensorRef) (int, float64, error) {
	switch t.DType {
	case safetensors.F64, safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F8E4M3, safetensors.F8E5M2:
	default:
		return -1, 0, nil
	}
	b, err := f.Data(t.Name)
	if err != nil {
		return -1, 0, err
	}
	if t.DType == safetensors.F64 {
		for i := 0; i+8 <= len(b); i += 8 {
			if x := math.Float64frombits(binary.LittleEndian.Uint64(b[i:])); math.IsNaN(x) || math.IsInf(x, 0) {
				return i / 8, x, nil
			}
		}
		return -1, 0, nil
	}
	size := t.DType.Bits() / 8
	buf := make([]float32, min(finiteChunk, len(b)/size))
	for off := 0; off < len(b)/size; off += len(buf) {
		n := min(len(buf), len(b)/size-off)
		if err := safetensors.ToFloat32(buf[:n], b[off*size:(off+n)*size], t.DType); err != nil {
			return -1, 0, err
		}
		for i, x := range buf[:n] {
			if x-x != 0 { // NaN or ±Inf
				return off + i, float64(x), nil
			}
		}
	}
	return -1, 0, nil
}

// moduleErr puts the files of the inputs holding module s in front of err,
// an error of computing s from their (finite: lowRankOf) factors. A
// non-finite value met there (svd.ErrNonFinite) is an overflow of the
// computed delta in float32 — a scale or weight too large — and says so:
// a refusal (exit 4), never written as ±Inf.
func moduleErr(in *inputSet, s slot, err error) error {
	var files []string
	for j, m := range s.mods {
		if m != nil && !slices.Contains(files, in.ads[j].WeightsPath) {
			files = append(files, in.ads[j].WeightsPath)
		}
	}
	if errors.Is(err, svd.ErrNonFinite) && !errors.Is(err, ErrNonFinite) {
		return fmt.Errorf("%w: %s: module %s: the computed delta overflows float32 (every input value is finite; use smaller weights or scales): %w",
			ErrIncompatible, strings.Join(files, ", "), s.name, err)
	}
	return fmt.Errorf("%s: module %s: %w", strings.Join(files, ", "), s.name, err)
}
