package safetensors

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	nlp "github.com/nlpodyssey/safetensors"

	"github.com/adaptool/adaptool/internal/testcorpus"
)

// Documented disagreements with github.com/nlpodyssey/safetensors
// (safetensors.md §9), by case name; every other case must agree on
// accept/reject. Our side follows the reference implementation.
var nlpDifferences = map[string]string{
	"invalid UTF-8 in a name":  "nlpodyssey does not check UTF-8 (encoding/json substitutes U+FFFD)",
	"lone surrogate in name":   "nlpodyssey accepts lone surrogates (substituted); serde_json rejects them",
	"lone trailing surrogate":  "as above",
	"extra field ignored":      "nlpodyssey requires exactly three fields per entry; the reference ignores extras",
	"repeated field":           "nlpodyssey decodes entries into a map (last wins); serde rejects a duplicate field",
	"16b F4 [1,2] is one byte": "nlpodyssey knows 13 dtypes only",
	"dim does not fit int":     "our stricter choice: every dimension must fit in an int",
	"header null":              "nlpodyssey decodes a JSON null header as an empty map; serde rejects null",
}

func nlpAccepts(b []byte) (nlp.SafeTensors, error) {
	return nlp.Deserialize(b)
}

// Accept/reject agreement on the §7 tables (lenient mode, whose duplicate
// semantics are the reference's).
func TestDifferentialNlpodyssey(t *testing.T) {
	for _, c := range append(referenceCases(), additionalCases()...) {
		if c.name == "extra field strict" || c.name == "duplicate same offsets strict" || c.name == "duplicate [0,4] then [4,8] strict" {
			continue // strict-mode rows: covered by TestReaderCases
		}
		t.Run(c.name, func(t *testing.T) {
			_, ours := open(c.file, WithLenient())
			_, theirs := nlpAccepts(c.file)
			agree := (ours == nil) == (theirs == nil)
			if why, documented := nlpDifferences[c.name]; documented {
				if agree {
					t.Errorf("documented difference did not occur (%s): ours %v, nlpodyssey %v", why, ours, theirs)
				}
				return
			}
			if !agree {
				t.Fatalf("disagreement: ours %v, nlpodyssey %v", ours, theirs)
			}
		})
	}
}

// Tensor bytes, dtypes and shapes agree on every corpus file that both read.
func TestDifferentialNlpodysseyCorpus(t *testing.T) {
	root, rows := testcorpus.Manifest(t)
	for _, r := range rows {
		if !r.OK() {
			continue
		}
		t.Run(r.Dir, func(t *testing.T) {
			b, err := os.ReadFile(r.Path(root))
			if err != nil {
				t.Fatal(err)
			}
			st, err := nlp.Deserialize(b)
			if err != nil {
				t.Fatalf("nlpodyssey rejects a corpus file: %v", err)
			}
			f, err := open(b)
			if err != nil {
				t.Fatal(err)
			}
			if st.Len() != len(f.Tensors) {
				t.Fatalf("%d tensors, nlpodyssey %d", len(f.Tensors), st.Len())
			}
			for _, ti := range f.Tensors {
				v, ok := st.Tensor(ti.Name)
				if !ok {
					t.Fatalf("nlpodyssey lacks %q", ti.Name)
				}
				data, _ := f.Data(ti.Name)
				if v.DType().String() != ti.DType.String() || fmt.Sprint(v.Shape()) != fmt.Sprint(ti.Shape) || !bytes.Equal(v.Data(), data) {
					t.Fatalf("tensor %q differs: %s %v vs %s %v", ti.Name, ti.DType, ti.Shape, v.DType(), v.Shape())
				}
			}
		})
	}
}

// The writers agree byte for byte when alphabetical order equals offset
// order (one dtype, lower-case names) and no <>& occurs.
func TestDifferentialNlpodysseyWriter(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, name := range []string{"BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"} {
		dt, _ := ParseDType(name)
		ndt, err := nlp.ParseDType(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, meta := range []map[string]string{nil, {"format": "pt", "x": "y é"}} {
			var ours []Tensor
			theirs := map[string]nlp.TensorView{}
			for i := range 5 {
				shape := []int{r.IntN(4) + 1, r.IntN(5)}
				tt := randomTensor(r, fmt.Sprintf("layers.%d.weight", i), dt, shape)
				ours = append(ours, tt)
				v, err := nlp.NewTensorView(ndt, []uint64{uint64(shape[0]), uint64(shape[1])}, tt.Data)
				if err != nil {
					t.Fatal(err)
				}
				theirs[tt.Name] = v
			}
			want, err := nlp.Serialize(theirs, meta)
			if err != nil {
				t.Fatal(err)
			}
			got := writeBytes(t, ours, meta, WithExactMetadata())
			if !bytes.Equal(got, want) {
				t.Fatalf("%s meta %v: writer output differs\n ours   %q\n theirs %q", name, meta, got[:min(len(got), 200)], want[:min(len(want), 200)])
			}
		}
	}
}
