package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/adaptool/adaptool/quant"
	"github.com/urfave/cli/v2"
)

func init() { register(newDequantizeCommand) }

func newDequantizeCommand() *cli.Command {
	return &cli.Command{
		Name:      "dequantize",
		Usage:     "turn quantized tensors (bitsandbytes NF4/FP4/int8, compressed-tensors int8/FP8) back into floats",
		ArgsUsage: "IN -o OUT",
		Description: "Every quantized weight is replaced by its float values, in the dtype its layout records\n" +
			"(bitsandbytes quant_state, adaptool metadata) or F32; the layout's extra tensors (absmax,\n" +
			"quant_map, SCB, weight_scale, ...) are dropped and all other tensors copied byte-identically.\n" +
			"An input with no quantized tensor is refused (exit 4): there is nothing to dequantize.",
		Flags:  commonFlags(outputFlag("output file (or directory when IN is a directory)"), dryRunFlag()),
		Action: runDequantize,
	}
}

func runDequantize(c *cli.Context) error {
	args, err := requireArgs(c, 1, 1, "IN")
	if err != nil {
		return err
	}
	out := c.String("output")
	if out == "" && !c.Bool("dry-run") {
		return usagef("dequantize: missing -o OUT (or --dry-run)")
	}
	var prog *progress
	rep, err := quant.DequantizeFile(args[0], out, quant.DequantizeOptions{DryRun: c.Bool("dry-run"), Progress: func(done, total int) {
		if prog == nil {
			prog = newProgress(c, "dequantizing", total)
		}
		prog.Add(1)
	}})
	prog.Done()
	if err != nil {
		return quantErr(err)
	}
	if wantJSON(c) {
		return printJSON(c, rep)
	}
	w := tabwriter.NewWriter(stdout(c), 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "TENSOR\tSCHEME\tSHAPE\tDTYPE\tBYTES\t")
	for _, t := range rep.Tensors {
		fmt.Fprintf(w, "%s\t%s\t%v\t%s\t%d → %d\t\n", t.Name, t.Scheme, t.Shape, t.DType, t.BytesBefore, t.BytesAfter)
	}
	w.Flush()
	if rep.DryRun {
		fmt.Fprintf(stdout(c), "%s: %d tensors would be dequantized, %d → %d bytes (dry run, nothing written)\n", rep.Input, len(rep.Tensors), rep.BytesBefore, rep.BytesAfter)
		return nil
	}
	fmt.Fprintf(stdout(c), "%s: %d tensors dequantized, %d → %d bytes; wrote %s\n", rep.Input, len(rep.Tensors), rep.BytesBefore, rep.BytesAfter, rep.Output)
	return nil
}
