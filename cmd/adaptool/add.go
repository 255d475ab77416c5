package main

import (
	"github.com/adaptool/adaptool/ops"
	"github.com/urfave/cli/v2"
)

func init() {
	register(func() *cli.Command { return newCatCommand("add", 1) })
	register(func() *cli.Command { return newCatCommand("sub", -1) })
}

// newCatCommand is `adaptool add` (A + B + …) or `adaptool sub` (A − B − …):
// shorthands for merge --method cat with weights 1 or 1, −1, −1, …
func newCatCommand(name string, rest float64) *cli.Command {
	usage := "exact sum A + B + … of adapters (merge --method cat, rank Σrᵢ)"
	if rest < 0 {
		usage = "exact difference A − B − … of adapters (merge --method cat with weights 1,−1,…)"
	}
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "A B... -o OUT",
		Flags:     opsFlags(),
		Action: func(c *cli.Context) error {
			paths, err := requireArgs(c, 2, -1, "two or more adapters")
			if err != nil {
				return err
			}
			w := make([]float64, len(paths))
			for i := range w {
				w[i] = rest
			}
			w[0] = 1
			o, done, err := runOptions(c, name)
			if err != nil {
				return err
			}
			rep, err := ops.Merge(paths, ops.MergeParams{Method: "cat", Weights: w}, o)
			done()
			if rep != nil {
				rep.Operation = name
			}
			return finish(c, rep, err)
		},
	}
}
