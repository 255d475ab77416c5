package safetensors

import (
	"fmt"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds the nesting of JSON values (serde_json's default
// recursion limit is 128); deeper headers fail rule 5.
const maxDepth = 128

// scanner is a strict RFC 8259 scanner over a header already known to be
// valid UTF-8. It decodes exactly what rule 5 needs: the top-level object
// with duplicate-key detection, the metadata map and each tensor entry, and
// skips (after validating) unknown fields. Errors wrap
// ErrInvalidHeaderDeserialization and give the byte offset.
type scanner struct {
	b       []byte
	i       int
	scratch []uint64
}

func (s *scanner) errf(format string, args ...any) error {
	return deserErr("at header offset %d: %s", s.i, fmt.Sprintf(format, args...))
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte (0 at the end).
func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) describe() string {
	if s.i >= len(s.b) {
		return "end of header"
	}
	r, _ := utf8.DecodeRune(s.b[s.i:])
	return strconv.QuoteRune(r)
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return s.errf("expected %q, found %s", c, s.describe())
	}
	s.i++
	return nil
}

// str decodes a JSON string at the cursor.
func (s *scanner) str() (string, error) {
	if s.peek() != '"' {
		return "", s.errf("expected a string, found %s", s.describe())
	}
	s.i++
	start := s.i
	// Fast path: no escapes.
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == '"' {
			v := string(s.b[start:s.i])
			s.i++
			return v, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", s.errf("control character 0x%02x in a string", c)
		}
		s.i++
	}
	buf := append([]byte(nil), s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return string(buf), nil
		case c < 0x20:
			return "", s.errf("control character 0x%02x in a string", c)
		case c != '\\':
			buf = append(buf, c)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			break
		}
		e := s.b[s.i+1]
		s.i += 2
		switch e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, ok := hex4(s.b, s.i)
			if !ok {
				return "", s.errf("invalid \\u escape")
			}
			s.i += 4
			switch {
			case utf16.IsSurrogate(r) && r < 0xDC00:
				lo, ok := rune(0), false
				if s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					lo, ok = hex4(s.b, s.i+2)
				}
				if !ok || lo < 0xDC00 || lo >= 0xE000 {
					return "", s.errf("lone leading surrogate \\u%04X in a string", r)
				}
				s.i += 6
				r = utf16.DecodeRune(r, lo)
			case utf16.IsSurrogate(r):
				return "", s.errf("lone trailing surrogate \\u%04X in a string", r)
			}
			buf = utf8.AppendRune(buf, r)
		default:
			s.i--
			return "", s.errf("invalid escape \\%c", e)
		}
	}
	return "", s.errf("unterminated string")
}

// number validates a JSON number at the cursor and returns its text.
func (s *scanner) number() ([]byte, error) {
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case digits() == 0:
		return nil, s.errf("invalid number")
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return nil, s.errf("invalid number")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return nil, s.errf("invalid number")
		}
	}
	return s.b[start:s.i], nil
}

// uint decodes a non-negative integer that fits in uint64; negative,
// fractional, exponent and out-of-range numbers are errors, as in serde.
func (s *scanner) uint(what string) (uint64, error) {
	c := s.peek()
	if c != '-' && (c < '0' || c > '9') {
		return 0, s.errf("%s: expected an unsigned integer, found %s", what, s.describe())
	}
	start := s.i
	num, err := s.number()
	if err != nil {
		return 0, err
	}
	v, perr := strconv.ParseUint(string(num), 10, 64)
	if perr != nil {
		s.i = start
		return 0, s.errf("%s: %s is not an unsigned 64-bit integer", what, num)
	}
	return v, nil
}

func (s *scanner) literal(word string) error {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return s.errf("invalid value %s", s.describe())
	}
	s.i += len(word)
	return nil
}

// skip validates and skips any JSON value; depth is the nesting level of
// the value's container.
func (s *scanner) skip(depth int) error {
	switch c := s.peek(); {
	case c == '"':
		_, err := s.str()
		return err
	case c == '-' || (c >= '0' && c <= '9'):
		_, err := s.number()
		return err
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '[' || c == '{':
		if depth+1 > maxDepth {
			return s.errf("nesting deeper than %d", maxDepth)
		}
		s.i++
		end := byte(']')
		if c == '{' {
			end = '}'
		}
		if s.peek() == end {
			s.i++
			return nil
		}
		for {
			if c == '{' {
				if _, err := s.str(); err != nil {
					return err
				}
				if err := s.expect(':'); err != nil {
					return err
				}
			}
			if err := s.skip(depth + 1); err != nil {
				return err
			}
			switch s.peek() {
			case ',':
				s.i++
			case end:
				s.i++
				return nil
			default:
				return s.errf("expected ',' or %q, found %s", end, s.describe())
			}
		}
	}
	return s.errf("invalid value %s", s.describe())
}

// object iterates over the members of an object at the cursor, calling
// member with the cursor on each value.
func (s *scanner) object(member func(key string) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		k, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := member(k); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return s.errf("expected ',' or '}', found %s", s.describe())
		}
	}
}

// uintArray decodes an array of unsigned integers into s.scratch and
// returns the values as a fresh exact-size slice (keep=true) or as a view
// of the scratch buffer, valid until the next call (keep=false).
func (s *scanner) uintArray(what string, keep bool) ([]uint64, error) {
	if s.peek() != '[' {
		return nil, s.errf("%s: expected an array, found %s", what, s.describe())
	}
	s.i++
	s.scratch = s.scratch[:0]
	if s.peek() == ']' {
		s.i++
		return []uint64{}, nil
	}
	for {
		v, err := s.uint(what)
		if err != nil {
			return nil, err
		}
		s.scratch = append(s.scratch, v)
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			if keep {
				return slices.Clone(s.scratch), nil
			}
			return s.scratch, nil
		default:
			return nil, s.errf("%s: expected ',' or ']', found %s", what, s.describe())
		}
	}
}

// decodeHeader is rule 5: the top-level object is walked member by member
// so that duplicate names are seen (ErrDuplicateKey unless lenient, then
// the last wins as in the reference), "__metadata__" must be null or an
// object of strings, and each tensor entry must hold exactly the fields
// dtype, shape and data_offsets (in any order; unknown fields are skipped
// unless WithStrictFields; a repeated field is an error). Only JSON
// whitespace may surround the object.
func decodeHeader(hdr []byte, o *options) (map[string]string, []rawTensor, error) {
	meta, raws, _, err := decodeHeaderSeen(hdr, o)
	return meta, raws, err
}

// decodeHeaderSeen is decodeHeader that also returns the name → position
// map it built, so that the caller can reuse its storage.
func decodeHeaderSeen(hdr []byte, o *options) (map[string]string, []rawTensor, map[string]int, error) {
	s := &scanner{b: hdr}
	var (
		meta     map[string]string
		haveMeta bool
		// Typical entries take ~100–130 header bytes; pre-sizing from the
		// (already bounded) header length saves most of the growth.
		raws = make([]rawTensor, 0, len(hdr)/128)
		seen = make(map[string]int, len(hdr)/128)
	)
	err := s.object(func(key string) error {
		if key == "__metadata__" {
			if haveMeta && !o.lenient {
				return &TensorError{Tensor: key, Err: fmt.Errorf("%w: %q occurs twice", ErrDuplicateKey, key)}
			}
			haveMeta = true
			m, err := s.metadata(o)
			if err != nil {
				return &TensorError{Tensor: key, Err: err}
			}
			meta = m
			return nil
		}
		t, err := s.entry(key, o)
		if err != nil {
			return &TensorError{Tensor: key, Err: err}
		}
		if i, dup := seen[key]; dup {
			if !o.lenient {
				return &TensorError{Tensor: key, Err: fmt.Errorf("%w: tensor name occurs twice", ErrDuplicateKey)}
			}
			raws[i] = t
			return nil
		}
		seen[key] = len(raws)
		raws = append(raws, t)
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if s.ws(); s.i != len(s.b) {
		return nil, nil, nil, s.errf("unexpected %s after the header object", s.describe())
	}
	return meta, raws, seen, nil
}

func (s *scanner) metadata(o *options) (map[string]string, error) {
	if s.peek() == 'n' {
		return nil, s.literal("null")
	}
	if s.peek() != '{' {
		return nil, s.errf("expected an object of strings or null, found %s", s.describe())
	}
	m := make(map[string]string)
	err := s.object(func(k string) error {
		if s.peek() != '"' {
			return s.errf("metadata value of %q: expected a string, found %s", k, s.describe())
		}
		v, err := s.str()
		if err != nil {
			return err
		}
		if _, dup := m[k]; dup && !o.lenient {
			return fmt.Errorf("%w: metadata key %q occurs twice", ErrDuplicateKey, k)
		}
		m[k] = v
		return nil
	})
	return m, err
}

func (s *scanner) entry(name string, o *options) (rawTensor, error) {
	t := rawTensor{name: name}
	if s.peek() != '{' {
		return t, s.errf("tensor entry: expected an object, found %s", s.describe())
	}
	var haveDType, haveShape, haveOffsets bool
	err := s.object(func(k string) error {
		switch k {
		case "dtype":
			if haveDType {
				return s.errf("duplicate field %q", k)
			}
			haveDType = true
			v, err := s.str()
			if err != nil {
				return err
			}
			t.dtype, err = ParseDType(v)
			return err
		case "shape":
			if haveShape {
				return s.errf("duplicate field %q", k)
			}
			haveShape = true
			var err error
			t.shape, err = s.uintArray("shape", true)
			return err
		case "data_offsets":
			if haveOffsets {
				return s.errf("duplicate field %q", k)
			}
			haveOffsets = true
			offs, err := s.uintArray("data_offsets", false)
			if err != nil {
				return err
			}
			if len(offs) != 2 {
				return s.errf("data_offsets has %d elements, want 2", len(offs))
			}
			t.offsets = [2]uint64{offs[0], offs[1]}
			return nil
		}
		if o.strictFields {
			return s.errf("unknown field %q", k)
		}
		return s.skip(2)
	})
	if err != nil {
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
