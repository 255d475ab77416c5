package adapter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// MarshalPython encodes v exactly as Python's json.dumps(v, indent=2,
// sort_keys=True) does (the form PEFT writes adapter_config.json in):
// ", " / ": " separators, two-space indentation, keys sorted by code point
// at every level, empty containers as {} and [], non-ASCII escaped as
// lowercase \uXXXX (surrogate pairs above U+FFFF), floats in Python repr
// (16.0, 0.1, 1e-05), and no trailing newline.
//
// v may hold nil, bool, string, int, int64, float64, json.Number (written
// verbatim), json.RawMessage (decoded and re-encoded), []any, []string,
// []int, []float64, map[string]any and map[string]json.RawMessage.
func MarshalPython(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := pyEncode(&b, v, 0); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func pyIndent(b *bytes.Buffer, level int) {
	b.WriteByte('\n')
	for i := 0; i < level; i++ {
		b.WriteString("  ")
	}
}

func pyEncode(b *bytes.Buffer, v any, level int) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case string:
		pyString(b, x)
	case int:
		b.WriteString(strconv.Itoa(x))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case float64:
		s, err := pyFloat(x)
		if err != nil {
			return err
		}
		b.WriteString(s)
	case json.Number:
		b.WriteString(string(x))
	case json.RawMessage:
		dec := json.NewDecoder(bytes.NewReader(x))
		dec.UseNumber()
		var y any
		if err := dec.Decode(&y); err != nil {
			return err
		}
		return pyEncode(b, y, level)
	case []string:
		a := make([]any, len(x))
		for i, s := range x {
			a[i] = s
		}
		return pyEncode(b, a, level)
	case []int:
		a := make([]any, len(x))
		for i, s := range x {
			a[i] = s
		}
		return pyEncode(b, a, level)
	case []float64:
		a := make([]any, len(x))
		for i, s := range x {
			a[i] = s
		}
		return pyEncode(b, a, level)
	case []any:
		if len(x) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			pyIndent(b, level+1)
			if err := pyEncode(b, e, level+1); err != nil {
				return err
			}
		}
		pyIndent(b, level)
		b.WriteByte(']')
	case map[string]json.RawMessage:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = e
		}
		return pyEncode(b, m, level)
	case map[string]any:
		if len(x) == 0 {
			b.WriteString("{}")
			return nil
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sortPyKeys(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			pyIndent(b, level+1)
			pyString(b, k)
			b.WriteString(": ")
			if err := pyEncode(b, x[k], level+1); err != nil {
				return err
			}
		}
		pyIndent(b, level)
		b.WriteByte('}')
	default:
		return fmt.Errorf("adapter: MarshalPython: unsupported type %T", v)
	}
	return nil
}

// sortPyKeys sorts like Python's sorted() on str: by code point.
func sortPyKeys(keys []string) {
	sort.Slice(keys, func(i, j int) bool {
		a, b := []rune(keys[i]), []rune(keys[j])
		for k := 0; k < len(a) && k < len(b); k++ {
			if a[k] != b[k] {
				return a[k] < b[k]
			}
		}
		return len(a) < len(b)
	})
}

// pyString writes s with json.dumps' default ensure_ascii=True escaping.
func pyString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r >= 0x20 && r < 0x7f {
				b.WriteRune(r)
				continue
			}
			units := []uint16{uint16(r)}
			if r > 0xffff {
				r1, r2 := utf16.EncodeRune(r)
				units = []uint16{uint16(r1), uint16(r2)}
			}
			for _, u := range units {
				b.WriteString(`\u`)
				b.WriteByte(hex[u>>12&0xf])
				b.WriteByte(hex[u>>8&0xf])
				b.WriteByte(hex[u>>4&0xf])
				b.WriteByte(hex[u&0xf])
			}
		}
	}
	b.WriteByte('"')
}

// pyFloat formats f as Python's float repr: the shortest round-trip digits,
// positional notation for 1e-4 ≤ |f| < 1e16 (with ".0" when integral),
// otherwise d.ddde±XX with at least two exponent digits. NaN and ±Inf are
// refused (Python would write NaN/Infinity, which is not JSON).
func pyFloat(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("adapter: cannot write %v in JSON", f)
	}
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0", nil
		}
		return "0.0", nil
	}
	// shortest digits and decimal exponent
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, expS, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(expS)
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	digits := strings.Replace(mant, ".", "", 1)
	sign := ""
	if neg {
		sign = "-"
	}
	if exp < -4 || exp >= 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if exp < 0 {
			es, exp = "-", -exp
		}
		return fmt.Sprintf("%s%se%s%02d", sign, m, es, exp), nil
	}
	if exp >= 0 {
		if len(digits) <= exp+1 {
			return sign + digits + strings.Repeat("0", exp+1-len(digits)) + ".0", nil
		}
		return sign + digits[:exp+1] + "." + digits[exp+1:], nil
	}
	return sign + "0." + strings.Repeat("0", -exp-1) + digits, nil
}

// pyNumber returns an integral float as an int (so 16.0 is written 16, as
// a PEFT user typing lora_alpha=16 gets) and anything else as float64.
func pyNumber(f float64) any {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int64(f)
	}
	return f
}
