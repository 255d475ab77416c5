package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"

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
				if err := writeValidateJSON(stdout(c), validateJSON{Report: rep, Clean: rep.Clean(),
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

// writeValidateJSON writes doc as printJSON does (a json.Encoder with
// SetIndent("", "  ") and SetEscapeHTML(false)), but encodes the findings
// one at a time through a buffered writer instead of the whole document in
// memory: the document is encoded with an empty findings list and the
// entries are written in its place.
func writeValidateJSON(w io.Writer, doc validateJSON) error {
	findings := doc.Findings
	if len(findings) > 0 {
		short := *doc.Report
		short.Findings = []adapter.Finding{}
		doc.Report = &short
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	// a JSON string escapes its quotes, so this can only be the key
	const empty = `"findings": []`
	head, tail, ok := bytes.Cut(buf.Bytes(), []byte(empty))
	if !ok || len(findings) == 0 {
		_, err := w.Write(buf.Bytes())
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(head)
	bw.WriteString(`"findings": [`)
	var fb bytes.Buffer
	fenc := json.NewEncoder(&fb)
	fenc.SetIndent("    ", "  ")
	fenc.SetEscapeHTML(false)
	for i := range findings {
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    ")
		fb.Reset()
		if err := fenc.Encode(&findings[i]); err != nil {
			return err
		}
		bw.Write(bytes.TrimSuffix(fb.Bytes(), []byte("\n")))
	}
	bw.WriteString("\n  ]")
	bw.Write(tail)
	return bw.Flush()
}

// writeValidateReport prints the findings as a table.
func writeValidateReport(w io.Writer, rep *adapter.Report) {
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	w = bw
	pt := rep.PeftType
	if pt == "" {
		pt = "-"
	}
	fmt.Fprintf(w, "%s: %s, peft_type %s, %d tensors, %d modules\n", rep.File, rep.Dialect, pt, rep.Tensors, rep.Modules)
	if len(rep.Findings) > 0 {
		// text/tabwriter's layout, without holding the table in memory
		writeAligned(w, len(rep.Findings), func(dst []byte, i int) []byte {
			if i < 0 {
				return append(dst, "SEVERITY\tRULE\tTENSOR\tMESSAGE"...)
			}
			f := &rep.Findings[i]
			t := f.Tensor
			if t == "" {
				t = "-"
			}
			dst = append(append(append(append(dst, f.Severity...), '\t'), f.Rule...), '\t')
			return append(append(append(dst, t...), '\t'), f.Message...)
		})
	}
	status := "ok"
	if !rep.Clean() {
		status = "FAIL"
	}
	fmt.Fprintf(w, "%s: %d errors, %d warnings, %d infos\n", status,
		rep.Count(adapter.SeverityError), rep.Count(adapter.SeverityWarning), rep.Count(adapter.SeverityInfo))
}
