package safetensors

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors, named after the reference implementation's
// SafeTensorError variants. Test with [errors.Is]; errors returned by this
// package wrap them in a [*TensorError] that names the file and tensor.
var (
	// ErrHeaderTooSmall: the input is shorter than the 8-byte length prefix (rule 1).
	ErrHeaderTooSmall = errors.New("safetensors: HeaderTooSmall: input shorter than the 8-byte header length prefix (rule 1)")
	// ErrHeaderTooLarge: the header length N exceeds MaxHeaderSize (rule 2), or
	// a header to be written would.
	ErrHeaderTooLarge = errors.New("safetensors: HeaderTooLarge: header length exceeds 100000000 bytes (rule 2)")
	// ErrInvalidHeaderLength: 8+N is past the end of the input (rule 3).
	ErrInvalidHeaderLength = errors.New("safetensors: InvalidHeaderLength: header extends past the end of the file (rule 3)")
	// ErrInvalidHeader: the header is not valid UTF-8 (rule 4).
	ErrInvalidHeader = errors.New("safetensors: InvalidHeader: header is not valid UTF-8 (rule 4)")
	// ErrInvalidHeaderDeserialization: the header is not the expected JSON (rule 5).
	ErrInvalidHeaderDeserialization = errors.New("safetensors: InvalidHeaderDeserialization: header JSON does not decode (rule 5)")
	// ErrInvalidOffset: a tensor does not start where the previous one ended,
	// or ends before it begins (rule 7a).
	ErrInvalidOffset = errors.New("safetensors: InvalidOffset: tensor data is not contiguous (rule 7a)")
	// ErrValidationOverflow: the element or bit count overflows 64 bits, or a
	// dimension or offset does not fit the Go types (rule 7b).
	ErrValidationOverflow = errors.New("safetensors: ValidationOverflow: tensor size overflows (rule 7b)")
	// ErrMisalignedSlice: a tensor's bit count is not a multiple of 8 (rule 7c).
	ErrMisalignedSlice = errors.New("safetensors: MisalignedSlice: tensor bit count is not a multiple of 8 (rule 7c)")
	// ErrTensorInvalidInfo: end−begin differs from the size implied by dtype
	// and shape (rule 7d).
	ErrTensorInvalidInfo = errors.New("safetensors: TensorInvalidInfo: data_offsets do not match dtype and shape (rule 7d)")
	// ErrMetadataIncompleteBuffer: the data buffer is truncated or followed by
	// extra bytes (rule 8).
	ErrMetadataIncompleteBuffer = errors.New("safetensors: MetadataIncompleteBuffer: data buffer size does not match the header (rule 8)")
	// ErrTensorNotFound: no tensor has the requested name.
	ErrTensorNotFound = errors.New("safetensors: TensorNotFound: no such tensor")
	// ErrInvalidTensorView: a tensor's byte count does not match its dtype and shape.
	ErrInvalidTensorView = errors.New("safetensors: InvalidTensorView: byte count does not match dtype and shape")
	// ErrDuplicateKey: a name occurs twice in the header (strict mode; the
	// reference silently keeps the last one, see WithLenient).
	ErrDuplicateKey = errors.New("safetensors: DuplicateKey: duplicate name in header")
)

var sentinels = []error{
	ErrHeaderTooSmall, ErrHeaderTooLarge, ErrInvalidHeaderLength, ErrInvalidHeader,
	ErrInvalidHeaderDeserialization, ErrInvalidOffset, ErrValidationOverflow, ErrMisalignedSlice,
	ErrTensorInvalidInfo, ErrMetadataIncompleteBuffer, ErrTensorNotFound, ErrInvalidTensorView,
	ErrDuplicateKey,
}

// IsFormatError reports whether any sentinel error of this package is in
// err's chain (the CLI maps these to exit code 2).
func IsFormatError(err error) bool {
	if err == nil {
		return false
	}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// SentinelByName returns the sentinel error for a reference error variant
// name such as "HeaderTooSmall" or "MetadataIncompleteBuffer" (the word after
// "safetensors: " in its message), or nil when there is none. Manifests and
// reports name errors this way.
func SentinelByName(name string) error {
	for _, s := range sentinels {
		if variantName(s) == name {
			return s
		}
	}
	return nil
}

// RuleName returns the reference variant name of the first sentinel of this
// package in err's chain ("InvalidOffset", ...), or "" when there is none.
func RuleName(err error) string {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return variantName(s)
		}
	}
	return ""
}

func variantName(sentinel error) string {
	msg := strings.TrimPrefix(sentinel.Error(), "safetensors: ")
	name, _, _ := strings.Cut(msg, ":")
	return name
}

// TensorError records a failure together with the file and tensor it
// concerns, in the manner of [io/fs.PathError]. File or Tensor may be empty
// when unknown or not applicable. Err wraps one of the sentinels.
type TensorError struct {
	File   string // file name, "" for an anonymous reader
	Tensor string // tensor name, "" when the error is not about one tensor
	Err    error
}

// Error returns "safetensors: FILE: tensor "NAME": RULE: detail".
func (e *TensorError) Error() string {
	var b strings.Builder
	b.WriteString("safetensors: ")
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Tensor != "" {
		b.WriteString("tensor ")
		b.WriteString(quote(e.Tensor))
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(strings.TrimPrefix(e.Err.Error(), "safetensors: "))
	} else {
		b.WriteString("unknown error")
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *TensorError) Unwrap() error { return e.Err }

// quote quotes a tensor name for messages, keeping it short.
func quote(s string) string {
	const max = 200
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strconv.Quote(s)
}
