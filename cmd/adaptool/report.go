package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/inspect"
	"github.com/urfave/cli/v2"
)

func init() { register(newReportCommand) }

// reportOutput is the JSON document of `adaptool report --json`.
type reportOutput struct {
	HTML     string   `json:"html"`
	PNG      []string `json:"png"`
	Modules  int      `json:"modules"`
	Warnings []string `json:"warnings"`
	Fits     *bool    `json:"fits_base,omitempty"`
	DryRun   bool     `json:"dry_run,omitempty"` // rendered, nothing written
}

func newReportCommand() *cli.Command {
	return &cli.Command{
		Name:      "report",
		Usage:     "write a self-contained HTML report (inline SVG plots) of an adapter",
		ArgsUsage: "PATH -o report.html",
		Description: "Plots ‖ΔW‖ per layer and module type, singular-value spectra and effective rank per layer, and lists\n" +
			"the warnings (and, with --base, the base-compatibility problems). The page loads nothing from the\n" +
			"network. --png DIR writes the same plots as PNG files. --dry-run renders everything and writes nothing.",
		Flags: commonFlags(
			outputFlag("the HTML file to write"),
			&cli.StringFlag{Name: "base", Usage: "also check the adapter against this base model (headers only)"},
			&cli.StringFlag{Name: "png", Usage: "also write the plots as PNG files into this directory"},
			dryRunFlag(),
		),
		Action: func(c *cli.Context) error {
			args, err := requireArgs(c, 1, 1, "PATH")
			if err != nil {
				return err
			}
			out := c.String("output")
			dry := c.Bool("dry-run")
			if out == "" && !dry {
				return usagef("report: missing -o OUT (or --dry-run)")
			}
			s, err := inspect.Summarize(args[0], inspect.Options{Stats: true, Progress: progressFunc(c, "report")})
			if err != nil {
				// a damaged input gets no report (use inspect to see what is readable)
				if s != nil {
					return exitErr(exitInput, err)
				}
				return inspectErr(err)
			}
			var check *inspect.CheckResult
			if b := c.String("base"); b != "" {
				if check, err = inspect.Check(args[0], b); err != nil {
					return inspectErr(err)
				}
			}
			rep := inspect.NewReport(s, check)
			res := reportOutput{HTML: out, PNG: []string{}, Modules: len(rep.Modules), Warnings: rep.Warnings, DryRun: dry}
			if res.Warnings == nil {
				res.Warnings = []string{}
			}
			if check != nil {
				res.Fits = &check.OK
			}
			if dry {
				// Render the page (every plot included) to nowhere.
				if err := rep.WriteHTML(io.Discard); err != nil {
					return exitErr(exitFailed, fmt.Errorf("report: %w", err))
				}
				if wantJSON(c) {
					return printJSON(c, res)
				}
				fmt.Fprintf(stdout(c), "dry run: %d modules plotted, %d warnings; nothing written\n", res.Modules, len(res.Warnings))
				return nil
			}
			if dir := filepath.Dir(out); dir != "" {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					return exitErr(exitFailed, fmt.Errorf("report: %w", err))
				}
			}
			if err := rep.WriteHTMLFile(out); err != nil {
				return exitErr(exitFailed, fmt.Errorf("report: %w", err))
			}
			if dir := c.String("png"); dir != "" {
				paths, err := rep.WritePNGs(dir)
				if err != nil {
					return exitErr(exitFailed, fmt.Errorf("report: %w", err))
				}
				res.PNG = append(res.PNG, paths...)
			}
			if wantJSON(c) {
				if err := printJSON(c, res); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(stdout(c), "wrote %s (%d modules plotted, %d warnings)\n", out, res.Modules, len(res.Warnings))
				for _, p := range res.PNG {
					fmt.Fprintf(stdout(c), "wrote %s\n", p)
				}
			}
			return nil
		},
	}
}
