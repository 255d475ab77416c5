package main

import (
	"github.com/adaptool/adaptool/ops"
	"github.com/urfave/cli/v2"
)

func init() { register(newNegCommand) }

// newNegCommand is `adaptool neg`.
func newNegCommand() *cli.Command {
	return &cli.Command{
		Name:  "neg",
		Usage: "negate an adapter exactly: lora_B (and lora_B.bias) negated, IA3 vectors 2 − l",
		Description: "The input's dialect, key names, dtypes, other tensors and config are kept. OUT is a directory\n" +
			"(holding the input's file names) or a .safetensors file.",
		ArgsUsage: "IN -o OUT",
		Flags: commonFlags(outputFlag("output directory or .safetensors file"), dryRunFlag(),
			&cli.BoolFlag{Name: "keep-full", Usage: "pass modules_to_save (whole-module replacements) through unchanged instead of refusing"}),
		Action: func(c *cli.Context) error {
			args, err := requireArgs(c, 1, 1, "one adapter")
			if err != nil {
				return err
			}
			o, done, err := runOptions(c, "neg")
			if err != nil {
				return err
			}
			rep, err := ops.NegateAdapter(args[0], c.Bool("keep-full"), o)
			done()
			return finish(c, rep, err)
		},
	}
}
