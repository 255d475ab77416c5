package inspect

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// WriteJSON writes s as `adaptool inspect --json` prints it: exactly the
// bytes a json.Encoder with SetIndent("", "  ") and SetEscapeHTML(false)
// writes for s, newline included. The list fields (tensors, modules, ...)
// are encoded one entry at a time through a buffered writer instead of as
// one document in memory, so a 100,000-tensor summary needs no more than a
// few kilobytes of output buffer. Like the Encoder, it writes nothing when s
// cannot be encoded (a NaN or infinite number).
func (s *Summary) WriteJSON(w io.Writer) error {
	if !s.finite() || reflect.PointerTo(summaryType).Implements(marshalerType) {
		enc := newIndentEncoder(w, "")
		return enc.Encode(s)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// encode returns v indented as if it sat at depth len(prefix)/2 of the
	// document, without the Encoder's trailing newline.
	encode := func(v any, prefix string) ([]byte, error) {
		buf.Reset()
		enc.SetIndent(prefix, "  ")
		if err := enc.Encode(v); err != nil {
			return nil, err
		}
		return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
	}
	v := reflect.ValueOf(s).Elem()
	bw.WriteString("{")
	first := true
	for _, f := range summaryFields {
		fv := v.Field(f.index)
		if f.omitEmpty && isEmptyJSON(fv) {
			continue
		}
		if !first {
			bw.WriteString(",")
		}
		first = false
		bw.WriteString("\n  ")
		bw.Write(f.key)
		bw.WriteString(": ")
		if fv.Kind() == reflect.Slice && fv.Len() > 0 {
			// [ then one entry per line at depth 2, as Indent lays it out
			bw.WriteString("[")
			var fast []byte
			for i := 0; i < fv.Len(); i++ {
				if i > 0 {
					bw.WriteString(",")
				}
				bw.WriteString("\n    ")
				var ok bool
				switch e := fv.Index(i).Addr().Interface().(type) {
				case *TensorSummary:
					fast, ok = appendTensorJSON(fast[:0], e)
				case *ModuleSummary:
					fast, ok = appendModuleJSON(fast[:0], e)
				}
				if ok {
					bw.Write(fast)
					continue
				}
				// through a pointer: slice entries are addressable in the
				// whole document too
				b, err := encode(fv.Index(i).Addr().Interface(), "    ")
				if err != nil {
					return err
				}
				bw.Write(b)
			}
			bw.WriteString("\n  ]")
			continue
		}
		b, err := encode(fv.Addr().Interface(), "  ")
		if err != nil {
			return err
		}
		bw.Write(b)
	}
	if first {
		bw.WriteString("}\n") // no field at all: Indent writes {}
	} else {
		bw.WriteString("\n}\n")
	}
	return bw.Flush()
}

// newIndentEncoder is the encoder whose output WriteJSON reproduces.
func newIndentEncoder(w io.Writer, prefix string) *json.Encoder {
	enc := json.NewEncoder(w)
	enc.SetIndent(prefix, "  ")
	enc.SetEscapeHTML(false)
	return enc
}

var (
	summaryType   = reflect.TypeFor[Summary]()
	marshalerType = reflect.TypeFor[json.Marshaler]()
	summaryFields = jsonFields(summaryType)
)

// jsonField is one field of Summary as encoding/json sees it.
type jsonField struct {
	index     int
	key       []byte // the quoted key
	omitEmpty bool
}

// jsonFields lists the exported, non-embedded fields of t in order with
// their JSON keys. Summary has no embedded fields, no "-" and no ",string"
// options; a test keeps it so.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			name = f.Name
		}
		key, _ := json.Marshal(name)
		out = append(out, jsonField{index: i, key: key, omitEmpty: hasOption(opts, "omitempty")})
	}
	return out
}

func hasOption(opts, want string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == want {
			return true
		}
	}
	return false
}

// isEmptyJSON is encoding/json's omitempty test.
func isEmptyJSON(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Interface, reflect.Pointer:
		return v.IsNil()
	}
	return false
}

// finite reports whether every floating-point number of s is finite, so
// that encoding cannot fail half-way through the output (TestFiniteCovers
// keeps this list complete).
func (s *Summary) finite() bool {
	ok := func(xs ...float64) bool {
		for _, x := range xs {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return false
			}
		}
		return true
	}
	if !ok(s.Totals.DeltaFroNorm) {
		return false
	}
	for i := range s.Tensors {
		if st := s.Tensors[i].Stats; st != nil && !ok(st.Min, st.Max, st.Mean, st.Std, st.AbsMax, st.Norm) {
			return false
		}
	}
	for i := range s.Modules {
		m := &s.Modules[i]
		if !ok(m.Alpha, m.Scale) {
			return false
		}
		if st := m.ModuleStats; st != nil {
			if !ok(st.NormA, st.NormB, st.DeltaFroNorm, st.EffectiveRank, st.StableRank, st.VectorNorm) || !ok(st.SingularValues...) {
				return false
			}
		}
	}
	return true
}

// The fast paths below write the two entries a big header has by the
// hundred thousand, tensors and modules, as the Encoder lays them out at
// depth 2 of the document. They handle the header-only case with plain
// strings; anything else (statistics, a string that needs escaping) returns
// false and goes through the Encoder. TestWriteJSONMatchesEncoder and
// TestFastJSON compare them with it.

// plainJSON reports whether s encodes as itself between quotes with or
// without HTML escaping: printable ASCII other than " \ < > &.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

func appendKey(dst []byte, indent, key string) []byte {
	dst = append(append(dst, indent...), '"')
	return append(append(dst, key...), `": `...)
}

func appendStringField(dst []byte, indent, key, v string) []byte {
	return append(append(append(appendKey(dst, indent, key), '"'), v...), '"')
}

func appendIntField(dst []byte, indent, key string, v int64) []byte {
	return strconv.AppendInt(appendKey(dst, indent, key), v, 10)
}

func appendBoolField(dst []byte, indent, key string, v bool) []byte {
	return strconv.AppendBool(appendKey(dst, indent, key), v)
}

// appendJSONFloat appends f as encoding/json writes a float64 (finite f).
func appendJSONFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

const (
	fieldIndent = "\n      "   // a field of an entry at depth 2
	innerIndent = "\n        " // an element of a list or map inside it
)

// appendTensorJSON appends t as an entry of "tensors".
func appendTensorJSON(dst []byte, t *TensorSummary) ([]byte, bool) {
	if t.Stats != nil || !plainJSON(t.Name) || !plainJSON(t.DType) || !plainJSON(t.File) || !plainJSON(t.Quant) {
		return dst, false
	}
	dst = append(dst, '{')
	dst = appendStringField(dst, fieldIndent, "name", t.Name)
	dst = appendStringField(append(dst, ','), fieldIndent, "dtype", t.DType)
	dst = appendKey(append(dst, ','), fieldIndent, "shape")
	switch {
	case t.Shape == nil:
		dst = append(dst, "null"...)
	case len(t.Shape) == 0:
		dst = append(dst, "[]"...)
	default:
		dst = append(dst, '[')
		for i, d := range t.Shape {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(append(dst, innerIndent...), int64(d), 10)
		}
		dst = append(dst, fieldIndent+"]"...)
	}
	dst = appendIntField(append(dst, ','), fieldIndent, "bytes", t.Bytes)
	if t.File != "" {
		dst = appendStringField(append(dst, ','), fieldIndent, "file", t.File)
	}
	if t.Quant != "" {
		dst = appendStringField(append(dst, ','), fieldIndent, "quant", t.Quant)
	}
	return append(dst, "\n    }"...), true
}

// appendModuleJSON appends m as an entry of "modules" (what MarshalJSON
// gives for a module without statistics).
func appendModuleJSON(dst []byte, m *ModuleSummary) ([]byte, bool) {
	if m.ModuleStats != nil || m.statsRequested || !plainJSON(m.Name) || !plainJSON(m.Kind) || !plainJSON(m.Block) || !plainJSON(m.ModuleType) ||
		math.IsNaN(m.Alpha) || math.IsInf(m.Alpha, 0) || math.IsNaN(m.Scale) || math.IsInf(m.Scale, 0) {
		return dst, false
	}
	if !slices.IsSortedFunc(m.Tensors, byRole) {
		return dst, false
	}
	for i, e := range m.Tensors {
		if !plainJSON(e.Role) || !plainJSON(e.Tensor) || i > 0 && m.Tensors[i-1].Role == e.Role {
			return dst, false
		}
	}
	dst = append(dst, '{')
	dst = appendStringField(dst, fieldIndent, "name", m.Name)
	dst = appendStringField(append(dst, ','), fieldIndent, "kind", m.Kind)
	dst = appendIntField(append(dst, ','), fieldIndent, "rank", int64(m.Rank))
	dst = appendJSONFloat(appendKey(append(dst, ','), fieldIndent, "alpha"), m.Alpha)
	dst = appendJSONFloat(appendKey(append(dst, ','), fieldIndent, "scale"), m.Scale)
	dst = appendBoolField(append(dst, ','), fieldIndent, "alpha_known", m.AlphaKnown)
	dst = appendIntField(append(dst, ','), fieldIndent, "in_features", int64(m.InFeatures))
	dst = appendIntField(append(dst, ','), fieldIndent, "out_features", int64(m.OutFeatures))
	dst = appendBoolField(append(dst, ','), fieldIndent, "fan_in_fan_out", m.FanInFanOut)
	dst = appendIntField(append(dst, ','), fieldIndent, "layer", int64(m.Layer))
	dst = appendStringField(append(dst, ','), fieldIndent, "block", m.Block)
	dst = appendStringField(append(dst, ','), fieldIndent, "module_type", m.ModuleType)
	if len(m.Tensors) > 0 {
		dst = append(appendKey(append(dst, ','), fieldIndent, "tensors"), '{')
		for i, e := range m.Tensors {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendStringField(dst, innerIndent, e.Role, e.Tensor)
		}
		dst = append(dst, fieldIndent+"}"...)
	}
	return append(dst, "\n    }"...), true
}
