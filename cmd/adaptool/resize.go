package main

import (
	"github.com/adaptool/adaptool/ops"
	"github.com/urfave/cli/v2"
)

func init() { register(newResizeCommand) }

// newResizeCommand is `adaptool resize`.
func newResizeCommand() *cli.Command {
	return &cli.Command{
		Name:  "resize",
		Usage: "re-rank an adapter exactly (SVD from the factors), reporting kept energy and Frobenius error per module",
		Description: "Give one of --rank, --energy, --threshold (--rank also caps the other two). The output has\n" +
			"scale 1 per module (B = U√Σ, A = √ΣVᵀ) with per-module ranks in rank_pattern.",
		ArgsUsage: "IN (--rank K | --energy E | --threshold T) -o OUT",
		Flags: opsFlags(
			&cli.IntFlag{Name: "rank", Aliases: []string{"r"}, Usage: "output rank K"},
			&cli.Float64Flag{Name: "energy", Usage: "per module, the smallest rank keeping this fraction of Σσ² (0<E≤1)"},
			&cli.Float64Flag{Name: "threshold", Usage: "per module, keep singular values above T"},
		),
		Action: func(c *cli.Context) error {
			args, err := requireArgs(c, 1, 1, "one adapter")
			if err != nil {
				return err
			}
			p := ops.RankParams{Rank: c.Int("rank"), Energy: c.Float64("energy"), Threshold: c.Float64("threshold")}
			switch {
			case !c.IsSet("rank") && !c.IsSet("energy") && !c.IsSet("threshold"):
				return usagef("resize: give --rank K, --energy E or --threshold T")
			case c.IsSet("rank") && p.Rank <= 0:
				return usagef("resize: --rank must be positive")
			case c.IsSet("energy") && !(p.Energy > 0 && p.Energy <= 1):
				return usagef("resize: --energy must be in (0, 1]")
			case c.IsSet("threshold") && !(p.Threshold > 0):
				return usagef("resize: --threshold must be positive")
			}
			o, done, err := runOptions(c, "resize")
			if err != nil {
				return err
			}
			rep, err := ops.ResizeAdapter(args[0], p, o)
			done()
			return finish(c, rep, err)
		},
	}
}
