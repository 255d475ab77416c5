package main

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/ops"
	"github.com/urfave/cli/v2"
)

// Shared plumbing of the ops commands (merge, add, sub, neg, scale, resize,
// reweight, prune).

// opsFlags returns the flags every ops command takes, then extra.
func opsFlags(extra ...cli.Flag) []cli.Flag {
	return commonFlags(append([]cli.Flag{
		outputFlag("output PEFT adapter directory"),
		dryRunFlag(),
		&cli.StringFlag{Name: "dtype", Usage: "output tensor dtype: f32|f16|bf16 (default f32)"},
	}, extra...)...)
}

// runOptions builds ops.RunOptions from the common flags; -o is required
// unless --dry-run.
func runOptions(c *cli.Context, label string) (ops.RunOptions, func(), error) {
	o := ops.RunOptions{Output: c.String("output"), DryRun: c.Bool("dry-run"), DType: c.String("dtype")}
	if o.Output == "" && !o.DryRun {
		return o, nil, usagef("%s: missing -o OUT", c.Command.Name)
	}
	var (
		p    *progress
		once sync.Once
	)
	o.Progress = func(done, total int) { // called concurrently by the worker pool
		once.Do(func() { p = newProgress(c, label, total) })
		p.Add(1)
	}
	return o, func() {
		once.Do(func() {})
		if p != nil {
			p.Done()
		}
	}, nil
}

// opsError maps an ops error to the CLI's exit codes: invalid parameters
// are usage errors (3); unreadable adapters are input errors (2); the rest
// (incompatible inputs, refusals, write failures) exit 4.
func opsError(c *cli.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ops.ErrParams):
		return usagef("%s: %v", c.Command.Name, err)
	case errors.Is(err, adapter.ErrConfig), errors.Is(err, adapter.ErrNoAdapter), errors.Is(err, adapter.ErrShape),
		errors.Is(err, adapter.ErrUnsupported), errors.Is(err, ops.ErrNonFinite):
		return exitErr(exitInput, err)
	}
	return err
}

// finish prints the report (JSON or text) and maps err. On failure the
// report is printed only for refusals and dry runs (it then says why and
// claims nothing was written).
func finish(c *cli.Context, rep *ops.Report, err error) error {
	if rep != nil && (err == nil || rep.DryRun || rep.Refused > 0) {
		if wantJSON(c) {
			if perr := printJSON(c, rep); perr != nil {
				return perr
			}
		} else {
			printReport(stdout(c), rep)
		}
	}
	return opsError(c, err)
}

// printReport writes the text form of a report: one line per module and a
// summary.
func printReport(w io.Writer, r *ops.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODULE\tSTATUS\tIN RANKS\tRANK\tENERGY\tFRO ERROR\tBYTES")
	for _, m := range r.Modules {
		ranks := make([]string, len(m.InputRanks))
		for i, k := range m.InputRanks {
			ranks[i] = strconv.Itoa(k)
			if k == 0 {
				ranks[i] = "-"
			}
		}
		energy, fe := "", ""
		if m.Stats != nil {
			energy = strconv.FormatFloat(m.Stats.Energy, 'f', 6, 64)
			fe = strconv.FormatFloat(m.Stats.FroError, 'g', 6, 64)
		}
		if m.Reweight != nil {
			energy = fmt.Sprintf("‖σ‖ %.4g→%.4g", m.Reweight.NormIn, m.Reweight.NormOut)
		}
		status := m.Status
		if m.Reason != "" {
			status += ": " + m.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\n", m.Name, status, strings.Join(ranks, ","), m.Rank, energy, fe, m.Bytes)
	}
	tw.Flush()
	verb := "wrote"
	if r.DryRun || r.Refused > 0 {
		verb = "would write"
	}
	fmt.Fprintf(w, "%s: %d modules (%d matched, %d partial, %d passthrough, %d removed, %d refused); %s %d tensor bytes",
		r.Operation, len(r.Modules), r.Matched, r.Partial, r.Passthrough, r.Removed, r.Refused, verb, r.Bytes)
	if r.Output != "" {
		fmt.Fprintf(w, " to %s", r.Output)
	}
	fmt.Fprintln(w)
	if m := r.Memory; m != nil {
		fmt.Fprintf(w, "memory: %d worker(s), estimated peak %.1f MiB of a %.1f MiB budget (%d elementwise module(s) streamed in tiles, %d held whole)\n",
			m.Workers, float64(m.PeakBytes)/(1<<20), float64(m.MaxMemory)/(1<<20), m.Streamed, m.Cached)
	}
	ws := append([]string(nil), r.Warnings...)
	sort.Strings(ws)
	for _, x := range ws {
		fmt.Fprintf(w, "warning: %s\n", x)
	}
}

// parseWeights parses "1,-0.5,2".
func parseWeights(s string) ([]float64, error) {
	if s == "" {
		return nil, nil
	}
	var w []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return nil, usagef("--weights: %q is not a number", f)
		}
		w = append(w, v)
	}
	return w, nil
}
