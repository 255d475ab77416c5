package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/adaptool/adaptool/inspect"
	"github.com/urfave/cli/v2"
)

func init() { register(newCheckCommand) }

func newCheckCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "check that an adapter fits a base model (modules, shapes, dtypes, target_modules)",
		ArgsUsage: "--base MODEL ADAPTER",
		Description: "Only the base model's headers are read: MODEL is a .safetensors file, a sharded checkpoint directory,\n" +
			"its *.index.json, or a header-only copy. Exit 0 when the adapter fits, 1 with the list of problems when it\n" +
			"does not, 2 when an input is unreadable.",
		Flags: commonFlags(&cli.StringFlag{Name: "base", Usage: "the base model (file, sharded dir or index); required"}),
		Action: func(c *cli.Context) error {
			args, err := requireArgs(c, 1, 1, "ADAPTER")
			if err != nil {
				return err
			}
			if c.String("base") == "" {
				return usagef("check: missing --base MODEL")
			}
			r, err := inspect.Check(args[0], c.String("base"))
			if err != nil {
				return inspectErr(err)
			}
			if wantJSON(c) {
				if err := printJSON(c, r); err != nil {
					return err
				}
			} else {
				w := stdout(c)
				tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "MODULE\tKIND\tSTATUS\tBASE TENSOR\tBASE SHAPE\tBASE DTYPE\tADAPTER DTYPE")
				for _, m := range r.Modules {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Kind, m.Status, orDash(m.BaseTensor), fmtShape(m.BaseShape), orDash(m.BaseDType), orDash(m.AdapterDType))
				}
				tw.Flush()
				for _, t := range r.TargetMatches {
					fmt.Fprintf(w, "target %q matches %d base module(s)\n", t.Entry, t.Matches)
				}
				for _, x := range r.Warnings {
					fmt.Fprintf(w, "warning: %s\n", x)
				}
				if r.OK {
					fmt.Fprintf(w, "ok: the adapter fits %s (%d base tensors)\n", r.Base, r.BaseTensors)
				} else {
					fmt.Fprintf(w, "%d problem(s):\n", len(r.Problems))
					for _, p := range r.Problems {
						fmt.Fprintf(w, "  - %s\n", p)
					}
				}
			}
			if !r.OK {
				return exitErr(exitFindings, nil)
			}
			return nil
		},
	}
}
