package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/mmapfile"
)

// writeTruncateAdapter writes a PEFT adapter of one module whose lora_B
// (16384×64 F32, 4 MiB, 1 Mi elements: the kernels split it across
// goroutines) is large, and returns the directory, its weights file and
// two offsets to cut the file at: cutB, 64 KiB into lora_B's data, so the
// header and lora_A (64×64, first in the file) stay whole and the work on
// lora_B reads bytes past the cut; cutA, 4 KiB into lora_A's data.
func writeTruncateAdapter(t *testing.T) (dir, weights string, cutB, cutA int64) {
	t.Helper()
	const in, out, r = 64, 1 << 14, 64
	rng := rand.New(rand.NewPCG(7, 7))
	m := adapter.OutModule{Name: "model.layers.0.mlp.down_proj", Rank: r, In: in, Out: out, Scale: 2,
		A: make([]float32, r*in), B: make([]float32, out*r)}
	for i := range m.A {
		m.A[i] = float32(rng.NormFloat64())
	}
	for i := range m.B {
		m.B[i] = float32(rng.NormFloat64())
	}
	dir = filepath.Join(t.TempDir(), "adapter")
	if err := adapter.WritePEFT(dir, &adapter.Output{Modules: []adapter.OutModule{m}}); err != nil {
		t.Fatal(err)
	}
	weights = filepath.Join(dir, "adapter_model.safetensors")
	h, err := safetensors.OpenHeader(weights)
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range h.Tensors {
		switch {
		case strings.HasSuffix(ti.Name, "lora_A.weight"):
			cutA = h.DataOffset() + ti.Offsets[0] + 4<<10
		case strings.HasSuffix(ti.Name, "lora_B.weight"):
			cutB = h.DataOffset() + ti.Offsets[0] + 64<<10
		}
	}
	if cutA == 0 || cutB <= cutA {
		t.Fatalf("unexpected layout: lora_A cut at %d, lora_B cut at %d", cutA, cutB)
	}
	return dir, weights, cutB, cutA
}

// TestTruncatedInput runs commands on an input that another process
// truncates after adaptool has opened and memory-mapped it and before the
// tensor bytes are read (the mmapfile hook cuts the file as soon as it is
// mapped). Reading the mapping past the cut faults (SIGBUS), on the
// command's goroutine or on worker goroutines (kernels, hashing, packing);
// each command must exit 2 with one stderr line naming the input and
// saying it changed, and leave no output (not even a temporary file)
// behind, instead of crashing.
func TestTruncatedInput(t *testing.T) {
	defer runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), 4))
	if f, err := os.Open(os.Args[0]); err == nil {
		m, _ := mmapfile.Map(f, 4096)
		mmapfile.Unmap(m)
		f.Close()
		if m == nil {
			t.Skip("files are not memory-mapped on this platform")
		}
	}
	tests := []struct {
		name    string
		args    func(dir, weights, out string) []string
		mapping int32 // the input is cut after its mapping-th mapping
		pageCut bool  // cut at a page boundary
		written bool  // the output is in place before the input is read again
		cutA    bool  // cut 4 KiB into lora_A instead of 64 KiB into lora_B
	}{
		{name: "scale", mapping: 1, args: func(dir, _, out string) []string {
			return []string{"scale", "--by", "0.5", dir, "-o", filepath.Join(out, "scaled.safetensors")}
		}},
		// lora_A, copied unchanged inside the kernel (copy_file_range), is
		// cut too: the copy ends early instead of faulting.
		{name: "scale (copied tensor cut)", mapping: 1, cutA: true, args: func(dir, _, out string) []string {
			return []string{"scale", "--by", "0.5", dir, "-o", filepath.Join(out, "scaled.safetensors")}
		}},
		// convert --dtype opens every file of a directory before it writes
		// anything: the input is cut after the second mapping.
		{name: "convert --dtype bf16", mapping: 2, args: func(dir, _, out string) []string {
			return []string{"convert", "--dtype", "bf16", dir, "-o", filepath.Join(out, "bf16")}
		}},
		{name: "convert --dtype bf16 file", mapping: 1, args: func(_, weights, out string) []string {
			return []string{"convert", "--dtype", "bf16", weights, "-o", filepath.Join(out, "bf16.safetensors")}
		}},
		{name: "validate", mapping: 1, args: func(dir, _, _ string) []string { return []string{"validate", dir} }},
		{name: "validate --json", mapping: 1, args: func(_, weights, _ string) []string {
			return []string{"validate", "--json", weights}
		}},
		{name: "inspect --stats", mapping: 1, args: func(dir, _, _ string) []string {
			return []string{"inspect", "--stats", dir}
		}},
		{name: "pack", mapping: 1, args: func(_, weights, out string) []string {
			return []string{"pack", weights, "-o", filepath.Join(out, "a.atz")}
		}},
		{name: "pack --dry-run", mapping: 1, args: func(_, weights, out string) []string {
			return []string{"pack", "--dry-run", weights, "-o", filepath.Join(out, "a.atz")}
		}},
		// pack writes the container, then maps the input again to compare:
		// the container, made from the whole input, is already in place and
		// stays there, as after any failed verification. The cut is at a
		// page boundary, or the zeros the rest of the cut page reads as
		// would be reported as a difference before the fault.
		{name: "pack (verify)", mapping: 2, pageCut: true, written: true, args: func(_, weights, out string) []string {
			return []string{"pack", weights, "-o", filepath.Join(out, "a.atz")}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, weights, cut, cutA := writeTruncateAdapter(t)
			if tt.cutA {
				cut = cutA
			}
			if tt.pageCut {
				cut &^= int64(os.Getpagesize() - 1)
			}
			out := t.TempDir()
			var cuts atomic.Int32
			defer mmapfile.SetMapHook(func(name string) {
				if name == weights && cuts.Add(1) == tt.mapping {
					if err := os.Truncate(weights, cut); err != nil {
						t.Error(err)
					}
				}
			})()
			code, _, stderr := runCLI(t, tt.args(dir, weights, out)...)
			t.Logf("exit %d, stderr: %s", code, stderr)
			if n := cuts.Load(); n < tt.mapping {
				t.Fatalf("the input was mapped %d times, want at least %d", n, tt.mapping)
			}
			if code != exitInput {
				t.Errorf("exit code %d, want %d (input unreadable)", code, exitInput)
			}
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "adaptool: ") || !strings.Contains(lines[0], weights) ||
				!strings.Contains(lines[0], "truncated or changed by another process") {
				t.Errorf("stderr %q: want one line naming %s and saying it changed", stderr, weights)
			}
			if left, _ := os.ReadDir(out); len(left) != 0 && !tt.written {
				var names []string
				for _, e := range left {
					names = append(names, e.Name())
				}
				t.Errorf("output left behind: %q", names)
			}
		})
	}
}

// TestExitCodeFileChanged: an input changed while it was read exits 2,
// also when wrapped by the layers that add context.
func TestExitCodeFileChanged(t *testing.T) {
	fe := &safetensors.FaultError{File: "in.safetensors", Offset: 4096}
	for _, err := range []error{fe, fmt.Errorf("writing out: tensor %q: %w", "w", fe), safetensors.ErrFileChanged} {
		if got := exitCode(err); got != exitInput {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, exitInput)
		}
	}
}
