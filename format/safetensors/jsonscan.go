package safetensors

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
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
	arena   []byte // the current chunk of interned names (see intern)
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
	b, err := s.strBytes()
	return string(b), err
}

// strBytes decodes a JSON string at the cursor without allocating when it
// has no escape: the result is then a view of the header, valid as long as
// the header and never to be modified; with escapes it is a fresh buffer.
func (s *scanner) strBytes() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.errf("expected a string, found %s", s.describe())
	}
	s.i++
	start := s.i
	// Fast path: no escapes.
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == '"' {
			v := s.b[start:s.i:s.i]
			s.i++
			return v, nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return nil, s.errf("control character 0x%02x in a string", c)
		}
		s.i++
	}
	buf := append([]byte(nil), s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return buf, nil
		case c < 0x20:
			return nil, s.errf("control character 0x%02x in a string", c)
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
				return nil, s.errf("invalid \\u escape")
			}
			s.i += 4
			switch {
			case utf16.IsSurrogate(r) && r < 0xDC00:
				lo, ok := rune(0), false
				if s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					lo, ok = hex4(s.b, s.i+2)
				}
				if !ok || lo < 0xDC00 || lo >= 0xE000 {
					return nil, s.errf("lone leading surrogate \\u%04X in a string", r)
				}
				s.i += 6
				r = utf16.DecodeRune(r, lo)
			case utf16.IsSurrogate(r):
				return nil, s.errf("lone trailing surrogate \\u%04X in a string", r)
			}
			buf = utf8.AppendRune(buf, r)
		default:
			s.i--
			return nil, s.errf("invalid escape \\%c", e)
		}
	}
	return nil, s.errf("unterminated string")
}

// intern returns b as a string copied into the scanner's name arena:
// chunks of at most 1 MiB (never more than the header holds) shared by
// many names, instead of one allocation per name.
func (s *scanner) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if cap(s.arena)-len(s.arena) < len(b) {
		s.arena = make([]byte, 0, max(len(b), min(len(s.b), 1<<20)))
	}
	n := len(s.arena)
	s.arena = append(s.arena, b...)
	return unsafe.String(&s.arena[n], len(b))
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
				if _, err := s.strBytes(); err != nil {
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
	return s.objectBytes(func(key []byte) error { return member(string(key)) })
}

// objectBytes is object with each key as strBytes returns it (a view of
// the header unless it has escapes), for keys that are only compared.
func (s *scanner) objectBytes(member func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		k, err := s.strBytes()
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

// appendUints decodes an array of unsigned integers and appends its values
// to dst.
func (s *scanner) appendUints(what string, dst []uint64) ([]uint64, error) {
	if s.peek() != '[' {
		return dst, s.errf("%s: expected an array, found %s", what, s.describe())
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return dst, nil
	}
	for {
		v, err := s.uint(what)
		if err != nil {
			return dst, err
		}
		dst = append(dst, v)
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return dst, nil
		default:
			return dst, s.errf("%s: expected ',' or ']', found %s", what, s.describe())
		}
	}
}

// rawEntry is a decoded tensor entry before validation (rules 6–7). Its
// shape is dims[dimOff:dimOff+ndim] of the decoded header's dims, so that
// the shapes of all entries share one array.
type rawEntry struct {
	name    string
	offsets [2]uint64
	dimOff  uint32 // a header of at most 1e8 bytes holds fewer than 5e7 dimensions
	ndim    uint32
	orig    int32 // the entry's position in header order (see nameIndex.remap)
	dtype   DType
}

// decodedHeader is what rule 5 yields: the metadata, the entries in header
// order, the dimensions of every shape, and the name → entry index.
type decodedHeader struct {
	meta  map[string]string
	ents  []rawEntry
	dims  []uint64
	index *nameIndex
}

// decodeHeader is decodeEntries with each entry as a rawTensor of its own
// (the form the encoding/json reference decoder of the tests returns).
func decodeHeader(hdr []byte, o *options) (map[string]string, []rawTensor, error) {
	d, err := decodeEntries(hdr, o)
	if err != nil {
		return nil, nil, err
	}
	raws := make([]rawTensor, len(d.ents))
	for i, e := range d.ents {
		shape := []uint64{}
		if e.ndim > 0 {
			shape = slices.Clone(d.dims[e.dimOff : e.dimOff+e.ndim])
		}
		raws[i] = rawTensor{name: e.name, dtype: e.dtype, shape: shape, offsets: e.offsets}
	}
	return d.meta, raws, nil
}

// decodeEntries is rule 5: the top-level object is walked member by member
// so that duplicate names are seen (ErrDuplicateKey unless lenient, then
// the last wins as in the reference), "__metadata__" must be null or an
// object of strings, and each tensor entry must hold exactly the fields
// dtype, shape and data_offsets (in any order; unknown fields are skipped
// unless WithStrictFields; a repeated field is an error). Only JSON
// whitespace may surround the object.
//
// Names are interned in shared chunks, field names and dtypes are compared
// in place and shapes are appended to one array: a tensor entry costs no
// allocation of its own.
func decodeEntries(hdr []byte, o *options) (*decodedHeader, error) {
	s := &scanner{b: hdr}
	// Pre-size for the entries the header can hold: each has a
	// "data_offsets" key (unless it is invalid) and takes at least 50
	// bytes; most shapes have two dimensions.
	est := min(bytes.Count(hdr, []byte(`"data_offsets"`)), len(hdr)/50)
	d := &decodedHeader{ents: make([]rawEntry, 0, est), dims: make([]uint64, 0, 2*est), index: newNameIndex(est)}
	haveMeta := false
	err := s.objectBytes(func(key []byte) error {
		if string(key) == "__metadata__" {
			const key = "__metadata__"
			if haveMeta && !o.lenient {
				return &TensorError{Tensor: key, Err: fmt.Errorf("%w: %q occurs twice", ErrDuplicateKey, key)}
			}
			haveMeta = true
			m, err := s.metadata(o)
			if err != nil {
				return &TensorError{Tensor: key, Err: err}
			}
			d.meta = m
			return nil
		}
		name := s.intern(key)
		t, err := s.entry(o, &d.dims)
		if err != nil {
			return &TensorError{Tensor: name, Err: err}
		}
		slot, i, dup := d.index.find(name, d.ents)
		if dup {
			if !o.lenient {
				return &TensorError{Tensor: name, Err: fmt.Errorf("%w: tensor name occurs twice", ErrDuplicateKey)}
			}
			t.name, t.orig = name, int32(i)
			d.ents[i] = t
			return nil
		}
		t.name, t.orig = name, int32(len(d.ents))
		d.ents = append(d.ents, t)
		d.index.insert(slot, len(d.ents)-1, d.ents)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if s.ws(); s.i != len(s.b) {
		return nil, s.errf("unexpected %s after the header object", s.describe())
	}
	return d, nil
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

// parseDType is ParseDType of a spelling still in the header's bytes.
func parseDType(b []byte) (DType, error) {
	for i, n := range dtypeNames {
		if string(b) == n {
			return DType(i), nil
		}
	}
	return ParseDType(string(b))
}

// entry decodes one tensor entry; its shape is appended to *dims.
func (s *scanner) entry(o *options, dims *[]uint64) (rawEntry, error) {
	var t rawEntry
	if s.peek() != '{' {
		return t, s.errf("tensor entry: expected an object, found %s", s.describe())
	}
	var haveDType, haveShape, haveOffsets bool
	err := s.objectBytes(func(k []byte) error {
		switch string(k) {
		case "dtype":
			if haveDType {
				return s.errf("duplicate field %q", k)
			}
			haveDType = true
			v, err := s.strBytes()
			if err != nil {
				return err
			}
			t.dtype, err = parseDType(v)
			return err
		case "shape":
			if haveShape {
				return s.errf("duplicate field %q", k)
			}
			haveShape = true
			off := len(*dims)
			var err error
			*dims, err = s.appendUints("shape", *dims)
			t.dimOff, t.ndim = uint32(off), uint32(len(*dims)-off)
			return err
		case "data_offsets":
			if haveOffsets {
				return s.errf("duplicate field %q", k)
			}
			haveOffsets = true
			var err error
			s.scratch, err = s.appendUints("data_offsets", s.scratch[:0])
			if err != nil {
				return err
			}
			if len(s.scratch) != 2 {
				return s.errf("data_offsets has %d elements, want 2", len(s.scratch))
			}
			t.offsets = [2]uint64{s.scratch[0], s.scratch[1]}
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
