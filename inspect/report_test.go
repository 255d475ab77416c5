package inspect

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/adaptool/adaptool/svd"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
)

func sampleReport() *Report {
	rng := rand.New(rand.NewPCG(7, 7))
	r := &Report{Title: "adaptool report: sample", Path: "sample/adapter_model.safetensors", Format: "peft", PeftType: "LORA",
		Totals:   Totals{Tensors: 64, Modules: 32, Parameters: 1000, Bytes: 4000, DTypes: map[string]int{"F32": 64}},
		Classes:  []Class{{Class: ClassLowRank, Method: "lora", Tensors: 64}},
		Warnings: []string{"module x: lora_B is all zero (untrained) <script>alert(1)</script>"}}
	for l := 0; l < 16; l++ {
		for _, typ := range []string{"q_proj", "v_proj"} {
			sv := make([]float64, 8)
			for i := range sv {
				sv[i] = math.Exp(-float64(i)*0.5) * (1 + rng.Float64())
			}
			r.Modules = append(r.Modules, ReportModule{Name: fmt.Sprintf("model.layers.%d.%s", l, typ), Layer: l, Block: fmt.Sprintf("model.layers.%d", l), ModuleType: typ, Kind: "lora", Rank: 8,
				FroNorm: 1 + float64(l)*0.1 + float64(len(typ))*0.05*rng.Float64(), SingularValues: sv, EffectiveRank: svd.EffectiveRank(sv)})
		}
	}
	return r
}

// TestReportHTML validates the page structurally: well-formed XML once the
// doctype is stripped, inline <svg> for every figure, no external resource,
// and escaped warnings.
func TestReportHTML(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	body := strings.TrimPrefix(page, "<!DOCTYPE html>\n")

	dec := xml.NewDecoder(strings.NewReader(body))
	dec.Strict = true
	dec.Entity = xml.HTMLEntity
	svgs, paths := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("page is not well-formed: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "svg":
				svgs++
			case "path":
				paths++
			case "script", "link", "img", "iframe":
				t.Errorf("page contains <%s>", se.Name.Local)
			}
			for _, a := range se.Attr {
				if (a.Name.Local == "href" || a.Name.Local == "src") && (strings.HasPrefix(a.Value, "http") || strings.HasPrefix(a.Value, "//")) {
					t.Errorf("external resource %s=%s", a.Name.Local, a.Value)
				}
			}
		}
	}
	if svgs != 4 {
		t.Errorf("%d inline svg figures, want 4", svgs)
	}
	if paths < 50 {
		t.Errorf("only %d svg paths: plots look empty", paths)
	}
	if strings.Contains(page, "<script>alert") {
		t.Error("warning text not escaped")
	}
	for _, id := range []string{"norm_by_layer", "norm_by_type", "spectra", "effective_rank", "warnings"} {
		if !strings.Contains(page, `id="`+id+`"`) {
			t.Errorf("section %s missing", id)
		}
	}
}

// TestReportPNG checks each PNG decodes, has the expected size and is not
// a blank image.
func TestReportPNG(t *testing.T) {
	dir := t.TempDir()
	paths, err := sampleReport().WritePNGs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 4 {
		t.Fatalf("%d PNGs", len(paths))
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if frac := nonBackground(img); frac < 0.01 {
			t.Errorf("%s: only %.4f of the pixels are drawn", p, frac)
		}
	}
	if os.Getenv("INSPECT_KEEP_PNG") != "" {
		for _, p := range paths {
			b, _ := os.ReadFile(p)
			os.WriteFile(filepath.Join(os.Getenv("INSPECT_KEEP_PNG"), filepath.Base(p)), b, 0o644)
		}
	}
}

// TestReportEmpty: a report without low-rank modules has no plots but a valid page.
func TestReportEmpty(t *testing.T) {
	var b bytes.Buffer
	r := &Report{Title: "t", Totals: Totals{DTypes: map[string]int{}}}
	if err := r.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "No low-rank module deltas") {
		t.Error("empty report lacks its note")
	}
}

// TestReportChromium renders the page in headless Chromium when it is
// installed and checks the screenshot is not blank; without it the
// structural checks of TestReportHTML stand alone.
func TestReportChromium(t *testing.T) {
	bin := ""
	for _, c := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"} {
		if _, err := os.Stat(c); err == nil {
			bin = c
			break
		}
	}
	if bin == "" {
		t.Skip("no chromium at /usr/bin/chromium: the HTML is validated structurally by TestReportHTML instead")
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := sampleReport().WriteHTMLFile(page); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "shot.png")
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
		"--hide-scrollbars", "--window-size=1200,2400", "--user-data-dir="+filepath.Join(dir, "profile"), "--screenshot="+shot, "file://"+page)
	done := make(chan error, 1)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			// chromium may exit non-zero after writing the screenshot (dbus,
			// crashpad noise); the screenshot is what counts
			t.Logf("chromium exited with %v", err)
		}
	case <-time.After(50 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("chromium did not finish in 50 s")
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, out.String())
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if frac := nonBackground(img); frac < 0.02 {
		t.Errorf("screenshot nearly blank: %.4f of pixels drawn", frac)
	}
	if os.Getenv("INSPECT_KEEP_PNG") != "" {
		b, _ := os.ReadFile(shot)
		os.WriteFile(filepath.Join(os.Getenv("INSPECT_KEEP_PNG"), "screenshot.png"), b, 0o644)
	}
}

func TestBlockTicks(t *testing.T) {
	for _, c := range []struct {
		labels []string
		want   []string
		title  string
	}{
		{[]string{"model.layers.0", "model.layers.1"}, []string{"0", "1"}, "model.layers"},
		{[]string{"lora_unet_down_blocks_0", "lora_unet_down_blocks_1"}, []string{"0", "1"}, "lora_unet_down_blocks"},
		{[]string{"decoder.block.0", "encoder.block.0"}, []string{"decoder.block.0", "encoder.block.0"}, "block"},
	} {
		ticks := blockTicks(c.labels).Ticks(0, 1)
		for i, tk := range ticks {
			if tk.Label != c.want[i] || tk.Value != float64(i) {
				t.Errorf("%v: tick %d = %+v, want %q", c.labels, i, tk, c.want[i])
			}
		}
		if got := blockTicks(c.labels).axisTitle(); got != c.title {
			t.Errorf("%v: axis %q, want %q", c.labels, got, c.title)
		}
	}
}

// Degenerate inputs draw: a report whose modules all have one nonzero
// singular value (rank-1 deltas, one spectrum point at 1) or none, and
// equal norms everywhere. gonum/plot widens a one-value range to [v−1,
// v+1], which the log-scale spectrum cannot show; it used to panic.
func TestReportDegenerate(t *testing.T) {
	for _, c := range []struct {
		name string
		sv   [][]float64
	}{
		{"one rank-1 module", [][]float64{{2, 0}}},
		{"rank-1 modules", [][]float64{{2}, {3, 1e-20}, {5}}},
		{"a zero spectrum beside a rank-1 one", [][]float64{{0, 0}, {1}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &Report{Title: "t", Totals: Totals{DTypes: map[string]int{}}}
			for i, sv := range c.sv {
				r.Modules = append(r.Modules, ReportModule{Name: fmt.Sprintf("model.layers.%d.q_proj", i), Layer: i,
					Block: fmt.Sprintf("model.layers.%d", i), ModuleType: "q_proj", Kind: "lora", Rank: len(sv), FroNorm: 1,
					SingularValues: sv, EffectiveRank: 1})
			}
			var b bytes.Buffer
			if err := r.WriteHTML(&b); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), "<svg") {
				t.Error("no figure drawn")
			}
		})
	}
}

// A plot gonum/plot cannot draw is an error naming the figure, not a
// crash.
func TestFigureSVGPanicIsError(t *testing.T) {
	p := plot.New()
	p.Y.Scale = plot.LogScale{}
	p.Y.Min, p.Y.Max = -1, 1
	l, err := plotter.NewLine(plotter.XYs{{X: 1, Y: 1}, {X: 2, Y: 2}})
	if err != nil {
		t.Fatal(err)
	}
	p.Add(l)
	_, err = Figure{Name: "broken", plot: p}.SVG()
	if err == nil || !strings.Contains(err.Error(), "figure broken") {
		t.Fatalf("error %v, want one naming figure broken", err)
	}
}
