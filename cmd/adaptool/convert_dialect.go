package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/convert"
	"github.com/adaptool/adaptool/format/gguf"
	"github.com/urfave/cli/v2"
)

// convertDialect is `adaptool convert --to peft|diffusers|kohya|mlx|gguf IN
// -o OUT (a GGUF adapter IN converts --to peft) [--arch A --outtype T] [--base-config F] [--dry-run] [--json]`.
func convertDialect(c *cli.Context) error {
	args, err := requireArgs(c, 1, 1, "one input adapter")
	if err != nil {
		return err
	}
	to := strings.ToLower(c.String("to"))
	switch to {
	case convert.ToPEFTName, convert.ToDiffusersName, convert.ToKohyaName, convert.ToMLXName, convert.ToGGUFName:
	default:
		return usagef("convert: --to %q: want peft, diffusers, kohya, mlx or gguf", c.String("to"))
	}
	if to != convert.ToGGUFName && (c.IsSet("arch") || c.IsSet("outtype")) {
		return usagef("convert: --arch and --outtype apply only to --to gguf")
	}
	if to == convert.ToGGUFName && c.String("arch") == "" {
		return usagef("convert --to gguf: missing --arch (one of %s)", strings.Join(convert.GGUFArchitectures(), ", "))
	}
	if c.IsSet("only") {
		return usagef("convert: --only applies only to --dtype")
	}
	out := c.String("output")
	if out == "" && !c.Bool("dry-run") {
		return usagef("convert: missing -o OUT")
	}
	var base *convert.Base
	if p := c.String("base-config"); p != "" {
		if base, err = convert.LoadBase(p); err != nil {
			return exitErr(exitInput, err)
		}
	}
	var res *convert.Result
	if gguf.IsGGUF(args[0]) {
		if to != convert.ToPEFTName {
			return usagef("convert: a GGUF adapter converts only --to peft (got --to %s)", to)
		}
		res, err = convert.GGUFToPEFT(args[0], out, convert.Options{Base: base, DryRun: c.Bool("dry-run")}, "")
		if err != nil {
			if errors.Is(err, convert.ErrOptions) {
				return usagef("%v", err)
			}
			return err
		}
		return printResult(c, res)
	}
	a, err := adapter.Load(args[0])
	if err != nil {
		return err
	}
	defer a.Close()
	if to == convert.ToGGUFName {
		res, err = convert.ToGGUF(a, out, convert.GGUFOptions{
			Arch: c.String("arch"), OutType: c.String("outtype"), Base: base, DryRun: c.Bool("dry-run"),
		})
	} else {
		res, err = convert.Convert(a, to, out, convert.Options{Base: base, DryRun: c.Bool("dry-run")})
	}
	if err != nil {
		if errors.Is(err, convert.ErrOptions) {
			return usagef("%v", err)
		}
		return err
	}
	return printResult(c, res)
}

// printResult prints a conversion result as JSON or text (warnings on stderr).
func printResult(c *cli.Context, res *convert.Result) error {
	if wantJSON(c) {
		for _, s := range res.Warnings {
			fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", s)
		}
		return printJSON(c, res)
	}
	w := stdout(c)
	verb := "wrote"
	if res.DryRun {
		verb = "would write"
	}
	fmt.Fprintf(w, "%s → %s: %d modules, %d tensors; %s %s\n", res.From, res.To, len(res.Modules), res.Tensors, verb, strings.Join(res.Files, ", "))
	if res.Alpha != nil {
		fmt.Fprintf(w, "adapter.lora.alpha = %g\n", *res.Alpha)
	}
	if res.DryRun {
		for _, m := range res.Modules {
			note := ""
			if m.Note != "" {
				note = "  (" + m.Note + ")"
			}
			fmt.Fprintf(w, "  %s → %s  r=%d s=%g%s\n", m.From, m.To, m.Rank, m.Scale, note)
		}
	}
	for _, s := range res.Warnings {
		fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", s)
	}
	return nil
}
