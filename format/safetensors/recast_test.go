package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// refRoundBits rounds float64 v (a float32 value) to a binary format with
// mbits fraction bits and minimum exponent emin by RNE, the reference the
// recast values are checked against (independent of ops/kernels).
func refRound(v float64, mbits, emin int) float64 {
	if v == 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return v
	}
	e := max(math.Ilogb(v), emin)
	q := math.Ldexp(1, e-mbits)
	return math.RoundToEven(v/q) * q
}

func f32Data(vals []float32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

func TestRecastFile(t *testing.T) {
	defer func(c int64) { recastChunk = c }(recastChunk)
	recastChunk = 128 // many chunks per tensor, a partial last one
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float32, 3000)
	for i := range vals {
		vals[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(8)-4)))
	}
	vals[0], vals[1], vals[2] = float32(math.Inf(1)), float32(math.NaN()), 1e30
	f16 := make([]byte, 2*7)
	for i := range 7 {
		binary.LittleEndian.PutUint16(f16[2*i:], uint16(0x3c00+i)) // 1 + i·2⁻¹⁰
	}
	ints := []byte{1, 0, 0, 0, 2, 0, 0, 0}
	in := filepath.Join(dir, "in.safetensors")
	meta := map[string]string{"format": "pt", "note": "kept"}
	err := WriteFile(in, []Tensor{
		{Name: "a.lora_A.weight", DType: F32, Shape: []int{30, 100}, Data: f32Data(vals)},
		{Name: "a.lora_B.weight", DType: F16, Shape: []int{7}, Data: f16},
		{Name: "keep.f32", DType: F32, Shape: []int{2}, Data: f32Data([]float32{1.00001, 2})},
		{Name: "steps", DType: I32, Shape: []int{2}, Data: ints},
	}, meta)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out.safetensors")
	rep, err := Recast(in, out, RecastOptions{DType: BF16, Only: regexp.MustCompile(`lora`)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tensors) != 4 || rep.BytesIn != 12000+14+8+8 || rep.BytesOut != 6000+14+8+8 {
		t.Fatalf("report %+v", rep)
	}
	g, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.Metadata["note"] != "kept" {
		t.Errorf("metadata lost: %v", g.Metadata)
	}
	for name, want := range map[string]DType{"a.lora_A.weight": BF16, "a.lora_B.weight": BF16, "keep.f32": F32, "steps": I32} {
		ti, ok := g.Tensor(name)
		if !ok || ti.DType != want {
			t.Fatalf("%s: %v %v, want dtype %v", name, ti, ok, want)
		}
	}
	a, _ := g.Data("a.lora_A.weight")
	for i, v := range vals {
		h := binary.LittleEndian.Uint16(a[2*i:])
		got := float64(math.Float32frombits(uint32(h) << 16))
		want := refRound(float64(v), 7, -126)
		if math.Abs(want) > math.MaxFloat32 {
			want = math.Copysign(math.Inf(1), want)
		}
		if math.IsNaN(float64(v)) {
			if !math.IsNaN(got) {
				t.Fatalf("[%d] NaN became %v", i, got)
			}
			continue
		}
		if got != want {
			t.Fatalf("[%d] %v → %v, want %v", i, v, got, want)
		}
	}
	b, _ := g.Data("a.lora_B.weight")
	for i := range 7 {
		// 1 + i·2⁻¹⁰ in bf16 (7 fraction bits): RNE to a multiple of 2⁻⁷.
		want := refRound(1+float64(i)/1024, 7, -126)
		got := float64(math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[2*i:])) << 16))
		if got != want {
			t.Errorf("f16 [%d] → %v, want %v", i, got, want)
		}
	}
	k, _ := g.Data("keep.f32")
	s, _ := g.Data("steps")
	if !bytes.Equal(k, f32Data([]float32{1.00001, 2})) || !bytes.Equal(s, ints) {
		t.Error("untouched tensors changed")
	}

	// Back to F32 reproduces the bf16 values exactly; dry run writes nothing.
	back := filepath.Join(dir, "back.safetensors")
	if _, err := Recast(out, back, RecastOptions{DType: F32, DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(back); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("dry run wrote %s (%v)", back, err)
	}
	// In place, to F8_E4M3 (saturating).
	if _, err := Recast(out, out, RecastOptions{DType: F8E4M3}); err != nil {
		t.Fatal(err)
	}
	h, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	e, _ := h.Data("a.lora_A.weight")
	if e[0] != 0x7e || e[1]&0x7f != 0x7f || e[2] != 0x7e {
		t.Errorf("E4M3 of +Inf, NaN, 1e30 = %#x %#x %#x, want 0x7e 0x7f 0x7e", e[0], e[1], e[2])
	}
}

func TestRecastDirectory(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "ckpt")
	vals := make([]float32, 1000)
	for i := range vals {
		vals[i] = float32(i) / 7
	}
	var tensors []Tensor
	for i := range 4 {
		tensors = append(tensors, Tensor{Name: string(rune('a'+i)) + ".weight", DType: F32, Shape: []int{1000}, Data: f32Data(vals)})
	}
	if err := WriteCheckpoint(in, tensors, nil, 5000); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in, "config.json"), []byte(`{"x":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(in, "second")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(sub, "adapter_model.safetensors"), tensors[:1], nil); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	rep, err := Recast(in, out, RecastOptions{DType: F16})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Tensors) != 5 || len(rep.Indexes) != 1 || len(rep.Copied) != 1 {
		t.Fatalf("report: %d tensors, indexes %v, copied %v", len(rep.Tensors), rep.Indexes, rep.Copied)
	}
	c, err := OpenCheckpoint(out)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(c.Warnings) != 0 || c.TotalSize != 4*2000 || c.DeclaredTotalSize != 4*2000 {
		t.Fatalf("total %d declared %d warnings %v", c.TotalSize, c.DeclaredTotalSize, c.Warnings)
	}
	got, err := c.Float32("c.weight")
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if want := refRound(float64(v), 10, -14); float64(got[i]) != want {
			t.Fatalf("[%d] %v → %v, want %v", i, v, got[i], want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(out, "config.json")); err != nil || string(b) != `{"x":1}` {
		t.Errorf("config.json: %q %v", b, err)
	}
	g, err := Open(filepath.Join(out, "second", "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	var idx Index
	b, _ := os.ReadFile(filepath.Join(out, IndexFileName))
	if err := json.Unmarshal(b, &idx); err != nil || len(idx.WeightMap) != 4 {
		t.Fatalf("index %s: %v", b, err)
	}
	// An output directory inside the input is skipped, not recast into itself.
	nested := filepath.Join(in, "bf16")
	rep2, err := Recast(in, nested, RecastOptions{DType: BF16})
	if err != nil {
		t.Fatal(err)
	}
	rep3, err := Recast(in, nested, RecastOptions{DType: BF16})
	if err != nil || len(rep3.Tensors) != len(rep2.Tensors) || len(rep2.Tensors) != 5 {
		t.Fatalf("nested output: %v, %d then %d tensors", err, len(rep2.Tensors), len(rep3.Tensors))
	}
}

func TestRecastErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.safetensors")
	if err := os.WriteFile(bad, []byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, '{'}, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "o.safetensors")
	if _, err := Recast(bad, out, RecastOptions{DType: BF16}); !IsFormatError(err) {
		t.Errorf("corrupt input: %v, want a format error", err)
	}
	if _, err := Recast(filepath.Join(dir, "missing"), out, RecastOptions{DType: BF16}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing input: %v", err)
	}
	if _, err := Recast(bad, out, RecastOptions{DType: I8}); err == nil {
		t.Error("I8 target accepted")
	}
	if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("output written on error: %v", err)
	}
}
