package quant

import (
	"fmt"
	"strconv"
	"strings"
)

// GranularityKind says how many values share one scale.
type GranularityKind uint8

// The granularities of scale-based schemes (int8, FP8).
const (
	PerTensor  GranularityKind = iota // one scale for the tensor: shape [1]
	PerChannel                        // one scale per output row: shape [out, 1]
	PerGroup                          // one scale per row and group of Size columns: [out, in/Size]
	PerBlock                          // one scale per Size×Size tile: [⌈out/Size⌉, ⌈in/Size⌉]
)

// Granularity selects the scale layout of int8 and FP8 quantization. The
// zero value is PerTensor.
type Granularity struct {
	Kind GranularityKind
	Size int // group width (PerGroup) or tile side (PerBlock)
}

// DefaultFP8Block is the tile side of block-wise FP8 scales (DeepSeek-V3,
// compressed-tensors "block" strategy).
const DefaultFP8Block = 128

// ParseGranularity parses the CLI spelling: "tensor", "channel",
// "group:N" or "block:N" ("block" alone means block:128).
func ParseGranularity(s string) (Granularity, error) {
	name, arg, hasArg := strings.Cut(s, ":")
	n := 0
	if hasArg {
		v, err := strconv.Atoi(arg)
		if err != nil || v < 1 || v > 1<<20 {
			return Granularity{}, fmt.Errorf("%w: granularity %q: size must be an integer in 1…1048576", ErrScheme, s)
		}
		n = v
	}
	switch {
	case name == "tensor" && !hasArg:
		return Granularity{Kind: PerTensor}, nil
	case name == "channel" && !hasArg:
		return Granularity{Kind: PerChannel}, nil
	case name == "group" && hasArg:
		return Granularity{Kind: PerGroup, Size: n}, nil
	case name == "block":
		if !hasArg {
			n = DefaultFP8Block
		}
		return Granularity{Kind: PerBlock, Size: n}, nil
	}
	return Granularity{}, fmt.Errorf("%w: granularity %q (want tensor, channel, group:N or block:N)", ErrScheme, s)
}

// String returns the CLI spelling of g.
func (g Granularity) String() string {
	switch g.Kind {
	case PerTensor:
		return "tensor"
	case PerChannel:
		return "channel"
	case PerGroup:
		return "group:" + strconv.Itoa(g.Size)
	case PerBlock:
		return "block:" + strconv.Itoa(g.Size)
	}
	return "granularity(" + strconv.Itoa(int(g.Kind)) + ")"
}

// ScaleShape returns the shape of the scale tensor for a rows×cols weight,
// or an error when g does not fit it (a group size that does not divide
// cols, a non-positive size).
func (g Granularity) ScaleShape(rows, cols int) ([]int, error) {
	if rows < 0 || cols < 0 {
		return nil, fmt.Errorf("%w: negative shape %d×%d", ErrLength, rows, cols)
	}
	switch g.Kind {
	case PerTensor:
		return []int{1}, nil
	case PerChannel:
		return []int{rows, 1}, nil
	case PerGroup:
		if g.Size < 1 || cols%g.Size != 0 {
			return nil, fmt.Errorf("%w: group size %d does not divide the %d columns", ErrLength, g.Size, cols)
		}
		return []int{rows, cols / g.Size}, nil
	case PerBlock:
		if g.Size < 1 {
			return nil, fmt.Errorf("%w: block size %d", ErrBlockSize, g.Size)
		}
		return []int{(rows + g.Size - 1) / g.Size, (cols + g.Size - 1) / g.Size}, nil
	}
	return nil, fmt.Errorf("%w: granularity kind %d", ErrScheme, g.Kind)
}

// numScales is the product of ScaleShape.
func (g Granularity) numScales(rows, cols int) (int, error) {
	s, err := g.ScaleShape(rows, cols)
	if err != nil {
		return 0, err
	}
	n := 1
	for _, d := range s {
		n *= d
	}
	return n, nil
}

// forTiles calls f for every scale group of a rows×cols matrix with the
// group's scale index and its row range and column range.
func (g Granularity) forTiles(rows, cols int, f func(si, r0, r1, c0, c1 int)) {
	switch g.Kind {
	case PerTensor:
		f(0, 0, rows, 0, cols)
	case PerChannel:
		for r := 0; r < rows; r++ {
			f(r, r, r+1, 0, cols)
		}
	case PerGroup:
		ng := cols / g.Size
		for r := 0; r < rows; r++ {
			for j := 0; j < ng; j++ {
				f(r*ng+j, r, r+1, j*g.Size, (j+1)*g.Size)
			}
		}
	case PerBlock:
		nbr := (rows + g.Size - 1) / g.Size
		nbc := (cols + g.Size - 1) / g.Size
		for i := 0; i < nbr; i++ {
			for j := 0; j < nbc; j++ {
				f(i*nbc+j, i*g.Size, min((i+1)*g.Size, rows), j*g.Size, min((j+1)*g.Size, cols))
			}
		}
	}
}

// forRowSegments calls f for the column segments of row r (of a rows×cols
// matrix) that share one scale, with the scale's index.
func (g Granularity) forRowSegments(r, rows, cols int, f func(si, c0, c1 int)) {
	switch g.Kind {
	case PerTensor:
		f(0, 0, cols)
	case PerChannel:
		f(r, 0, cols)
	case PerGroup:
		ng := cols / g.Size
		for j := 0; j < ng; j++ {
			f(r*ng+j, j*g.Size, (j+1)*g.Size)
		}
	case PerBlock:
		nbc := (cols + g.Size - 1) / g.Size
		for j := 0; j < nbc; j++ {
			f((r/g.Size)*nbc+j, j*g.Size, min((j+1)*g.Size, cols))
		}
	}
}

// forRows calls f on ranges of the rows of a rows×cols matrix, in parallel
// (see forBlocks) when the matrix is large.
func forRows(rows, cols int, f func(r0, r1 int)) {
	if cols == 0 || rows == 0 {
		f(0, rows)
		return
	}
	forBlocks(rows*cols, cols, f)
}
