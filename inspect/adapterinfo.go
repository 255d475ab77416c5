package inspect

import (
	"encoding/json"
	"fmt"
	"regexp"

	"github.com/adaptool/adaptool/format/adapter"
)

// fillConfig reads adapter_config.json (if any) for the header-level
// fields: PEFT type, base model, architecture.
func (s *Summary) fillConfig(l *layout) *adapter.Config {
	if l.config == "" {
		return nil
	}
	cfg, err := adapter.LoadConfig(l.config)
	if err != nil {
		s.Warnings = append(s.Warnings, err.Error())
		return nil
	}
	s.PeftType = cfg.PeftType
	s.BaseModel = cfg.BaseModelNameOrPath
	if raw, ok := cfg.Raw["auto_mapping"]; ok {
		var am struct {
			BaseModelClass string `json:"base_model_class"`
		}
		if json.Unmarshal(raw, &am) == nil && am.BaseModelClass != "" {
			s.Architecture = am.BaseModelClass
		}
	}
	return cfg
}

// architectureFromMetadata fills Architecture from file metadata when the
// config did not give it.
func (s *Summary) architectureFromMetadata() {
	if s.Architecture != "" {
		return
	}
	for _, k := range []string{"modelspec.architecture", "ss_base_model_version", "general.architecture"} {
		if v := s.Metadata[k]; v != "" {
			s.Architecture = v
			return
		}
	}
}

// matchTargets counts, for each target_modules entry, the module names it
// matches with PEFT's rule: a list entry matches a name equal to it or
// ending in "."+entry; a string is a Python fullmatch regex. Against a base
// checkpoint, an entry that ends in "."+module also counts: checkpoints are
// often saved without the task model's prefix (GPT-2's "transformer.").
func matchTargets(spec adapter.TargetSpec, modules []string, against string) ([]TargetMatch, error) {
	if !spec.Set {
		return nil, nil
	}
	if spec.AllLinear {
		return []TargetMatch{{Entry: "all-linear", Matches: len(modules), Against: against}}, nil
	}
	if spec.IsRegex {
		re, err := regexp.Compile("^(?:" + spec.Regex + ")$")
		if err != nil {
			return nil, fmt.Errorf("inspect: target_modules regex %q does not compile in Go's RE2: %w", spec.Regex, err)
		}
		n := 0
		for _, m := range modules {
			if re.MatchString(m) {
				n++
			}
		}
		return []TargetMatch{{Entry: spec.Regex, Regex: true, Matches: n, Against: against}}, nil
	}
	seen := map[string]bool{}
	var out []TargetMatch
	for _, e := range spec.List {
		if seen[e] {
			continue
		}
		seen[e] = true
		n := 0
		for _, m := range modules {
			if m == e || hasDotSuffix(m, e) || against == "base" && hasDotSuffix(e, m) {
				n++
			}
		}
		out = append(out, TargetMatch{Entry: e, Matches: n, Against: against})
	}
	return out, nil
}

// hasDotSuffix reports whether s ends in "."+suffix (strings.HasSuffix
// without building the concatenation).
func hasDotSuffix(s, suffix string) bool {
	i := len(s) - len(suffix) - 1
	return i >= 0 && s[i] == '.' && s[i+1:] == suffix
}
