package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/adaptool/adaptool/internal/testgen"

	"github.com/adaptool/adaptool/format/adapter"
)

// TestWriteAlignedMatchesTabwriter compares writeAligned with the
// text/tabwriter it replaced, on plain tables and on the cells that make it
// fall back to tabwriter.
func TestWriteAlignedMatchesTabwriter(t *testing.T) {
	for _, c := range []struct {
		name     string
		lines    []string // header first, each line's cells tab-terminated
		fallback bool
	}{
		{"plain", []string{"MODULE\tKIND\tRANK\t", "model.layers.0.q_proj\tlora\t16\t", "x\tfull\t-\t"}, false},
		{"header only", []string{"TENSOR\tDTYPE\tSHAPE\tBYTES\t"}, false},
		{"empty cells", []string{"A\tB\tC\t", "\t\tz\t", "long cell text\t\t\t"}, false},
		{"unicode widths", []string{"‖A‖\t‖ΔW‖_F\tσ1\t", "módulo.ü\t1.5\t2\t", "日本語\tx\ty\t"}, false},
		{"invalid utf-8", []string{"A\tB\t", "\xc3\t\xe2\x80\t"}, false},
		{"html", []string{"A\tB\t", "<b>&amp;\t<\t"}, false},
		{"tab in a name", []string{"A\tB\t", "a\tb\tc\t"}, true},
		{"newline in a name", []string{"A\tB\t", "a\nb\tc\t"}, true},
		{"vertical tab", []string{"A\tB\t", "a\vb\tc\t"}, true},
		{"form feed", []string{"A\tB\t", "a\fb\tc\t"}, true},
		{"escape byte", []string{"A\tB\t", "a\xffb\xff\tc\t"}, true},
		{"text after the last tab", []string{"A\tB\t", "a\tb\ttail"}, false},
		{"last cells unterminated", []string{"SEVERITY\tRULE\tMESSAGE", "warning\tzero-lora-b\tlora_B is all zero", "error\tshape\t"}, false},
		{"fewer cells", []string{"A\tB\t", "a\t"}, true},
		{"more cells", []string{"A\tB", "a\tb\tc"}, true},
		{"newline in the last cell", []string{"A\tB", "a\tb\nc"}, true},
	} {
		var want bytes.Buffer
		tw := tabwriter.NewWriter(&want, 0, 0, 2, ' ', 0)
		for _, l := range c.lines {
			fmt.Fprintln(tw, l)
		}
		tw.Flush()
		line := func(dst []byte, i int) []byte { return append(dst, c.lines[i+1]...) }
		var got bytes.Buffer
		writeAligned(&got, len(c.lines)-1, line)
		if got.String() != want.String() {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got.String(), want.String())
		}
		plain := true
		widths, ok := cellWidths([]byte(c.lines[0]), nil, -1)
		plain = plain && ok
		for _, l := range c.lines[1:] {
			_, ok = cellWidths([]byte(l), widths, len(widths))
			plain = plain && ok
		}
		if plain == c.fallback {
			t.Errorf("%s: plain %v, want fallback %v", c.name, plain, c.fallback)
		}
	}
}

// writeMoE writes n MoE expert modules (2n tensors) as a PEFT file
// (testgen.WriteMoE).
func writeMoE(tb testing.TB, path string, n int) {
	tb.Helper()
	if err := testgen.WriteMoE(path, n); err != nil {
		tb.Fatal(err)
	}
}

func TestInspectMoEText(t *testing.T) {
	p := filepath.Join(t.TempDir(), "moe.safetensors")
	writeMoE(t, p, 130)
	code, out, _ := runCLI(t, "inspect", p)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"modules:        130 (lora:130); layers 0-2 (3); types down_proj:130\n",
		"\nMODULE                                   KIND  RANK  ALPHA  SCALE  IN  OUT  \n",
		"\nmodel.layers.2.mlp.experts.1.down_proj   lora  1     1?     1      4   4    \n",
		"\nbase_model.model.model.layers.2.mlp.experts.1.down_proj.lora_B.weight   F32    [4,1]  16     \n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
}

// BenchmarkInspectBigHeader runs `adaptool inspect [--json]` on a
// 100,000-tensor MoE adapter (50,000 modules, a 13.6 MB header), output
// discarded.
func BenchmarkInspectBigHeader(b *testing.B) {
	p := filepath.Join(b.TempDir(), "moe.safetensors")
	writeMoE(b, p, 50_000)
	for _, args := range [][]string{{"inspect"}, {"inspect", "--json"}, {"validate"}} {
		b.Run(strings.Join(args, " "), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				code := run(append(append([]string{"adaptool"}, args...), p), io.Discard, io.Discard)
				if want := map[bool]int{true: 1, false: 0}[args[0] == "validate"]; code != want { // zero lora_B: findings
					b.Fatalf("exit %d", code)
				}
			}
		})
	}
}

// TestWriteValidateJSON compares the streamed validate --json document with
// the one json.Encoder writes (printJSON).
func TestWriteValidateJSON(t *testing.T) {
	rep := func(fs ...adapter.Finding) *adapter.Report {
		return &adapter.Report{Path: `dir/"findings": []`, File: "a<b>.safetensors", Dialect: adapter.DialectPEFT, Tensors: 3, Modules: 1, Findings: fs}
	}
	for _, c := range []struct {
		name string
		rep  *adapter.Report
	}{
		{"no findings", rep()},
		{"empty findings", rep([]adapter.Finding{}...)},
		{"findings", rep(
			adapter.Finding{Severity: adapter.SeverityWarning, File: "x", Tensor: "t<&>", Module: "m", Rule: adapter.RuleZeroB, Message: "all zero"},
			adapter.Finding{Severity: adapter.SeverityInfo, File: "ü\n", Rule: adapter.RuleAlphaUnknown, Message: "line\nbreak \u2028 \x01"})},
	} {
		doc := validateJSON{Report: c.rep, Clean: c.rep.Clean(), Errors: 1, Warnings: 2, Infos: 3}
		var want, got bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(doc); err != nil {
			t.Fatal(err)
		}
		if err := writeValidateJSON(&got, doc); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Errorf("%s:\n got %s\nwant %s", c.name, got.String(), want.String())
		}
		if c.rep.Path != `dir/"findings": []` || len(c.rep.Findings) != len(doc.Findings) {
			t.Errorf("%s: the report was modified", c.name)
		}
	}
}
