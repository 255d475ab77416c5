package adapter

import (
	"iter"
)

// Load groups a header's tensors into modules without a map per module: a
// Go map takes ~600 bytes however few roles it holds (~190 MB for a header
// of 300,000 two-tensor modules). Instead one roleTable holds an entry per
// tensor (its role, 24 bytes), chained module by module, and the Tensors
// maps are built last (or, for WithModuleFunc, one module at a time, and
// for Validate's own Load, never). Until then the package reads a module's
// tensors through the methods below, which use Tensors when it is set.

// roleTable holds the tensor lists of the modules of one classification.
type roleTable struct {
	ents []roleEntry
	// ref returns the i-th tensor of the classified list (i < n); entries
	// added after the grouping (shared VeRA projections) use extra.
	ref   func(i int) TensorRef
	n     int
	extra []TensorRef
}

// roleEntry is one tensor of a module's list.
type roleEntry struct {
	role string
	idx  int32 // the tensor: ref(idx), or extra[idx-n]
	next int32 // the module's next entry + 1; 0 ends the list
}

func (tab *roleTable) tensor(e *roleEntry) TensorRef {
	if int(e.idx) < tab.n {
		return tab.ref(int(e.idx))
	}
	return tab.extra[int(e.idx)-tab.n]
}

// compact reports whether m's tensors are in a roleTable (Tensors unset).
func (m *Module) compact() bool { return m.Tensors == nil && m.roles != nil }

// tensor returns the module's tensor of the given role.
func (m *Module) tensor(role string) (TensorRef, bool) {
	if !m.compact() {
		t, ok := m.Tensors[role]
		return t, ok
	}
	for k := m.first; k != 0; k = m.roles.ents[k-1].next {
		if e := &m.roles.ents[k-1]; e.role == role {
			return m.roles.tensor(e), true
		}
	}
	return TensorRef{}, false
}

// tensorRef returns the module's tensor of the given role, or the zero
// TensorRef (as m.Tensors[role] would).
func (m *Module) tensorRef(role string) TensorRef {
	t, _ := m.tensor(role)
	return t
}

// tensors iterates over the module's roles and tensors: in Tensors' (random)
// order when it is set, else in the order of the file.
func (m *Module) tensors() iter.Seq2[string, TensorRef] {
	return func(yield func(string, TensorRef) bool) {
		if !m.compact() {
			for role, t := range m.Tensors {
				if !yield(role, t) {
					return
				}
			}
			return
		}
		for k := m.first; k != 0; k = m.roles.ents[k-1].next {
			e := &m.roles.ents[k-1]
			if !yield(e.role, m.roles.tensor(e)) {
				return
			}
		}
	}
}

// numTensors returns the number of the module's tensors.
func (m *Module) numTensors() int {
	if !m.compact() {
		return len(m.Tensors)
	}
	n := 0
	for k := m.first; k != 0; k = m.roles.ents[k-1].next {
		n++
	}
	return n
}

// addEntry appends entry k (0-based, already filled but for next) to m's
// list.
func (m *Module) addEntry(tab *roleTable, k int) {
	m.roles = tab
	if m.first == 0 {
		m.first = int32(k + 1)
	} else {
		tab.ents[m.last-1].next = int32(k + 1)
	}
	m.last = int32(k + 1)
}

// setTensor sets the tensor of role, replacing one already there (as an
// assignment to Tensors does).
func (m *Module) setTensor(role string, t TensorRef) {
	if !m.compact() {
		if m.Tensors == nil {
			m.Tensors = map[string]TensorRef{}
		}
		m.Tensors[role] = t
		return
	}
	tab := m.roles
	idx := int32(tab.n + len(tab.extra))
	tab.extra = append(tab.extra, t)
	for k := m.first; k != 0; k = tab.ents[k-1].next {
		if e := &tab.ents[k-1]; e.role == role {
			e.idx = idx
			return
		}
	}
	tab.ents = append(tab.ents, roleEntry{role: role, idx: idx})
	m.addEntry(tab, len(tab.ents)-1)
}

// materialize builds m.Tensors from the module's list and drops the list.
func (m *Module) materialize() {
	if !m.compact() {
		return
	}
	m.fill(make(map[string]TensorRef, m.numTensors()))
}

// fill puts m's tensors into t (an empty map) and drops the list: m.Tensors
// is then t.
func (m *Module) fill(t map[string]TensorRef) {
	for role, ref := range m.tensors() {
		t[role] = ref
	}
	m.Tensors, m.roles, m.first, m.last = t, nil, 0, 0
}
