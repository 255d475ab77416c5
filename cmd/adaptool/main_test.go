package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/convert"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/atomicfile"
	"github.com/adaptool/adaptool/ops"
	"github.com/adaptool/adaptool/quant"
	"github.com/adaptool/adaptool/svd"
	"github.com/urfave/cli/v2"
)

// runCLI runs one command line in-process and returns its exit code and
// the text written to stdout and stderr.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"adaptool"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestReorderArgs(t *testing.T) {
	app := &cli.App{Commands: []*cli.Command{{
		Name: "merge",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}},
			&cli.Float64Flag{Name: "by"},
		},
	}}}
	tests := []struct {
		in, want []string
	}{
		{[]string{"a", "merge", "x", "y", "--json"}, []string{"a", "merge", "--json", "x", "y"}},
		{[]string{"a", "merge", "x", "-o", "out", "y"}, []string{"a", "merge", "-o", "out", "x", "y"}},
		{[]string{"a", "merge", "x", "--output=out"}, []string{"a", "merge", "--output=out", "x"}},
		{[]string{"a", "merge", "x", "--by", "-0.5"}, []string{"a", "merge", "--by", "-0.5", "x"}},
		{[]string{"a", "merge", "--", "-odd-name", "--json"}, []string{"a", "merge", "--", "-odd-name", "--json"}},
		{[]string{"a", "other", "x", "--json"}, []string{"a", "other", "x", "--json"}},
		{[]string{"a"}, []string{"a"}},
	}
	for _, tt := range tests {
		if got := reorderArgs(app, tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("reorderArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExitCode(t *testing.T) {
	_, errNotExist := os.Open("/nonexistent/adaptool-test")
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"explicit", exitErr(exitFindings, nil), exitFindings},
		{"wrapped explicit", fmt.Errorf("ctx: %w", exitErr(exitInput, errors.New("x"))), exitInput},
		{"usage", usagef("bad"), exitUsage},
		{"missing file", errNotExist, exitInput},
		{"safetensors format", fmt.Errorf("open x: %w", safetensors.ErrHeaderTooSmall), exitInput},
		{"other", errors.New("boom"), exitFailed},
		// An input's own NaN/Inf is a bad input (SPEC §5.1), also through a
		// wrapper; a non-finite value computed from finite inputs is an
		// overflow refusal.
		{"ops non-finite input", fmt.Errorf("apply: %w", ops.ErrNonFinite), exitInput},
		{"quant non-finite input", fmt.Errorf("x: %w", quant.ErrNonFinite), exitInput},
		{"quant layout", fmt.Errorf("x: %w", quant.ErrLayout), exitInput},
		{"overflow of a computed delta", fmt.Errorf("%w: module m: overflows float32: %w", ops.ErrIncompatible, svd.ErrNonFinite), exitFailed},
		// A valid input the operation does not apply to is a refusal.
		{"nothing to quantize or dequantize", fmt.Errorf("x: %w", quant.ErrNothing), exitFailed},
		{"convert refusal", fmt.Errorf("x: %w", convert.ErrRefused), exitFailed},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("%s: exitCode = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestCLIUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		code    int
		wantErr string
	}{
		{[]string{"no-such-command"}, exitUsage, `unknown command "no-such-command"`},
		{[]string{"version", "--no-such-flag"}, exitUsage, "flag provided but not defined"},
		{[]string{"convert", "in"}, exitUsage, "give --dtype DTYPE or --to DIALECT"},
		{[]string{"convert", "in", "--dtype", "bf16", "--to", "kohya"}, exitUsage, "not both"},
	}
	for _, tt := range tests {
		code, _, stderr := runCLI(t, tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.wantErr) || !strings.HasPrefix(stderr, "adaptool: ") {
			t.Errorf("%q: code %d stderr %q; want code %d and %q", tt.args, code, stderr, tt.code, tt.wantErr)
		}
	}
}

func TestVersionJSON(t *testing.T) {
	code, out, stderr := runCLI(t, "version", "--json")
	if code != exitOK || stderr != "" {
		t.Fatalf("code %d stderr %q", code, stderr)
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version == "" || v.Go == "" || v.Kernels == "" {
		t.Fatalf("bad JSON %q: %v", out, err)
	}
}

// Every command that takes -o takes --no-sync, which turns the fsync of
// outputs off for that command only; commands that read only do not take it.
func TestNoSyncFlag(t *testing.T) {
	t.Cleanup(func() { atomicfile.SetSync(true) })
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{})
	for _, c := range app.Commands {
		var hasOut, hasNoSync bool
		for _, f := range c.Flags {
			for _, n := range f.Names() {
				hasOut = hasOut || n == "output"
				hasNoSync = hasNoSync || n == "no-sync"
			}
		}
		if hasOut != hasNoSync {
			t.Errorf("%s: -o %v but --no-sync %v", c.Name, hasOut, hasNoSync)
		}
	}
	dir := t.TempDir()
	out := dir + "/a.safetensors"
	if code, _, stderr := runCLI(t, "convert", "--dtype", "f16", "--no-sync", "../../testdata/tiny-llama-lora", "-o", out); code != 0 {
		t.Fatalf("convert --no-sync: exit %d: %s", code, stderr)
	}
	if atomicfile.Syncing() {
		t.Fatal("--no-sync left syncing on")
	}
	if code, _, stderr := runCLI(t, "convert", "--dtype", "bf16", "../../testdata/tiny-llama-lora", "-o", dir+"/b.safetensors"); code != 0 {
		t.Fatalf("convert: exit %d: %s", code, stderr)
	}
	if !atomicfile.Syncing() {
		t.Fatal("a command without --no-sync did not turn syncing back on")
	}
}

// With stdout a file, runBuffered prints what run prints and turns a
// failure to write stdout into exit code 4 with a message; stderr writes
// come after what was printed to stdout before them.
func TestRunBufferedStdout(t *testing.T) {
	// The weights alone: scale prints its table and a warning that alpha
	// is unknown.
	dir := t.TempDir()
	in := filepath.Join(dir, "weights.safetensors")
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "tiny-llama-lora", "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"adaptool", "scale", "--by", "0.5", "--no-sync", in, "-o", filepath.Join(dir, "o.safetensors")}
	var want, wantErr bytes.Buffer
	wantCode := run(args, &want, &wantErr)
	if !strings.Contains(want.String(), "alpha unknown") {
		t.Fatalf("no warning in the output %q", want.String())
	}

	out, err := os.Create(filepath.Join(dir, "both"))
	if err != nil {
		t.Fatal(err)
	}
	code := runBuffered(args, out, out)
	out.Close()
	got, _ := os.ReadFile(filepath.Join(dir, "both"))
	if code != wantCode || string(got) != want.String()+wantErr.String() {
		t.Fatalf("exit %d, output:\n%s\nwant exit %d, output:\n%s%s", code, got, wantCode, want.String(), wantErr.String())
	}

	closed, err := os.Create(filepath.Join(dir, "closed"))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	var stderr bytes.Buffer
	code = runBuffered(args, closed, &stderr)
	if code != exitFailed || !strings.Contains(stderr.String(), "writing standard output") {
		t.Fatalf("closed stdout: exit %d, stderr %q; want exit %d and a message", code, stderr.String(), exitFailed)
	}
}

func TestFlushFirst(t *testing.T) {
	var sink bytes.Buffer
	bw := bufio.NewWriter(&sink)
	fmt.Fprint(bw, "table\n")
	fmt.Fprint(flushFirst{bw, &sink}, "adaptool: error\n")
	if sink.String() != "table\nadaptool: error\n" {
		t.Fatalf("got %q", sink.String())
	}
}
