// Package svd computes singular value decompositions of adapter deltas without
// forming them when they are low-rank, and with a randomized range finder when
// they are dense.
//
// # Overview
//
// [Factored] returns the exact thin SVD of
//
//	ΔW = Σᵢ wᵢ·Bᵢ·Dᵢ·Aᵢ    (Bᵢ m×rᵢ, Dᵢ diagonal or I, Aᵢ rᵢ×n)
//
// by the QR-core method (Golub & Van Loan): with B̃ = [B₁ | …] (m×R),
// Ã = [A₁; …] (R×n) and the weights w = (wᵢ·Dᵢ) in the core, take thin QR
// factorizations B̃ = Q_B·R_B and Ãᵀ = Q_A·R_A, compute the SVD of the small
// core C = R_B·diag(w)·R_Aᵀ = Ũ·Σ·Ṽᵀ and return U = Q_B·Ũ, V = Q_A·Ṽ. R
// comes from the Cholesky factor of the Gram matrix when the stack is well
// conditioned (checked with a condition estimate) and from a Householder
// factorization otherwise; Q is never formed, only applied to the k leading
// core vectors. The cost is O((m+n)R² + R³) time and O((m+n)R) memory; the
// m×n matrix is never built. Zero matrices and R > min(m, n) are handled.
//
// [Randomized] implements Halko, Martinsson & Tropp (arXiv 0909.4061,
// Algorithms 4.4 and 5.1): a Gaussian sketch with oversampling, power
// iterations re-orthonormalized by thin QR, and a seeded generator, on any
// [Operator] (a dense float32 matrix is [Matrix32]). [Dense] is the exact
// LAPACK route for small matrices.
//
// [FroNorm] and [Inner] give ‖BA‖_F and ⟨B₁A₁, B₂A₂⟩_F from r×r Gram matrices.
//
// [Fn] re-weights a spectrum (scale, truncate, energy, soft threshold, shrink,
// power, explicit weights) as defined in the project's merging notes §12.
//
// Factorizations (QR, the small SVDs) run in float64 (gonum); inputs and
// outputs are float32 row-major slices.
//
// # Accuracy of the randomized products
//
// The block products of [Matrix32] and [RowTiles] (Op·X, Opᵀ·Y, which
// carry the O(mn·(k+p)·(2q+2)) cost) run in float32: the float64 blocks X,
// Y are rounded to float32 and multiplied by fused multiply-add chains
// (kernels.RankUpdate) of at most 256 columns (Op·X) or 64 rows (Opᵀ·Y),
// the chains summed in float64. Each element of a product is then within
// (c+2)·2⁻²⁴·Σⱼ|opᵢⱼ·xⱼₖ| of the exact value (c the chain length). The
// sketches, bases and core are float64, so the decomposition is that of a
// perturbed Op, the perturbation bounded elementwise by 258·2⁻²⁴ ≈ 1.5e-5
// of |Op|·|X| and typically (random rounding) about 1e-6·‖Op‖: singular
// values agree with a float64 computation to ~1e-6·σ₁ in the tests,
// comparable to the float32 rounding of the factors written. Products are
// computed in fixed 64-row panels, so a [RowTiles] and a [Matrix32] with the
// same values give the same bits.
package svd
