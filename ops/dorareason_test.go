package ops

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptool/adaptool/svd"
)

// prune --ranks module-fraction and reweight --layout kasa refused DoRA
// modules with the merge's reason ("the merged delta is not a sum of
// deltas"); each now says why its own operation refuses them.
func TestDoRARefusalReasons(t *testing.T) {
	dora := r0Adapter(t, "dora", 2, 2, true)
	fn, err := svd.ParseFn("scale:2")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		run  func(out string) (*Report, error)
		want string
	}{
		{"prune module-fraction", func(out string) (*Report, error) {
			return PruneAdapter(dora, PruneParams{Rule: "module-fraction", Value: 0.5}, RunOptions{Output: out})
		}, "module-fraction ranks modules by ‖ΔW‖_F"},
		{"reweight kasa", func(out string) (*Report, error) {
			return ReweightAdapter(dora, ReweightParams{Fn: fn, Layout: "kasa"}, RunOptions{Output: out})
		}, "the KaSA layout"},
	} {
		rep, err := tc.run(filepath.Join(t.TempDir(), "out"))
		if err == nil || rep == nil || rep.Refused != 2 {
			t.Fatalf("%s: err %v, report %+v: want both modules refused", tc.name, err, rep)
		}
		for _, m := range rep.Modules {
			if m.Status != "refused" || !strings.HasPrefix(m.Reason, "the module is DoRA: ") || !strings.Contains(m.Reason, tc.want) ||
				strings.Contains(m.Reason, "merge") || strings.Contains(m.Reason, "input 1") {
				t.Errorf("%s: module %s: %s %q", tc.name, m.Name, m.Status, m.Reason)
			}
		}
	}
	// The merge keeps its reason, naming the input.
	rep, err := Merge([]string{dora, dora}, MergeParams{}, RunOptions{Output: filepath.Join(t.TempDir(), "out")})
	if err == nil || rep == nil || !strings.Contains(rep.Modules[0].Reason, "input 1 is DoRA: ") || !strings.Contains(rep.Modules[0].Reason, "not a sum of deltas") {
		t.Errorf("merge: err %v, reason %q", err, rep.Modules[0].Reason)
	}
}
