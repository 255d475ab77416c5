// Package ops implements adapter arithmetic on the files alone: merging
// (exact cat, QR-core svd, PEFT's merge_utils methods ties, dare_linear,
// dare_ties, magnitude_prune and task_arithmetic on the dense deltas, PEFT's
// factor-space linear), negation and scaling, exact re-ranking (resize),
// KaSA-style spectrum re-weighting and structured pruning; apply.go and
// extract.go fold adapters into base checkpoints and extract them from
// checkpoint differences.
//
// # Layers
//
// Per-module numerics work on [LowRank] (ΔW = Scale·B·diag(Diag)·A, float32
// row-major): [Cat], [SVD], [MergeModule], [Negate], [ScaleBy], [Resize],
// [Reweight], [PruneRanks]. Adapter-level operations load inputs with
// format/adapter, match modules by name, plan ([Report], printed by
// --dry-run and --json), run modules on a worker pool and write a PEFT
// directory with provenance in __metadata__: [Merge], [NegateAdapter],
// [ScaleAdapter], [ResizeAdapter], [ReweightAdapter], [PruneAdapter].
//
// Parameters are plain structs whose zero value is the documented default
// ([MergeParams], [RankParams], [ElementwiseParams], [ReweightParams],
// [PruneParams], [ScaleParams]); they serialise to JSON unchanged.
//
// All weights act on the true deltas ΔWᵢ = sᵢ·Bᵢ·Aᵢ. The formulas, defaults,
// plan schema and provenance keys are specified in SPEC.md §5;
// the peers' behaviours they are compared with are in the project's merging
// notes.
package ops
