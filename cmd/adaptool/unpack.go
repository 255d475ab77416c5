package main

import (
	"github.com/urfave/cli/v2"

	"github.com/adaptool/adaptool/format/atz"
)

func init() { register(newUnpackCommand) }

func newUnpackCommand() *cli.Command {
	return &cli.Command{
		Name:      "unpack",
		Usage:     "restore the original file (byte for byte, SHA-256 checked) from an .atz container or a packed directory",
		ArgsUsage: "IN.atz -o OUT",
		Flags: commonFlags(
			outputFlag("output file (or directory when IN is a directory)"),
			&cli.StringFlag{Name: "base", Usage: "the base file (or directory) given to pack --base"},
			dryRunFlag(),
		),
		Action: func(c *cli.Context) error {
			args, err := requireArgs(c, 1, 1, "IN.atz")
			if err != nil {
				return err
			}
			out, err := requireOutput(c)
			if err != nil {
				return err
			}
			return runPath(c, "unpacking", args[0], out, atz.UnpackPath, atz.PathOptions{})
		},
	}
}
