package convert

import (
	"regexp"
	"strconv"
	"strings"
)

// SDXL kohya files name UNet modules in the original SGM/LDM layout
// (input_blocks / middle_block / output_blocks) rather than diffusers'
// (down_blocks / mid_block / up_blocks). These rules follow diffusers'
// _maybe_map_sgm_blocks_to_diffusers with layers_per_block = 2 (SD and
// SDXL): input_blocks.i (i ≥ 1) is down block (i-1)/3, layer (i-1)%3;
// output_blocks.i is up block i/3, layer i%3; inner index 0 = resnet,
// 1 = attention; the third input layer is the downsampler (op), the third
// inner index of an output block with attention its upsampler.

var resnetInner = [][2]string{ // SGM → diffusers, inside a resnet
	{"in_layers.2", "conv1"}, {"out_layers.3", "conv2"}, {"emb_layers.1", "time_emb_proj"}, {"skip_connection", "conv_shortcut"},
	{"in_layers.0", "norm1"}, {"out_layers.0", "norm2"},
}

var (
	sgmIn   = regexp.MustCompile(`^input_blocks\.(\d+)\.(\d+)(?:\.(.+))?$`)
	sgmMid  = regexp.MustCompile(`^middle_block\.(\d+)\.(.+)$`)
	sgmOut  = regexp.MustCompile(`^output_blocks\.(\d+)\.(\d+)\.(.+)$`)
	diffIn  = regexp.MustCompile(`^down_blocks\.(\d+)\.(attentions|resnets|downsamplers)\.(\d+)\.(.+)$`)
	diffMid = regexp.MustCompile(`^mid_block\.(attentions|resnets)\.(\d+)\.(.+)$`)
	diffOut = regexp.MustCompile(`^up_blocks\.(\d+)\.(attentions|resnets|upsamplers)\.(\d+)\.(.+)$`)
)

var sgmFixed = [][2]string{
	{"input_blocks.0.0", "conv_in"}, {"out.2", "conv_out"}, {"out.0", "conv_norm_out"},
	{"time_embed.0", "time_embedding.linear_1"}, {"time_embed.2", "time_embedding.linear_2"},
	{"label_emb.0.0", "add_embedding.linear_1"}, {"label_emb.0.2", "add_embedding.linear_2"},
}

func mapInner(inner string, resnet, toDiffusers bool) (string, bool) {
	if !resnet {
		return inner, true
	}
	for _, p := range resnetInner {
		from, to := p[0], p[1]
		if !toDiffusers {
			from, to = to, from
		}
		if inner == from {
			return to, true
		}
	}
	return "", false
}

// sgmToDiffusers maps an SGM UNet module path to diffusers' naming.
func sgmToDiffusers(p string) (string, bool) {
	for _, f := range sgmFixed {
		if p == f[0] {
			return f[1], true
		}
	}
	if m := sgmIn.FindStringSubmatch(p); m != nil {
		i, _ := strconv.Atoi(m[1])
		if i == 0 {
			return "", false
		}
		block, layer := (i-1)/3, (i-1)%3
		b := strconv.Itoa(block)
		if layer == 2 {
			if m[2] == "0" && m[3] == "op" {
				return "down_blocks." + b + ".downsamplers.0.conv", true
			}
			return "", false
		}
		switch m[2] {
		case "0":
			in, ok := mapInner(m[3], true, true)
			return "down_blocks." + b + ".resnets." + strconv.Itoa(layer) + "." + in, ok
		case "1":
			return "down_blocks." + b + ".attentions." + strconv.Itoa(layer) + "." + m[3], m[3] != ""
		}
		return "", false
	}
	if m := sgmMid.FindStringSubmatch(p); m != nil {
		switch m[1] {
		case "0", "2":
			in, ok := mapInner(m[2], true, true)
			return "mid_block.resnets." + map[string]string{"0": "0", "2": "1"}[m[1]] + "." + in, ok
		case "1":
			return "mid_block.attentions.0." + m[2], true
		}
		return "", false
	}
	if m := sgmOut.FindStringSubmatch(p); m != nil {
		i, _ := strconv.Atoi(m[1])
		b, layer := strconv.Itoa(i/3), strconv.Itoa(i%3)
		switch {
		case m[2] == "0":
			in, ok := mapInner(m[3], true, true)
			return "up_blocks." + b + ".resnets." + layer + "." + in, ok
		case m[3] == "conv" && i%3 == 2:
			return "up_blocks." + b + ".upsamplers.0.conv", true
		case m[2] == "1":
			return "up_blocks." + b + ".attentions." + layer + "." + m[3], true
		}
	}
	return "", false
}

// diffusersToSGM is the inverse of sgmToDiffusers for SDXL (upsamplers at
// inner index 2, after the attention).
func diffusersToSGM(p string) (string, bool) {
	for _, f := range sgmFixed {
		if p == f[1] {
			return f[0], true
		}
	}
	if m := diffIn.FindStringSubmatch(p); m != nil {
		block, _ := strconv.Atoi(m[1])
		layer, _ := strconv.Atoi(m[3])
		switch m[2] {
		case "downsamplers":
			if m[4] != "conv" {
				return "", false
			}
			return "input_blocks." + strconv.Itoa(block*3+3) + ".0.op", true
		case "resnets":
			in, ok := mapInner(m[4], true, false)
			return "input_blocks." + strconv.Itoa(block*3+layer+1) + ".0." + in, ok
		default:
			return "input_blocks." + strconv.Itoa(block*3+layer+1) + ".1." + m[4], true
		}
	}
	if m := diffMid.FindStringSubmatch(p); m != nil {
		if m[1] == "attentions" {
			return "middle_block.1." + m[3], m[2] == "0"
		}
		in, ok := mapInner(m[3], true, false)
		return "middle_block." + map[string]string{"0": "0", "1": "2"}[m[2]] + "." + in, ok && (m[2] == "0" || m[2] == "1")
	}
	if m := diffOut.FindStringSubmatch(p); m != nil {
		block, _ := strconv.Atoi(m[1])
		layer, _ := strconv.Atoi(m[3])
		switch m[2] {
		case "upsamplers":
			return "output_blocks." + strconv.Itoa(block*3+2) + ".2." + m[4], m[4] == "conv"
		case "resnets":
			in, ok := mapInner(m[4], true, false)
			return "output_blocks." + strconv.Itoa(block*3+layer) + ".0." + in, ok
		default:
			return "output_blocks." + strconv.Itoa(block*3+layer) + ".1." + m[4], true
		}
	}
	return "", false
}

func isSGMPath(p string) bool {
	for _, pre := range []string{"input_blocks.", "middle_block.", "output_blocks.", "time_embed.", "label_emb.", "out."} {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}
