package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/adaptool/adaptool/ops"
	"github.com/adaptool/adaptool/quant"
	"github.com/urfave/cli/v2"
)

func init() { register(newApplyCommand) }

// parseAdapterScale parses "PATH[:SCALE]"; a suffix that is not a number is
// part of the path.
func parseAdapterScale(s string) (ops.AdapterScale, error) {
	if i := strings.LastIndex(s, ":"); i > 0 {
		if v, err := strconv.ParseFloat(s[i+1:], 64); err == nil {
			if s[:i] == "" {
				return ops.AdapterScale{}, usagef("apply: --adapter %q has no path", s)
			}
			return ops.AdapterScale{Path: s[:i], Scale: v}, nil
		}
	}
	if s == "" {
		return ops.AdapterScale{}, usagef("apply: empty --adapter")
	}
	return ops.AdapterScale{Path: s, Scale: 1}, nil
}

// newApplyCommand is `adaptool apply`.
func newApplyCommand() *cli.Command {
	return &cli.Command{
		Name:  "apply",
		Usage: "fold adapters into a base checkpoint (single file or sharded), one tensor at a time",
		Description: "LoRA (linear, Conv1D fan_in_fan_out, embedding, conv, lora_bias), AdaLoRA, KaSA, DoRA, IA3,\n" +
			"LoHa, LoKr, VeRA (with its saved projections) and modules_to_save are folded in, in the order\n" +
			"given; each --adapter takes an optional :SCALE. Untouched tensors are copied byte-identical and\n" +
			"every tensor keeps its dtype. Quantized base weights (bitsandbytes NF4/FP4 with or without double\n" +
			"quantization, LLM.int8, compressed-tensors int8, FP8 with tensor/channel/block scales) are\n" +
			"dequantized, changed and requantized with the same scheme and parameters; the report gives per\n" +
			"module the extra error of requantization (RMSE, max abs, SNR, relative to ||dW||). The output\n" +
			"mirrors the base: a file for a single-file base (or OUT/<name> when OUT is a directory), a\n" +
			"directory of shards plus model.safetensors.index.json for a sharded base. --verify re-reads\n" +
			"the output and reports each module's error against a float64 recomputation (exit 1 when it\n" +
			"exceeds what rounding to the dtype, or requantizing the exact result, explains).\n\n" +
			"A GGUF base (llama.cpp model file) takes GGUF LoRA adapters and LoRA adapters in any dialect\n" +
			"(mapped to llama.cpp tensor names as convert --to gguf does, head counts from the base's\n" +
			"metadata), like llama.cpp's export-lora: F32/F16/BF16 tensors keep their type, merged tensors of\n" +
			"quantized types are written as F16 (or, with --requantize, in their own type).",
		ArgsUsage: "--base MODEL --adapter A[:SCALE] [--adapter B[:SCALE] ...] -o OUT",
		Flags: commonFlags(
			outputFlag("output file (single-file base) or directory (sharded base)"),
			dryRunFlag(),
			&cli.StringFlag{Name: "base", Usage: "base checkpoint: a .safetensors file, an index JSON, a directory or a GGUF model file"},
			&cli.StringSliceFlag{Name: "adapter", Aliases: []string{"a"}, Usage: "adapter directory or file, optionally PATH:SCALE (repeatable)"},
			&cli.BoolFlag{Name: "requantize", Usage: "GGUF base: write merged tensors of a quantized type in that type (default: F16, as llama.cpp's export-lora)"},
			&cli.BoolFlag{Name: "verify", Usage: "re-read the output and report per-module error"},
			&cli.StringFlag{Name: "kasa", Value: "truncate", Usage: "KaSA modules: truncate (drop the base's r smallest singular triplets, as KaSA trains), truncate-repo (keep in−r components, as the KaSA reference code) or keep (add the delta only)"},
		),
		Action: func(c *cli.Context) error {
			if _, err := requireArgs(c, 0, 0, "no positional arguments"); err != nil {
				return err
			}
			if c.String("base") == "" {
				return usagef("apply: missing --base MODEL")
			}
			specs := c.StringSlice("adapter")
			if len(specs) == 0 {
				return usagef("apply: give at least one --adapter")
			}
			p := ops.ApplyParams{Base: c.String("base"), Verify: c.Bool("verify"), KaSA: c.String("kasa"), Requantize: c.Bool("requantize")}
			if p.KaSA != "truncate" && p.KaSA != "truncate-repo" && p.KaSA != "keep" {
				return usagef("apply: --kasa %q (want truncate, truncate-repo or keep)", p.KaSA)
			}
			for _, s := range specs {
				a, err := parseAdapterScale(s)
				if err != nil {
					return err
				}
				p.Adapters = append(p.Adapters, a)
			}
			o, done, err := runOptions(c, "apply")
			if err != nil {
				return err
			}
			rep, err := ops.Apply(p, o)
			done()
			if rep != nil {
				if wantJSON(c) {
					if perr := printJSON(c, rep); perr != nil {
						return perr
					}
				} else {
					printApplyReport(stdout(c), rep)
				}
			}
			if err != nil {
				if quant.IsInputError(err) {
					return exitErr(exitInput, err)
				}
				return opsError(c, err)
			}
			if rep.VerifyFailures > 0 {
				return exitErr(exitFindings, fmt.Errorf("apply --verify: %d module(s) exceed the rounding or requantization bound", rep.VerifyFailures))
			}
			return nil
		},
	}
}

// printApplyReport writes the text form of an apply report.
func printApplyReport(w io.Writer, r *ops.ApplyReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADAPTER\tMODULE\tKIND\tSTATUS\tTENSORS\tMAX ABS ERR\tREL ERR")
	for _, m := range r.Modules {
		status := m.Status
		if m.Reason != "" {
			status += ": " + m.Reason
		}
		maxAbs, rel := "", ""
		if m.Verify != nil {
			maxAbs = strconv.FormatFloat(m.Verify.MaxAbs, 'g', 3, 64)
			rel = strconv.FormatFloat(m.Verify.RelFro, 'g', 3, 64)
			if m.Verify.Quantized {
				rel += " (requantizing the exact result: " + strconv.FormatFloat(m.Verify.RequantRelFro, 'g', 3, 64) + ")"
			}
			if m.Verify.Exceeded {
				rel += " (exceeds " + strconv.FormatFloat(m.Verify.Bound, 'g', 3, 64) + ")"
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Adapter, m.Name, m.Kind, status, strings.Join(m.Tensors, ","), maxAbs, rel)
	}
	tw.Flush()
	verb := "wrote"
	if r.DryRun {
		verb = "would write"
	}
	fmt.Fprintf(w, "apply: %d modules (%d applied, %d replaced, %d added, %d refused); %d tensors recomputed, %d copied; %s %d tensor bytes",
		len(r.Modules), r.Applied, r.Replaced, r.Added, r.Refused, r.Touched, r.Copied, verb, r.Bytes)
	if r.Output != "" {
		fmt.Fprintf(w, " to %s", r.Output)
	}
	fmt.Fprintln(w)
	if r.Quantized > 0 {
		fmt.Fprintf(w, "requantized %d quantized weight(s) with their own scheme; extra error of requantization:\n", r.Quantized)
		qw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(qw, "MODULE\tTENSOR\tSCHEME\tRMSE\tMAX ABS\tSNR dB\t||dW||\tERR/||dW||\tCOS(applied,dW)")
		for _, m := range r.Modules {
			q := m.Requant
			if q == nil {
				continue
			}
			opt := func(v *float64) string {
				if v == nil {
					return "-"
				}
				return strconv.FormatFloat(*v, 'g', 3, 64)
			}
			fmt.Fprintf(qw, "%s\t%s\t%s/%s\t%.3g\t%.3g\t%s\t%.3g\t%s\t%s\n", m.Name, q.Tensor, q.Scheme, q.Layout,
				q.RMSE, q.MaxAbs, opt(q.SNRdB), q.DeltaFro, opt(q.RelDelta), opt(q.Cosine))
		}
		qw.Flush()
	}
	if r.Verified {
		fmt.Fprintf(w, "verify: untouched tensors identical; %d module(s) above the rounding/requantization bound\n", r.VerifyFailures)
	}
	for _, x := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
}
