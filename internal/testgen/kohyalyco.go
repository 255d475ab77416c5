package testgen

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/adaptool/adaptool/format/safetensors"
)

// This file writes kohya/LyCORIS-named LoHa, LoKr and DoRA files as
// LyCORIS' modules/{loha,lokr,locon}.py save them (custom_state_dict):
// <name>.hada_* / .lokr_* / .lora_down.weight + .lora_up.weight, a scalar
// .alpha and, for DoRA (weight_decompose), .dora_scale — (out,1[,1,1])
// with wd_on_out, (1,in[,1,1]) without. The scale follows LyCORIS:
// alpha/r (alpha 0 or absent → r), and 1 for a LoKr with whole w1 and w2
// whatever alpha holds.

// KohyaLycoModule is one module of a LyCORIS-style file.
type KohyaLycoModule struct {
	Name    string // kohya name, e.g. lora_unet_down_blocks_0_resnets_0_conv1
	Kind    string // "loha", "lokr" or "dora"
	In, Out int
	Kernel  []int // (kh, kw) for a Conv2d, nil for Linear
	Rank    int
	Alpha   float64 // 0: no .alpha tensor
	// CP: LoHa hada_t1/t2, LoKr lokr_t2 (use_tucker); conv only.
	CP bool
	// LoKr: W1Decomposed writes lokr_w1_a·lokr_w1_b, W2Whole a whole lokr_w2.
	W1Decomposed, W2Whole bool
	// DoRAInput writes dora_scale (1,in[,1,1]) (LyCORIS without wd_on_out).
	DoRAInput bool
	// Factor is LoKr's factorization factor (LyCORIS factor=; 0 means -1).
	Factor int
}

// KohyaLyco describes a LyCORIS-style file.
type KohyaLyco struct {
	Seed    uint64
	Modules []KohyaLycoModule
	DType   safetensors.DType // zero value means F32
}

// KohyaLycoResult is what WriteKohyaLyco wrote: LoHa/LoKr modules as
// Truth (RefDelta gives their ΔW), DoRA modules as Factors (A = down,
// B = up, Magnitude = dora_scale values) with their scale.
type KohyaLycoResult struct {
	Path  string
	Lyco  map[string]*Truth
	DoRA  map[string]*Factors
	Scale map[string]float64
}

// WriteKohyaLyco writes the file at path.
func WriteKohyaLyco(path string, s KohyaLyco) (*KohyaLycoResult, error) {
	dt := dtypeOr(s.DType)
	rng := newRand(s.Seed)
	src := &randSource{fill: func(n int, sc float64) []float32 { return fill(rng, n, sc, dt) }}
	res := &KohyaLycoResult{Path: path, Lyco: map[string]*Truth{}, DoRA: map[string]*Factors{}, Scale: map[string]float64{}}
	tl := &tensorList{dt: dt}
	for _, m := range s.Modules {
		if m.In <= 0 || m.Out <= 0 || m.Rank <= 0 || (len(m.Kernel) != 0 && len(m.Kernel) != 2) || (m.CP && len(m.Kernel) == 0) {
			return nil, fmt.Errorf("testgen: module %s: in %d out %d rank %d kernel %v cp %v", m.Name, m.In, m.Out, m.Rank, m.Kernel, m.CP)
		}
		r, k := m.Rank, prod(m.Kernel)
		alpha := m.Alpha
		if alpha == 0 {
			alpha = float64(r)
		}
		scale := alpha / float64(r)
		t := &Truth{Kind: m.Kind, Rank: r, Alpha: alpha, In: m.In, Out: m.Out, Kernel: append([]int(nil), m.Kernel...),
			InVisible: true, Tensors: map[string][]int{}, Values: map[string][]float32{}}
		w := &lycoWriter{tl: tl, rng: src, truth: t, p: m.Name}
		switch m.Kind {
		case "loha":
			for _, i := range []string{"1", "2"} {
				if m.CP {
					w.add("hada_t"+i, []int{r, r, m.Kernel[0], m.Kernel[1]}, 0.5)
					w.add("hada_w"+i+"_a", []int{r, m.Out}, 0.5)
					w.add("hada_w"+i+"_b", []int{r, m.In}, 0.5)
				} else {
					w.add("hada_w"+i+"_a", []int{m.Out, r}, 0.5)
					w.add("hada_w"+i+"_b", []int{r, m.In * k}, 0.5)
				}
			}
		case "lokr":
			f := m.Factor
			if f == 0 {
				f = -1
			}
			t.inM, t.inN = Factorization(m.In, f)
			t.outL, t.outK = Factorization(m.Out, f)
			if m.W1Decomposed {
				w.add("lokr_w1_a", []int{t.outL, r}, 0.5)
				w.add("lokr_w1_b", []int{r, t.inM}, 0.5)
			} else {
				w.add("lokr_w1", []int{t.outL, t.inM}, 0.5)
			}
			switch {
			case m.W2Whole:
				w.add("lokr_w2", append([]int{t.outK, t.inN}, m.Kernel...), 0.5)
				if !m.W1Decomposed {
					scale = 1 // LyCORIS: both whole → alpha = lora_dim
				}
			case m.CP:
				w.add("lokr_t2", []int{r, r, m.Kernel[0], m.Kernel[1]}, 0.5)
				w.add("lokr_w2_a", []int{r, t.outK}, 0.5)
				w.add("lokr_w2_b", []int{r, t.inN}, 0.5)
			default:
				w.add("lokr_w2_a", []int{t.outK, r}, 0.5)
				w.add("lokr_w2_b", []int{r, t.inN * k}, 0.5)
			}
		case "dora":
			f := &Factors{Rank: r, In: m.In, Out: m.Out, Kernel: m.Kernel}
			f.A = fill(rng, r*m.In*k, 0.5, dt)
			f.B = fill(rng, m.Out*r, 0.5, dt)
			tl.add(m.Name+".lora_down.weight", append([]int{r, m.In}, m.Kernel...), f.A)
			bShape := []int{m.Out, r}
			for range m.Kernel {
				bShape = append(bShape, 1)
			}
			tl.add(m.Name+".lora_up.weight", bShape, f.B)
			n, shape := m.Out, []int{m.Out, 1}
			if m.DoRAInput {
				n, shape = m.In, []int{1, m.In}
			}
			for range m.Kernel {
				shape = append(shape, 1)
			}
			f.Magnitude = fill(rng, n, 2, dt)
			for i := range f.Magnitude {
				f.Magnitude[i] = abs32(f.Magnitude[i]) + 0.5
			}
			f.Magnitude = roundTo(f.Magnitude, dt)
			tl.add(m.Name+".dora_scale", shape, f.Magnitude)
			res.DoRA[m.Name] = f
		default:
			return nil, fmt.Errorf("testgen: module %s: kind %q (loha, lokr, dora)", m.Name, m.Kind)
		}
		if m.Alpha != 0 {
			tl.add(m.Name+".alpha", []int{}, roundTo([]float32{float32(m.Alpha)}, dt))
		}
		t.Scale = scale
		res.Scale[m.Name] = scale
		if m.Kind != "dora" {
			res.Lyco[m.Name] = t
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return res, safetensors.WriteFile(path, tl.tensors, map[string]string{"ss_network_module": "lycoris.kohya"})
}
