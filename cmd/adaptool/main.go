// Command adaptool reads, checks, inspects, combines, quantizes, converts and
// compresses PEFT adapter files offline. See README.md and SPEC.md at the
// repository root for the commands, their JSON output and exit codes.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code. Errors
// are printed to stderr as "adaptool: <message>"; nothing else is.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(reorderArgs(app, args))
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
