// Package inspect answers questions about adapter files from the files alone:
// what a file holds (a header-only summary that stays fast on huge sharded
// checkpoints), how each module changes the model (norms, singular values,
// effective and stable rank of ΔW computed from the low-rank factors through
// r×r Gram matrices, never from the dense out×in matrix), how two adapters
// relate (cosine and relative distance of their deltas), whether an adapter
// fits a base model, provenance hashes, and a self-contained visual report.
//
// # Definitions
//
// A LoRA module's delta is ΔW = s·B·diag(d)·A with A (r×in), B (out×r), s the
// resolved scale and d the optional KaSA lora_diag / AdaLoRA lora_E vector
// (all ones for plain LoRA). With G_A = A·Aᵀ and G_B = Bᵀ·B (both r×r, in
// float64):
//
//   - ‖ΔW‖_F² = s²·Σᵢⱼ (D·G_A·D)ᵢⱼ·(G_B)ᵢⱼ
//   - σᵢ(ΔW)² = s²·λᵢ(S·G_B·S) with S = (D·G_A·D)^{1/2}; at most min(r,out,in) are kept
//   - effective rank = exp(−Σ pᵢ ln pᵢ), pᵢ = σᵢ/Σσⱼ (Roy & Vetterli 2007)
//   - stable rank = ‖ΔW‖_F² / σ₁²
//   - rank for energy E = the smallest k with Σ_{i≤k} σᵢ² ≥ E·Σσᵢ²
//   - ⟨ΔW₁,ΔW₂⟩ = s₁s₂·Σᵢⱼ (D₁·A₁A₂ᵀ·D₂)ᵢⱼ·(B₁ᵀB₂)ᵢⱼ; cosine = ⟨ΔW₁,ΔW₂⟩/(‖ΔW₁‖‖ΔW₂‖)
//   - relative distance = ‖ΔW₁−ΔW₂‖_F / ‖ΔW₁‖_F (relative to the first adapter)
//
// The full list of statistics, warnings and the JSON schemas is in
// SPEC.md §4.
package inspect
