package main

import (
	"os"
	"time"

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
			return runTree(c, "unpacking", args[0], out, c.String("base"), false, unpackOne)
		},
	}
}

// unpackOne restores in to out; with dry it decodes and checks in (every
// chunk CRC and the SHA-256) without writing.
func unpackOne(in, out, base string, dry bool) (packFileResult, error) {
	start := time.Now()
	var opts []atz.Option
	if base != "" {
		bf, err := os.Open(base)
		if err != nil {
			return packFileResult{}, exitErr(exitInput, err)
		}
		defer bf.Close()
		st, err := bf.Stat()
		if err != nil {
			return packFileResult{}, exitErr(exitInput, err)
		}
		opts = append(opts, atz.WithBase(bf, st.Size()))
	}
	var st atz.Stats
	var err error
	if dry {
		st, err = atz.CheckFile(in, opts...)
	} else {
		st, err = atz.UnpackFile(out, in, opts...)
	}
	if err != nil {
		return packFileResult{}, err
	}
	r := result("unpack", in, out, st, time.Since(start))
	r.DryRun = dry
	r.SHA256Equal = true // both check the SHA-256 of the restored bytes before returning
	return r, nil
}
