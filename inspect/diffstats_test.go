package inspect

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/format/safetensors"
)

// diffFile writes full-size deltas of several dtypes and sizes, one of them
// larger than diffChunk, a bias-only delta and a LoRA module, and returns
// the path and ‖diff‖_F of each diff module computed here in float64 from
// the values written (each value exactly representable in its dtype).
func diffFile(t *testing.T) (string, map[string]float64) {
	t.Helper()
	r := rand.New(rand.NewPCG(11, 12))
	want := map[string]float64{}
	var ts []safetensors.Tensor
	add := func(name string, dt safetensors.DType, shape ...int) float64 {
		n := 1
		for _, d := range shape {
			n *= d
		}
		data := make([]byte, n*dt.Bits()/8)
		var ss float64
		for i := range n {
			x := r.NormFloat64() * 0.02
			switch dt {
			case safetensors.F64:
				binary.LittleEndian.PutUint64(data[8*i:], math.Float64bits(x))
			case safetensors.F32:
				x = float64(float32(x))
				binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(float32(x)))
			case safetensors.BF16: // a float32 with the low 16 bits clear
				b := math.Float32bits(float32(x)) &^ 0xffff
				x = float64(math.Float32frombits(b))
				binary.LittleEndian.PutUint16(data[2*i:], uint16(b>>16))
			default:
				t.Fatalf("dtype %s", dt)
			}
			ss += x * x
		}
		ts = append(ts, safetensors.Tensor{Name: name, DType: dt, Shape: shape, Data: data})
		return math.Sqrt(ss)
	}
	// 700×500 F32: 1.4 MB, more than one chunk
	want["m.big"] = add("m.big.diff", safetensors.F32, 700, 500)
	add("m.big.diff_b", safetensors.F32, 700)
	want["m.bf"] = add("m.bf.diff", safetensors.BF16, 64, 48)
	want["m.f64"] = add("m.f64.diff", safetensors.F64, 33, 7)
	want["m.conv"] = add("m.conv.diff", safetensors.F32, 8, 4, 3, 3)
	want["m.norm"] = add("m.norm.w_norm", safetensors.F32, 16)
	add("m.norm.b_norm", safetensors.F32, 16)
	add("m.nb.diff_b", safetensors.F32, 16)
	want["m.nb"] = 0
	add("m.q.lora_down.weight", safetensors.F32, 2, 16)
	add("m.q.lora_up.weight", safetensors.F32, 16, 2)
	p := filepath.Join(t.TempDir(), "diff.safetensors")
	if err := safetensors.WriteFile(p, ts, nil); err != nil {
		t.Fatal(err)
	}
	return p, want
}

// TestDiffStats: a full-size delta module gets ‖ΔW‖_F = ‖diff‖_F (the
// norm computed from the values written), null factor norms and spectrum,
// a note, and counts in the total; the JSON carries exactly those keys.
func TestDiffStats(t *testing.T) {
	p, want := diffFile(t)
	s, err := Summarize(p, Options{Stats: true})
	if err != nil {
		t.Fatal(err)
	}
	sumSq := 0.0
	seen := 0
	for _, m := range s.Modules {
		st := m.ModuleStats
		if st == nil {
			t.Fatalf("module %s: no statistics (warnings %q)", m.Name, s.Warnings)
		}
		sumSq += st.DeltaFroNorm * st.DeltaFroNorm
		w, ok := want[m.Name]
		if !ok {
			continue
		}
		seen++
		// float64 sums of the same squares in another order: 1e-12 relative
		if m.Kind != "diff" || !st.FullSize || math.Abs(st.DeltaFroNorm-w) > 1e-12*w {
			t.Errorf("%s (%s): ‖ΔW‖_F %.17g, want %.17g (full size %v)", m.Name, m.Kind, st.DeltaFroNorm, w, st.FullSize)
		}
		if st.NormA != 0 || st.NormB != 0 || len(st.SingularValues) != 0 || st.EffectiveRank != 0 || st.StableRank != 0 {
			t.Errorf("%s: spectrum computed: %+v", m.Name, st)
		}
		if !strings.Contains(st.Note, "full-size additive delta") {
			t.Errorf("%s: note %q", m.Name, st.Note)
		}
	}
	if seen != len(want) {
		t.Errorf("%d diff modules, want %d", seen, len(want))
	}
	if math.Abs(s.Totals.DeltaFroNorm-math.Sqrt(sumSq)) > 1e-12*s.Totals.DeltaFroNorm || s.Totals.DeltaFroNorm <= want["m.big"] {
		t.Errorf("total ‖ΔW‖_F %g, want √Σ = %g", s.Totals.DeltaFroNorm, math.Sqrt(sumSq))
	}
	if nb := s.Modules[moduleIndex(s, "m.nb")].ModuleStats; !strings.Contains(nb.Note, "bias only") || !strings.Contains(nb.Note, "‖diff_b‖ =") {
		t.Errorf("bias-only note %q", nb.Note)
	}

	var buf bytes.Buffer
	if err := s.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Modules []map[string]any `json:"modules"`
		Totals  map[string]any   `json:"totals"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	var enc bytes.Buffer
	if err := newIndentEncoder(&enc, "").Encode(s); err != nil || enc.String() != buf.String() {
		t.Errorf("WriteJSON differs from the Encoder (%v)", err)
	}
	for _, m := range doc.Modules {
		name := m["name"].(string)
		if m["kind"] != "diff" {
			continue
		}
		for _, k := range []string{"norm_a", "norm_b", "effective_rank", "stable_rank", "rank_energy_90", "rank_energy_99"} {
			if v, ok := m[k]; !ok || v != nil {
				t.Errorf("%s: %s = %v (present %v), want null", name, k, v, ok)
			}
		}
		if sv, ok := m["singular_values"].([]any); !ok || len(sv) != 0 {
			t.Errorf("%s: singular_values %v", name, m["singular_values"])
		}
		if d, ok := m["delta_fro_norm"].(float64); !ok || math.Abs(d-want[name]) > 1e-12*want[name] {
			t.Errorf("%s: delta_fro_norm %v, want %v", name, m["delta_fro_norm"], want[name])
		}
		if _, ok := m["note"].(string); !ok {
			t.Errorf("%s: no note", name)
		}
	}
	if d, _ := doc.Totals["delta_fro_norm"].(float64); d != s.Totals.DeltaFroNorm {
		t.Errorf("totals.delta_fro_norm %v", doc.Totals["delta_fro_norm"])
	}

	// the report renders them, with no effective rank
	var html bytes.Buffer
	if err := NewReport(s, nil).WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html.String(), "<td class=\"l\">m.big</td><td>diff</td><td>0</td><td>"+fmt.Sprintf("%.4g", want["m.big"])+"</td><td></td><td></td></tr>") {
		t.Errorf("report row of m.big missing or wrong")
	}
	// without --stats nothing changes: no statistic keys
	plain, err := Summarize(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(plain.Modules[moduleIndex(plain, "m.big")])
	if strings.Contains(string(b), "delta_fro_norm") {
		t.Errorf("statistics without --stats: %s", b)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func moduleIndex(s *Summary, name string) int {
	for i, m := range s.Modules {
		if m.Name == name {
			return i
		}
	}
	return -1
}

// TestDiffStatsNonFinite: a diff holding NaN or Inf has no statistics and a
// warning, and does not make the total non-finite.
func TestDiffStatsNonFinite(t *testing.T) {
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(-1))} {
		v := make([]byte, 4*12)
		for i := range 12 {
			binary.LittleEndian.PutUint32(v[4*i:], math.Float32bits(0.5))
		}
		binary.LittleEndian.PutUint32(v[4*7:], math.Float32bits(bad))
		p := filepath.Join(t.TempDir(), "bad.safetensors")
		if err := safetensors.WriteFile(p, []safetensors.Tensor{
			{Name: "m.diff", DType: safetensors.F32, Shape: []int{3, 4}, Data: v},
			{Name: "ok.diff", DType: safetensors.F32, Shape: []int{4}, Data: v[:16]},
		}, nil); err != nil {
			t.Fatal(err)
		}
		s, err := Summarize(p, Options{Stats: true})
		if err != nil {
			t.Fatal(err)
		}
		if s.Modules[0].Name != "m" || s.Modules[0].ModuleStats != nil || s.Totals.DeltaFroNorm != 1 {
			t.Errorf("%v: stats %+v, total %v", bad, s.Modules[0].ModuleStats, s.Totals.DeltaFroNorm)
		}
		found := false
		for _, w := range s.Warnings {
			found = found || strings.Contains(w, `module "m": diff tensor "m.diff" has NaN or Inf values`)
		}
		if !found {
			t.Errorf("%v: warnings %q", bad, s.Warnings)
		}
		var buf bytes.Buffer
		if err := s.WriteJSON(&buf); err != nil || !json.Valid(buf.Bytes()) {
			t.Errorf("JSON: %v", err)
		}
	}
}

// TestSumSquaresBounded: the norm of a 4 MiB tensor is computed holding at
// most one chunk of it (and its float32 copy) at once.
func TestSumSquaresBounded(t *testing.T) {
	n := 1 << 20
	data := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(0.25))
	}
	p := filepath.Join(t.TempDir(), "big.safetensors")
	if err := safetensors.WriteFile(p, []safetensors.Tensor{{Name: "m.diff", DType: safetensors.F32, Shape: []int{1024, 1024}, Data: data}}, nil); err != nil {
		t.Fatal(err)
	}
	for _, open := range []func() (*safetensors.File, error){
		func() (*safetensors.File, error) { return safetensors.Open(p) },
		func() (*safetensors.File, error) { // not mapped: read with ReadAt
			b := mustRead(t, p)
			return safetensors.NewReader(bytes.NewReader(b), int64(len(b)))
		},
	} {
		f, err := open()
		if err != nil {
			t.Fatal(err)
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ss, finite, err := sumSquares(f, "m.diff")
		runtime.ReadMemStats(&after)
		f.Close()
		if err != nil || !finite || ss != float64(n)/16 {
			t.Fatalf("Σx² = %v (finite %v, %v), want %v", ss, finite, err, float64(n)/16)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 2*diffChunk+64<<10 {
			t.Errorf("allocated %d bytes for a %d-byte tensor", got, len(data))
		}
	}
}
