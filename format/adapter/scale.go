package adapter

import (
	"fmt"
	"math"
	"strings"
)

// PatternMode selects how rank_pattern and alpha_pattern are resolved.
type PatternMode int

const (
	// PatternsModern is PEFT ≥ 0.15: each pattern key KEY is tested as
	// ^(?:.*\.)?(?:KEY)$ in JSON order, first hit wins, and r and alpha are
	// looked up independently in their own dicts.
	PatternsModern PatternMode = iota
	// PatternsOld is PEFT < 0.15: keys (rank keys, then alpha keys) are
	// tested as ^.*\.KEY$ — a dot before KEY is required, so top-level
	// names never match — and the first matching key is used for both the
	// rank and the alpha lookup.
	PatternsOld
)

// String returns "modern" or "old".
func (m PatternMode) String() string {
	if m == PatternsOld {
		return "old"
	}
	return "modern"
}

// patternRegexp returns the Go regular expression PEFT's pattern match
// amounts to for key.
func patternRegexp(key string, mode PatternMode) string {
	if mode == PatternsOld {
		// Python re.match(rf".*\.{key}$", name): anchored at the start only;
		// the $ belongs to the text of the pattern, alternations included.
		return `^(?:.*\.` + key + `$)`
	}
	return `^(?:.*\.)?(?:` + key + `)$`
}

func matchPattern(key, module string, mode PatternMode, field string) (bool, error) {
	if simplePattern(key) && isASCII(module) {
		// the common key: a module path whose dots are the only
		// metacharacters; the regexp (≈1 µs a module) would say the same
		return matchSimple(key, module, mode), nil
	}
	re, err := compileCached(patternRegexp(key, mode))
	if err != nil {
		return false, fmt.Errorf("%w: %s key %q does not compile as a Go (RE2) regular expression: %v", ErrConfig, field, key, err)
	}
	return re.MatchString(module), nil
}

// simplePattern reports whether key is printable ASCII whose only
// regular-expression metacharacter is '.', the one-character wildcard
// (what a module path used as a pattern key looks like).
func simplePattern(key string) bool {
	if key == "" {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c < 0x20 || c >= 0x7f || c != '.' && strings.IndexByte(`\+*?()|[]{}^$`, c) >= 0 {
			return false
		}
	}
	return true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// matchSimple is matchPattern for a simplePattern key and an ASCII module,
// without the regexp: patternRegexp fixes where the key's characters fall
// (the last len(key) of the module), '.' matches any character but a
// newline, and the optional (modern) or required (old) ".*\." before the
// key needs a dot right before it and no newline in front of that.
func matchSimple(key, module string, mode PatternMode) bool {
	n := len(module) - len(key)
	if n < 0 {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := module[n+i]; key[i] == '.' && c == '\n' || key[i] != '.' && key[i] != c {
			return false
		}
	}
	if n == 0 {
		return mode == PatternsModern
	}
	return module[n-1] == '.' && strings.IndexByte(module[:n-1], '\n') < 0
}

// firstMatch returns the index of the first pattern matching module, or -1.
func firstMatch(pats []Pattern, module string, mode PatternMode, field string) (int, error) {
	for i, p := range pats {
		ok, err := matchPattern(p.Key, module, mode, field)
		if err != nil {
			return -1, err
		}
		if ok {
			return i, nil
		}
	}
	return -1, nil
}

// baseAlpha is the global alpha of the config's PEFT type.
func (c *Config) baseAlpha() float64 {
	switch strings.ToUpper(c.PeftType) {
	case "LOHA", "LOKR":
		return c.Alpha
	}
	return c.LoraAlpha
}

// RankAlpha returns the rank and alpha PEFT assigns to module (a dotted path
// without the base_model.model. prefix) from r/lora_alpha (alpha for
// LoHa/LoKr) and rank_pattern/alpha_pattern. The bool results say whether a
// pattern supplied the value. A pattern key that does not compile is an
// error naming it, never "no match".
func (c *Config) RankAlpha(module string, mode PatternMode) (r int, alpha float64, err error) {
	r, alpha = c.R, c.baseAlpha()
	if strings.EqualFold(c.PeftType, "ADALORA") {
		// AdaLoRA creates every layer with r = init_r and plain lora_alpha.
		return c.InitR, c.LoraAlpha, nil
	}
	if mode == PatternsOld {
		all := make([]Pattern, 0, len(c.RankPattern)+len(c.AlphaPattern))
		seen := map[string]bool{}
		for _, p := range c.RankPattern {
			if !seen[p.Key] {
				seen[p.Key] = true
				all = append(all, p)
			}
		}
		for _, p := range c.AlphaPattern {
			if !seen[p.Key] {
				seen[p.Key] = true
				all = append(all, p)
			}
		}
		i, err := firstMatch(all, module, mode, "rank_pattern/alpha_pattern")
		if err != nil {
			return 0, 0, err
		}
		key := module
		if i >= 0 {
			key = all[i].Key
		}
		for _, p := range c.RankPattern {
			if p.Key == key {
				r = int(p.Value)
				break
			}
		}
		for _, p := range c.AlphaPattern {
			if p.Key == key {
				alpha = p.Value
				break
			}
		}
		return r, alpha, nil
	}
	i, err := firstMatch(c.RankPattern, module, mode, "rank_pattern")
	if err != nil {
		return 0, 0, err
	}
	if i >= 0 {
		r = int(c.RankPattern[i].Value)
	}
	j, err := firstMatch(c.AlphaPattern, module, mode, "alpha_pattern")
	if err != nil {
		return 0, 0, err
	}
	if j >= 0 {
		alpha = c.AlphaPattern[j].Value
	}
	return r, alpha, nil
}

// CheckPatterns compiles every rank_pattern, alpha_pattern and string
// target_modules/exclude_modules key, returning the first that fails.
func (c *Config) CheckPatterns() error {
	for _, p := range c.RankPattern {
		if _, err := matchPattern(p.Key, "", PatternsModern, "rank_pattern"); err != nil {
			return err
		}
	}
	for _, p := range c.AlphaPattern {
		if _, err := matchPattern(p.Key, "", PatternsModern, "alpha_pattern"); err != nil {
			return err
		}
	}
	if _, err := c.TargetModules.Matches(""); err != nil {
		return err
	}
	if _, err := c.ExcludeModules.Matches(""); err != nil {
		return err
	}
	return nil
}

// LoRAScale returns the LoRA scale for rank r and alpha: alpha/r, or
// alpha/√r with rsLoRA. It returns 0 for r ≤ 0.
func LoRAScale(r int, alpha float64, rslora bool) float64 {
	if r <= 0 {
		return 0
	}
	if rslora {
		return alpha / math.Sqrt(float64(r))
	}
	return alpha / float64(r)
}

// AdaLoRAScale returns the effective AdaLoRA scale lora_alpha/(init_r+1e-5)
// (alpha ≤ 0 means alpha = init_r), since ranknum = init_r for saved
// adapters.
func AdaLoRAScale(initR int, alpha float64) float64 {
	if alpha <= 0 {
		alpha = float64(initR)
	}
	return alpha / (float64(initR) + 1e-5)
}

// ModuleScale returns r, alpha and the scale PEFT applies to module under
// the config's PEFT type: LoRA alpha/r or alpha/√r (rsLoRA), AdaLoRA
// lora_alpha/(init_r+1e-5), LoHa/LoKr alpha/r; 1 for IA3, VeRA and prompt
// methods, which have no scalar.
func (c *Config) ModuleScale(module string, mode PatternMode) (r int, alpha, scale float64, err error) {
	if c.IsMLX() {
		return c.MLX.Rank, c.MLX.Scale * float64(c.MLX.Rank), c.MLX.Scale, nil
	}
	r, alpha, err = c.RankAlpha(module, mode)
	if err != nil {
		return 0, 0, 0, err
	}
	switch strings.ToUpper(c.PeftType) {
	case "ADALORA":
		return r, alpha, AdaLoRAScale(c.InitR, alpha), nil
	case "LOHA", "LOKR":
		if r <= 0 {
			return r, alpha, 0, nil
		}
		return r, alpha, alpha / float64(r), nil
	case "IA3", "VERA", "PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "MULTITASK_PROMPT_TUNING":
		return r, alpha, 1, nil
	}
	return r, alpha, LoRAScale(r, alpha, c.UseRSLoRA), nil
}
