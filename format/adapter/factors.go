package adapter

import (
	"fmt"
)

// Factors are a module's low-rank factors in PEFT orientation, float32
// row-major, whatever the dialect they were stored in:
//
//	A: Rank × (In·∏Kernel)        (per expert for MLX SwitchLinear)
//	B: Out × Rank
//
// so that ΔW = Scale · B · A in the base layer's (out, in[, k…]) frame.
// AdaLoRA: ΔW = Scale · B · diag(E) · A; KaSA: ΔW = Scale · B · diag(Diag) · A.
// For a LoRA embedding In is num_embeddings, Out is embedding_dim and the
// embedding weight (num, dim) receives (B·A)ᵀ·Scale. With FanInFanOut the
// base weight is stored (in, out) and receives the transpose.
type Factors struct {
	Rank, In, Out int
	Kernel        []int // conv kernel dims; nil for linear
	Experts       int   // >0 for MLX SwitchLinear: A is Experts×Rank×In, B Experts×Out×Rank
	A, B          []float32
	E             []float32 // AdaLoRA singular values (Rank), nil otherwise
	Diag          []float32 // KaSA diagonal (Rank), nil otherwise
	Magnitude     []float32 // DoRA magnitude (Out), nil otherwise
	Bias          []float32 // lora_B.bias (Out), nil otherwise
	Scale         float64
	FanInFanOut   bool
	Embedding     bool
}

// InK returns the column count of A: In times the kernel size.
func (f *Factors) InK() int {
	n := f.In
	for _, k := range f.Kernel {
		n *= k
	}
	return n
}

// Delta returns the dense ΔW = Scale·B·diag(E or Diag)·A as Out×InK
// row-major float32, accumulated in float64 (expert 0 only for
// SwitchLinear). It is meant for tests and small modules.
func (f *Factors) Delta() []float32 {
	v := f.delta64()
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// delta64 is Delta before the rounding to float32.
func (f *Factors) delta64() []float64 {
	ink := f.InK()
	out := make([]float64, f.Out*ink)
	for o := 0; o < f.Out; o++ {
		acc := out[o*ink : (o+1)*ink]
		for k := 0; k < f.Rank; k++ {
			b := float64(f.B[o*f.Rank+k])
			if f.E != nil {
				b *= float64(f.E[k])
			}
			if f.Diag != nil {
				b *= float64(f.Diag[k])
			}
			row := f.A[k*ink : (k+1)*ink]
			for i, av := range row {
				acc[i] += b * float64(av)
			}
		}
		for i := range acc {
			acc[i] *= f.Scale
		}
	}
	return out
}

func product(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// Factors reads m's factors from the file and returns them in PEFT
// orientation (see [Factors]). It returns ErrNotLowRank for modules without
// both A and B (IA3, prompt, full, incomplete, LoHa/LoKr/VeRA — use
// [Adapter.Delta] for the dense ΔW of those) and ErrShape when the stored
// shapes are inconsistent.
func (a *Adapter) Factors(m *Module) (*Factors, error) {
	if !m.IsLowRank() {
		return nil, fmt.Errorf("%s: module %q (%s): %w", a.WeightsPath, m.Name, m.Kind, ErrNotLowRank)
	}
	ta, tb := m.tensorRef(RoleA), m.tensorRef(RoleB)
	f := &Factors{
		Rank: m.Rank, In: m.InFeatures, Out: m.OutFeatures, Experts: m.Experts,
		Scale: m.Scale, FanInFanOut: m.FanInFanOut, Embedding: m.Kind == KindLoRAEmbedding,
	}
	if len(m.Kernel) > 0 {
		f.Kernel = append([]int(nil), m.Kernel...)
	}
	bad := func(t TensorRef, format string, args ...any) error {
		return fmt.Errorf("%s: tensor %q: %w: %s", a.WeightsPath, t.Name, ErrShape, fmt.Sprintf(format, args...))
	}
	// Rank 0 is legal (AdaLoRA prunes a module to rank 0: lora_A (0, in),
	// lora_B (out, 0)): ΔW = 0, with empty A and B.
	if f.Rank < 0 || f.In <= 0 || f.Out <= 0 {
		return nil, bad(ta, "rank %d, in %d, out %d", f.Rank, f.In, f.Out)
	}
	// Check B's shape against the rank before reading any data.
	switch {
	case m.Transposed && m.Experts > 0:
		if len(tb.Shape) != 3 || tb.Shape[0] != m.Experts || tb.Shape[2] != f.Rank {
			return nil, bad(tb, "SwitchLinear lora_b shape %v, want (%d, out, %d)", tb.Shape, m.Experts, f.Rank)
		}
	case m.Transposed:
		if len(ta.Shape) != 2 || len(tb.Shape) != 2 || tb.Shape[0] != f.Rank {
			return nil, bad(tb, "MLX lora_b shape %v, want (%d, out) with lora_a %v", tb.Shape, f.Rank, ta.Shape)
		}
	default:
		if len(tb.Shape) < 2 || tb.Shape[1] != f.Rank || product(tb.Shape[2:]) != 1 {
			return nil, bad(tb, "lora_B shape %v does not match rank %d of lora_A %v (want (out, %d[, 1…]))", tb.Shape, f.Rank, ta.Shape, f.Rank)
		}
		if len(ta.Shape) < 2 {
			return nil, bad(ta, "lora_A shape %v, want (r, in[, k…])", ta.Shape)
		}
	}
	av, err := a.float32(ta)
	if err != nil {
		return nil, err
	}
	bv, err := a.float32(tb)
	if err != nil {
		return nil, err
	}
	experts := max(1, m.Experts)
	if len(av) != experts*f.Rank*f.InK() || len(bv) != experts*f.Out*f.Rank {
		return nil, bad(ta, "element counts %d/%d do not match rank %d, in %d, out %d", len(av), len(bv), f.Rank, f.InK(), f.Out)
	}
	if m.Transposed && m.Experts == 0 {
		f.A = transpose(av, f.In, f.Rank)  // (in,r) → (r,in)
		f.B = transpose(bv, f.Rank, f.Out) // (r,out) → (out,r)
	} else {
		f.A, f.B = av, bv
	}
	vec := func(role string, n int, what string) ([]float32, error) {
		t, ok := m.tensor(role)
		if !ok {
			return nil, nil
		}
		v, err := a.float32(t)
		if err != nil {
			return nil, err
		}
		if len(v) != n {
			return nil, bad(t, "%s has %d elements, want %d", what, len(v), n)
		}
		return v, nil
	}
	if f.E, err = vec(RoleE, f.Rank, "lora_E"); err != nil {
		return nil, err
	}
	if f.Diag, err = vec(RoleDiag, f.Rank, "lora_diag"); err != nil {
		return nil, err
	}
	if f.Magnitude, err = vec(RoleMagnitude, f.Out, "magnitude"); err != nil {
		return nil, err
	}
	if f.Bias, err = vec(RoleLoRABias, f.Out, "lora_B.bias"); err != nil {
		return nil, err
	}
	return f, nil
}

// transpose returns the cols×rows transpose of a rows×cols matrix.
func transpose(x []float32, rows, cols int) []float32 {
	out := make([]float32, len(x))
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			out[j*rows+i] = x[i*cols+j]
		}
	}
	return out
}
