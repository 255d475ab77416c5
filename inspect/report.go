package inspect

import (
	"bytes"
	"fmt"
	"html/template"
	"image/color"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/adaptool/adaptool/internal/atomicfile"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Report is the plain data behind `adaptool report`: everything the plots
// and the page show, independent of how it was computed.
type Report struct {
	Title     string
	Path      string
	Format    string
	PeftType  string
	BaseModel string
	Totals    Totals
	Classes   []Class
	Modules   []ReportModule
	Warnings  []string
	// Check is the base-compatibility result when --base was given.
	Check *CheckResult
}

// ReportModule is one module's plotted statistics.
type ReportModule struct {
	Name           string
	Layer          int
	Block          string
	ModuleType     string
	Kind           string
	Rank           int
	FroNorm        float64
	SingularValues []float64
	EffectiveRank  float64
	// FullSize marks a full-size delta (kind diff): no spectrum, so no
	// effective rank (left out of the effective-rank plot and table).
	FullSize bool
}

// NewReport extracts the report data from a summary computed with Stats.
func NewReport(s *Summary, check *CheckResult) *Report {
	r := &Report{
		Title: "adaptool report: " + filepath.Base(filepath.Clean(s.Path)), Path: s.Path, Format: s.Format,
		PeftType: s.PeftType, BaseModel: s.BaseModel, Totals: s.Totals, Classes: s.Classification,
		Warnings: append([]string(nil), s.Warnings...), Check: check,
	}
	if s.Error != "" {
		r.Warnings = append([]string{s.Error}, r.Warnings...)
	}
	for _, m := range s.Modules {
		if m.ModuleStats == nil {
			continue
		}
		r.Modules = append(r.Modules, ReportModule{Name: m.Name, Layer: m.Layer, Block: m.Block, ModuleType: m.ModuleType, Kind: m.Kind, Rank: m.Rank,
			FroNorm: m.DeltaFroNorm, SingularValues: m.SingularValues, EffectiveRank: m.EffectiveRank, FullSize: m.FullSize})
	}
	if check != nil {
		for _, p := range check.Problems {
			r.Warnings = append(r.Warnings, "check: "+p.String())
		}
	}
	return r
}

// Figure is one rendered plot.
type Figure struct {
	Name    string // file stem: norm_by_layer, spectra, effective_rank, norm_by_type
	Caption string
	plot    *plot.Plot
}

const figW, figH = 7 * vg.Inch, 4 * vg.Inch

// blocks returns the distinct blocks of the modules in plot order and each
// one's x position. Modules outside any numbered block are placed after the
// blocks, one position each, under their own name.
func (r *Report) blocks() (labels []string, pos func(i int) int) {
	set := map[string]bool{}
	for _, m := range r.Modules {
		if m.Block != "" {
			set[m.Block] = true
		}
	}
	for b := range set {
		labels = append(labels, b)
	}
	sort.Slice(labels, func(i, j int) bool { return blockLess(labels[i], labels[j]) })
	idx := map[string]int{}
	for i, b := range labels {
		idx[b] = i
	}
	extra := map[int]int{}
	for i, m := range r.Modules {
		if m.Block == "" {
			extra[i] = len(labels)
			labels = append(labels, m.Name)
		}
	}
	return labels, func(i int) int {
		if b := r.Modules[i].Block; b != "" {
			return idx[b]
		}
		return extra[i]
	}
}

// byType groups module values per module type and block; a module whose
// value is NaN has none.
func (r *Report) byType(val func(ReportModule) float64, combine func([]float64) float64) (types []string, series map[string]plotter.XYs) {
	_, pos := r.blocks()
	acc := map[string]map[int][]float64{}
	for i, m := range r.Modules {
		x := pos(i)
		v := val(m)
		if math.IsNaN(v) {
			continue // no value for this module
		}
		if acc[m.ModuleType] == nil {
			acc[m.ModuleType] = map[int][]float64{}
			types = append(types, m.ModuleType)
		}
		acc[m.ModuleType][x] = append(acc[m.ModuleType][x], v)
	}
	sort.Strings(types)
	series = map[string]plotter.XYs{}
	for _, t := range types {
		xs := make([]int, 0, len(acc[t]))
		for x := range acc[t] {
			xs = append(xs, x)
		}
		sort.Ints(xs)
		pts := make(plotter.XYs, len(xs))
		for i, x := range xs {
			pts[i] = plotter.XY{X: float64(x), Y: combine(acc[t][x])}
		}
		series[t] = pts
	}
	return types, series
}

// blockTicks labels the x axis with block names: the shared leading text is
// dropped when every block has it ("model.layers.12" → "12"), and at most
// about 16 labels are drawn.
type blockTicks []string

// Ticks implements plot.Ticker.
func (bt blockTicks) Ticks(lo, hi float64) []plot.Tick {
	labels := []string(bt)
	prefix := ""
	if len(labels) > 0 {
		if p, _ := splitBlock(labels[0]); p != "" {
			prefix = labels[0][:len(p)+1] // with its separator, "." or "_"
			for _, l := range labels {
				if !strings.HasPrefix(l, prefix) {
					prefix = ""
					break
				}
			}
		}
	}
	step := max(1, (len(labels)+15)/16)
	var ticks []plot.Tick
	for i, l := range labels {
		t := plot.Tick{Value: float64(i)}
		if i%step == 0 {
			t.Label = strings.TrimPrefix(l, prefix)
		}
		ticks = append(ticks, t)
	}
	return ticks
}

// axisTitle names the x axis after the shared block prefix.
func (bt blockTicks) axisTitle() string {
	if len(bt) == 0 {
		return "block"
	}
	p, _ := splitBlock(bt[0])
	for _, l := range bt {
		if q, _ := splitBlock(l); q != p {
			return "block"
		}
	}
	if p == "" {
		return "block"
	}
	return p
}

func rootSumSquares(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

// maxSeries bounds the legend: further module types are drawn in grey.
const maxSeries = 12

func addSeries(p *plot.Plot, types []string, series map[string]plotter.XYs) error {
	for i, t := range types {
		l, s, err := plotter.NewLinePoints(series[t])
		if err != nil {
			return err
		}
		c := plotutil.Color(i)
		if i >= maxSeries {
			c = color.Gray{Y: 160}
		} else {
			p.Legend.Add(t, l, s)
		}
		l.Color, s.Color = c, c
		s.Shape = plotutil.Shape(i % 7)
		p.Add(l, s)
	}
	p.Legend.Top = true
	p.Legend.Left = false
	headroom(p, len(types))
	return nil
}

// headroom raises the y range so the legend (top right) does not cover data.
func headroom(p *plot.Plot, entries int) {
	f := 0.08 * float64(min(entries, maxSeries)+1)
	if _, ok := p.Y.Scale.(plot.LogScale); ok {
		if p.Y.Max > 0 && p.Y.Min == p.Y.Max {
			// one value only: gonum/plot would widen the range to
			// [v−1, v+1], which a log scale cannot show
			p.Y.Min = p.Y.Max / 10
		}
		if p.Y.Max > 0 && p.Y.Min > 0 {
			p.Y.Max *= math.Pow(p.Y.Max/p.Y.Min, f)
		}
		return
	}
	if p.Y.Max == p.Y.Min {
		p.Y.Max += 1
	}
	p.Y.Max += f * (p.Y.Max - p.Y.Min)
}

// Figures builds the report's plots; a report with no low-rank modules has
// none.
func (r *Report) Figures() ([]Figure, error) {
	if len(r.Modules) == 0 {
		return nil, nil
	}
	var figs []Figure
	labels, _ := r.blocks()
	ticks := blockTicks(labels)
	xlabel := ticks.axisTitle()
	chars := 0
	for _, t := range ticks.Ticks(0, 0) {
		chars += len(t.Label) + 1
	}
	// slanted block labels when they would not fit side by side
	blockAxis := func(p *plot.Plot) {
		p.X.Label.Text = xlabel
		p.X.Tick.Marker = ticks
		if chars > 60 {
			p.X.Tick.Label.Rotation = math.Pi / 4
			p.X.Tick.Label.XAlign = draw.XRight
		}
	}

	// ‖ΔW‖ per layer and module type
	p := plot.New()
	p.Title.Text = "‖ΔW‖_F per block (layer) and module type"
	p.Y.Label.Text = "‖ΔW‖_F (root-sum-square within a block)"
	blockAxis(p)
	types, series := r.byType(func(m ReportModule) float64 { return m.FroNorm }, rootSumSquares)
	if err := addSeries(p, types, series); err != nil {
		return nil, err
	}
	p.Add(plotter.NewGrid())
	figs = append(figs, Figure{Name: "norm_by_layer", Caption: "Frobenius norm of the module deltas per block (layer); one line per module type.", plot: p})

	// ‖ΔW‖ per module type (bar chart)
	p = plot.New()
	p.Title.Text = "‖ΔW‖_F per module type"
	p.Y.Label.Text = "‖ΔW‖_F (root-sum-square over layers)"
	vals := make(plotter.Values, len(types))
	for i, t := range types {
		var ys []float64
		for _, pt := range series[t] {
			ys = append(ys, pt.Y)
		}
		vals[i] = rootSumSquares(ys)
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(max(4, min(40, 400/float64(len(vals)+1)))))
	if err != nil {
		return nil, err
	}
	bars.Color = plotutil.Color(0)
	p.Add(bars)
	p.NominalX(types...)
	p.X.Min, p.X.Max = -0.5, float64(len(types))-0.5
	figs = append(figs, Figure{Name: "norm_by_type", Caption: "Total delta norm per module type.", plot: p})

	// singular-value spectra, σᵢ/σ₁ on a log scale
	p = plot.New()
	p.Title.Text = "Singular-value spectra of ΔW (σᵢ/σ₁)"
	p.X.Label.Text, p.Y.Label.Text = "index i", "σᵢ/σ₁ (log)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	typeIdx := map[string]int{}
	for i, t := range types {
		typeIdx[t] = i
	}
	lines := 0
	for _, m := range r.Modules {
		if len(m.SingularValues) == 0 || m.SingularValues[0] <= 0 {
			continue
		}
		var pts plotter.XYs
		for i, s := range m.SingularValues {
			if q := s / m.SingularValues[0]; q > 1e-12 {
				pts = append(pts, plotter.XY{X: float64(i + 1), Y: q})
			}
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, err
		}
		c := plotutil.Color(typeIdx[m.ModuleType])
		if typeIdx[m.ModuleType] >= maxSeries {
			c = color.Gray{Y: 160}
		}
		l.Color = c
		l.Width = vg.Points(0.8)
		p.Add(l)
		lines++
	}
	for i, t := range types {
		if i >= maxSeries {
			break
		}
		l, _ := plotter.NewLine(plotter.XYs{{X: 1, Y: 1}})
		l.Color = plotutil.Color(i)
		p.Legend.Add(t, l)
	}
	p.Legend.Top = true
	headroom(p, len(types))
	if lines > 0 {
		p.Add(plotter.NewGrid())
		figs = append(figs, Figure{Name: "spectra", Caption: fmt.Sprintf("Normalized singular values of %d module deltas, coloured by module type.", lines), plot: p})
	}

	// effective rank per layer
	p = plot.New()
	p.Title.Text = "Effective rank per block (exp of the entropy of σ/Σσ)"
	p.Y.Label.Text = "effective rank (mean within a block)"
	blockAxis(p)
	types, series = r.byType(func(m ReportModule) float64 {
		if m.FullSize {
			return math.NaN()
		}
		return m.EffectiveRank
	}, mean)
	if len(types) == 0 {
		return figs, nil // only full-size deltas: no spectrum
	}
	if err := addSeries(p, types, series); err != nil {
		return nil, err
	}
	p.Add(plotter.NewGrid())
	figs = append(figs, Figure{Name: "effective_rank", Caption: "Entropy effective rank of the module deltas, mean per block (layer).", plot: p})
	return figs, nil
}

// SVG renders the figure as a standalone SVG element (no XML prolog). A
// plot gonum/plot cannot draw (it panics on some degenerate ranges) is an
// error naming the figure, not a crash.
func (f Figure) SVG() (svg string, err error) {
	defer func() {
		if p := recover(); p != nil {
			if _, fault := p.(interface{ Addr() uintptr }); fault {
				panic(p) // a memory fault belongs to the caller's guard
			}
			svg, err = "", fmt.Errorf("inspect: figure %s cannot be drawn: %v", f.Name, p)
		}
	}()
	wt, err := f.plot.WriterTo(figW, figH, "svg")
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return "", err
	}
	s := b.String()
	if i := strings.Index(s, "<svg"); i > 0 {
		s = s[i:]
	}
	return s, nil
}

// WritePNG writes the figure to dir/<name>.png (atomically).
func (f Figure) WritePNG(dir string) (string, error) {
	wt, err := f.plot.WriterTo(figW, figH, "png")
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		return "", err
	}
	p := filepath.Join(dir, f.Name+".png")
	return p, atomicfile.WriteBytes(p, b.Bytes())
}

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"fmt": func(v float64) string { return fmt.Sprintf("%.4g", v) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8"/>
<title>{{.R.Title}}</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222;background:#fff}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#eee}td.l,th.l{text-align:left}figure{margin:1.5em 0}figcaption{font-size:13px;color:#555}
.warn{color:#a40000}svg{max-width:100%;height:auto}
</style>
</head>
<body>
<h1>{{.R.Title}}</h1>
<p>Path: <code>{{.R.Path}}</code><br/>Format: {{.R.Format}}{{if .R.PeftType}}, PEFT type {{.R.PeftType}}{{end}}{{if .R.BaseModel}}, base model <code>{{.R.BaseModel}}</code>{{end}}<br/>
{{.R.Totals.Tensors}} tensors, {{.R.Totals.Parameters}} parameters, {{.R.Totals.Bytes}} bytes, {{.R.Totals.Modules}} modules{{if .R.Totals.DeltaFroNorm}}, total ‖ΔW‖_F {{fmt .R.Totals.DeltaFroNorm}}{{end}}.</p>
<h2>How it changes the model</h2>
<ul>{{range .R.Classes}}<li>{{.Class}} ({{.Method}}): {{.Tensors}} tensors</li>{{else}}<li>no tensors</li>{{end}}</ul>
<h2 id="warnings">Warnings ({{len .R.Warnings}})</h2>
<ul>{{range .R.Warnings}}<li class="warn">{{.}}</li>{{else}}<li>none</li>{{end}}</ul>
{{if .R.Check}}<h2>Base compatibility</h2><p>{{if .R.Check.OK}}The adapter fits the base model.{{else}}{{len .R.Check.Problems}} problems (listed with the warnings).{{end}}</p>{{end}}
<h2>Plots</h2>
{{range .Figs}}<figure id="{{.Name}}">{{.SVG}}<figcaption>{{.Caption}}</figcaption></figure>
{{else}}<p>No low-rank module deltas to plot.</p>{{end}}
<h2>Modules</h2>
<table><tr><th class="l">module</th><th>kind</th><th>rank</th><th>‖ΔW‖_F</th><th>σ₁</th><th>effective rank</th></tr>
{{range .R.Modules}}<tr><td class="l">{{.Name}}</td><td>{{.Kind}}</td><td>{{.Rank}}</td><td>{{fmt .FroNorm}}</td><td>{{if .SingularValues}}{{fmt (index .SingularValues 0)}}{{end}}</td><td>{{if not .FullSize}}{{fmt .EffectiveRank}}{{end}}</td></tr>
{{end}}</table>
</body>
</html>
`))

type figHTML struct {
	Name, Caption string
	SVG           template.HTML
}

// WriteHTML writes one self-contained HTML page (inline SVG, no scripts,
// no external resources).
func (r *Report) WriteHTML(w io.Writer) error {
	figs, err := r.Figures()
	if err != nil {
		return err
	}
	var fh []figHTML
	for _, f := range figs {
		s, err := f.SVG()
		if err != nil {
			return err
		}
		fh = append(fh, figHTML{Name: f.Name, Caption: f.Caption, SVG: template.HTML(s)})
	}
	return pageTmpl.Execute(w, struct {
		R    *Report
		Figs []figHTML
	}{r, fh})
}

// WriteHTMLFile writes the page to path atomically.
func (r *Report) WriteHTMLFile(path string) error {
	var b bytes.Buffer
	if err := r.WriteHTML(&b); err != nil {
		return err
	}
	return atomicfile.WriteBytes(path, b.Bytes())
}

// WritePNGs writes every figure as dir/<name>.png and returns the paths.
func (r *Report) WritePNGs(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	figs, err := r.Figures()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range figs {
		p, err := f.WritePNG(dir)
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}
