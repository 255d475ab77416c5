package convert

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
)

type kohyaMod struct {
	name       string
	r, in, out int
	alpha      float32
	down, up   []float32
}

func writeKohya(t *testing.T, path string, mods []*kohyaMod) {
	rng := rand.New(rand.NewPCG(11, 12))
	var ts []safetensors.Tensor
	f32 := func(v []float32) []byte { b, _ := encode(v, safetensors.F32); return b }
	for _, m := range mods {
		m.down = make([]float32, m.r*m.in)
		m.up = make([]float32, m.out*m.r)
		for i := range m.down {
			m.down[i] = float32(rng.NormFloat64())
		}
		for i := range m.up {
			m.up[i] = float32(rng.NormFloat64())
		}
		ts = append(ts,
			safetensors.Tensor{Name: m.name + ".lora_down.weight", DType: safetensors.F32, Shape: []int{m.r, m.in}, Data: f32(m.down)},
			safetensors.Tensor{Name: m.name + ".lora_up.weight", DType: safetensors.F32, Shape: []int{m.out, m.r}, Data: f32(m.up)},
			safetensors.Tensor{Name: m.name + ".alpha", DType: safetensors.F32, Shape: []int{}, Data: f32([]float32{m.alpha})})
	}
	if err := safetensors.WriteFile(path, ts, nil); err != nil {
		t.Fatal(err)
	}
}

// row o of the fused ΔW = (alpha/r)·up·down, in float64
func fusedRow(m *kohyaMod, o int) []float64 {
	row := make([]float64, m.in)
	s := float64(m.alpha) / float64(m.r)
	for k := 0; k < m.r; k++ {
		for i := 0; i < m.in; i++ {
			row[i] += float64(m.up[o*m.r+k]) * float64(m.down[k*m.in+i])
		}
	}
	for i := range row {
		row[i] *= s
	}
	return row
}

// sd-scripts Flux files fuse q/k/v (and the single-block MLP input); the
// diffusers form splits them. kohya → diffusers splits B by rows (exact);
// diffusers → kohya concatenates A along the rank with a block-diagonal B
// (exact for a shared scale), reproducing the original ΔW.
func TestFluxFusedSplitAndFuse(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "flux_kohya.safetensors")
	linear1 := &kohyaMod{name: "lora_unet_single_blocks_0_linear1", r: 4, in: 16, out: 56, alpha: 2}
	qkv := &kohyaMod{name: "lora_unet_double_blocks_1_img_attn_qkv", r: 4, in: 16, out: 24, alpha: 4}
	proj := &kohyaMod{name: "lora_unet_double_blocks_1_img_attn_proj", r: 2, in: 8, out: 8, alpha: 2}
	writeKohya(t, src, []*kohyaMod{linear1, qkv, proj})

	a, err := adapter.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	diff := filepath.Join(dir, "diffusers.safetensors")
	if _, err := ToDiffusers(a, diff, Options{}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	got := deltasFull(t, diff)
	parts := []struct {
		name  string
		src   *kohyaMod
		start int
		n     int
	}{
		{"transformer/single_transformer_blocks.0.attn.to_q", linear1, 0, 8},
		{"transformer/single_transformer_blocks.0.attn.to_k", linear1, 8, 8},
		{"transformer/single_transformer_blocks.0.attn.to_v", linear1, 16, 8},
		{"transformer/single_transformer_blocks.0.proj_mlp", linear1, 24, 32},
		{"transformer/transformer_blocks.1.attn.to_q", qkv, 0, 8},
		{"transformer/transformer_blocks.1.attn.to_k", qkv, 8, 8},
		{"transformer/transformer_blocks.1.attn.to_v", qkv, 16, 8},
		{"transformer/transformer_blocks.1.attn.to_out.0", proj, 0, 8},
	}
	if len(got) != len(parts) {
		t.Fatalf("%d diffusers modules, want %d: %v", len(got), len(parts), keysOf(got))
	}
	for _, p := range parts {
		d, ok := got[p.name]
		if !ok || d.out != p.n {
			t.Fatalf("%s: missing or %d rows", p.name, d.out)
		}
		for o := 0; o < p.n; o++ {
			want := fusedRow(p.src, p.start+o)
			for i, w := range want {
				if d.w[o*d.in+i] != w {
					t.Fatalf("%s ΔW[%d,%d] = %v, want %v", p.name, o, i, d.w[o*d.in+i], w)
				}
			}
		}
	}
	// and back: fused again
	b, err := adapter.Load(diff)
	if err != nil {
		t.Fatal(err)
	}
	back := filepath.Join(dir, "back.safetensors")
	res, err := ToKohya(b, back, Options{})
	b.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Modules) != 3 {
		t.Fatalf("%d kohya modules: %+v", len(res.Modules), res.Modules)
	}
	full := deltasFull(t, back)
	for _, m := range []*kohyaMod{linear1, qkv, proj} {
		comp, path, _ := fromKohya(m.name, nil)
		_ = comp
		key := "transformer/" + path
		if m == linear1 || m == qkv {
			// fused modules decode to their BFL path; look them up by kohya name
			key = "kohya/" + m.name
		}
		d, ok := full[key]
		if !ok {
			t.Fatalf("%s missing in %v", key, keysOf(full))
		}
		for o := 0; o < m.out; o++ {
			want := fusedRow(m, o)
			for i, w := range want {
				if d.w[o*d.in+i] != w {
					t.Fatalf("%s ΔW[%d,%d] = %v, want %v", m.name, o, i, d.w[o*d.in+i], w)
				}
			}
		}
	}
}

func keysOf(m map[string]delta) []string { return sortedKeys(m) }

// deltasFull computes every module's full ΔW (small test adapters only);
// fused kohya Flux modules are keyed "kohya/<name>".
func deltasFull(t *testing.T, path string) map[string]delta {
	t.Helper()
	a, err := adapter.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	out := map[string]delta{}
	for _, m := range a.Modules {
		f, err := a.Factors(m)
		if err != nil {
			t.Fatal(err)
		}
		ink := f.InK()
		d := delta{out: f.Out, in: ink, w: make([]float64, f.Out*ink)}
		for o := 0; o < f.Out; o++ {
			for k := 0; k < f.Rank; k++ {
				for i := 0; i < ink; i++ {
					d.w[o*ink+i] += float64(f.B[o*f.Rank+k]) * float64(f.A[k*ink+i])
				}
			}
		}
		for i := range d.w {
			d.w[i] *= f.Scale
		}
		key := ""
		if a.Dialect == adapter.DialectKohya {
			if _, p, err := fromKohya(m.Name, nil); err == nil {
				if parts, _ := splitFused(p); parts != nil {
					key = "kohya/" + m.Name
				}
			}
		}
		if key == "" {
			key = canonical(t, a, m)
		}
		out[key] = d
	}
	return out
}
