package convert

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/adaptool/adaptool/format/adapter"
)

// Flux modules that sd-scripts (BFL layout) fuses and diffusers splits:
// double_blocks.N.img_attn.qkv = [to_q; to_k; to_v] (equal parts),
// double_blocks.N.txt_attn.qkv = [add_q_proj; add_k_proj; add_v_proj],
// single_blocks.N.linear1 = [to_q; to_k; to_v; proj_mlp] (h, h, h, 4h rows).
//
// Fused → split is exact: each part takes its rows of B and the whole A.
// Split → fused concatenates the parts' A along the rank and makes B block
// diagonal, which is exact when the parts share one scale; missing parts
// get zero rows (they were not adapted).
type fusedSpec struct {
	bfl    *regexp.Regexp // fused BFL path
	bflT   string
	parts  []string // diffusers part templates ($1 = block index)
	weight []int    // relative row counts of the parts
	partRe []*regexp.Regexp
}

var fusedSpecs = func() []*fusedSpec {
	mk := func(bfl, bflT string, weight []int, parts ...string) *fusedSpec {
		s := &fusedSpec{bfl: regexp.MustCompile(bfl), bflT: bflT, parts: parts, weight: weight}
		for _, p := range parts {
			q := strings.Replace(regexp.QuoteMeta(p), `\$1`, `(\d+)`, 1)
			s.partRe = append(s.partRe, regexp.MustCompile("^"+q+"$"))
		}
		return s
	}
	return []*fusedSpec{
		mk(`^double_blocks\.(\d+)\.img_attn\.qkv$`, "double_blocks.$1.img_attn.qkv", []int{1, 1, 1},
			"transformer_blocks.$1.attn.to_q", "transformer_blocks.$1.attn.to_k", "transformer_blocks.$1.attn.to_v"),
		mk(`^double_blocks\.(\d+)\.txt_attn\.qkv$`, "double_blocks.$1.txt_attn.qkv", []int{1, 1, 1},
			"transformer_blocks.$1.attn.add_q_proj", "transformer_blocks.$1.attn.add_k_proj", "transformer_blocks.$1.attn.add_v_proj"),
		mk(`^single_blocks\.(\d+)\.linear1$`, "single_blocks.$1.linear1", []int{1, 1, 1, 4},
			"single_transformer_blocks.$1.attn.to_q", "single_transformer_blocks.$1.attn.to_k",
			"single_transformer_blocks.$1.attn.to_v", "single_transformer_blocks.$1.proj_mlp"),
	}
}()

// part says which rows of a fused source module a split module takes.
type part struct {
	index, of int
	weight    []int
}

// splitFused returns the diffusers parts of a fused BFL path, or nil.
func splitFused(bflPath string) ([]string, *fusedSpec) {
	for _, s := range fusedSpecs {
		if s.bfl.MatchString(bflPath) {
			var out []string
			for _, p := range s.parts {
				out = append(out, s.bfl.ReplaceAllString(bflPath, p))
			}
			return out, s
		}
	}
	return nil, nil
}

// fusedTarget returns the fused BFL path and part index of a diffusers
// Flux path, or ok=false.
func fusedTarget(path string) (spec *fusedSpec, fused string, index int, ok bool) {
	for _, s := range fusedSpecs {
		for i, re := range s.partRe {
			if m := re.FindStringSubmatch(path); m != nil {
				return s, strings.Replace(s.bflT, "$1", m[1], 1), i, true
			}
		}
	}
	return nil, "", 0, false
}

// slicePart narrows f to the rows of part p (A is shared).
func slicePart(f *adapter.Factors, p *part) (*adapter.Factors, error) {
	total := 0
	for _, w := range p.weight {
		total += w
	}
	if f.Out%total != 0 {
		return nil, fmt.Errorf("fused module has %d rows, not divisible into parts %v", f.Out, p.weight)
	}
	unit := f.Out / total
	start := 0
	for i := 0; i < p.index; i++ {
		start += p.weight[i] * unit
	}
	n := p.weight[p.index] * unit
	g := *f
	g.Out = n
	g.B = f.B[start*f.Rank : (start+n)*f.Rank]
	if f.Bias != nil {
		g.Bias = f.Bias[start : start+n]
	}
	if f.Magnitude != nil {
		g.Magnitude = f.Magnitude[start : start+n]
	}
	return &g, nil
}

// fuseParts builds the fused factors of one BFL module from its diffusers
// parts (nil entries: part not adapted → zero rows). All present parts must
// share In; the fused scale is the parts' common scale (an error otherwise).
func fuseParts(spec *fusedSpec, parts []*module) (*adapter.Factors, float64, error) {
	in, unit, R := -1, -1, 0
	scale := 0.0
	for i, m := range parts {
		if m == nil {
			continue
		}
		f := m.f
		if in >= 0 && f.In != in {
			return nil, 0, fmt.Errorf("parts have different input sizes %d and %d", in, f.In)
		}
		in = f.In
		if f.Out%spec.weight[i] != 0 {
			return nil, 0, fmt.Errorf("part %q has %d rows", m.path, f.Out)
		}
		u := f.Out / spec.weight[i]
		if unit >= 0 && u != unit {
			return nil, 0, fmt.Errorf("part %q has %d rows, inconsistent with the other parts", m.path, f.Out)
		}
		unit = u
		if R > 0 && m.src.Scale != scale {
			return nil, 0, fmt.Errorf("parts have different scales %g and %g; sd-scripts holds one alpha per fused module", scale, m.src.Scale)
		}
		scale = m.src.Scale
		R += f.Rank
	}
	out := 0
	for _, w := range spec.weight {
		out += w * unit
	}
	fa := make([]float32, 0, R*in)
	fb := make([]float32, out*R)
	row, col := 0, 0
	for i, m := range parts {
		n := spec.weight[i] * unit
		if m != nil {
			f := m.f
			fa = append(fa, f.A...)
			for o := 0; o < n; o++ {
				copy(fb[(row+o)*R+col:(row+o)*R+col+f.Rank], f.B[o*f.Rank:(o+1)*f.Rank])
			}
			col += f.Rank
		}
		row += n
	}
	return &adapter.Factors{Rank: R, In: in, Out: out, A: fa, B: fb, Scale: scale}, scale, nil
}

// fuseFlux replaces the diffusers parts of fused Flux modules by one fused
// module each (component "bfl", path = the BFL name). Parts whose scales
// differ are reported in unmapped.
func fuseFlux(mods []*module, unmapped *[]string) ([]*module, error) {
	type group struct {
		spec  *fusedSpec
		parts []*module
	}
	groups := map[string]*group{}
	var out []*module
	for _, m := range mods {
		if m.comp != CompTransformer {
			out = append(out, m)
			continue
		}
		if _, ok := fluxToBFL(m.path); ok {
			out = append(out, m)
			continue
		}
		spec, fused, i, ok := fusedTarget(m.path)
		if !ok {
			out = append(out, m)
			continue
		}
		g := groups[fused]
		if g == nil {
			g = &group{spec: spec, parts: make([]*module, len(spec.parts))}
			groups[fused] = g
		}
		g.parts[i] = m
	}
	for _, fused := range sortedKeys(groups) {
		g := groups[fused]
		f, _, err := fuseParts(g.spec, g.parts)
		var first *module
		var names []string
		for _, p := range g.parts {
			if p != nil {
				if first == nil {
					first = p
				}
				names = append(names, p.src.Name)
			}
		}
		if err != nil {
			for _, p := range g.parts {
				if p != nil {
					for _, k := range p.keys() {
						*unmapped = append(*unmapped, fmt.Sprintf("%s (fusing into %s: %v)", k, fused, err))
					}
				}
			}
			continue
		}
		out = append(out, &module{comp: "bfl", path: fused, src: first.src, f: f, dtype: first.dtype, fusedFrom: strings.Join(names, " + ")})
	}
	return out, nil
}
