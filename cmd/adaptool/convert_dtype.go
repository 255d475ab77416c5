package main

import (
	"fmt"
	"regexp"
	"strings"
	"text/tabwriter"

	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/urfave/cli/v2"
)

// dtypeNames maps the --dtype spellings to safetensors dtypes. The file
// spellings (F16, BF16, F8_E4M3, ...) are accepted too, case-insensitively.
var dtypeNames = map[string]safetensors.DType{
	"f32": safetensors.F32, "float32": safetensors.F32,
	"f16": safetensors.F16, "float16": safetensors.F16, "fp16": safetensors.F16,
	"bf16": safetensors.BF16, "bfloat16": safetensors.BF16,
	"f8_e4m3": safetensors.F8E4M3, "fp8_e4m3": safetensors.F8E4M3, "e4m3": safetensors.F8E4M3,
	"f8_e5m2": safetensors.F8E5M2, "fp8_e5m2": safetensors.F8E5M2, "e5m2": safetensors.F8E5M2,
}

// convertDType is `adaptool convert --dtype f32|f16|bf16|f8_e4m3|f8_e5m2
// [--only REGEX] IN -o OUT`: the float tensors of a file, adapter directory
// or sharded checkpoint are cast tensor by tensor (safetensors.Recast, with
// the ops/kernels conversions), everything else is copied unchanged.
func convertDType(c *cli.Context) error {
	args, err := requireArgs(c, 1, 1, "one input (file or directory)")
	if err != nil {
		return err
	}
	name := strings.ToLower(c.String("dtype"))
	dt, ok := dtypeNames[name]
	if !ok {
		return usagef("convert: --dtype %q is not one of f32, f16, bf16, f8_e4m3, f8_e5m2", c.String("dtype"))
	}
	opts := safetensors.RecastOptions{DType: dt, DryRun: c.Bool("dry-run")}
	if s := c.String("only"); s != "" {
		re, err := regexp.Compile(s)
		if err != nil {
			return usagef("convert: --only: %v", err)
		}
		opts.Only = re
	}
	out := c.String("output")
	if out == "" && !opts.DryRun {
		return usagef("convert: missing -o OUT")
	}
	if out == "" {
		out = args[0]
	}
	p := newProgress(c, "convert", 0)
	opts.Progress = func(string, string) { p.Add(1) }
	rep, err := safetensors.Recast(args[0], out, opts)
	p.Done()
	if err != nil {
		return err
	}
	if wantJSON(c) {
		return printJSON(c, rep)
	}
	if c.Bool("quiet") {
		return nil
	}
	w := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
	converted := 0
	for _, t := range rep.Tensors {
		if t.Converted {
			converted++
			fmt.Fprintf(w, "%s\t%s → %s\t%v\n", t.Name, t.From, t.To, t.Shape)
		}
	}
	w.Flush()
	verb := "wrote"
	if rep.DryRun {
		verb = "would write"
	}
	fmt.Fprintf(stdout(c), "%d of %d tensors converted to %s; tensor bytes %d → %d; %s %s\n",
		converted, len(rep.Tensors), dt, rep.BytesIn, rep.BytesOut, verb, out)
	return nil
}
