package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/adaptool/adaptool/format/atz"
)

func init() { register(newPackCommand) }

func newPackCommand() *cli.Command {
	return &cli.Command{
		Name:      "pack",
		Usage:     "compress a safetensors file, adapter directory or sharded checkpoint losslessly (.atz)",
		ArgsUsage: "IN -o OUT",
		Description: "A file is packed to OUT (conventionally NAME.atz). A directory is copied to the directory OUT\n" +
			"with every .safetensors file packed under its own name, so index.json and adapter_config.json\n" +
			"keep working: adaptool reads packed files transparently. Each packed file is decoded again and\n" +
			"compared with the original byte for byte (skip with --no-verify). --dry-run compresses\n" +
			"everything and reports the sizes and ratio, writing nothing.",
		Flags: commonFlags(
			outputFlag("output file (or directory when IN is a directory)"),
			&cli.StringFlag{Name: "base", Usage: "base file (or directory) the input was fine-tuned from: tensors are XOR-coded against it; unpack then needs it too"},
			&cli.StringFlag{Name: "level", Value: "default", Usage: "fastest, default or best"},
			&cli.BoolFlag{Name: "no-verify", Usage: "do not decode the written container to compare it with the input"},
			dryRunFlag(),
		),
		Action: runPack,
	}
}

func parseLevel(s string) (atz.Level, error) {
	switch s {
	case "", "default":
		return atz.LevelDefault, nil
	case "fastest":
		return atz.LevelFastest, nil
	case "best":
		return atz.LevelBest, nil
	}
	return 0, usagef("pack: --level must be fastest, default or best, not %q", s)
}

func runPack(c *cli.Context) error {
	args, err := requireArgs(c, 1, 1, "IN")
	if err != nil {
		return err
	}
	out, err := requireOutput(c)
	if err != nil {
		return err
	}
	level, err := parseLevel(c.String("level"))
	if err != nil {
		return err
	}
	return runPath(c, "packing", args[0], out, atz.PackPath, atz.PathOptions{Level: level, Verify: !c.Bool("no-verify")})
}

// runPath runs atz.PackPath or atz.UnpackPath with the shared flags and
// prints the report.
func runPath(c *cli.Context, label, in, out string, run func(in, out string, opt atz.PathOptions) (*atz.PathReport, error), opt atz.PathOptions) error {
	st, err := os.Stat(in)
	if err != nil {
		return exitErr(exitInput, err)
	}
	if s, err := os.Stat(out); err == nil && st.IsDir() && !s.IsDir() {
		return usagef("%s: IN is a directory, so -o must be a directory (%s is a file)", c.Command.Name, out)
	}
	opt.Base, opt.DryRun = c.String("base"), c.Bool("dry-run")
	var prog *progress
	opt.Progress = func(done, total int) {
		if prog == nil {
			prog = newProgress(c, label, total)
		}
		prog.Add(1)
	}
	rep, err := run(in, out, opt)
	prog.Done()
	if err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c, rep)
	}
	w := stdout(c)
	if rep.DryRun {
		fmt.Fprintln(w, "dry run: nothing written")
	}
	for _, f := range rep.Files {
		if f.Action == "copy" {
			fmt.Fprintf(w, "copy    %s -> %s (%d bytes)\n", f.Input, f.Output, f.OriginalBytes)
			continue
		}
		eq := "sha256 equal"
		switch {
		case rep.DryRun && f.Action == "pack":
			eq = "not written"
		case !f.SHA256Equal:
			eq = "sha256 not verified"
		}
		fmt.Fprintf(w, "%-7s %s -> %s: %d -> %d bytes, ratio %.3f, %.0f MB/s, %s (%s)\n",
			f.Action, f.Input, f.Output, f.OriginalBytes, f.PackedBytes, f.Ratio, f.MBPerSec, eq, f.SHA256)
	}
	if len(rep.Files) > 1 {
		fmt.Fprintf(w, "total: %d -> %d bytes, ratio %.3f, %.0f MB/s\n", rep.OriginalBytes, rep.PackedBytes, rep.Ratio, rep.MBPerSec)
	}
	return nil
}
