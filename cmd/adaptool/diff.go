package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/adaptool/adaptool/inspect"
	"github.com/urfave/cli/v2"
)

func init() { register(newDiffCommand) }

func newDiffCommand() *cli.Command {
	return &cli.Command{
		Name:      "diff",
		Usage:     "compare two adapters module by module (cosine, relative distance, norm ratio of ΔW)",
		ArgsUsage: "A B",
		Description: "Cosine and distances are exact, computed from the factors through r×r Gram matrices (ΔW is never formed);\n" +
			"a LoHa, LoKr or VeRA module (no B·A form) is compared through its dense ΔW in float64 (memory: both modules' out×in).\n" +
			"relative_distance = ‖ΔW_A−ΔW_B‖_F/‖ΔW_A‖_F; norm_ratio = ‖ΔW_B‖_F/‖ΔW_A‖_F. --dense builds each module's ΔW\n" +
			"tile by tile to report the sign-conflict rate (TIES): among positions where both deltas are non-zero,\n" +
			"the fraction with opposite signs. A GGUF LoRA adapter is compared through its exact PEFT conversion\n" +
			"(Hugging Face module names; Llama-family files need --base-config for the q/k permutation).",
		Flags: commonFlags(&cli.BoolFlag{Name: "dense", Usage: "also compute the sign-conflict rate from dense ΔW (slower)"},
			&cli.StringFlag{Name: "base-config", Usage: "config.json with the head counts, for GGUF adapters of Llama-family models (undoes llama.cpp's q/k permutation)"}),
		Action: func(c *cli.Context) error {
			args, err := requireArgs(c, 2, 2, "two adapters A B")
			if err != nil {
				return err
			}
			r, err := inspect.Diff(args[0], args[1], inspect.DiffOptions{Dense: c.Bool("dense"), Progress: progressFunc(c, "diff"), BaseConfig: c.String("base-config")})
			if err != nil {
				return inspectErr(err)
			}
			if wantJSON(c) {
				return printJSON(c, r)
			}
			w := stdout(c)
			f := func(p *float64) string {
				if p == nil {
					return "-"
				}
				return fmt.Sprintf("%.6f", *p)
			}
			g := func(p *float64) string {
				if p == nil {
					return "-"
				}
				return fmt.Sprintf("%.4g", *p)
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			hdr := "MODULE\tCOSINE\tREL.DIST\tNORM RATIO\t‖ΔW_A‖\t‖ΔW_B‖\t"
			if c.Bool("dense") {
				hdr += "SIGN CONFLICT\t"
			}
			fmt.Fprintln(tw, hdr+"COMPARED\t")
			for _, m := range r.Modules {
				line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t", m.Name, f(m.Cosine), f(m.RelativeDistance), f(m.NormRatio), g(m.NormA), g(m.NormB))
				if c.Bool("dense") {
					line += f(m.SignConflict) + "\t"
				}
				fmt.Fprintln(tw, line+m.Compared+"\t")
			}
			tw.Flush()
			fmt.Fprintf(w, "\noverall: cosine %s, relative distance %s over %d common modules\n", f(r.Cosine), f(r.RelativeDistance), len(r.Modules))
			for _, n := range r.OnlyInA {
				fmt.Fprintf(w, "only in A: %s\n", n)
			}
			for _, n := range r.OnlyInB {
				fmt.Fprintf(w, "only in B: %s\n", n)
			}
			for _, x := range r.Warnings {
				fmt.Fprintf(w, "warning: %s\n", x)
			}
			return nil
		},
	}
}
