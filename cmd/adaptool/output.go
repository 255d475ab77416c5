package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/urfave/cli/v2"
)

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }

// wantJSON reports whether the command was asked for --json.
func wantJSON(c *cli.Context) bool { return c.Bool("json") }

// printJSON writes v as one indented JSON document (and a newline) on stdout.
func printJSON(c *cli.Context, v any) error {
	enc := json.NewEncoder(c.App.Writer)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// stdout returns the command's standard output.
func stdout(c *cli.Context) io.Writer { return c.App.Writer }

// progress reports the advance of long work on stderr. It prints only when
// stderr is a terminal and --quiet is not set, so pipes and logs stay clean.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	total int
	done  int
	last  time.Time
	on    bool
}

// newProgress returns a progress reporter for total steps.
func newProgress(c *cli.Context, label string, total int) *progress {
	p := &progress{w: c.App.ErrWriter, label: label, total: total}
	p.on = !c.Bool("quiet") && isTerminal(c.App.ErrWriter)
	return p
}

// Add records n finished steps; it is safe for concurrent use.
func (p *progress) Add(n int) {
	if p == nil || !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if now := time.Now(); now.Sub(p.last) > 100*time.Millisecond || p.done == p.total {
		p.last = now
		fmt.Fprintf(p.w, "\r%s %d/%d", p.label, p.done, p.total)
	}
}

// Done ends the progress line.
func (p *progress) Done() {
	if p == nil || !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "\r%s %d/%d\n", p.label, p.done, p.total)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
