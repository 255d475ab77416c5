// Command adaptool reads, checks, inspects, combines, quantizes, converts and
// compresses PEFT adapter files offline. See README.md and SPEC.md at the
// repository root for the commands, their JSON output and exit codes.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/adaptool/adaptool/format/safetensors"
)

func main() {
	os.Exit(runBuffered(os.Args, os.Stdout, os.Stderr))
}

// runBuffered is run with stdout buffered unless it is a terminal: tables
// are printed cell by cell, which is one system call per cell unbuffered.
// A failure to write stdout (a full disk, a closed pipe) is reported like
// any other write failure.
func runBuffered(args []string, stdout *os.File, stderr io.Writer) int {
	if isTerminal(stdout) {
		return run(args, stdout, stderr)
	}
	bw := bufio.NewWriterSize(stdout, 64<<10)
	code := run(args, bw, flushFirst{bw, stderr})
	if err := bw.Flush(); err != nil {
		fmt.Fprintf(stderr, "adaptool: writing standard output: %v\n", err)
		if code == exitOK || code == exitFindings {
			code = exitFailed
		}
	}
	return code
}

// flushFirst writes to w after flushing buf, so that what a command printed
// to stdout comes before its later stderr lines when both go to one place.
type flushFirst struct {
	buf *bufio.Writer
	w   io.Writer
}

func (f flushFirst) Write(p []byte) (int, error) {
	f.buf.Flush() // a stdout failure is reported once, at the end
	return f.w.Write(p)
}

// run executes one command line and returns the process exit code. Errors
// are printed to stderr as "adaptool: <message>"; nothing else is.
//
// The command runs inside safetensors.CatchFaults: inputs are memory-mapped,
// and a read of an input that another process truncated meanwhile faults;
// the fault becomes an error naming the file (exit code 2) instead of a
// crash, after the deferred cleanups on the way (temporary outputs are
// removed).
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := safetensors.CatchFaults(func() error { return app.Run(reorderArgs(app, args)) })
	if err == nil {
		return exitOK
	}
	if msg := oneLine(err.Error()); msg != "" {
		fmt.Fprintf(stderr, "adaptool: %s\n", msg)
	}
	return exitCode(err)
}

// oneLine joins the lines of a multi-line error message with "; " so that
// every error is exactly one stderr line, as SPEC promises.
func oneLine(msg string) string {
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	out := lines[:0]
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}
