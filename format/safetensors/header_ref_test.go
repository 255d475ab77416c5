package safetensors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// decodeHeaderRef is the first implementation of rule 5, kept as a test
// oracle for the hand-written scanner: it walks the header with
// encoding/json tokens. decodeHeaderRef is rule 5: a token walk of the top-level object that rejects
// duplicate keys, then a strict decode of each entry.
func decodeHeaderRef(hdr []byte, o *options) (map[string]string, []rawTensor, error) {
	if err := checkSurrogatesRef(hdr); err != nil {
		return nil, nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(hdr))
	dec.UseNumber()
	if err := expectDelimRef(dec, '{', "header"); err != nil {
		return nil, nil, err
	}
	var (
		meta     map[string]string
		haveMeta bool
		raws     []rawTensor
		seen     = make(map[string]int)
	)
	for dec.More() {
		key, err := stringTokenRef(dec, "header key")
		if err != nil {
			return nil, nil, err
		}
		if key == "__metadata__" {
			if haveMeta && !o.lenient {
				return nil, nil, &TensorError{Tensor: key, Err: fmt.Errorf("%w: %q occurs twice", ErrDuplicateKey, key)}
			}
			haveMeta = true
			meta, err = decodeMetadataRef(dec, o)
			if err != nil {
				return nil, nil, err
			}
			continue
		}
		t, err := decodeEntryRef(dec, key, o)
		if err != nil {
			return nil, nil, &TensorError{Tensor: key, Err: err}
		}
		if i, dup := seen[key]; dup {
			if !o.lenient {
				return nil, nil, &TensorError{Tensor: key, Err: fmt.Errorf("%w: tensor name occurs twice", ErrDuplicateKey)}
			}
			raws[i] = t
			continue
		}
		seen[key] = len(raws)
		raws = append(raws, t)
	}
	if err := expectDelimRef(dec, '}', "header"); err != nil {
		return nil, nil, err
	}
	// Only JSON whitespace may follow the object.
	if tok, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, nil, deserErr("after the header object: %v", err)
		}
		return nil, nil, deserErr("unexpected %v after the header object", tok)
	}
	return meta, raws, nil
}

func expectDelimRef(dec *json.Decoder, d json.Delim, what string) error {
	tok, err := dec.Token()
	if err != nil {
		return deserErr("%s: %v", what, err)
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		return deserErr("%s: expected %q, found %v", what, string(d), tokStringRef(tok))
	}
	return nil
}

func tokStringRef(tok any) string {
	switch v := tok.(type) {
	case nil:
		return "null"
	case string:
		return strconv.Quote(v)
	case json.Delim:
		return strconv.Quote(string(v))
	}
	return fmt.Sprint(tok)
}

func stringTokenRef(dec *json.Decoder, what string) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", deserErr("%s: %v", what, err)
	}
	s, ok := tok.(string)
	if !ok {
		return "", deserErr("%s: expected a string, found %v", what, tokStringRef(tok))
	}
	return s, nil
}

// decodeMetadata decodes `null` or an object of string values.
func decodeMetadataRef(dec *json.Decoder, o *options) (map[string]string, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, &TensorError{Tensor: "__metadata__", Err: deserErr("%v", err)}
	}
	if tok == nil {
		return nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, &TensorError{Tensor: "__metadata__", Err: deserErr("expected an object of strings or null, found %v", tokStringRef(tok))}
	}
	m := make(map[string]string)
	for dec.More() {
		k, err := stringTokenRef(dec, "metadata key")
		if err != nil {
			return nil, &TensorError{Tensor: "__metadata__", Err: err}
		}
		v, err := stringTokenRef(dec, "metadata value of "+strconv.Quote(k))
		if err != nil {
			return nil, &TensorError{Tensor: "__metadata__", Err: err}
		}
		if _, dup := m[k]; dup && !o.lenient {
			return nil, &TensorError{Tensor: "__metadata__", Err: fmt.Errorf("%w: metadata key %q occurs twice", ErrDuplicateKey, k)}
		}
		m[k] = v
	}
	if err := expectDelimRef(dec, '}', "metadata"); err != nil {
		return nil, &TensorError{Tensor: "__metadata__", Err: err}
	}
	return m, nil
}

// decodeEntry decodes {"dtype":..., "shape":[...], "data_offsets":[b,e]} in
// any field order. Field names are case-sensitive; unknown fields are
// skipped (or rejected with WithStrictFields); a repeated field is an error.
func decodeEntryRef(dec *json.Decoder, name string, o *options) (rawTensor, error) {
	t := rawTensor{name: name}
	if err := expectDelimRef(dec, '{', "tensor entry"); err != nil {
		return t, err
	}
	var haveDType, haveShape, haveOffsets bool
	for dec.More() {
		k, err := stringTokenRef(dec, "tensor field")
		if err != nil {
			return t, err
		}
		switch k {
		case "dtype":
			if haveDType {
				return t, deserErr("duplicate field %q", k)
			}
			haveDType = true
			s, err := stringTokenRef(dec, "dtype")
			if err != nil {
				return t, err
			}
			if t.dtype, err = ParseDType(s); err != nil {
				return t, err
			}
		case "shape":
			if haveShape {
				return t, deserErr("duplicate field %q", k)
			}
			haveShape = true
			if t.shape, err = uintArrayRef(dec, "shape"); err != nil {
				return t, err
			}
		case "data_offsets":
			if haveOffsets {
				return t, deserErr("duplicate field %q", k)
			}
			haveOffsets = true
			offs, err := uintArrayRef(dec, "data_offsets")
			if err != nil {
				return t, err
			}
			if len(offs) != 2 {
				return t, deserErr("data_offsets has %d elements, want 2", len(offs))
			}
			t.offsets = [2]uint64{offs[0], offs[1]}
		default:
			if o.strictFields {
				return t, deserErr("unknown field %q", k)
			}
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return t, deserErr("field %q: %v", k, err)
			}
		}
	}
	if err := expectDelimRef(dec, '}', "tensor entry"); err != nil {
		return t, err
	}
	switch {
	case !haveDType:
		return t, deserErr("missing field \"dtype\"")
	case !haveShape:
		return t, deserErr("missing field \"shape\"")
	case !haveOffsets:
		return t, deserErr("missing field \"data_offsets\"")
	}
	return t, nil
}

// uintArray decodes an array of non-negative integers that fit in uint64.
func uintArrayRef(dec *json.Decoder, what string) ([]uint64, error) {
	if err := expectDelimRef(dec, '[', what); err != nil {
		return nil, err
	}
	var out []uint64
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, deserErr("%s: %v", what, err)
		}
		num, ok := tok.(json.Number)
		if !ok {
			return nil, deserErr("%s: expected an unsigned integer, found %v", what, tokStringRef(tok))
		}
		v, err := strconv.ParseUint(string(num), 10, 64)
		if err != nil {
			return nil, deserErr("%s: %s is not an unsigned 64-bit integer", what, num)
		}
		out = append(out, v)
	}
	if err := expectDelimRef(dec, ']', what); err != nil {
		return nil, err
	}
	if out == nil {
		out = []uint64{}
	}
	return out, nil
}

// checkSurrogates rejects \u escapes that encode a lone UTF-16 surrogate,
// which the reference JSON parser refuses and encoding/json would replace
// with U+FFFD. Backslashes only occur inside strings in valid JSON, so a
// scan of the raw bytes is exact.
func checkSurrogatesRef(hdr []byte) error {
	for i := 0; i < len(hdr); i++ {
		if hdr[i] != '\\' {
			continue
		}
		if i+1 >= len(hdr) {
			return nil // a syntax error the decoder reports
		}
		if hdr[i+1] != 'u' {
			i++ // skip the escaped character (also \\)
			continue
		}
		r, ok := hex4(hdr, i+2)
		if !ok {
			return nil // syntax error reported by the decoder
		}
		i += 5
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if i+2 < len(hdr) && hdr[i+1] == '\\' && hdr[i+2] == 'u' {
				if lo, ok := hex4(hdr, i+3); ok && lo >= 0xDC00 && lo < 0xE000 {
					i += 6
					continue
				}
			}
			return deserErr("lone leading surrogate \\u%04X in a string", r)
		case r >= 0xDC00 && r < 0xE000:
			return deserErr("lone trailing surrogate \\u%04X in a string", r)
		}
	}
	return nil
}
