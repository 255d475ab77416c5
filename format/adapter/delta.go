package adapter

import (
	"fmt"
)

// MaxDenseElements bounds the size of a dense ΔW that [Adapter.Delta]
// builds (2^28 values = 1 GiB of float32); larger modules are refused with
// ErrUnsupported rather than allocated on the word of a header.
const MaxDenseElements = 1 << 28

// Dense is a module's dense weight update ΔW with its scale applied, in the
// base layer's (out, in[, k…]) frame flattened row-major to Out × Cols():
// exactly the values PEFT's get_delta_weight reshapes to the base weight.
// With FanInFanOut the base weight is stored (in, out) and receives the
// transpose; for a LoRA embedding the (num, dim) weight receives the
// transpose (Out is embedding_dim, In num_embeddings).
type Dense struct {
	Out, In     int
	Kernel      []int // conv kernel dims; nil for linear (and for conv forms whose shapes only hold in·∏k)
	W           []float32
	Scale       float64 // the module scale already applied to W
	FanInFanOut bool
	Embedding   bool
}

// Cols returns In·∏Kernel, the column count of W.
func (d *Dense) Cols() int { return d.In * product(d.Kernel) }

// Delta returns module m's dense ΔW (accumulated in float64, stored as
// float32) for every additive kind: LoRA in all its forms (via Factors; DoRA
// without the magnitude renormalisation, which needs the base weight), LoHa
// ((w1a·w1b)⊙(w2a·w2b)·α/r, CP form with hada_t1/t2), LoKr
// (kron(w1, w2)·α/r with whole, a·b or CP lokr_t2 factors, reshaped as PEFT
// reshapes) and VeRA (diag(λ_b)·B[:out,:]·diag(λ_d)·A[:,:in]).
//
// A VeRA module needs m.InFeatures: the adapter records it only when one
// module is adapted (see the Adapter warning); otherwise set it from the
// base weight first. IA3 (multiplicative), prompt and full modules have no
// additive delta (ErrNotLowRank); SwitchLinear experts and outputs beyond
// MaxDenseElements are ErrUnsupported; inconsistent shapes are ErrShape
// naming the tensor.
func (a *Adapter) Delta(m *Module) (*Dense, error) {
	d, v, err := a.delta(m, false)
	if err != nil {
		return nil, err
	}
	d.W = make([]float32, len(v))
	for i, x := range v {
		d.W[i] = float32(x)
	}
	return d, nil
}

// Delta64 is [Adapter.Delta] with the values kept in float64, the precision
// they are accumulated in (for float64 base weights and references); the
// returned Dense describes the frame and has W nil.
func (a *Adapter) Delta64(m *Module) (*Dense, []float64, error) {
	d, v, err := a.delta(m, false)
	if err != nil {
		return nil, nil, err
	}
	return d, v, nil
}

// CheckDelta runs every shape check of [Adapter.Delta] from the tensor
// shapes alone, reading no data: nil means Delta can build m's ΔW in its
// (OutFeatures, InFeatures, Kernel) frame (barring unreadable data).
func (a *Adapter) CheckDelta(m *Module) error {
	_, _, err := a.delta(m, true)
	return err
}

// delta builds m's ΔW in float64; with dry only the shapes are checked and
// the values are nil.
func (a *Adapter) delta(m *Module, dry bool) (*Dense, []float64, error) {
	d := &Dense{Out: m.OutFeatures, In: m.InFeatures, Scale: m.Scale, FanInFanOut: m.FanInFanOut, Embedding: m.Kind == KindLoRAEmbedding}
	if len(m.Kernel) > 0 {
		d.Kernel = append([]int(nil), m.Kernel...)
	}
	switch {
	case m.IsLowRank(), m.Kind == KindLoHa, m.Kind == KindLoKr, m.Kind == KindVeRA:
	case m.Kind == KindDiff && hasRole(m, RoleDiff):
		d.Scale = 1
	default:
		return nil, nil, fmt.Errorf("%s: module %q (%s): %w: no additive delta", a.WeightsPath, m.Name, m.Kind, ErrNotLowRank)
	}
	if err := a.checkDenseSize(m, d); err != nil {
		return nil, nil, err
	}
	r := deltaRun{Adapter: a, dry: dry}
	var v []float64
	var err error
	switch {
	case m.IsLowRank():
		if m.Experts > 0 {
			return nil, nil, fmt.Errorf("%s: module %q: %w: a dense delta of an MLX SwitchLinear module (%d experts)", a.WeightsPath, m.Name, ErrUnsupported, m.Experts)
		}
		v, err = r.lowRankDelta(m, d)
	case m.Kind == KindLoHa:
		v, err = r.lohaDelta(m, d)
	case m.Kind == KindLoKr:
		v, err = r.lokrDelta(m, d)
	case m.Kind == KindDiff:
		v, err = r.diffDelta(m, d)
	default:
		v, err = r.veraDelta(m, d)
	}
	if err != nil {
		return nil, nil, err
	}
	return d, v, nil
}

// diffDelta is the diff tensor itself (a full-size delta, no scale).
func (a deltaRun) diffDelta(m *Module, d *Dense) ([]float64, error) {
	t, v, err := a.read(m, RoleDiff, 1, 2+len(d.Kernel))
	if err != nil {
		return nil, err
	}
	n := int64(1)
	for _, x := range t.Shape {
		n *= int64(x)
	}
	if n != int64(d.Out)*int64(d.Cols()) {
		return nil, a.shapeErr(m, t, "diff has shape %v, the module %d×%d", t.Shape, d.Out, d.Cols())
	}
	return v.v, nil // nil when dry
}

// deltaRun builds dense deltas; with dry set, tensors are not read and
// only their shapes are checked (every value slice is nil).
type deltaRun struct {
	*Adapter
	dry bool
}

// lowRankDelta is s·B·diag(E or Diag)·A of a LoRA-family module.
func (a deltaRun) lowRankDelta(m *Module, d *Dense) ([]float64, error) {
	if a.dry {
		return nil, nil // the factor shapes were checked by Load
	}
	f, err := a.Factors(m)
	if err != nil {
		return nil, err
	}
	if f.Out != d.Out || f.InK() != d.Cols() {
		return nil, fmt.Errorf("%s: module %q: %w: factors give %d×%d, the module %d×%d", a.WeightsPath, m.Name, ErrShape, f.Out, f.InK(), d.Out, d.Cols())
	}
	return f.delta64(), nil
}

func (a *Adapter) checkDenseSize(m *Module, d *Dense) error {
	if m.Kind == KindVeRA && d.In <= 0 && d.Out > 0 {
		return fmt.Errorf("%s: module %q: %w: VeRA in_features is not recorded in the adapter (shared vera_A is sliced per layer); set Module.InFeatures from the base weight", a.WeightsPath, m.Name, ErrShape)
	}
	if d.Out <= 0 || d.In <= 0 {
		return fmt.Errorf("%s: module %q (%s): %w: out %d, in %d", a.WeightsPath, m.Name, m.Kind, ErrShape, d.Out, d.In)
	}
	n := int64(d.Out)
	for _, v := range append([]int{d.In}, d.Kernel...) {
		if v <= 0 {
			return fmt.Errorf("%s: module %q (%s): %w: dims %d×%d kernel %v", a.WeightsPath, m.Name, m.Kind, ErrShape, d.Out, d.In, d.Kernel)
		}
		n *= int64(v)
		if n > MaxDenseElements {
			return fmt.Errorf("%s: module %q (%s): %w: dense delta %d×%d kernel %v exceeds %d values", a.WeightsPath, m.Name, m.Kind, ErrUnsupported, d.Out, d.In, d.Kernel, MaxDenseElements)
		}
	}
	return nil
}

// mat64 is a float64 tensor read from the file.
type mat64 struct {
	shape []int
	v     []float64
}

func (a *Adapter) shapeErr(m *Module, t TensorRef, format string, args ...any) error {
	return fmt.Errorf("%s: module %q: tensor %q: %w: %s", a.WeightsPath, m.Name, t.Name, ErrShape, fmt.Sprintf(format, args...))
}

// read returns role's tensor of m as float64, checking its rank (number of
// dims) is within [minDims, maxDims].
func (a deltaRun) read(m *Module, role string, minDims, maxDims int) (TensorRef, mat64, error) {
	t, ok := m.tensor(role)
	if !ok {
		return t, mat64{}, fmt.Errorf("%s: module %q (%s): %w: tensor %s is missing", a.WeightsPath, m.Name, m.Kind, ErrShape, role)
	}
	if len(t.Shape) < minDims || len(t.Shape) > maxDims {
		return t, mat64{}, a.shapeErr(m, t, "%s has shape %v, want %d to %d dims", role, t.Shape, minDims, maxDims)
	}
	for _, d := range t.Shape {
		if d <= 0 {
			return t, mat64{}, a.shapeErr(m, t, "%s has an empty dimension %v", role, t.Shape)
		}
	}
	if a.dry {
		return t, mat64{shape: t.Shape}, nil
	}
	v, err := a.float32(t)
	if err != nil {
		return t, mat64{}, err
	}
	out := mat64{shape: t.Shape, v: make([]float64, len(v))}
	for i, x := range v {
		out.v[i] = float64(x)
	}
	return t, out, nil
}

// matmul returns the rows×cols product of x (rows×k) and y (k×cols).
func matmul(x, y []float64, rows, k, cols int) []float64 {
	out := make([]float64, rows*cols)
	for i := 0; i < rows; i++ {
		row := out[i*cols : (i+1)*cols]
		for p := 0; p < k; p++ {
			c := x[i*k+p]
			if c == 0 {
				continue
			}
			for j, yv := range y[p*cols : (p+1)*cols] {
				row[j] += c * yv
			}
		}
	}
	return out
}

// product2 returns wa·wb for wa (rows, r) and wb (r, rest…) as a rows×∏rest
// matrix.
func (a deltaRun) product2(m *Module, roleA, roleB string, limit int) (rows, cols int, v []float64, err error) {
	ta, xa, err := a.read(m, roleA, 2, 2)
	if err != nil {
		return 0, 0, nil, err
	}
	tb, xb, err := a.read(m, roleB, 2, 6)
	if err != nil {
		return 0, 0, nil, err
	}
	if ta.Shape[1] != tb.Shape[0] {
		return 0, 0, nil, a.shapeErr(m, tb, "%s %v does not multiply %s %v (rank %d vs %d)", roleB, tb.Shape, roleA, ta.Shape, tb.Shape[0], ta.Shape[1])
	}
	rows, r, cols := ta.Shape[0], ta.Shape[1], product(tb.Shape[1:])
	if int64(rows)*int64(cols) > int64(limit) {
		return 0, 0, nil, a.shapeErr(m, tb, "%s·%s is %d×%d, larger than the module's %d values", roleA, roleB, rows, cols, limit)
	}
	if a.dry {
		return rows, cols, nil, nil
	}
	return rows, cols, matmul(xa.v, xb.v, rows, r, cols), nil
}

// cp returns the CP rebuild Σ_ab t[a,b,k…]·wa[a,o]·wb[b,n] as an
// (out, in, k…) tensor with t (r1, r2, k…), wa (r1, out), wb (r2, in).
func (a deltaRun) cp(m *Module, roleT, roleA, roleB string, limit int) (shape []int, v []float64, err error) {
	tt, xt, err := a.read(m, roleT, 3, 6)
	if err != nil {
		return nil, nil, err
	}
	ta, xa, err := a.read(m, roleA, 2, 2)
	if err != nil {
		return nil, nil, err
	}
	tb, xb, err := a.read(m, roleB, 2, 2)
	if err != nil {
		return nil, nil, err
	}
	r1, r2 := tt.Shape[0], tt.Shape[1]
	if ta.Shape[0] != r1 || tb.Shape[0] != r2 {
		return nil, nil, a.shapeErr(m, tt, "CP core %v does not fit %s %v and %s %v (want (r1, r2, k…), (r1, out), (r2, in))", tt.Shape, roleA, ta.Shape, roleB, tb.Shape)
	}
	out, in, k := ta.Shape[1], tb.Shape[1], product(tt.Shape[2:])
	if int64(out)*int64(in)*int64(k) > int64(limit) {
		return nil, nil, a.shapeErr(m, tt, "CP rebuild %d×%d×%d is larger than the module's %d values", out, in, k, limit)
	}
	shape = append([]int{out, in}, tt.Shape[2:]...)
	if a.dry {
		return shape, nil, nil
	}
	v = make([]float64, out*in*k)
	for p := 0; p < r1; p++ {
		for q := 0; q < r2; q++ {
			core := xt.v[(p*r2+q)*k : (p*r2+q+1)*k]
			for o := 0; o < out; o++ {
				ao := xa.v[p*out+o]
				if ao == 0 {
					continue
				}
				for n := 0; n < in; n++ {
					c := ao * xb.v[q*in+n]
					dst := v[(o*in+n)*k : (o*in+n+1)*k]
					for j, cv := range core {
						dst[j] += c * cv
					}
				}
			}
		}
	}
	return shape, v, nil
}

// lohaFactor returns one Hadamard factor flattened to (rows, cols).
func (a deltaRun) lohaFactor(m *Module, i string, limit int) (rows, cols int, v []float64, err error) {
	if _, ok := m.tensor("hada_t" + i); ok {
		shape, v, err := a.cp(m, "hada_t"+i, "hada_w"+i+"_a", "hada_w"+i+"_b", limit)
		if err != nil {
			return 0, 0, nil, err
		}
		return shape[0], product(shape[1:]), v, nil
	}
	return a.product2(m, "hada_w"+i+"_a", "hada_w"+i+"_b", limit)
}

func (a deltaRun) lohaDelta(m *Module, d *Dense) ([]float64, error) {
	cols := d.Cols()
	r1, c1, p1, err := a.lohaFactor(m, "1", d.Out*cols)
	if err != nil {
		return nil, err
	}
	r2, c2, p2, err := a.lohaFactor(m, "2", d.Out*cols)
	if err != nil {
		return nil, err
	}
	if r1 != d.Out || c1 != cols || r2 != d.Out || c2 != cols {
		return nil, a.shapeErr(m, m.tensorRef("hada_w2_a"), "Hadamard factors are %d×%d and %d×%d, want both %d×%d", r1, c1, r2, c2, d.Out, cols)
	}
	for i := range p1 {
		p1[i] *= p2[i] * m.Scale
	}
	return p1, nil
}

// lokrFactor returns a LoKr factor as a tensor: the whole lokr_wI, the CP
// rebuild (out, in, k…), or lokr_wI_a·lokr_wI_b as a matrix.
func (a deltaRun) lokrFactor(m *Module, i string, limit int) ([]int, []float64, error) {
	whole := "lokr_w" + i
	if _, ok := m.tensor(whole); ok {
		_, x, err := a.read(m, whole, 2, 6)
		return x.shape, x.v, err
	}
	if _, ok := m.tensor("lokr_t" + i); ok {
		return a.cp(m, "lokr_t"+i, whole+"_a", whole+"_b", limit)
	}
	rows, cols, v, err := a.product2(m, whole+"_a", whole+"_b", limit)
	return []int{rows, cols}, v, err
}

// kron is torch.kron: the operand with fewer dims gets leading 1s, the
// result has shape s1[i]·s2[i], and result[(i1·s2)+i2] = x[i1]·y[i2] per
// dimension.
func kron(s1 []int, x []float64, s2 []int, y []float64) ([]int, []float64) {
	for len(s1) < len(s2) {
		s1 = append([]int{1}, s1...)
	}
	for len(s2) < len(s1) {
		s2 = append([]int{1}, s2...)
	}
	nd := len(s1)
	shape := make([]int, nd)
	for i := range shape {
		shape[i] = s1[i] * s2[i]
	}
	out := make([]float64, product(shape))
	// flat(i1, i2) = Σ_k (idx1[k]·s2[k] + idx2[k])·stride[k] = off1(i1) + off2(i2)
	stride := make([]int, nd)
	for k, st := nd-1, 1; k >= 0; k-- {
		stride[k] = st
		st *= shape[k]
	}
	offsets := func(s []int, n int, mul func(k int) int) []int {
		off := make([]int, n)
		for i := range off {
			r, o := i, 0
			for k := nd - 1; k >= 0; k-- {
				o += (r % s[k]) * mul(k)
				r /= s[k]
			}
			off[i] = o
		}
		return off
	}
	off1 := offsets(s1, len(x), func(k int) int { return s2[k] * stride[k] })
	off2 := offsets(s2, len(y), func(k int) int { return stride[k] })
	for i1, xv := range x {
		base := off1[i1]
		for i2, yv := range y {
			out[base+off2[i2]] = xv * yv
		}
	}
	return shape, out
}

func (a deltaRun) lokrDelta(m *Module, d *Dense) ([]float64, error) {
	s1, w1, err := a.lokrFactor(m, "1", d.Out*d.Cols())
	if err != nil {
		return nil, err
	}
	if len(s1) != 2 {
		return nil, fmt.Errorf("%s: module %q: %w: lokr_w1 has shape %v, want (out_l, in_m)", a.WeightsPath, m.Name, ErrShape, s1)
	}
	s2, w2, err := a.lokrFactor(m, "2", d.Out*d.Cols())
	if err != nil {
		return nil, err
	}
	if len(s2) == 4 { // make_kron: w1.unsqueeze(2).unsqueeze(2) for a 4-D w2
		s1 = []int{s1[0], s1[1], 1, 1}
	}
	if n := product(s1) * product(s2); n != d.Out*d.Cols() || s1[0]*s2[0] != d.Out {
		return nil, fmt.Errorf("%s: module %q: %w: kron of lokr factors %v and %v has %d values, the module %d×%d (kernel %v) needs %d", a.WeightsPath, m.Name, ErrShape, s1, s2, n, d.Out, d.In, d.Kernel, d.Out*d.Cols())
	}
	if a.dry {
		return nil, nil
	}
	_, v := kron(s1, w1, s2, w2)
	for i := range v {
		v[i] *= m.Scale
	}
	return v, nil
}

func (a deltaRun) veraDelta(m *Module, d *Dense) ([]float64, error) {
	ra, okA := a.Shared["vera_A"]
	rb, okB := a.Shared["vera_B"]
	if !okA || !okB {
		return nil, fmt.Errorf("%s: module %q: %w: the shared base_model.vera_A/vera_B are not in the file (save_projection=false); they come from torch's PRNG and cannot be reproduced", a.WeightsPath, m.Name, ErrUnsupported)
	}
	sh := &Module{Name: m.Name, Kind: m.Kind, Tensors: map[string]TensorRef{"vera_A": ra, "vera_B": rb}}
	ta, xa, err := a.read(sh, "vera_A", 2, 2)
	if err != nil {
		return nil, err
	}
	tb, xb, err := a.read(sh, "vera_B", 2, 2)
	if err != nil {
		return nil, err
	}
	tlb, lb, err := a.read(m, "vera_lambda_b", 1, 1)
	if err != nil {
		return nil, err
	}
	tld, ld, err := a.read(m, "vera_lambda_d", 1, 1)
	if err != nil {
		return nil, err
	}
	r, maxIn, maxOut := ta.Shape[0], ta.Shape[1], tb.Shape[0]
	switch {
	case tb.Shape[1] != r:
		return nil, a.shapeErr(m, tb, "vera_B %v does not have rank %d of vera_A %v", tb.Shape, r, ta.Shape)
	case tld.Shape[0] != r:
		return nil, a.shapeErr(m, tld, "vera_lambda_d has %d values, vera_A rank %d", tld.Shape[0], r)
	case tlb.Shape[0] != d.Out || d.Out > maxOut:
		return nil, a.shapeErr(m, tlb, "vera_lambda_b has %d values; out %d, vera_B %v", tlb.Shape[0], d.Out, tb.Shape)
	case d.In > maxIn || len(d.Kernel) > 0:
		return nil, a.shapeErr(m, ta, "in_features %d (kernel %v) exceeds vera_A %v", d.In, d.Kernel, ta.Shape)
	}
	if a.dry {
		return nil, nil
	}
	in := d.In
	w := make([]float64, d.Out*in)
	for o := 0; o < d.Out; o++ {
		acc := w[o*in : (o+1)*in]
		for k := 0; k < r; k++ {
			c := lb.v[o] * xb.v[o*r+k] * ld.v[k]
			if c == 0 {
				continue
			}
			for i, x := range xa.v[k*maxIn : k*maxIn+in] {
				acc[i] += c * x
			}
		}
		for i := range acc {
			acc[i] *= m.Scale
		}
	}
	return w, nil
}
