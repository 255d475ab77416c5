package main

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"text/tabwriter"

	"github.com/adaptool/adaptool/quant"
	"github.com/urfave/cli/v2"
)

func init() { register(newQuantizeCommand) }

func newQuantizeCommand() *cli.Command {
	return &cli.Command{
		Name:      "quantize",
		Usage:     "quantize the weights of a safetensors file, adapter directory or checkpoint (NF4/FP4, int8, FP8)",
		ArgsUsage: "IN -o OUT",
		Description: "Writes bitsandbytes-compatible NF4/FP4 (weight U8 + absmax + quant_map + quant_state),\n" +
			"LLM.int8 (weight I8 + SCB) or compressed-tensors int8 (--granularity channel|group:N),\n" +
			"and FP8 E4M3/E5M2 with weight_scale (--granularity tensor|channel|block:128).\n" +
			"By default every 2-D float tensor is quantized; --only REGEX selects by name. Other tensors\n" +
			"are copied byte-identically. The report gives per tensor RMSE, max abs error, SNR and sizes,\n" +
			"and for LoRA pairs the relative error of ΔW = s·B·A and which factor hurts more.\n" +
			"When no tensor qualifies the command is refused (exit 4, also with --dry-run), saying why.",
		Flags: commonFlags(
			outputFlag("output file (or directory when IN is a directory)"),
			dryRunFlag(),
			&cli.StringFlag{Name: "scheme", Usage: "nf4, fp4, int8, fp8-e4m3 or fp8-e5m2", Required: true},
			&cli.IntFlag{Name: "blocksize", Usage: "NF4/FP4 block size: a power of two from 32 to 4096 (default 64)"},
			&cli.BoolFlag{Name: "double-quant", Usage: "NF4/FP4: quantize the absmax too (8-bit dynamic map, blocks of 256)"},
			&cli.StringFlag{Name: "granularity", Usage: "int8: channel|group:N|tensor (compressed-tensors; default LLM.int8 rows with SCB); FP8: tensor|channel|block:N (default tensor)"},
			&cli.BoolFlag{Name: "asymmetric", Usage: "int8 with --granularity: add a weight_zero_point"},
			&cli.StringFlag{Name: "only", Usage: "quantize the tensors whose name matches this regular expression (default: all 2-D float tensors)"},
		),
		Action: runQuantize,
	}
}

func runQuantize(c *cli.Context) error {
	args, err := requireArgs(c, 1, 1, "IN")
	if err != nil {
		return err
	}
	out := c.String("output")
	if out == "" && !c.Bool("dry-run") {
		return usagef("quantize: missing -o OUT (or --dry-run)")
	}
	p := quant.Params{
		Scheme:      quant.Scheme(c.String("scheme")),
		BlockSize:   c.Int("blocksize"),
		DoubleQuant: c.Bool("double-quant"),
		Granularity: c.String("granularity"),
		Asymmetric:  c.Bool("asymmetric"),
	}
	if c.IsSet("blocksize") && p.BlockSize == 0 {
		return usagef("quantize: --blocksize 0 is not a block size")
	}
	if _, err := p.Normalize(); err != nil {
		return usagef("quantize: %v", err)
	}
	opt := quant.FileOptions{Params: p, DryRun: c.Bool("dry-run")}
	if s := c.String("only"); s != "" {
		re, err := regexp.Compile(s)
		if err != nil {
			return usagef("quantize: --only: %v", err)
		}
		opt.Only = re
	}
	var prog *progress
	opt.Progress = func(done, total int) {
		if prog == nil {
			prog = newProgress(c, "quantizing", total)
		}
		prog.Add(1)
	}
	rep, err := quant.QuantizeFile(args[0], out, opt)
	prog.Done()
	if err != nil {
		// Nothing to quantize is refused (exit 4) also in a dry run, whose
		// plan (the skipped tensors) is printed first, as the ops commands
		// print theirs.
		if rep != nil && rep.DryRun && errors.Is(err, quant.ErrNothing) {
			if wantJSON(c) {
				if perr := printJSON(c, rep); perr != nil {
					return perr
				}
			} else {
				printQuantReport(c, rep)
			}
		}
		return quantErr(err)
	}
	if wantJSON(c) {
		return printJSON(c, rep)
	}
	printQuantReport(c, rep)
	return nil
}

// quantErr maps quant errors to exit codes: an inconsistent quantized
// layout or non-finite data is a bad input (2); the rest as usual (nothing
// to quantize or dequantize, quant.ErrNothing, is a refusal: 4).
func quantErr(err error) error {
	if errors.Is(err, quant.ErrLayout) || errors.Is(err, quant.ErrNonFinite) {
		return exitErr(exitInput, err)
	}
	return err
}

func fmtSNR(v float64) string {
	if math.IsInf(v, 1) {
		return "exact"
	}
	if math.IsInf(v, -1) {
		return "-inf"
	}
	return fmt.Sprintf("%.1f dB", v)
}

func printQuantReport(c *cli.Context, rep *quant.Report) {
	w := tabwriter.NewWriter(stdout(c), 2, 4, 2, ' ', 0)
	if len(rep.Tensors) > 0 {
		fmt.Fprintln(w, "TENSOR\tSHAPE\tDTYPE\tRMSE\tMAX ERR\tSNR\tBYTES\t")
		for _, t := range rep.Tensors {
			fmt.Fprintf(w, "%s\t%v\t%s\t%.4g\t%.4g\t%s\t%d → %d\t\n", t.Name, t.Shape, t.DType, t.RMSE, t.MaxAbsError, fmtSNR(t.SNRdB), t.BytesBefore, t.BytesAfter)
		}
		w.Flush()
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(stdout(c), "skipped %s: %s\n", s.Name, s.Reason)
	}
	if len(rep.LoRA) > 0 {
		fmt.Fprintln(stdout(c))
		fmt.Fprintln(w, "LORA MODULE\tRANK\tΔW REL ERR\tA ONLY\tB ONLY\tWORSE\t")
		for _, l := range rep.LoRA {
			fmt.Fprintf(w, "%s\t%d\t%.4g\t%.4g\t%.4g\t%s\t\n", l.Module, l.Rank, l.RelError, l.RelErrorA, l.RelErrorB, l.Worse)
		}
		w.Flush()
		var a, b int
		for _, l := range rep.LoRA {
			if l.Worse == "A" {
				a++
			} else {
				b++
			}
		}
		fmt.Fprintf(stdout(c), "quantizing %s hurts ΔW more in %d of %d modules\n", map[bool]string{true: "A", false: "B"}[a >= b], max(a, b), len(rep.LoRA))
	}
	verb := "wrote " + rep.Output
	if rep.DryRun {
		verb = "dry run, nothing written"
	}
	ratio := 0.0
	if rep.BytesBefore > 0 {
		ratio = float64(rep.BytesAfter) / float64(rep.BytesBefore)
	}
	fmt.Fprintf(stdout(c), "%s: %d tensors %s, %d → %d bytes (%.1f%%); %s\n", rep.Input, len(rep.Tensors),
		strings.ToUpper(string(rep.Params.Scheme)), rep.BytesBefore, rep.BytesAfter, 100*ratio, verb)
}
