package main

import (
	"github.com/adaptool/adaptool/ops"
	"github.com/urfave/cli/v2"
)

func init() { register(newScaleCommand) }

// newScaleCommand is `adaptool scale`.
func newScaleCommand() *cli.Command {
	return &cli.Command{
		Name:  "scale",
		Usage: "scale an adapter's effect by λ: lora_B (and lora_B.bias) × λ, IA3 vectors 1 + λ(l − 1)",
		Description: "Only the rewritten tensors are rounded to their dtype; everything else is kept byte for byte.\n" +
			"OUT is a directory (holding the input's file names) or a .safetensors file.",
		ArgsUsage: "--by λ IN -o OUT",
		Flags: commonFlags(outputFlag("output directory or .safetensors file"), dryRunFlag(),
			&cli.Float64Flag{Name: "by", Usage: "the factor λ (required)"},
			&cli.BoolFlag{Name: "keep-full", Usage: "pass modules_to_save (whole-module replacements) through unchanged instead of refusing"}),
		Action: func(c *cli.Context) error {
			args, err := requireArgs(c, 1, 1, "one adapter")
			if err != nil {
				return err
			}
			if !c.IsSet("by") {
				return usagef("scale: missing --by λ")
			}
			o, done, err := runOptions(c, "scale")
			if err != nil {
				return err
			}
			rep, err := ops.ScaleAdapter(args[0], ops.ScaleParams{By: c.Float64("by"), KeepFull: c.Bool("keep-full")}, o)
			done()
			return finish(c, rep, err)
		},
	}
}
