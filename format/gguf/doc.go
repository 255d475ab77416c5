// Package gguf reads and writes GGUF files, the container format of
// llama.cpp and ggml (version 3; version 2 is read as well, since it
// differs only in semantics a little-endian reader does not need).
//
// A GGUF file is, in order (all integers little-endian):
//
//	magic "GGUF" | version u32 | tensor_count u64 | kv_count u64
//	kv_count × (key string | value type u32 | value)
//	tensor_count × (name string | n_dims u32 | ne u64[n_dims] | ggml type u32 | offset u64)
//	padding to general.alignment (default 32)
//	data section: each tensor at its offset (relative to the data section), aligned
//
// Strings are a u64 byte length followed by the bytes (no terminator).
// ne[0] is the innermost dimension (the row length), so a torch tensor of
// shape (out, in) has ne = [in, out].
//
// The reader ([Open], [NewReader]) bounds every count by the bytes left in the
// file before allocating, limits array nesting ([MaxArrayDepth]), checks
// tensor infos (dimension count, block divisibility, offsets aligned and in
// bounds, no overlap) and returns typed errors ([ErrFormat] and friends, wrapped
// in [*Error] naming the file, the key or tensor and the rule). The writer
// ([Write], [WriteFile]) emits KV pairs in the given order, tensor infos and
// aligned data exactly as gguf-py and ggml's gguf.cpp do; [WriteFile] is
// atomic (temporary file in the target directory, then rename).
//
// Specification: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
// and ggml-org/llama.cpp gguf-py/gguf/constants.py.
package gguf
