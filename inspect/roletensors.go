package inspect

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
)

// RoleTensors lists a module's tensors by role (adapter.RoleA → the name of
// its lora_A tensor, ...), sorted by role. It encodes as the JSON object a
// map[string]string would ({"lora_A": "…", "lora_B": "…"}, keys sorted),
// at a tenth of a map's memory: ~64 bytes for a two-tensor module, where a
// Go map takes ~300, which adds up to ~90 MB for a header of 300,000
// modules.
type RoleTensors []RoleTensor

// RoleTensor is one entry of RoleTensors.
type RoleTensor struct {
	Role   string
	Tensor string
}

// Lookup returns the name of the tensor of role.
func (r RoleTensors) Lookup(role string) (string, bool) {
	for _, e := range r {
		if e.Role == role {
			return e.Tensor, true
		}
	}
	return "", false
}

// Get returns the name of the tensor of role, "" when there is none (as an
// index of a map[string]string does).
func (r RoleTensors) Get(role string) string {
	t, _ := r.Lookup(role)
	return t
}

// Map returns the entries as a map.
func (r RoleTensors) Map() map[string]string {
	m := make(map[string]string, len(r))
	for _, e := range r {
		m[e.Role] = e.Tensor
	}
	return m
}

func byRole(a, b RoleTensor) int { return strings.Compare(a.Role, b.Role) }

// MarshalJSON writes the object a map[string]string of the same entries
// encodes to: keys sorted, strings escaped as encoding/json escapes them
// (HTML characters are left to the enclosing encoder, which escapes them
// when its SetEscapeHTML is on, as it would in a map). A role given twice
// keeps its last tensor, as assigning it into a map would.
func (r RoleTensors) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("null"), nil
	}
	if !slices.IsSortedFunc(r, byRole) {
		r = slices.Clone(r)
		slices.SortStableFunc(r, byRole)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	out := []byte{'{'}
	str := func(s string) error {
		buf.Reset()
		if err := enc.Encode(s); err != nil {
			return err
		}
		out = append(out, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
		return nil
	}
	first := true
	for i, e := range r {
		if i+1 < len(r) && r[i+1].Role == e.Role {
			continue // the last of equal roles wins
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		if err := str(e.Role); err != nil {
			return nil, err
		}
		out = append(out, ':')
		if err := str(e.Tensor); err != nil {
			return nil, err
		}
	}
	return append(out, '}'), nil
}

// UnmarshalJSON reads the object MarshalJSON writes.
func (r *RoleTensors) UnmarshalJSON(b []byte) error {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	if m == nil {
		*r = nil
		return nil
	}
	out := make(RoleTensors, 0, len(m))
	for k, v := range m {
		out = append(out, RoleTensor{k, v})
	}
	slices.SortFunc(out, byRole)
	*r = out
	return nil
}
