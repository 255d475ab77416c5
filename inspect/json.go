package inspect

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"math"
	"reflect"
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
			for i := 0; i < fv.Len(); i++ {
				if i > 0 {
					bw.WriteString(",")
				}
				bw.WriteString("\n    ")
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
