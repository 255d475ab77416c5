package convert

import "errors"

// Sentinel errors of this package (use errors.Is).
var (
	// ErrUnmapped: source keys or modules have no representation in the
	// target dialect; the message lists them.
	ErrUnmapped = errors.New("convert: unmapped keys")
	// ErrRefused: the target cannot express the input (full tensors in a
	// GGUF LoRA, lm_head with tied embeddings, DoRA in MLX, ...).
	ErrRefused = errors.New("convert: refused")
	// ErrOptions: invalid options (unknown dialect, arch or outtype, missing
	// --base-config where head counts are needed).
	ErrOptions = errors.New("convert: invalid options")
	// ErrBaseConfig: the base config file cannot be used.
	ErrBaseConfig = errors.New("convert: invalid base config")
)
