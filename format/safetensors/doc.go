// Package safetensors reads and writes the safetensors tensor file format
// strictly and canonically.
//
// A safetensors file is an 8-byte little-endian header length N, an N-byte
// UTF-8 JSON header describing every tensor (dtype, shape and the
// [begin, end) byte range of its data), and the packed little-endian data
// buffer. The reader applies every validation rule of the reference
// implementation (huggingface/safetensors) in the same order and reports
// each failure as a sentinel error usable with [errors.Is], wrapped in a
// [*TensorError] naming the file and tensor. It is stricter than the
// reference in two documented ways: duplicate names are rejected
// ([ErrDuplicateKey], see [WithLenient]) and every dimension must fit in an
// int ([ErrValidationOverflow]).
//
// [Open] reads the 8-byte prefix and the header first, then maps the data
// section read-only (falling back to pread). [OpenHeader] stops after the
// header, so huge or truncated checkpoints can still be listed.
//
// The writer ([Write], [WriteFile]) produces the reference writer's canonical
// form byte for byte: tensors sorted by dtype rank (descending) then name,
// compact header in offset order with "__metadata__" first, space padding to
// a multiple of 8. WriteFile is atomic (temporary file + rename). Sharded
// checkpoints are read with [OpenCheckpoint] and written with
// [WriteCheckpoint].
//
// Specification: SPEC.md §2 in this repository, and
// [safetensors]: https://github.com/huggingface/safetensors
package safetensors
