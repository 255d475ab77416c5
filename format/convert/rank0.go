package convert

import (
	"fmt"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
)

// dropRank0 removes the rank-0 modules from mods, with one warning naming
// them. AdaLoRA prunes modules to rank 0 (lora_A (0, in), lora_B (out, 0)):
// their ΔW is 0, and no target holds them usefully — PEFT's LoRA layer
// refuses r = 0, kohya's loaders divide alpha by the rank, llama.cpp takes
// r from lora_b — while a module left out of the file is exactly the same
// no-op. A rank-0 DoRA module is refused: its magnitude still rescales the
// base weight.
func dropRank0(a *adapter.Adapter, mods []*module, res *Result) ([]*module, error) {
	var kept []*module
	var dropped []string
	seen := map[string]bool{}
	for _, m := range mods {
		if !m.src.IsLowRank() || m.src.Rank != 0 {
			kept = append(kept, m)
			continue
		}
		if m.src.Kind == adapter.KindDoRA {
			return nil, fmt.Errorf("%w: %s: tensor %q: module %q is a rank-0 DoRA module: ΔW is 0 but its magnitude still rescales the base weight, which no converted file without it expresses",
				ErrRefused, a.WeightsPath, m.src.Tensors[adapter.RoleA].Name, m.src.Name)
		}
		if !seen[m.src.Name] {
			seen[m.src.Name] = true
			dropped = append(dropped, m.src.Name)
		}
	}
	if len(dropped) > 0 {
		names := dropped
		more := ""
		if len(names) > 8 {
			more = fmt.Sprintf(" and %d more", len(names)-8)
			names = names[:8]
		}
		res.warn("%d rank-0 module(s) not written (ΔW = 0; leaving a module out is the same no-op): %s%s", len(dropped), strings.Join(names, ", "), more)
	}
	if len(kept) == 0 && len(dropped) > 0 {
		return nil, fmt.Errorf("%w: %s: every LoRA module has rank 0 (ΔW = 0): nothing to convert", ErrRefused, a.WeightsPath)
	}
	return kept, nil
}
