package main

import (
	"github.com/adaptool/adaptool/ops"
	"github.com/urfave/cli/v2"
)

func init() { register(newExtractCommand) }

// newExtractCommand is `adaptool extract`.
func newExtractCommand() *cli.Command {
	return &cli.Command{
		Name:  "extract",
		Usage: "extract a LoRA from the difference of two checkpoints by randomized SVD",
		Description: "For every weight present in both checkpoints with the same shape, ΔW = tuned − base is\n" +
			"approximated at rank K (or the smallest rank keeping --energy E of ‖ΔW‖², capped by --rank,\n" +
			"default cap 64) by a randomized SVD with oversampling and power iterations, and written as a\n" +
			"PEFT LoRA (scale 1, B = U√Σ, A = √ΣVᵀ, per-module ranks in rank_pattern). 2-D weights become\n" +
			"Linear LoRA (Conv1D with --fan-in-fan-out), 4-D weights conv LoRA, embedding tables LoRA\n" +
			"embeddings. Changed biases and norms cannot be expressed and are reported as warnings.",
		ArgsUsage: "--base MODEL --tuned MODEL (--rank K | --energy E | --threshold T) -o OUT",
		Flags: opsFlags(
			&cli.StringFlag{Name: "base", Usage: "base checkpoint: a .safetensors file, an index JSON or a directory"},
			&cli.StringFlag{Name: "tuned", Usage: "fine-tuned checkpoint with the same tensor names"},
			&cli.IntFlag{Name: "rank", Aliases: []string{"r"}, Usage: "output rank K (a cap with --energy/--threshold)"},
			&cli.Float64Flag{Name: "energy", Usage: "per module, the smallest rank keeping this fraction of ‖ΔW‖² (0<E≤1)"},
			&cli.Float64Flag{Name: "threshold", Usage: "per module, keep singular values above T"},
			&cli.IntFlag{Name: "oversample", Usage: "randomized SVD oversampling p (default 10)"},
			&cli.IntFlag{Name: "power-iters", Usage: "randomized SVD power iterations q (default 2)"},
			&cli.Uint64Flag{Name: "seed", Usage: "seed of the random sketches (recorded in the output)"},
			&cli.BoolFlag{Name: "fan-in-fan-out", Usage: "2-D weights are stored (in, out), as GPT-2 Conv1D"},
		),
		Action: func(c *cli.Context) error {
			if _, err := requireArgs(c, 0, 0, "no positional arguments"); err != nil {
				return err
			}
			p := ops.ExtractParams{
				Base: c.String("base"), Tuned: c.String("tuned"),
				RankParams: ops.RankParams{Rank: c.Int("rank"), Energy: c.Float64("energy"), Threshold: c.Float64("threshold")},
				Oversample: c.Int("oversample"), PowerIters: c.Int("power-iters"), Seed: c.Uint64("seed"),
				FanInFanOut: c.Bool("fan-in-fan-out"),
			}
			switch {
			case p.Base == "" || p.Tuned == "":
				return usagef("extract: give --base MODEL and --tuned MODEL")
			case !c.IsSet("rank") && !c.IsSet("energy") && !c.IsSet("threshold"):
				return usagef("extract: give --rank K, --energy E or --threshold T")
			case c.IsSet("rank") && p.Rank <= 0:
				return usagef("extract: --rank must be positive")
			case c.IsSet("energy") && !(p.Energy > 0 && p.Energy <= 1):
				return usagef("extract: --energy must be in (0, 1]")
			case c.IsSet("threshold") && !(p.Threshold > 0):
				return usagef("extract: --threshold must be positive")
			case c.IsSet("power-iters") && p.PowerIters < 0:
				return usagef("extract: --power-iters must be ≥ 0")
			}
			if c.IsSet("power-iters") && p.PowerIters == 0 {
				p.PowerIters = -1 // svd.RandomizedOptions: negative means none
			}
			o, done, err := runOptions(c, "extract")
			if err != nil {
				return err
			}
			rep, err := ops.Extract(p, o)
			done()
			return finish(c, rep, err)
		},
	}
}
