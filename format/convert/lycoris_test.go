package convert

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/adapter"
	"github.com/adaptool/adaptool/format/safetensors"
	"github.com/adaptool/adaptool/internal/testgen"
)

const (
	lyQ    = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"
	lyK    = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k"
	lyConv = "down_blocks.0.resnets.0.conv1"
	lyC2   = "down_blocks.0.resnets.0.conv2"
)

// dense64 returns every additive module's float64 ΔW (adapter.Delta64,
// built from the factors the file holds), keyed by component/path.
func dense64(t *testing.T, a *adapter.Adapter) map[string][]float64 {
	t.Helper()
	out := map[string][]float64{}
	for _, m := range a.Modules {
		_, v, err := a.Delta64(m)
		if err != nil {
			t.Fatalf("%s: Delta64 %s: %v", a.WeightsPath, m.Name, err)
		}
		out[canonical(t, a, m)] = v
	}
	return out
}

// maxDiff returns max |want−got| and max |want|.
func maxDiff(t *testing.T, what string, want, got []float64) (float64, float64) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var d, w float64
	for i := range want {
		d = math.Max(d, math.Abs(want[i]-got[i]))
		w = math.Max(w, math.Abs(want[i]))
	}
	return d, w
}

// within32 fails unless got equals want within float32 rounding of the
// largest value (2^-24 relative).
func within32(t *testing.T, what string, want, got []float64) float64 {
	t.Helper()
	d, w := maxDiff(t, what, want, got)
	if w == 0 {
		t.Fatalf("%s: reference ΔW is all zero (test cannot fail)", what)
	}
	if d > w*0x1p-24 {
		t.Errorf("%s: max |ΔW diff| %g exceeds float32 rounding of max |ΔW| %g", what, d, w)
	}
	return d
}

func sameDense(t *testing.T, what string, want, got map[string][]float64) float64 {
	t.Helper()
	if len(want) != len(got) || len(want) == 0 {
		t.Fatalf("%s: %d modules, want %d", what, len(got), len(want))
	}
	worst := 0.0
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Fatalf("%s: module %s missing (have %v)", what, k, sortedKeys(got))
		}
		worst = math.Max(worst, within32(t, what+" "+k, w, g))
	}
	return worst
}

func convertTo(t *testing.T, a *adapter.Adapter, to, out string) *Result {
	t.Helper()
	res, err := Convert(a, to, out, Options{})
	if err != nil {
		t.Fatalf("%s → %s: %v", a.WeightsPath, to, err)
	}
	return res
}

// TestLycoPEFTKohyaRoundTrip: PEFT LoHa/LoKr (testgen, PEFT's own layer
// rules) → kohya → PEFT keeps every module's dense ΔW, checked against
// the generator's elementwise float64 reference and between the hops.
func TestLycoPEFTKohyaRoundTrip(t *testing.T) {
	mods := []testgen.LycoModule{
		{Name: lyQ, In: 16, Out: 24},
		{Name: lyK, In: 16, Out: 24, Rank: 2, Alpha: 5},
		{Name: lyConv, In: 8, Out: 12, Kernel: []int{3, 3}, Rank: 3, Alpha: 7},
		{Name: lyC2, In: 12, Out: 12, Kernel: []int{1, 1}},
	}
	cases := []struct {
		name string
		loha bool
		spec testgen.Lyco
		// want the LoKr whole-factor identity split warning
		split bool
	}{
		{"loha plain f32", true, testgen.Lyco{Seed: 1, R: 4, Alpha: 6, Modules: mods}, false},
		{"loha cp bf16", true, testgen.Lyco{Seed: 2, R: 2, Alpha: 3, EffectiveConv: true, DType: safetensors.BF16, Modules: mods}, false},
		{"lokr w1+w2ab, whole conv", false, testgen.Lyco{Seed: 3, R: 1, Alpha: 3, Modules: mods}, true},
		{"lokr both decomposed + cp f16", false, testgen.Lyco{Seed: 4, R: 1, Alpha: 0.75, DecomposeBoth: true, EffectiveConv: true, DType: safetensors.F16,
			Modules: []testgen.LycoModule{{Name: lyQ, In: 64, Out: 96}, {Name: lyConv, In: 32, Out: 48, Kernel: []int{3, 3}}}}, false},
		{"lokr whole, scale != 1", false, testgen.Lyco{Seed: 5, R: 16, Alpha: 8, Modules: mods}, true},
		{"lokr whole, scale 1", false, testgen.Lyco{Seed: 6, R: 8, Alpha: 8, Modules: []testgen.LycoModule{{Name: lyQ, In: 16, Out: 24}, {Name: lyConv, In: 8, Out: 12, Kernel: []int{3, 3}}}}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			var truth *testgen.LycoResult
			var err error
			if c.loha {
				truth, err = testgen.WriteLoHa(filepath.Join(dir, "src"), c.spec)
			} else {
				truth, err = testgen.WriteLoKr(filepath.Join(dir, "src"), c.spec)
			}
			if err != nil {
				t.Fatal(err)
			}
			a0 := mustLoad(t, filepath.Join(dir, "src"))
			d0 := dense64(t, a0)
			for _, m := range a0.Modules {
				within32(t, "loader vs reference "+m.Name, truth.Modules[m.Name].RefDelta(), d0[canonical(t, a0, m)])
			}
			kres := convertTo(t, a0, ToKohyaName, filepath.Join(dir, "k.safetensors"))
			a1 := mustLoad(t, filepath.Join(dir, "k.safetensors"))
			if a1.Dialect != adapter.DialectKohya || a1.Producer != "lycoris" {
				t.Errorf("kohya output: dialect %s producer %q", a1.Dialect, a1.Producer)
			}
			t.Logf("PEFT→kohya max |ΔW diff| %g", sameDense(t, "PEFT→kohya", d0, dense64(t, a1)))
			if got := strings.Contains(strings.Join(kres.Warnings, "\n"), "identity factor"); got != c.split {
				t.Errorf("identity-split warning %v, want %v: %q", got, c.split, kres.Warnings)
			}
			pres := convertTo(t, a1, ToPEFTName, filepath.Join(dir, "p"))
			for _, w := range pres.Warnings {
				if strings.Contains(w, "peft may refuse") {
					t.Errorf("kohya→PEFT of a PEFT-built layout warns: %s", w)
				}
			}
			sameTensors(t, filepath.Join(dir, "src", "adapter_model.safetensors"), filepath.Join(dir, "p", "adapter_model.safetensors"))
			a2 := mustLoad(t, filepath.Join(dir, "p"))
			want := "LOHA"
			if !c.loha {
				want = "LOKR"
			}
			if a2.PeftType != want {
				t.Errorf("peft_type %q, want %s", a2.PeftType, want)
			}
			t.Logf("kohya→PEFT max |ΔW diff| %g", sameDense(t, "kohya→PEFT", d0, dense64(t, a2)))
		})
	}
}

// sameTensors fails unless the two files hold the same tensors (names,
// dtypes, shapes, bytes): PEFT's own layout restored exactly.
func sameTensors(t *testing.T, want, got string) {
	t.Helper()
	fw, err := safetensors.Open(want)
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Close()
	fg, err := safetensors.Open(got)
	if err != nil {
		t.Fatal(err)
	}
	defer fg.Close()
	if len(fw.Tensors) != len(fg.Tensors) {
		t.Fatalf("%d tensors, want %d", len(fg.Tensors), len(fw.Tensors))
	}
	have := map[string]safetensors.TensorInfo{}
	for _, ti := range fg.Tensors {
		have[ti.Name] = ti
	}
	for _, ti := range fw.Tensors {
		g, ok := have[ti.Name]
		if !ok || g.DType != ti.DType || !slices.Equal(g.Shape, ti.Shape) {
			t.Errorf("tensor %s: got %+v, want %s %v", ti.Name, g, ti.DType, ti.Shape)
			continue
		}
		bw, _ := fw.Data(ti.Name)
		bg, _ := fg.Data(ti.Name)
		if !bytes.Equal(bw, bg) {
			t.Errorf("tensor %s: bytes differ", ti.Name)
		}
	}
}

// TestLycoKohyaNative: LyCORIS-style files (testgen.WriteKohyaLyco, with
// LyCORIS' scale rules: a whole+whole LoKr has scale 1 whatever .alpha
// says) → PEFT → kohya.
func TestLycoKohyaNative(t *testing.T) {
	kn := testgen.KohyaName
	cases := []struct {
		name string
		spec testgen.KohyaLyco
		// warn names the modules whose form PEFT's update_layer would not
		// rebuild (no others may be warned about)
		warn []string
	}{
		{"loha", testgen.KohyaLyco{Seed: 11, Modules: []testgen.KohyaLycoModule{
			{Name: kn(lyQ), Kind: "loha", In: 16, Out: 24, Rank: 4, Alpha: 2},
			{Name: kn(lyK), Kind: "loha", In: 16, Out: 24, Rank: 3},
			{Name: kn(lyConv), Kind: "loha", In: 8, Out: 12, Kernel: []int{3, 3}, Rank: 2, Alpha: 1.5, CP: true},
		}}, nil},
		{"loha plain conv bf16", testgen.KohyaLyco{Seed: 12, DType: safetensors.BF16, Modules: []testgen.KohyaLycoModule{
			{Name: kn(lyConv), Kind: "loha", In: 8, Out: 12, Kernel: []int{3, 3}, Rank: 3, Alpha: 6},
		}}, nil},
		{"lokr", testgen.KohyaLyco{Seed: 13, Modules: []testgen.KohyaLycoModule{
			{Name: kn(lyQ), Kind: "lokr", In: 64, Out: 96, Rank: 2, Alpha: 4},
			{Name: kn(lyK), Kind: "lokr", In: 16, Out: 24, Rank: 8, Alpha: 8, W2Whole: true}, // scale 1 forced
			{Name: kn(lyConv), Kind: "lokr", In: 32, Out: 48, Kernel: []int{3, 3}, Rank: 2, Alpha: 3, CP: true},
			{Name: kn(lyC2), Kind: "lokr", In: 48, Out: 48, Kernel: []int{3, 3}, Rank: 1, Alpha: 2, W1Decomposed: true, W2Whole: true},
		}}, []string{kn(lyQ), kn(lyConv), kn(lyC2)}}, // decompose_both (from lyC2) splits whole w1 at small r; lyC2's whole w2 needs r ≥ 4
		{"lokr factor 4", testgen.KohyaLyco{Seed: 15, Modules: []testgen.KohyaLycoModule{
			{Name: kn(lyQ), Kind: "lokr", In: 64, Out: 96, Rank: 2, Alpha: 4, Factor: 4},
			{Name: kn(lyConv), Kind: "lokr", In: 32, Out: 48, Kernel: []int{3, 3}, Rank: 1, Alpha: 3, CP: true, Factor: 4},
		}}, nil},
		{"lokr whole+whole only, alpha ignored", testgen.KohyaLyco{Seed: 14, Modules: []testgen.KohyaLycoModule{
			{Name: kn(lyK), Kind: "lokr", In: 16, Out: 24, Rank: 8, Alpha: 3, W2Whole: true},
			{Name: kn(lyConv), Kind: "lokr", In: 8, Out: 12, Kernel: []int{3, 3}, Rank: 8, W2Whole: true},
		}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			truth, err := testgen.WriteKohyaLyco(filepath.Join(dir, "k.safetensors"), c.spec)
			if err != nil {
				t.Fatal(err)
			}
			a0 := mustLoad(t, truth.Path)
			d0 := dense64(t, a0)
			for _, m := range a0.Modules {
				within32(t, "loader vs LyCORIS reference "+m.Name, truth.Lyco[m.Name].RefDelta(), d0[canonical(t, a0, m)])
			}
			pres := convertTo(t, a0, ToPEFTName, filepath.Join(dir, "p"))
			warned := map[string]bool{}
			for _, w := range pres.Warnings {
				if !strings.Contains(w, "peft may refuse") {
					continue
				}
				name := strings.SplitN(w, `"`, 3)[1]
				warned[name] = true
				if !slices.Contains(c.warn, name) {
					t.Errorf("unexpected PEFT-layout warning: %s", w)
				}
			}
			for _, n := range c.warn {
				if !warned[n] {
					t.Errorf("no PEFT-layout warning for %s: %q", n, pres.Warnings)
				}
			}
			if a := mustLoad(t, filepath.Join(dir, "p")); a.PeftType == "LOKR" {
				var cfg struct {
					DecomposeFactor int `json:"decompose_factor"`
				}
				b, _ := os.ReadFile(filepath.Join(dir, "p", "adapter_config.json"))
				wantF := -1
				if c.spec.Modules[0].Factor != 0 {
					wantF = c.spec.Modules[0].Factor
				}
				if err := json.Unmarshal(b, &cfg); err != nil || cfg.DecomposeFactor != wantF {
					t.Errorf("decompose_factor %d, want %d (%v)", cfg.DecomposeFactor, wantF, err)
				}
			}
			a1 := mustLoad(t, filepath.Join(dir, "p"))
			t.Logf("kohya→PEFT max |ΔW diff| %g", sameDense(t, "kohya→PEFT", d0, dense64(t, a1)))
			convertTo(t, a1, ToKohyaName, filepath.Join(dir, "k2.safetensors"))
			a2 := mustLoad(t, filepath.Join(dir, "k2.safetensors"))
			t.Logf("PEFT→kohya max |ΔW diff| %g", sameDense(t, "PEFT→kohya", d0, dense64(t, a2)))
		})
	}
}

// doraApply is the float64 DoRA fold W' = m·(W+ΔW)/‖W+ΔW‖ with the norm
// per output row (PEFT, LyCORIS wd_on_out without its eps) of an
// out×cols base w.
func doraApply(w, delta []float64, mag []float32, out int) []float64 {
	cols := len(w) / out
	res := make([]float64, len(w))
	for o := 0; o < out; o++ {
		var n float64
		for j := 0; j < cols; j++ {
			v := w[o*cols+j] + delta[o*cols+j]
			n += v * v
		}
		n = math.Sqrt(n)
		for j := 0; j < cols; j++ {
			res[o*cols+j] = float64(mag[o]) * (w[o*cols+j] + delta[o*cols+j]) / n
		}
	}
	return res
}

// lycorisDoRA reads a kohya DoRA module straight from the safetensors file
// (no adapter package) and folds it as LyCORIS' wd_on_out does:
// ΔW = alpha/r · up·down, W' = dora_scale·(W+ΔW)/‖W+ΔW‖_row.
func lycorisDoRA(t *testing.T, f *safetensors.File, name string, w []float64, out int) []float64 {
	t.Helper()
	get := func(s string) []float32 {
		v, err := f.Float32(name + s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	down, up, alpha, mag := get(".lora_down.weight"), get(".lora_up.weight"), get(".alpha"), get(".dora_scale")
	if len(mag) != out {
		t.Fatalf("%s.dora_scale has %d values, want out=%d", name, len(mag), out)
	}
	r := len(up) / out
	cols := len(down) / r
	s := float64(alpha[0]) / float64(r)
	delta := make([]float64, out*cols)
	for o := 0; o < out; o++ {
		for k := 0; k < r; k++ {
			for j := 0; j < cols; j++ {
				delta[o*cols+j] += s * float64(up[o*r+k]) * float64(down[k*cols+j])
			}
		}
	}
	return doraApply(w, delta, mag, out)
}

func randBase(seed uint64, n int) []float64 {
	r := rand.New(rand.NewPCG(seed, 7))
	w := make([]float64, n)
	for i := range w {
		w[i] = r.NormFloat64()
	}
	return w
}

// TestDoRAPEFTKohyaRoundTrip: PEFT DoRA → kohya (dora_scale (out,1[,1,1]))
// → PEFT. The magnitude bytes round-trip bit for bit, ΔW within float32
// rounding, and the DoRA fold on a random base agrees with the float64
// reference from the generator's factors — computed from the PEFT output,
// and from the kohya file read raw with LyCORIS' wd_on_out formula.
func TestDoRAPEFTKohyaRoundTrip(t *testing.T) {
	for _, dt := range []safetensors.DType{safetensors.F32, safetensors.BF16} {
		t.Run(dt.String(), func(t *testing.T) {
			dir := t.TempDir()
			spec := testgen.LoRA{Seed: 21, R: 4, Alpha: 6, DoRA: true, DType: dt,
				RankPattern:  []testgen.KV{{Key: lyK, Value: 2}},
				AlphaPattern: []testgen.KV{{Key: lyConv, Value: 5}},
				Modules: []testgen.Module{{Name: lyQ, In: 16, Out: 24}, {Name: lyK, In: 16, Out: 24},
					{Name: lyConv, In: 8, Out: 12, Kernel: []int{3, 3}}}}
			truth, err := testgen.WriteLoRA(filepath.Join(dir, "src"), spec)
			if err != nil {
				t.Fatal(err)
			}
			scale := map[string]float64{lyQ: 6.0 / 4, lyK: 6.0 / 2, lyConv: 5.0 / 4}
			a0 := mustLoad(t, filepath.Join(dir, "src"))
			kres := convertTo(t, a0, ToKohyaName, filepath.Join(dir, "k.safetensors"))
			if !strings.Contains(strings.Join(kres.Warnings, "\n"), "wd_on_out") {
				t.Errorf("no DoRA layout warning: %q", kres.Warnings)
			}
			a1 := mustLoad(t, filepath.Join(dir, "k.safetensors"))
			convertTo(t, a1, ToPEFTName, filepath.Join(dir, "p"))
			a2 := mustLoad(t, filepath.Join(dir, "p"))
			var cfg struct {
				UseDoRA bool `json:"use_dora"`
			}
			if b, err := os.ReadFile(filepath.Join(dir, "p", "adapter_config.json")); err != nil || json.Unmarshal(b, &cfg) != nil || !cfg.UseDoRA {
				t.Errorf("PEFT output config: use_dora %v (%v)", cfg.UseDoRA, err)
			}
			d0 := dense64(t, a0)
			t.Logf("ΔW PEFT→kohya %g, →PEFT %g", sameDense(t, "PEFT→kohya", d0, dense64(t, a1)), sameDense(t, "kohya→PEFT", d0, dense64(t, a2)))
			for name, f := range truth.Modules {
				kname := testgen.KohyaName(name)
				srcMag := a0.Module(name).Tensors[adapter.RoleMagnitude]
				kMag := a1.Module(kname).Tensors[adapter.RoleMagnitude]
				pMag := a2.Module(name).Tensors[adapter.RoleMagnitude]
				wantK := []int{f.Out, 1}
				for range f.Kernel {
					wantK = append(wantK, 1)
				}
				if !slices.Equal(kMag.Shape, wantK) || !slices.Equal(pMag.Shape, srcMag.Shape) || kMag.DType != dt || pMag.DType != dt {
					t.Errorf("%s: magnitude shapes src %v kohya %v (want %v) peft %v, dtypes %s %s", name, srcMag.Shape, kMag.Shape, wantK, pMag.Shape, kMag.DType, pMag.DType)
				}
				b0, _ := a0.File.Data(srcMag.Name)
				b1, _ := a1.File.Data(kMag.Name)
				b2, _ := a2.File.Data(pMag.Name)
				if !bytes.Equal(b0, b1) || !bytes.Equal(b0, b2) {
					t.Errorf("%s: magnitude bytes differ after the round trip", name)
				}
				// fold on a random base: reference from the generator's factors
				cols := f.In * max(1, product(f.Kernel))
				w := randBase(uint64(len(name)), f.Out*cols)
				want := doraApply(w, f.RefDelta(scale[name]), f.Magnitude, f.Out)
				_, dv, err := a2.Delta64(a2.Module(name))
				if err != nil {
					t.Fatal(err)
				}
				fa, err := a2.Factors(a2.Module(name))
				if err != nil {
					t.Fatal(err)
				}
				dp := within32(t, "PEFT fold "+name, want, doraApply(w, dv, fa.Magnitude, f.Out))
				dk := within32(t, "LyCORIS fold "+name, want, lycorisDoRA(t, a1.File, kname, w, f.Out))
				t.Logf("%s: fold max diff PEFT %g, LyCORIS-from-kohya %g", name, dp, dk)
			}
		})
	}
}

// TestDoRAKohyaNative: a LyCORIS wd_on_out DoRA file → PEFT → kohya.
func TestDoRAKohyaNative(t *testing.T) {
	dir := t.TempDir()
	kn := testgen.KohyaName
	truth, err := testgen.WriteKohyaLyco(filepath.Join(dir, "k.safetensors"), testgen.KohyaLyco{Seed: 31, Modules: []testgen.KohyaLycoModule{
		{Name: kn(lyQ), Kind: "dora", In: 16, Out: 24, Rank: 4, Alpha: 3},
		{Name: kn(lyConv), Kind: "dora", In: 8, Out: 12, Kernel: []int{3, 3}, Rank: 2},
	}})
	if err != nil {
		t.Fatal(err)
	}
	a0 := mustLoad(t, truth.Path)
	convertTo(t, a0, ToPEFTName, filepath.Join(dir, "p"))
	a1 := mustLoad(t, filepath.Join(dir, "p"))
	convertTo(t, a1, ToKohyaName, filepath.Join(dir, "k2.safetensors"))
	a2 := mustLoad(t, filepath.Join(dir, "k2.safetensors"))
	d0 := dense64(t, a0)
	sameDense(t, "kohya→PEFT", d0, dense64(t, a1))
	sameDense(t, "PEFT→kohya", d0, dense64(t, a2))
	for name, f := range truth.DoRA {
		var pm *adapter.Module
		for _, m := range a1.Modules {
			if testgen.KohyaName(m.Name) == name {
				pm = m
			}
		}
		if pm == nil || pm.Kind != adapter.KindDoRA {
			t.Fatalf("%s: no DoRA module in the PEFT output", name)
		}
		fa, err := a1.Factors(pm)
		if err != nil {
			t.Fatal(err)
		}
		for i := range f.Magnitude {
			if math.Float32bits(fa.Magnitude[i]) != math.Float32bits(f.Magnitude[i]) {
				t.Fatalf("%s: magnitude[%d] = %v, want %v bit for bit", name, i, fa.Magnitude[i], f.Magnitude[i])
			}
		}
		cols := f.In * max(1, product(f.Kernel))
		w := randBase(3, f.Out*cols)
		want := doraApply(w, f.RefDelta(truth.Scale[name]), f.Magnitude, f.Out)
		_, dv, err := a1.Delta64(pm)
		if err != nil {
			t.Fatal(err)
		}
		within32(t, "PEFT fold "+name, want, doraApply(w, dv, fa.Magnitude, f.Out))
		within32(t, "kohya fold "+name, want, lycorisDoRA(t, a2.File, name, w, f.Out))
	}
}

// TestLycoRefusals: what has no exact form is refused with ErrRefused (or
// ErrUnmapped), naming the file, the tensor and the rule.
func TestLycoRefusals(t *testing.T) {
	kn := testgen.KohyaName
	cases := []struct {
		name string
		mods []testgen.KohyaLycoModule
		to   string
		want error
		in   []string
	}{
		{"dora input axis", []testgen.KohyaLycoModule{{Name: kn(lyQ), Kind: "dora", In: 16, Out: 24, Rank: 4, DoRAInput: true}},
			ToPEFTName, ErrRefused, []string{kn(lyQ) + ".dora_scale", "input columns", "[1 16]"}},
		{"dora input axis, square", []testgen.KohyaLycoModule{{Name: kn(lyConv), Kind: "dora", In: 12, Out: 12, Kernel: []int{3, 3}, Rank: 2, DoRAInput: true}},
			ToPEFTName, ErrRefused, []string{kn(lyConv) + ".dora_scale", "input columns"}},
		{"loha + lokr", []testgen.KohyaLycoModule{{Name: kn(lyQ), Kind: "loha", In: 16, Out: 24, Rank: 4}, {Name: kn(lyK), Kind: "lokr", In: 16, Out: 24, Rank: 1}},
			ToPEFTName, ErrRefused, []string{"one method", "LOHA: " + kn(lyQ), "LOKR: " + kn(lyK)}},
		{"dora + loha", []testgen.KohyaLycoModule{{Name: kn(lyQ), Kind: "loha", In: 16, Out: 24, Rank: 4}, {Name: kn(lyK), Kind: "dora", In: 16, Out: 24, Rank: 2}},
			ToPEFTName, ErrRefused, []string{"use_dora is global"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "k.safetensors")
			if _, err := testgen.WriteKohyaLyco(p, testgen.KohyaLyco{Seed: 41, Modules: c.mods}); err != nil {
				t.Fatal(err)
			}
			a := mustLoad(t, p)
			_, err := Convert(a, c.to, filepath.Join(t.TempDir(), "out"), Options{})
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
			for _, s := range append(c.in, p) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
		})
	}
	// DoRA on an embedding: refused for both targets, naming the tensor
	embDir := filepath.Join(t.TempDir(), "emb")
	if _, err := testgen.WriteLoRA(embDir, testgen.LoRA{Seed: 43, DoRA: true, Modules: []testgen.Module{
		{Name: "model.embed_tokens", In: 32, Out: 8, Embedding: true}, {Name: "model.layers.0.self_attn.q_proj", In: 8, Out: 8}}}); err != nil {
		t.Fatal(err)
	}
	ea := mustLoad(t, embDir)
	for _, to := range []string{ToKohyaName, ToPEFTName} {
		_, err := Convert(ea, to, filepath.Join(t.TempDir(), "out"), Options{})
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "model.embed_tokens.lora_embedding_A") || !strings.Contains(err.Error(), "embedding") {
			t.Errorf("DoRA embedding → %s: %v", to, err)
		}
	}
	// a LyCORIS LoHa with weight decomposition has no PEFT form
	p := filepath.Join(t.TempDir(), "k.safetensors")
	if _, err := testgen.WriteKohyaLyco(p, testgen.KohyaLyco{Seed: 42, Modules: []testgen.KohyaLycoModule{{Name: kn(lyQ), Kind: "loha", In: 16, Out: 24, Rank: 4}}}); err != nil {
		t.Fatal(err)
	}
	withScale := filepath.Join(t.TempDir(), "wd.safetensors")
	f, err := safetensors.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	var ts []safetensors.Tensor
	for _, info := range f.Tensors {
		tt, err := f.CopyTensor(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tt)
	}
	one, _ := encode(make([]float32, 16), safetensors.F32)
	ts = append(ts, safetensors.Tensor{Name: kn(lyQ) + ".dora_scale", DType: safetensors.F32, Shape: []int{1, 16}, Data: one})
	if err := safetensors.WriteFile(withScale, ts, nil); err != nil {
		t.Fatal(err)
	}
	f.Close()
	a := mustLoad(t, withScale)
	_, err = Convert(a, ToPEFTName, filepath.Join(t.TempDir(), "out"), Options{})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), kn(lyQ)+".dora_scale") || !strings.Contains(err.Error(), "weight decomposition") {
		t.Errorf("LoHa + dora_scale → PEFT: %v", err)
	}
}
