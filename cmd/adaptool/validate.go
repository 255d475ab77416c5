package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/urfave/cli/v2"
)

func init() { register(newValidateCommand) }

func newValidateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check an adapter file or directory: format, config against tensors, NaN/Inf",
		ArgsUsage: "PATH",
		Description: "Runs every safetensors format check and every adapter check (missing lora_A/lora_B, ranks against\n" +
			"r/rank_pattern, DoRA and lora_bias flags against tensors, target_modules without tensors, shape\n" +
			"inconsistencies, NaN/Inf and all-zero lora_B in the data, unknown alpha). Each finding names the file,\n" +
			"the tensor and the rule (see SPEC.md §3). Exit 0 when there is no error or warning finding,\n" +
			"1 when there is, 2 when the input cannot be read.",
		Flags: commonFlags(
			&cli.BoolFlag{Name: "old-patterns", Usage: "resolve rank_pattern/alpha_pattern as PEFT < 0.15 did"},
		),
		Action: func(c *cli.Context) error {
			args, err := requireArgs(c, 1, 1, "PATH")
			if err != nil {
				return err
			}
			var opts []adapter.LoadOption
			if c.Bool("old-patterns") {
				opts = append(opts, adapter.WithPatternMode(adapter.PatternsOld))
			}
			rep, err := adapter.Validate(args[0], opts...)
			if err != nil {
				return exitErr(exitInput, err)
			}
			if rep.Findings == nil {
				rep.Findings = []adapter.Finding{}
			}
			if wantJSON(c) {
				if err := printJSON(c, validateJSON{Report: rep, Clean: rep.Clean(),
					Errors: rep.Count(adapter.SeverityError), Warnings: rep.Count(adapter.SeverityWarning), Infos: rep.Count(adapter.SeverityInfo)}); err != nil {
					return err
				}
			} else if !c.Bool("quiet") || !rep.Clean() {
				writeValidateReport(stdout(c), rep)
			}
			if !rep.Clean() {
				return exitErr(exitFindings, nil)
			}
			return nil
		},
	}
}

// validateJSON is the --json document: the report plus counts.
type validateJSON struct {
	*adapter.Report
	Clean    bool `json:"clean"`
	Errors   int  `json:"errors"`
	Warnings int  `json:"warnings"`
	Infos    int  `json:"infos"`
}

// writeValidateReport prints the findings as a table.
func writeValidateReport(w io.Writer, rep *adapter.Report) {
	pt := rep.PeftType
	if pt == "" {
		pt = "-"
	}
	fmt.Fprintf(w, "%s: %s, peft_type %s, %d tensors, %d modules\n", rep.File, rep.Dialect, pt, rep.Tensors, rep.Modules)
	if len(rep.Findings) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SEVERITY\tRULE\tTENSOR\tMESSAGE")
		for _, f := range rep.Findings {
			t := f.Tensor
			if t == "" {
				t = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Severity, f.Rule, t, f.Message)
		}
		tw.Flush()
	}
	status := "ok"
	if !rep.Clean() {
		status = "FAIL"
	}
	fmt.Fprintf(w, "%s: %d errors, %d warnings, %d infos\n", status,
		rep.Count(adapter.SeverityError), rep.Count(adapter.SeverityWarning), rep.Count(adapter.SeverityInfo))
}
