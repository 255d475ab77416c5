package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/adaptool/adaptool/inspect"
	"github.com/urfave/cli/v2"
)

func init() { register(newInspectCommand) }

func newInspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show what an adapter file, adapter directory or (sharded) checkpoint holds",
		ArgsUsage: "PATH",
		Description: "Reads only headers (and adapter_config.json) unless --stats or --hashes is given, so it is fast on huge\n" +
			"checkpoints. PATH is a .safetensors file, an adapter directory, a sharded checkpoint directory or its\n" +
			"*.index.json, or a GGUF file. --stats adds per-tensor value statistics and per-module norms and singular\n" +
			"values of ΔW computed from the factors. See SPEC.md §4 for the JSON schema.",
		Flags: commonFlags(
			&cli.BoolFlag{Name: "stats", Usage: "read tensor data: value statistics, ‖ΔW‖, singular values, effective rank"},
			&cli.BoolFlag{Name: "hashes", Usage: "sha256 of each file and its data section, kohya sshs_model_hash/sshs_legacy_hash"},
		),
		Action: func(c *cli.Context) error {
			args, err := requireArgs(c, 1, 1, "PATH")
			if err != nil {
				return err
			}
			opts := inspect.Options{Stats: c.Bool("stats"), Hashes: c.Bool("hashes"), Progress: progressFunc(c, "inspect")}
			s, err := inspect.Summarize(args[0], opts)
			if s == nil {
				return inspectErr(err)
			}
			if wantJSON(c) {
				if perr := printJSON(c, s); perr != nil {
					return perr
				}
			} else {
				writeSummary(stdout(c), s, opts.Stats)
			}
			if err != nil {
				// the summary exists, so the path was read: the content is at fault
				return exitErr(exitInput, err)
			}
			return nil
		},
	}
}

// inspectErr gives package inspect's input errors (bad index, directory
// without weights, ...) exit code 2; other errors keep the shared mapping.
func inspectErr(err error) error {
	if inspect.IsInputError(err) {
		return exitErr(exitInput, err)
	}
	return err
}

// progressFunc adapts a (done, total) callback to the CLI progress line,
// starting a new line whenever the total changes (tensors, then modules).
func progressFunc(c *cli.Context, label string) func(done, total int) {
	var p *progress
	last := -1
	return func(done, total int) {
		if p == nil || total != last {
			if p != nil {
				p.Done()
			}
			p, last = newProgress(c, label, total), total
		}
		p.Add(1)
		if done == total {
			p.Done()
			p = nil
		}
	}
}

func fmtShape(s []int) string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = strconv.Itoa(d)
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func fmtCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

func fmtLayers(l []int) string {
	if len(l) == 0 {
		return "none numbered"
	}
	contiguous := l[len(l)-1]-l[0] == len(l)-1
	if contiguous && len(l) > 2 {
		return fmt.Sprintf("%d-%d (%d)", l[0], l[len(l)-1], len(l))
	}
	parts := make([]string, len(l))
	for i, x := range l {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",") + fmt.Sprintf(" (%d)", len(l))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeSummary prints the readable form of an inspect summary.
func writeSummary(w io.Writer, s *inspect.Summary, stats bool) {
	fmt.Fprintf(w, "path:           %s\n", s.Path)
	if s.Error != "" {
		fmt.Fprintf(w, "error:          %s\n", s.Error)
	}
	var bytes int64
	for _, f := range s.Files {
		bytes += f.FileBytes
	}
	fmt.Fprintf(w, "container:      %s (%d file(s), %d bytes)\n", s.Container, len(s.Files), bytes)
	fmt.Fprintf(w, "format:         %s   peft_type: %s   base model: %s   architecture: %s\n", orDash(s.Format), orDash(s.PeftType), orDash(s.BaseModel), orDash(s.Architecture))
	var cls []string
	for _, c := range s.Classification {
		cls = append(cls, fmt.Sprintf("%s (%s, %d tensors)", c.Class, c.Method, c.Tensors))
	}
	fmt.Fprintf(w, "classification: %s\n", orDash(strings.Join(cls, "; ")))
	fmt.Fprintf(w, "totals:         %d tensors, %d parameters, %d bytes; dtypes %s\n", s.Totals.Tensors, s.Totals.Parameters, s.Totals.Bytes, fmtCounts(s.Totals.DTypes))
	if len(s.Modules) > 0 {
		fmt.Fprintf(w, "modules:        %d (%s); layers %s; types %s\n", s.Totals.Modules, fmtCounts(s.Totals.Kinds), fmtLayers(s.Layers), fmtCounts(s.ModuleTypes))
	}
	if stats && s.Totals.DeltaFroNorm > 0 {
		fmt.Fprintf(w, "total ‖ΔW‖_F:   %.6g\n", s.Totals.DeltaFroNorm)
	}
	for _, t := range s.TargetMatches {
		fmt.Fprintf(w, "target %-20q matches %d %s module(s)\n", t.Entry, t.Matches, t.Against)
	}
	if len(s.Modules) > 0 {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		hdr := "MODULE\tKIND\tRANK\tALPHA\tSCALE\tIN\tOUT\t"
		if stats {
			hdr += "‖A‖\t‖B‖\t‖ΔW‖_F\tσ1\tEFF.RANK\tSTABLE\tR90\tR99\t"
		}
		fmt.Fprintln(tw, hdr)
		for _, m := range s.Modules {
			rank, alpha, scale := "-", "-", "-"
			if m.Rank > 0 {
				rank = strconv.Itoa(m.Rank)
				alpha = strconv.FormatFloat(m.Alpha, 'g', 6, 64)
				if !m.AlphaKnown {
					alpha += "?"
				}
				scale = strconv.FormatFloat(m.Scale, 'g', 6, 64)
			}
			line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%d\t%d\t", m.Name, m.Kind, rank, alpha, scale, m.InFeatures, m.OutFeatures)
			if stats {
				if st := m.ModuleStats; st != nil && (len(st.SingularValues) > 0 || st.DeltaFroNorm > 0) {
					s1 := 0.0
					if len(st.SingularValues) > 0 {
						s1 = st.SingularValues[0]
					}
					line += fmt.Sprintf("%.4g\t%.4g\t%.4g\t%.4g\t%.3g\t%.3g\t%d\t%d\t", st.NormA, st.NormB, st.DeltaFroNorm, s1, st.EffectiveRank, st.StableRank, st.Rank90, st.Rank99)
				} else {
					line += "-\t-\t-\t-\t-\t-\t-\t-\t"
				}
			}
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	hdr := "TENSOR\tDTYPE\tSHAPE\tBYTES\t"
	if stats {
		hdr += "MIN\tMAX\tMEAN\tSTD\tZEROS\tNAN\tINF\tDENORM\t"
	}
	fmt.Fprintln(tw, hdr)
	for _, t := range s.Tensors {
		dt := t.DType
		if t.Quant != "" {
			dt += " (" + t.Quant + ")"
		}
		line := fmt.Sprintf("%s\t%s\t%s\t%d\t", t.Name, dt, fmtShape(t.Shape), t.Bytes)
		if stats {
			if st := t.Stats; st != nil {
				line += fmt.Sprintf("%.4g\t%.4g\t%.4g\t%.4g\t%d\t%d\t%d\t%d\t", st.Min, st.Max, st.Mean, st.Std, st.Zeros, st.NaN, st.Inf, st.Denormal)
			} else {
				line += "-\t-\t-\t-\t-\t-\t-\t-\t"
			}
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	if len(s.Metadata) > 0 {
		fmt.Fprintln(w, "\nmetadata:")
		keys := make([]string, 0, len(s.Metadata))
		for k := range s.Metadata {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			v := strings.ReplaceAll(s.Metadata[k], "\n", " ")
			if r := []rune(v); len(r) > 100 {
				v = string(r[:100]) + "…"
			}
			fmt.Fprintf(w, "  %s = %s\n", k, v)
		}
	}
	if len(s.Hashes) > 0 {
		fmt.Fprintln(w, "\nhashes:")
		names := make([]string, 0, len(s.Hashes))
		for n := range s.Hashes {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			h := s.Hashes[n]
			fmt.Fprintf(w, "  %s\n    sha256 %s\n    data sha256 (= sshs_model_hash) %s\n    sshs_legacy_hash %s\n", n, h.SHA256, h.DataSHA256, h.KohyaLegacyHash)
		}
	}
	if len(s.Warnings) > 0 {
		fmt.Fprintf(w, "\nwarnings (%d):\n", len(s.Warnings))
		for _, x := range s.Warnings {
			fmt.Fprintf(w, "  - %s\n", x)
		}
	}
}
