package inspect

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"testing"
)

// TestRoleTensorsJSON: RoleTensors encodes byte for byte as the
// map[string]string it replaced, inside an indented document, with and
// without HTML escaping, and reads back.
func TestRoleTensorsJSON(t *testing.T) {
	cases := []map[string]string{
		nil,
		{},
		{"lora_A": "m.lora_A.weight", "lora_B": "m.lora_B.weight"},
		{"Z": "z", "alpha": "x.alpha", "lora_A": "a", "lora_B": "b", "magnitude": "m", "lora_E": "e", "bias": "b2", "weight": "w", "x.extra": "y"},
		{"a<b>&": "t&t", "q\"uote": "back\\slash", "ctl\x01": "tab\t", "sep\u2028": "para\u2029", "ünï": "bad \xff utf-8", "": "empty role"},
	}
	for _, m := range cases {
		rt := RoleTensors(nil)
		if m != nil {
			rt = RoleTensors{}
			for _, k := range slices.Sorted(maps.Keys(m)) {
				rt = append(rt, RoleTensor{k, m[k]})
			}
		}
		for _, html := range []bool{false, true} {
			enc := func(v any) string {
				var buf bytes.Buffer
				e := json.NewEncoder(&buf)
				e.SetIndent("  ", "  ")
				e.SetEscapeHTML(html)
				if err := e.Encode(v); err != nil {
					t.Fatal(err)
				}
				return buf.String()
			}
			type docMap struct {
				T map[string]string `json:"tensors,omitempty"`
				U map[string]string `json:"u"`
			}
			type docRT struct {
				T RoleTensors `json:"tensors,omitempty"`
				U RoleTensors `json:"u"`
			}
			want, got := enc(docMap{m, m}), enc(docRT{rt, rt})
			if got != want {
				t.Errorf("html=%v %q:\n got %s\nwant %s", html, m, got, want)
			}
		}
		b, err := json.Marshal(rt)
		if err != nil {
			t.Fatal(err)
		}
		var back RoleTensors
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		var wantBack map[string]string
		json.Unmarshal(b, &wantBack)
		if !maps.Equal(back.Map(), wantBack) || !slices.IsSortedFunc(back, byRole) || (back == nil) != (rt == nil) {
			t.Errorf("round trip of %q: %q", m, back)
		}
	}
	// unsorted and repeated roles encode as assigning them into a map would
	rt := RoleTensors{{"b", "1"}, {"a", "2"}, {"b", "3"}}
	got, _ := json.Marshal(rt)
	if want := `{"a":"2","b":"3"}`; string(got) != want {
		t.Errorf("unsorted: %s, want %s", got, want)
	}
	if rt.Get("a") != "2" || rt.Get("c") != "" {
		t.Errorf("Get: %q %q", rt.Get("a"), rt.Get("c"))
	}
	if _, ok := rt.Lookup("c"); ok {
		t.Error("Lookup found a missing role")
	}
}
