package ops

import (
	"fmt"
	"math"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
)

// checkOverflow fails when a computed factor (A, B, lora_diag, lora_B.bias)
// of mods is NaN or ±Inf, or would round to ±Inf in the output dtype dt
// (F16 beyond 65504, BF16 beyond float32's range). The operations refuse
// non-finite inputs (lowRankOf), so such a value is an overflow of the
// result — a scale beyond float32 folded into A by cat, √σ beyond F16 —
// which must be refused, never written as Inf. Whole modules passed
// through (modules_to_save) are not computed and not checked.
func checkOverflow(mods []adapter.OutModule, dt safetensors.DType) error {
	limit := finiteLimit(dt)
	hint := "a smaller scale"
	if dt != safetensors.F32 {
		hint = "--dtype f32 or " + hint
	}
	for _, m := range mods {
		if m.Kind == adapter.KindFull {
			continue
		}
		for _, f := range []struct {
			role string
			v    []float32
		}{{"lora_A", m.A}, {"lora_B", m.B}, {"lora_diag", m.Diag}, {"lora_B.bias", m.Bias}} {
			for i, x := range f.v {
				if !(x <= limit && x >= -limit) {
					return fmt.Errorf("%w: module %s: %s value %v at index %d is not finite in %s: the result overflows (use %s)",
						ErrIncompatible, m.Name, f.role, x, i, dt, hint)
				}
			}
		}
	}
	return nil
}

// finiteLimit is the largest float32 magnitude that rounds to a finite
// value of dt (F16: below 65520; BF16: below 0x7f7f8000; otherwise every
// finite float32).
func finiteLimit(dt safetensors.DType) float32 {
	switch dt {
	case safetensors.F16:
		return 65519.996 // 65520 and above round to Inf
	case safetensors.BF16:
		return math.Float32frombits(0x7f7f7fff) // the largest float32 rounding to a finite BF16
	}
	return math.MaxFloat32
}
