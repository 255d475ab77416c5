package main

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/adaptool/adaptool/ops"
	"github.com/urfave/cli/v2"
)

func init() { register(newMergeCommand) }

// newMergeCommand is `adaptool merge`.
func newMergeCommand() *cli.Command {
	return &cli.Command{
		Name:  "merge",
		Usage: "merge adapters: exact cat, QR-core svd (default), PEFT's ties/dare/magnitude_prune/task_arithmetic/linear",
		Description: "All weights act on the true deltas ΔWᵢ = sᵢ·Bᵢ·Aᵢ. Modules present in only some inputs are merged with\n" +
			"the others as zero. svd (default) is the best rank-K approximation of the exact weighted sum, computed from\n" +
			"the factors; cat is exact with rank Σrᵢ; ties, dare_linear, dare_ties, magnitude_prune (and their _svd\n" +
			"names) apply PEFT's merge_utils to the dense deltas and factor back to rank K; --factor-space gives\n" +
			"PEFT's approximate factor-space forms; linear is PEFT's factor-space average.",
		ArgsUsage: "ADAPTER... -o OUT",
		Flags: opsFlags(
			&cli.StringFlag{Name: "method", Aliases: []string{"m"}, Value: "svd", Usage: "svd|cat|task_arithmetic|linear|ties|dare_linear|dare_ties|magnitude_prune (+_svd)"},
			&cli.StringFlag{Name: "weights", Aliases: []string{"w"}, Usage: "comma-separated weight per adapter (default all 1)"},
			&cli.IntFlag{Name: "rank", Aliases: []string{"r"}, Usage: "output rank K (default: the largest input rank)"},
			&cli.Float64Flag{Name: "energy", Usage: "per module, the smallest rank keeping this fraction of Σσ² (0<E≤1)"},
			&cli.Float64Flag{Name: "threshold", Usage: "per module, keep singular values above this"},
			&cli.Float64Flag{Name: "density", Usage: "kept fraction d for ties/dare/magnitude_prune (default 0.2)"},
			&cli.StringFlag{Name: "majority", Value: "total", Usage: "TIES sign election: total|frequency"},
			&cli.Uint64Flag{Name: "seed", Usage: "seed of DARE's masks and the randomized SVD (recorded in the output)"},
			&cli.StringFlag{Name: "rescale", Usage: "DARE rescale: inverse (÷d, default)|l1|none"},
			&cli.BoolFlag{Name: "factor-space", Usage: "PEFT's factor-space forms (approximate; equal ranks)"},
			&cli.StringFlag{Name: "max-memory", Value: "2GiB", Usage: "working-memory budget (e.g. 512MiB, 2GiB): limits the modules merged at once and whether elementwise merges hold a module's merged matrix or stream it in tiles"},
			&cli.BoolFlag{Name: "peft-compat", Usage: "PEFT 0.9–0.20 weighting of the delta-space methods (wᵢ·sᵢ on ΔWᵢ, i.e. wᵢ·sᵢ²)"},
		),
		Action: func(c *cli.Context) error {
			paths, err := requireArgs(c, 1, -1, "one or more adapters")
			if err != nil {
				return err
			}
			p, err := mergeParams(c)
			if err != nil {
				return err
			}
			o, done, err := runOptions(c, "merge")
			if err != nil {
				return err
			}
			if o.MaxMemory, err = parseBytes(c.String("max-memory")); err != nil {
				done()
				return usagef("merge: --max-memory: %v", err)
			}
			// The budget is also the Go runtime's soft memory limit, so
			// that garbage does not double the working set.
			defer debug.SetMemoryLimit(debug.SetMemoryLimit(o.MaxMemory))
			rep, err := ops.Merge(paths, p, o)
			done()
			return finish(c, rep, err)
		},
	}
}

// mergeParams reads the merge flags.
func mergeParams(c *cli.Context) (ops.MergeParams, error) {
	w, err := parseWeights(c.String("weights"))
	if err != nil {
		return ops.MergeParams{}, err
	}
	p := ops.MergeParams{
		Method: c.String("method"), Weights: w, FactorSpace: c.Bool("factor-space"), PEFTCompat: c.Bool("peft-compat"),
		RankParams:        ops.RankParams{Rank: c.Int("rank"), Energy: c.Float64("energy"), Threshold: c.Float64("threshold")},
		ElementwiseParams: ops.ElementwiseParams{Majority: c.String("majority"), Seed: c.Uint64("seed"), Rescale: c.String("rescale")},
	}
	if c.IsSet("density") {
		p.Density = ops.Float(c.Float64("density"))
	}
	if c.IsSet("energy") && !(p.Energy > 0) {
		return p, usagef("merge: --energy must be in (0, 1]")
	}
	if c.IsSet("rank") && p.Rank <= 0 {
		return p, usagef("merge: --rank must be positive")
	}
	return p, nil
}

// parseBytes parses a byte size: a number with an optional unit B, KiB, MiB,
// GiB, TiB (powers of 1024; K, M, G, T, KB, MB, GB, TB mean the same).
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("%q is not a size (want e.g. 512MiB, 2GiB)", s)
	}
	mult := map[string]float64{"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
		"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("%q: unknown unit %q (want B, KiB, MiB, GiB or TiB)", s, unit)
	}
	b := v * mult
	if !(b >= 1) || b > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is out of range", s)
	}
	return int64(b), nil
}
