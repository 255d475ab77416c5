// Package atz implements adaptool's lossless compressed container for
// safetensors files (".atz") and its byte-plane codec.
//
// The codec follows ZipNN: each float element is rotated so the sign bit sits
// next to the mantissa, the array is split into byte planes (ops/kernels),
// the exponent plane is Huffman-coded (klauspost/compress/huff0) and the
// near-random mantissa planes are stored raw, or zstd-coded when that is
// smaller. Integer and opaque bytes go through zstd or are stored raw. Every
// plane takes the smallest encoding tried, so a chunk never grows by more
// than its 5-byte-per-plane table. Optionally each tensor is XORed with the
// same tensor of a base file first (delta coding of fine-tuned checkpoints).
//
// The container stores the ORIGINAL file: its 8-byte length prefix and JSON
// header verbatim, then the data section as independently decodable chunks,
// each with a CRC-32C of its stored and of its decoded bytes. Unpack
// reproduces the original file byte for byte (same SHA-256, also for
// unaligned, padded or non-canonical files, and for files that are not valid
// safetensors at all, which are stored as opaque bytes). NewReader gives
// random access to any byte range of the original without decoding the rest.
//
// Importing the package (import _ "github.com/adaptool/adaptool/format/atz")
// registers the container with format/safetensors so every reader opens
// packed files transparently. The byte layout is specified in
// SPEC.md §9.
package atz
