package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

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
				// printJSON's bytes, streamed entry by entry
				if perr := s.WriteJSON(stdout(c)); perr != nil {
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
	bw := bufio.NewWriterSize(w, 64<<10)
	defer bw.Flush()
	w = bw
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
		hdr := "MODULE\tKIND\tRANK\tALPHA\tSCALE\tIN\tOUT\t"
		if stats {
			hdr += "‖A‖\t‖B‖\t‖ΔW‖_F\tσ1\tEFF.RANK\tSTABLE\tR90\tR99\t"
		}
		writeAligned(w, len(s.Modules), func(dst []byte, i int) []byte {
			if i < 0 {
				return append(dst, hdr...)
			}
			m := &s.Modules[i]
			dst = append(append(append(append(dst, m.Name...), '\t'), m.Kind...), '\t')
			if m.Rank > 0 {
				dst = append(strconv.AppendInt(dst, int64(m.Rank), 10), '\t')
				dst = strconv.AppendFloat(dst, m.Alpha, 'g', 6, 64)
				if !m.AlphaKnown {
					dst = append(dst, '?')
				}
				dst = append(strconv.AppendFloat(append(dst, '\t'), m.Scale, 'g', 6, 64), '\t')
			} else {
				dst = append(dst, "-\t-\t-\t"...)
			}
			dst = append(strconv.AppendInt(dst, int64(m.InFeatures), 10), '\t')
			dst = append(strconv.AppendInt(dst, int64(m.OutFeatures), 10), '\t')
			if stats {
				if st := m.ModuleStats; st != nil && st.FullSize {
					// a full-size delta: its norm, no factors, no spectrum
					dst = fmt.Appendf(dst, "-\t-\t%.4g\t-\t-\t-\t-\t-\t", st.DeltaFroNorm)
				} else if st != nil && (len(st.SingularValues) > 0 || st.DeltaFroNorm > 0) {
					s1 := 0.0
					if len(st.SingularValues) > 0 {
						s1 = st.SingularValues[0]
					}
					dst = fmt.Appendf(dst, "%.4g\t%.4g\t%.4g\t%.4g\t%.3g\t%.3g\t%d\t%d\t", st.NormA, st.NormB, st.DeltaFroNorm, s1, st.EffectiveRank, st.StableRank, st.Rank90, st.Rank99)
				} else {
					dst = append(dst, "-\t-\t-\t-\t-\t-\t-\t-\t"...)
				}
			}
			return dst
		})
	}
	fmt.Fprintln(w)
	hdr := "TENSOR\tDTYPE\tSHAPE\tBYTES\t"
	if stats {
		hdr += "MIN\tMAX\tMEAN\tSTD\tZEROS\tNAN\tINF\tDENORM\t"
	}
	writeAligned(w, len(s.Tensors), func(dst []byte, i int) []byte {
		if i < 0 {
			return append(dst, hdr...)
		}
		t := &s.Tensors[i]
		dst = append(append(dst, t.Name...), '\t')
		dst = append(dst, t.DType...)
		if t.Quant != "" {
			dst = append(append(append(dst, " ("...), t.Quant...), ')')
		}
		dst = append(dst, '\t', '[')
		for j, d := range t.Shape {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, int64(d), 10)
		}
		dst = append(strconv.AppendInt(append(dst, ']', '\t'), t.Bytes, 10), '\t')
		if stats {
			if st := t.Stats; st != nil {
				dst = fmt.Appendf(dst, "%.4g\t%.4g\t%.4g\t%.4g\t%d\t%d\t%d\t%d\t", st.Min, st.Max, st.Mean, st.Std, st.Zeros, st.NaN, st.Inf, st.Denormal)
			} else {
				dst = append(dst, "-\t-\t-\t-\t-\t-\t-\t-\t"...)
			}
		}
		return dst
	})
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

// writeAligned writes the header line (line(dst, -1)) and then n lines
// (line(dst, i)), each a sequence of tab-terminated cells and a last,
// unterminated one (often empty), exactly as a text/tabwriter.NewWriter(w,
// 0, 0, 2, ' ', 0) followed by Flush would print them: every terminated cell
// padded with spaces to the widest cell of its column (in runes) plus 2, the
// last cell as it is. The lines are generated twice (widths, then text)
// instead of being held in memory, which matters for 100,000-tensor
// headers. When a line is not plain (a newline, \v, \f or tabwriter's
// escape byte in it, or a cell count different from the header's), the
// lines go through text/tabwriter itself.
func writeAligned(w io.Writer, n int, line func(dst []byte, i int) []byte) {
	var buf []byte
	buf = line(buf[:0], -1)
	widths, ok := cellWidths(buf, nil, -1)
	for i := 0; ok && i < n; i++ {
		buf = line(buf[:0], i)
		_, ok = cellWidths(buf, widths, len(widths))
	}
	if !ok {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for i := -1; i < n; i++ {
			buf = append(line(buf[:0], i), '\n')
			tw.Write(buf)
		}
		tw.Flush()
		return
	}
	var out []byte
	for i := -1; i < n; i++ {
		buf = line(buf[:0], i)
		out = out[:0]
		start := 0
		for j := range widths {
			end := start + bytes.IndexByte(buf[start:], '\t')
			out = append(out, buf[start:end]...)
			for pad := widths[j] + 2 - utf8.RuneCount(buf[start:end]); pad > 0; pad-- {
				out = append(out, ' ')
			}
			start = end + 1
		}
		out = append(append(out, buf[start:]...), '\n')
		w.Write(out)
	}
}

// cellWidths widens widths to the rune counts of the tab-terminated cells of
// line (appending when ncells < 0, for the header). It reports false when
// line is not plain: a byte tabwriter treats specially (newline, \v, \f,
// tabwriter.Escape) or a number of terminated cells other than ncells.
func cellWidths(line []byte, widths []int, ncells int) ([]int, bool) {
	if bytes.ContainsAny(line, "\n\v\f") || bytes.IndexByte(line, tabwriter.Escape) >= 0 {
		return widths, false
	}
	j := 0
	for start := 0; ; j++ {
		k := bytes.IndexByte(line[start:], '\t')
		if k < 0 {
			break // the last, unterminated cell is in no column
		}
		rc := utf8.RuneCount(line[start : start+k])
		if ncells < 0 {
			widths = append(widths, rc)
		} else if j >= ncells {
			return widths, false
		} else if rc > widths[j] {
			widths[j] = rc
		}
		start += k + 1
	}
	return widths, ncells < 0 || j == ncells
}
