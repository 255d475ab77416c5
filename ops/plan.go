package ops

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/mmapfile"
)

// RunOptions control how an adapter-level operation executes. The zero
// value writes nothing (Output must be set unless DryRun), in float32, on
// every core.
type RunOptions struct {
	// Output is the PEFT adapter directory to write.
	Output string `json:"output"`
	// DryRun plans without computing or writing.
	DryRun bool `json:"dry_run,omitempty"`
	// DType is the output tensor dtype: "" or "f32", "f16", "bf16".
	DType string `json:"dtype,omitempty"`
	// Workers is the number of modules processed at once (0: GOMAXPROCS).
	// A merge may run fewer to keep within MaxMemory.
	Workers int `json:"-"`
	// MaxMemory is a merge's working-memory budget in bytes (0:
	// DefaultMaxMemory); see MemoryPlan.
	MaxMemory int64 `json:"-"`
	// Progress, when set, is called after each module with (done, total).
	Progress func(done, total int) `json:"-"`
	// Load are options for adapter.Load of every input.
	Load []adapter.LoadOption `json:"-"`
}

// ModuleReport is one module of a plan or of a finished operation.
type ModuleReport struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Status: "matched" (in every input), "partial" (in some inputs; the
	// others count as zero), "passthrough" (copied unchanged), "removed"
	// (pruned away), "refused" (see Reason).
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Out and In are the delta's dimensions (In includes conv kernel dims).
	Out        int   `json:"out_features,omitempty"`
	In         int   `json:"in_features,omitempty"`
	InputRanks []int `json:"input_ranks,omitempty"` // per input, 0 = absent
	// Rank is the output rank: planned (an upper bound when chosen by
	// energy or threshold) or, after the run, the rank written.
	Rank  int   `json:"rank"`
	Bytes int64 `json:"bytes"` // tensor bytes written (planned: upper bound)
	// Stats (after the run): kept energy, Frobenius error and norm of the
	// exact result.
	Stats    *ModuleStats   `json:"stats,omitempty"`
	Reweight *ReweightStats `json:"reweight,omitempty"`
}

// Report is the plan (DryRun) or the result of an operation, serialised by
// --json.
type Report struct {
	Operation string         `json:"operation"`
	Params    any            `json:"params"`
	Inputs    []InputInfo    `json:"inputs"`
	Output    string         `json:"output,omitempty"`
	DType     string         `json:"dtype"`
	DryRun    bool           `json:"dry_run"`
	Modules   []ModuleReport `json:"modules"`
	// Counts by status.
	Matched     int `json:"matched"`
	Partial     int `json:"partial"`
	Passthrough int `json:"passthrough"`
	Removed     int `json:"removed"`
	Refused     int `json:"refused"`
	// Unmatched names the modules missing from some input (status
	// partial); Skipped those not written (refused or removed).
	Unmatched []string `json:"unmatched,omitempty"`
	Skipped   []string `json:"skipped,omitempty"`
	// Bytes is the total tensor bytes (planned upper bound, or written).
	Bytes    int64    `json:"bytes"`
	Warnings []string `json:"warnings,omitempty"`
	// Memory is how a merge bounds its working memory (merge only).
	Memory *MemoryPlan `json:"memory,omitempty"`
}

func (r *Report) count() {
	r.Matched, r.Partial, r.Passthrough, r.Removed, r.Refused, r.Bytes = 0, 0, 0, 0, 0, 0
	r.Unmatched, r.Skipped = nil, nil
	for _, m := range r.Modules {
		switch m.Status {
		case "matched":
			r.Matched++
		case "partial":
			r.Partial++
			r.Unmatched = append(r.Unmatched, m.Name)
		case "passthrough":
			r.Passthrough++
		case "removed":
			r.Removed++
			r.Skipped = append(r.Skipped, m.Name)
		case "refused":
			r.Refused++
			r.Skipped = append(r.Skipped, m.Name)
		}
		r.Bytes += m.Bytes
	}
}

// planned counts r's modules and returns the error that stops an
// operation before it computes: refused modules, or none to write.
func (r *Report) planned() error {
	r.count()
	if err := r.refusedError(); err != nil {
		return err
	}
	if len(r.Modules) == 0 {
		return errNoModules
	}
	return nil
}

// refusedError summarises the refused modules of r.
func (r *Report) refusedError() error {
	var names []string
	sentinel := ErrUnsupported
	for _, m := range r.Modules {
		if m.Status == "refused" {
			names = append(names, fmt.Sprintf("%s (%s)", m.Name, m.Reason))
			if strings.Contains(m.Reason, "differ") {
				sentinel = ErrIncompatible
			}
		}
	}
	if len(names) == 0 {
		return nil
	}
	more := ""
	if len(names) > 5 {
		more = fmt.Sprintf(" and %d more", len(names)-5)
		names = names[:5]
	}
	return fmt.Errorf("%w: %s refuses %d module(s): %s%s", sentinel, r.Operation, r.Refused, strings.Join(names, "; "), more)
}

// outDType parses RunOptions.DType.
func outDType(s string) (safetensors.DType, error) {
	switch strings.ToLower(s) {
	case "", "f32", "float32", "fp32":
		return safetensors.F32, nil
	case "f16", "float16", "fp16":
		return safetensors.F16, nil
	case "bf16", "bfloat16":
		return safetensors.BF16, nil
	}
	return 0, fmt.Errorf("%w: output dtype %q (want f32, f16 or bf16)", ErrParams, s)
}

// inputSet is a set of opened adapters.
type inputSet struct {
	ads      []*adapter.Adapter
	infos    []InputInfo
	warnings []string // each input's load warnings, prefixed with its path
}

// dialectWarning returns a warning for inputs whose module names are not
// PEFT paths, or "".
func dialectWarning(a *adapter.Adapter) string {
	switch a.Dialect {
	case adapter.DialectPEFT, adapter.DialectMLX:
		return ""
	}
	return fmt.Sprintf("%s is a %s adapter: a written PEFT directory keeps its module names under base_model.model.; convert it back with `adaptool convert --to %s` where the input's layout is needed", a.Path, a.Dialect, a.Dialect)
}

// open loads every path; hash adds the sha256 of each weights file.
func open(paths []string, o RunOptions, hash bool) (*inputSet, error) {
	s := &inputSet{}
	seen := map[string]bool{}
	for _, p := range paths {
		a, err := adapter.Load(p, o.Load...)
		if err != nil {
			s.close()
			return nil, err
		}
		s.ads = append(s.ads, a)
		info := InputInfo{Path: p, Weights: a.WeightsPath, Dialect: string(a.Dialect), Modules: len(a.Modules)}
		if hash {
			if info.SHA256, err = fileSHA256(a.WeightsPath); err != nil {
				s.close()
				return nil, err
			}
		}
		s.infos = append(s.infos, info)
		for _, w := range a.Warnings {
			if w = p + ": " + w; !seen[w] {
				seen[w] = true
				s.warnings = append(s.warnings, w)
			}
		}
	}
	return s, nil
}

func (s *inputSet) close() {
	for _, a := range s.ads {
		a.Close()
	}
}

// slot is one module name with its module in each input (nil = absent).
type slot struct {
	name string
	mods []*adapter.Module
}

// union returns every module name of the inputs, sorted, with per-input
// modules.
func union(ads []*adapter.Adapter) []slot {
	idx := map[string]int{}
	var slots []slot
	for i, a := range ads {
		for _, m := range a.Modules {
			j, ok := idx[m.Name]
			if !ok {
				j = len(slots)
				idx[m.Name] = j
				slots = append(slots, slot{name: m.Name, mods: make([]*adapter.Module, len(ads))})
			}
			slots[j].mods[i] = m
		}
	}
	sort.Slice(slots, func(a, b int) bool { return slots[a].name < slots[b].name })
	return slots
}

// doraMergeReason refuses a DoRA module in a merge.
const doraMergeReason = "its magnitude vector is normalised against the base weight, so the merged delta is not a sum of deltas (merge into the base with apply instead)"

// lowRankKind checks that every present module of s is an additive
// low-rank module the operation can use and returns the output kind, the
// conv kernel and the per-input ranks; reason is non-empty when refused.
// dora is why the operation refuses a DoRA module ("" accepts it).
func lowRankKind(s slot, dora string) (kind adapter.Kind, kernel []int, ranks []int, reason string) {
	ranks = make([]int, len(s.mods))
	// who names the module's input: "input i" in a merge, "the module" in
	// a one-adapter operation.
	who := func(i int) string {
		if len(s.mods) == 1 {
			return "the module"
		}
		return fmt.Sprintf("input %d", i+1)
	}
	for i, m := range s.mods {
		if m == nil {
			continue
		}
		ranks[i] = m.Rank
		var k adapter.Kind
		switch m.Kind {
		case adapter.KindLoRA, adapter.KindAdaLoRA, adapter.KindKaSA:
			k = adapter.KindLoRA
			if len(m.Kernel) > 0 {
				k = adapter.KindLoRAConv
			}
		case adapter.KindLoRAConv:
			k = adapter.KindLoRAConv
		case adapter.KindLoRAEmbedding:
			k = adapter.KindLoRAEmbedding
		case adapter.KindDoRA:
			if dora != "" {
				return "", nil, ranks, fmt.Sprintf("%s is DoRA: %s", who(i), dora)
			}
			k = adapter.KindDoRA
		case adapter.KindIA3:
			return "", nil, ranks, fmt.Sprintf("%s is IA3 (multiplicative), not an additive low-rank delta", who(i))
		case adapter.KindFull:
			return "", nil, ranks, fmt.Sprintf("%s replaces the whole module (modules_to_save); replacements cannot be weighted", who(i))
		default:
			return "", nil, ranks, fmt.Sprintf("%s has module kind %s, which this operation does not support", who(i), m.Kind)
		}
		if m.Experts > 0 {
			return "", nil, ranks, fmt.Sprintf("%s is an MLX SwitchLinear (experts) module", who(i))
		}
		if kind != "" && kind != k {
			return "", nil, ranks, fmt.Sprintf("module kinds differ between inputs (%s and %s)", kind, k)
		}
		if first := firstPresent(s); first != i && (m.OutFeatures != s.mods[first].OutFeatures || m.InFeatures != s.mods[first].InFeatures) {
			return "", nil, ranks, fmt.Sprintf("shapes differ: input %d is %d×%d, input %d is %d×%d (out×in)",
				first+1, s.mods[first].OutFeatures, s.mods[first].InFeatures, i+1, m.OutFeatures, m.InFeatures)
		}
		if kernel != nil && fmt.Sprint(kernel) != fmt.Sprint(m.Kernel) {
			return "", nil, ranks, fmt.Sprintf("conv kernels differ between inputs (%v and %v)", kernel, m.Kernel)
		}
		kind, kernel = k, m.Kernel
	}
	return kind, kernel, ranks, ""
}

// firstPresent returns the index of the first input holding the module.
func firstPresent(s slot) int {
	for i, m := range s.mods {
		if m != nil {
			return i
		}
	}
	return -1
}

// dims returns the (out, in·kernel) of the first present module.
func dims(s slot) (out, ink int) {
	for _, m := range s.mods {
		if m != nil {
			ink = m.InFeatures
			for _, k := range m.Kernel {
				ink *= k
			}
			return m.OutFeatures, ink
		}
	}
	return 0, 0
}

// lowRankOf reads a module's factors as a LowRank (AdaLoRA E and KaSA
// diagonal as Diag).
func lowRankOf(a *adapter.Adapter, m *adapter.Module) (*LowRank, *adapter.Factors, error) {
	f, err := a.Factors(m)
	if err != nil {
		return nil, nil, err
	}
	if f.Experts > 0 {
		return nil, nil, fmt.Errorf("%w: %s: module %s: MLX SwitchLinear (experts)", ErrUnsupported, a.WeightsPath, m.Name)
	}
	if f.E != nil && f.Diag != nil {
		return nil, nil, fmt.Errorf("%w: %s: module %s has both lora_E and lora_diag", ErrIncompatible, a.WeightsPath, m.Name)
	}
	for _, x := range []struct {
		role string
		v    []float32
	}{{adapter.RoleA, f.A}, {adapter.RoleB, f.B}, {adapter.RoleE, f.E}, {adapter.RoleDiag, f.Diag}, {adapter.RoleLoRABias, f.Bias}} {
		for i, v := range x.v {
			if v-v != 0 { // NaN or ±Inf
				return nil, nil, fmt.Errorf("%w: %s: module %s: tensor %s: %v at index %d", ErrNonFinite, a.WeightsPath, m.Name, m.Tensors[x.role].Name, v, i)
			}
		}
	}
	l := &LowRank{Out: f.Out, In: f.InK(), Rank: f.Rank, B: f.B, A: f.A, Diag: f.Diag, Scale: f.Scale}
	if f.E != nil {
		l.Diag = f.E
	}
	if err := l.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%s: module %s: %w", a.WeightsPath, m.Name, err)
	}
	return l, f, nil
}

// lowRankBytes is the size of a rank-r module with out×ink factors.
func lowRankBytes(r, out, ink int, dt safetensors.DType, extra int) int64 {
	return int64(r*(out+ink)+extra) * int64(dt.Bits()/8)
}

// runPool calls f(i) for i in [0, n) on workers goroutines, stopping at the
// first error, and reports progress. f reads the inputs' mapped bytes: a
// memory fault in it (an input truncated by another process meanwhile) is
// that call's error, a *mmapfile.FaultError naming the file.
func runPool(n, workers int, progress func(done, total int), f func(i int) error) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, n))
	var (
		next, done atomic.Int64
		mu         sync.Mutex
		first      error
		wg         sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				stop := first != nil
				mu.Unlock()
				i := int(next.Add(1) - 1)
				if stop || i >= n {
					return
				}
				if err := mmapfile.Guard(func() error { return f(i) }); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				d := done.Add(1)
				if progress != nil {
					progress(int(d), n)
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// outputConfig returns the config whose keys the output inherits: the first
// input's, when it is a LoRA config (other PEFT types carry keys LoraConfig
// rejects).
func outputConfig(a *adapter.Adapter) *adapter.Config {
	if a.Config == nil || a.Config.IsMLX() || (a.PeftType != "" && a.PeftType != "LORA") {
		return nil
	}
	return a.Config
}

// fanInFanOut returns the common fan_in_fan_out of the inputs' low-rank
// modules, or an error when they disagree.
func fanInFanOut(ads []*adapter.Adapter) (bool, error) {
	seen, val := false, false
	for i, a := range ads {
		for _, m := range a.Modules {
			if !m.IsLowRank() {
				continue
			}
			if seen && m.FanInFanOut != val {
				return false, fmt.Errorf("%w: input %d mixes fan_in_fan_out with the other inputs (module %s)", ErrIncompatible, i+1, m.Name)
			}
			seen, val = true, m.FanInFanOut
		}
	}
	return val, nil
}

// write writes the modules as a PEFT directory.
func write(o RunOptions, cfg *adapter.Config, fifo bool, mods []adapter.OutModule, meta map[string]string) error {
	dt, err := outDType(o.DType)
	if err != nil {
		return err
	}
	if o.Output == "" {
		return fmt.Errorf("%w: no output directory", ErrParams)
	}
	return adapter.WritePEFT(o.Output, &adapter.Output{Modules: mods, Config: cfg, DType: dt, Metadata: meta, FanInFanOut: fifo})
}

// errNoModules is returned when nothing would be written.
var errNoModules = errors.New("ops: no module to write")
