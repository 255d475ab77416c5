package adapter

import (
	"errors"
	"io/fs"

	"github.com/adaptool/adaptool/format/safetensors"
)

// Sentinel errors of this package. Errors returned by Load and friends wrap
// them (and the format/safetensors sentinels) with the file and the rule.
var (
	// ErrUnsupported is returned for inputs adaptool recognises but refuses
	// to read, such as a pickled adapter_model.bin.
	ErrUnsupported = errors.New("adapter: unsupported input")
	// ErrNoAdapter is returned when a directory holds no adapter weights file.
	ErrNoAdapter = errors.New("adapter: no adapter weights found")
	// ErrConfig is returned for an adapter_config.json that cannot be used
	// (invalid JSON, wrong field types, a pattern that does not compile).
	ErrConfig = errors.New("adapter: invalid adapter config")
	// ErrShape is returned when a module's tensors have inconsistent shapes.
	ErrShape = errors.New("adapter: inconsistent tensor shapes")
	// ErrNotLowRank is returned by Factors for a module without A/B factors.
	ErrNotLowRank = errors.New("adapter: module has no low-rank factors")
	// ErrInvalidOutput is returned by WritePEFT for an unusable Output.
	ErrInvalidOutput = errors.New("adapter: invalid output")
	// ErrQuantized is returned when the values of a quantized tensor (NF4,
	// FP4, int8, FP8: see Adapter.Quantized) are asked for: they need
	// `adaptool dequantize` first. It is a refusal, not a bad input.
	ErrQuantized = errors.New("adapter: quantized tensor (run adaptool dequantize first)")
)

// IsInputError reports whether err means the adapter input itself is bad or
// unreadable (CLI exit code 2): a missing file, a format/safetensors
// sentinel, a refused pickle, a directory without weights, an unusable
// config or inconsistent shapes.
func IsInputError(err error) bool {
	if err == nil {
		return false
	}
	for _, s := range []error{ErrUnsupported, ErrNoAdapter, ErrConfig, ErrShape, fs.ErrNotExist, fs.ErrPermission} {
		if errors.Is(err, s) {
			return true
		}
	}
	return safetensors.IsFormatError(err)
}
