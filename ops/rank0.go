package ops

import (
	"fmt"

	"github.com/adaptool/adaptool/format/adapter"
)

// Rank-0 modules. AdaLoRA prunes a module to rank 0 (lora_A (0, in),
// lora_B (out, 0)): its ΔW is 0. Every operation gives it that meaning:
// in a merge it contributes nothing (as an absent module), apply leaves
// the base weight unchanged, and a PEFT output does not hold it — PEFT's
// LoraLayer.update_layer refuses r ≤ 0, and a module absent from the file
// and from target_modules is exactly ΔW = 0 — so it is reported as
// "removed" with rank0Reason. A rank-0 DoRA module is refused: its
// magnitude vector still rescales the base weight, which no PEFT LoRA
// output without that module expresses.

// rank0Reason is the report reason of a rank-0 module left out of an output.
const rank0Reason = "rank 0: ΔW = 0 (PEFT LoRA cannot hold r = 0; a module left out is the same no-op)"

// rank0DoRAReason refuses a rank-0 DoRA module.
const rank0DoRAReason = "rank-0 DoRA module: ΔW is 0 but its magnitude vector still rescales the base weight, and PEFT LoRA cannot hold r = 0"

// zeroRank reports whether every present module of s is low-rank with
// rank 0, so that their ΔW is 0.
func zeroRank(s slot) bool {
	present := false
	for _, m := range s.mods {
		if m == nil {
			continue
		}
		if !m.IsLowRank() || m.Rank != 0 {
			return false
		}
		present = true
	}
	return present
}

// rank0Status returns the plan status and reason of a module all of whose
// present inputs have rank 0 ("" when some input has a non-zero rank).
func rank0Status(s slot) (status, reason string) {
	if !zeroRank(s) {
		return "", ""
	}
	for _, m := range s.mods {
		if m != nil && m.Kind == adapter.KindDoRA {
			return "refused", rank0DoRAReason
		}
	}
	return "removed", rank0Reason
}

// allRank0 returns the error of an operation whose every module is a
// removed rank-0 module: the output would be an adapter without modules,
// which PEFT cannot load (no target module). nil otherwise.
func allRank0(rep *Report) error {
	if len(rep.Modules) == 0 {
		return nil
	}
	for _, m := range rep.Modules {
		if m.Status != "removed" || m.Reason != rank0Reason {
			return nil
		}
	}
	return fmt.Errorf("%w: every module has rank 0 (ΔW = 0): nothing to write", errNoModules)
}
