package adapter

import "slices"

// lycoris checks the shapes of a LoHa, LoKr or VeRA module against each
// other from the header only (no data is read), and the shape rank against
// the config's r / rank_pattern as PEFT's load would.
func (v *validator) lycoris(m *Module) {
	bad := func(role, format string, args ...any) {
		v.find(SeverityError, m, m.tensorRef(role).Name, RuleShape, format, args...)
	}
	shape := func(role string) ([]int, bool) {
		t, ok := m.tensor(role)
		return t.Shape, ok
	}
	// pair checks wa (rows, r) · wb (r, rest…) and returns (rows, r, ∏rest).
	pair := func(ra, rb string) (int, int, int, bool) {
		sa, okA := shape(ra)
		sb, okB := shape(rb)
		switch {
		case !okA || !okB:
			missing := ra
			if okA {
				missing = rb
			}
			bad(ra, "module %q (%s) lacks %s", m.Name, m.Kind, missing)
		case len(sa) != 2 || len(sb) < 2:
			bad(ra, "%s %v and %s %v: want (rows, r) and (r, cols)", ra, sa, rb, sb)
		case sa[1] != sb[0]:
			bad(rb, "%s %v does not multiply %s %v (rank %d vs %d)", rb, sb, ra, sa, sb[0], sa[1])
		default:
			return sa[0], sa[1], product(sb[1:]), true
		}
		return 0, 0, 0, false
	}
	// cp checks t (r1, r2, k…), wa (r1, out), wb (r2, in).
	cp := func(rt, ra, rb string) (int, int, []int, bool) {
		st, _ := shape(rt)
		sa, okA := shape(ra)
		sb, okB := shape(rb)
		if !okA || !okB || len(st) < 3 || len(sa) != 2 || len(sb) != 2 || st[0] != sa[0] || st[1] != sb[0] {
			bad(rt, "CP core %s %v does not fit %s %v and %s %v (want (r1, r2, k…), (r1, out), (r2, in))", rt, st, ra, sa, rb, sb)
			return 0, 0, nil, false
		}
		return sa[1], sb[1], st[2:], true
	}
	cols := m.InFeatures * product(m.Kernel)
	switch m.Kind {
	case KindLoHa:
		_, cp1 := shape("hada_t1")
		_, cp2 := shape("hada_t2")
		if cp1 != cp2 {
			bad("hada_w1_a", "module %q has only one of hada_t1/hada_t2", m.Name)
			return
		}
		for _, i := range []string{"1", "2"} {
			if cp1 {
				out, in, k, ok := cp("hada_t"+i, "hada_w"+i+"_a", "hada_w"+i+"_b")
				if ok && (out != m.OutFeatures || in != m.InFeatures || !slices.Equal(k, m.Kernel)) {
					bad("hada_t"+i, "factor %s rebuilds (%d, %d, %v), factor 1 (%d, %d, %v)", i, out, in, k, m.OutFeatures, m.InFeatures, m.Kernel)
				}
				continue
			}
			if rows, _, c, ok := pair("hada_w"+i+"_a", "hada_w"+i+"_b"); ok && (rows != m.OutFeatures || c != cols) {
				bad("hada_w"+i+"_a", "factor %s is %d×%d, factor 1 %d×%d", i, rows, c, m.OutFeatures, cols)
			}
		}
		v.configRank(m, "hada_w1_a")
	case KindLoKr:
		if _, whole := shape("lokr_w1"); whole {
			if s, _ := shape("lokr_w1"); len(s) != 2 {
				bad("lokr_w1", "lokr_w1 has shape %v, want (out_l, in_m)", s)
			}
		} else {
			pair("lokr_w1_a", "lokr_w1_b")
		}
		_, whole := shape("lokr_w2")
		_, isCP := shape("lokr_t2")
		switch {
		case whole && isCP:
			bad("lokr_t2", "module %q has both lokr_w2 and lokr_t2", m.Name)
		case whole:
			if s, _ := shape("lokr_w2"); len(s) < 2 {
				bad("lokr_w2", "lokr_w2 has shape %v, want (out_k, in_n[, k…])", s)
			}
		case isCP:
			cp("lokr_t2", "lokr_w2_a", "lokr_w2_b")
		default:
			pair("lokr_w2_a", "lokr_w2_b")
		}
		if lokrShapeRank(m) {
			v.configRank(m, "lokr_w1_a")
		}
	case KindVeRA:
		sa, okA := v.a.Shared["vera_A"]
		sb, okB := v.a.Shared["vera_B"]
		lb, okb := m.tensor("vera_lambda_b")
		ld, okd := m.tensor("vera_lambda_d")
		switch {
		case !okb || !okd:
			bad("vera_lambda_b", "VeRA module %q needs vera_lambda_b and vera_lambda_d", m.Name)
		case len(lb.Shape) != 1 || len(ld.Shape) != 1:
			bad("vera_lambda_b", "vera_lambda_b %v and vera_lambda_d %v must be vectors", lb.Shape, ld.Shape)
		case !okA || !okB: // reported as vera-missing-projection
		case len(sa.Shape) != 2 || len(sb.Shape) != 2 || sb.Shape[1] != sa.Shape[0]:
			v.find(SeverityError, m, sa.Name, RuleShape, "shared vera_A %v and vera_B %v: want (r, max_in) and (max_out, r)", sa.Shape, sb.Shape)
		case ld.Shape[0] != sa.Shape[0]:
			bad("vera_lambda_d", "vera_lambda_d has %d values, the shared vera_A rank is %d", ld.Shape[0], sa.Shape[0])
		case lb.Shape[0] > sb.Shape[0]:
			bad("vera_lambda_b", "vera_lambda_b has %d values, more than the %d rows of the shared vera_B", lb.Shape[0], sb.Shape[0])
		case m.InFeatures > sa.Shape[1]:
			v.find(SeverityError, m, sa.Name, RuleShape, "in_features %d exceeds the %d columns of the shared vera_A", m.InFeatures, sa.Shape[1])
		}
	}
}

// configRank reports a shape rank that differs from the config's r /
// rank_pattern for this module (PEFT would fail to load the weights).
func (v *validator) configRank(m *Module, role string) {
	if m.ConfigRank <= 0 || m.Rank <= 0 || m.ConfigRank == m.Rank {
		return
	}
	name := m.tensorRef(role).Name
	if name == "" {
		for _, r := range []string{"lokr_t2", "lokr_w2_a"} {
			if t, ok := m.tensor(r); ok {
				name = t.Name
				break
			}
		}
	}
	v.find(SeverityError, m, name, RuleRankPattern, "%s tensors have rank %d but the config gives r=%d for this module: PEFT would refuse to load it", m.Kind, m.Rank, m.ConfigRank)
}
