package main

import (
	"github.com/adaptool/adaptool/ops"
	"github.com/urfave/cli/v2"
)

func init() { register(newPruneCommand) }

// newPruneCommand is `adaptool prune`.
func newPruneCommand() *cli.Command {
	return &cli.Command{
		Name:  "prune",
		Usage: "structured pruning: drop low-energy ranks or low-norm modules, reporting what was removed",
		Description: "--ranks energy:E keeps per module the fewest singular triplets holding E of Σσ²; top:K keeps K;\n" +
			"module-fraction:F removes the ⌊F·N⌋ modules of smallest ‖ΔW‖_F and keeps the others unchanged.",
		ArgsUsage: "IN --ranks energy:E|top:K|module-fraction:F -o OUT",
		Flags:     opsFlags(&cli.StringFlag{Name: "ranks", Usage: "pruning rule (required)"}),
		Action: func(c *cli.Context) error {
			args, err := requireArgs(c, 1, 1, "one adapter")
			if err != nil {
				return err
			}
			if !c.IsSet("ranks") {
				return usagef("prune: missing --ranks energy:E|top:K|module-fraction:F")
			}
			p, err := ops.ParsePrune(c.String("ranks"))
			if err != nil {
				return usagef("prune: %v", err)
			}
			o, done, err := runOptions(c, "prune")
			if err != nil {
				return err
			}
			rep, err := ops.PruneAdapter(args[0], p, o)
			done()
			return finish(c, rep, err)
		},
	}
}
