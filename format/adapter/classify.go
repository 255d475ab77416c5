package adapter

import (
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/adaptool/adaptool/format/safetensors"
)

// Dialect is the key-naming convention of an adapter file.
type Dialect string

// The dialects Load recognises.
const (
	DialectPEFT            Dialect = "peft"
	DialectDiffusers       Dialect = "diffusers"
	DialectDiffusersLegacy Dialect = "diffusers-legacy"
	DialectKohya           Dialect = "kohya"
	DialectMLX             Dialect = "mlx"
	// DialectGGUF is a llama.cpp GGUF LoRA adapter. Load does not read it;
	// Validate checks it and format/convert turns it into PEFT.
	DialectGGUF    Dialect = "gguf"
	DialectUnknown Dialect = "unknown"
)

// Kind is what a module's tensors do to the base model.
type Kind string

// The module kinds.
const (
	KindLoRA          Kind = "lora"           // additive B·A on a Linear/Conv1D
	KindLoRAEmbedding Kind = "lora_embedding" // lora_embedding_A/B on an Embedding
	KindLoRAConv      Kind = "lora_conv"      // A with kernel dims (r,in,k…)
	KindDoRA          Kind = "dora"           // LoRA + lora_magnitude_vector
	KindAdaLoRA       Kind = "adalora"        // lora_A, lora_E, lora_B
	KindKaSA          Kind = "kasa"           // lora_A, lora_diag, lora_B
	KindIA3           Kind = "ia3"            // multiplicative ia3_l
	KindLoHa          Kind = "loha"
	KindLoKr          Kind = "lokr"
	KindVeRA          Kind = "vera"
	KindPrompt        Kind = "prompt"     // prompt / p-tuning prompt_embeddings
	KindPrefix        Kind = "prefix"     // prefix-tuning prompt_embeddings
	KindFull          Kind = "full"       // whole tensors: modules_to_save, biases, passthrough
	KindIncomplete    Kind = "incomplete" // low-rank pair with a factor missing
	// KindDiff is an additive full-size delta (LyCORIS "full" and norm
	// modules, ComfyUI/musubi-tuner LoRAs): W += diff, bias += diff_b, with
	// no scale (ComfyUI loads .diff, .diff_b, .w_norm and .b_norm so).
	KindDiff Kind = "diff"
)

// Tensor roles used as keys of Module.Tensors.
const (
	RoleA          = "lora_A"    // PEFT lora_A / lora_embedding_A, kohya lora_down, MLX lora_a, diffusers down
	RoleB          = "lora_B"    // PEFT lora_B / lora_embedding_B, kohya lora_up, MLX lora_b, diffusers up
	RoleE          = "lora_E"    // AdaLoRA singular values (k,1)
	RoleDiag       = "lora_diag" // KaSA diagonal (r,)
	RoleMagnitude  = "magnitude" // DoRA lora_magnitude_vector, kohya dora_scale, MLX m
	RoleLoRABias   = "lora_bias" // lora_B.bias
	RoleIA3        = "ia3_l"
	RoleWeight     = "weight" // a full weight (modules_to_save, base_layer.weight, passthrough)
	RoleBias       = "bias"   // a full bias (bias=all/lora_only, modules_to_save)
	RoleAlpha      = "alpha"  // kohya rank-0 alpha tensor
	RolePrompt     = "prompt_embeddings"
	RoleTokenDelta = "trainable_tokens_delta"
	RoleDiff       = "diff"   // an additive full weight delta (.diff, .w_norm)
	RoleDiffBias   = "diff_b" // an additive full bias delta (.diff_b, .b_norm)
)

// TensorRef identifies one tensor of the adapter's safetensors file.
type TensorRef struct {
	Name  string
	DType safetensors.DType
	Shape []int
}

func refOf(t safetensors.TensorInfo) TensorRef {
	return TensorRef{Name: t.Name, DType: t.DType, Shape: t.Shape}
}

// known adapter-name segments stripped from PEFT keys (exact segments only).
var defaultAdapterNames = []string{"default"}

// isModuleDictRole reports the roles that live in a ModuleDict (adapter name
// second to last, before .weight/.bias).
func isModuleDictRole(s string) bool {
	switch s {
	case "lora_A", "lora_B", "lora_magnitude_vector":
		return true
	}
	return false
}

// isParamDictRole reports the roles that live in a ParameterDict/BufferDict
// (adapter name last).
func isParamDictRole(s string) bool {
	switch s {
	case "lora_A", "lora_B", "lora_E", "lora_diag",
		"lora_embedding_A", "lora_embedding_B", "ia3_l",
		"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2",
		"lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2",
		"vera_lambda_b", "vera_lambda_d", "trainable_tokens_delta":
		return true
	}
	return false
}

// lastSegments returns the last three dot-separated segments of key (last
// first) and how many of them exist (1–3), as strings.Split would give them,
// without splitting the whole key.
func lastSegments(key string) (segs [3]string, n int, cut [3]int) {
	end := len(key)
	for n < 3 {
		i := strings.LastIndexByte(key[:end], '.')
		segs[n], cut[n] = key[i+1:end], i
		n++
		if i < 0 {
			break
		}
		end = i
	}
	return segs, n, cut
}

// stripAdapterName removes an adapter name that sits in ModuleDict or
// ParameterDict position, only when it is exactly one of names.
// keyAdapterNames returns, sorted, the adapter names other than known that
// PEFT keys carry in ModuleDict position (X.lora_A.<name>.weight) or
// ParameterDict position (X.lora_embedding_A.<name>, X.ia3_l.<name>, …).
func keyAdapterNames(names iter.Seq[string], known []string) []string {
	found := map[string]bool{}
	for name := range names {
		seg, n, _ := lastSegments(strings.TrimPrefix(name, "base_model.model."))
		last, prev := seg[0], seg[1]
		cand := ""
		switch {
		case n >= 3 && (last == "weight" || last == "bias") && isModuleDictRole(seg[2]):
			cand = prev
		case n >= 2 && isParamDictRole(prev) && last != "weight" && last != "bias":
			cand = last
		}
		if cand == "" || slices.Contains(known, cand) || isParamDictRole(cand) || !isIdentifier(cand) {
			continue
		}
		found[cand] = true
	}
	return slices.Sorted(maps.Keys(found))
}

// isIdentifier reports whether s is a Python identifier of ASCII letters,
// digits and underscores (what an adapter name in a key looks like).
func isIdentifier(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

func stripAdapterName(key string, names []string) string {
	isName := func(s string) bool {
		for _, a := range names {
			if s == a {
				return true
			}
		}
		return false
	}
	seg, n, cut := lastSegments(key)
	last, prev := seg[0], seg[1]
	if n >= 3 && (last == "weight" || last == "bias") && isName(prev) && isModuleDictRole(seg[2]) {
		return key[:cut[1]] + "." + last // drop ".<name>" before ".weight"
	}
	if n >= 2 && isName(last) && isParamDictRole(prev) {
		return key[:cut[0]]
	}
	return key
}

type suffixRole struct {
	suffix string
	role   string
	emb    bool
}

// PEFT / modern diffusers suffixes, longest first where they overlap.
var peftSuffixes = []suffixRole{
	{".lora_A.weight", RoleA, false},
	{".lora_B.weight", RoleB, false},
	{".lora_B.bias", RoleLoRABias, false},
	{".lora_embedding_A", RoleA, true},
	{".lora_embedding_B", RoleB, true},
	{".lora_magnitude_vector.weight", RoleMagnitude, false},
	{".lora_magnitude_vector", RoleMagnitude, false},
	{".lora_A", RoleA, false},
	{".lora_B", RoleB, false},
	{".lora_E", RoleE, false},
	{".lora_diag", RoleDiag, false},
	{".ia3_l", RoleIA3, false},
	{".token_adapter.trainable_tokens_delta", RoleTokenDelta, false},
	{".base_layer.weight", RoleWeight, false},
	{".base_layer.bias", RoleBias, false},
	{".weight", RoleWeight, false},
	{".bias", RoleBias, false},
	{".alpha", RoleAlpha, false},
	{".diff", RoleDiff, false},
	{".diff_b", RoleDiffBias, false},
	{".w_norm", RoleDiff, false},
	{".b_norm", RoleDiffBias, false},
}

var lycorisRoles = []string{
	"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b", "hada_t1", "hada_t2",
	"lokr_w1_a", "lokr_w1_b", "lokr_w2_a", "lokr_w2_b", "lokr_w1", "lokr_w2", "lokr_t2",
	"vera_lambda_b", "vera_lambda_d",
}

// Component prefixes of diffusers pipelines, kept in module names.
var componentPrefixes = []string{"unet.", "text_encoder.", "text_encoder_2.", "text_encoder_3.", "transformer.", "prior.", "controlnet."}

func hasComponentPrefix(name string) bool {
	for _, p := range componentPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

var kohyaPrefixes = []string{"lora_unet_", "lora_te_", "lora_te1_", "lora_te2_", "lora_te3_", "lora_transformer_", "lycoris_", "lora_prior_unet_"}

func isKohyaKey(name string) bool {
	for _, p := range kohyaPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return strings.Contains(name, ".lora_down.") || strings.Contains(name, ".lora_up.")
}

func isLegacyDiffusersKey(name string) bool {
	return strings.Contains(name, ".processor.") || strings.Contains(name, "_lora.down.") ||
		strings.Contains(name, "_lora.up.") || strings.HasSuffix(name, ".lora.down.weight") ||
		strings.HasSuffix(name, ".lora.up.weight") || strings.Contains(name, ".lora_linear_layer.")
}

// unetSegments are the block names of diffusers UNet and transformer keys.
var unetSegments = [...]string{"down_blocks.", "up_blocks.", "mid_block.", "transformer_blocks.", "single_transformer_blocks."}

// hasUNetSegment reports whether one of unetSegments starts the key or
// follows a dot in it (a plain string test: this runs once per tensor).
func hasUNetSegment(n string) bool {
	if !strings.Contains(n, "_block") { // in every one of unetSegments
		return false
	}
	for _, seg := range unetSegments {
		for i := strings.Index(n, seg); i >= 0; {
			if i == 0 || n[i-1] == '.' {
				return true
			}
			j := strings.Index(n[i+1:], seg)
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	return false
}

// detectDialect decides the file-level dialect from the tensor names, the
// file metadata, the config (PEFT, diffusers metadata or MLX) and whether a
// PEFT adapter_config.json with a peft_type accompanies the file.
func detectDialect(names iter.Seq[string], meta map[string]string, cfg *Config, peftConfig bool) Dialect {
	var peft, kohya, mlx, legacy, lowRank, component, unetLike, vit bool
	for n := range names {
		switch {
		case strings.HasPrefix(n, "base_model.model.") || strings.HasPrefix(n, "base_model.vera_") || n == "prompt_embeddings":
			peft = true
		case isKohyaKey(n):
			kohya = true
		case strings.HasSuffix(n, ".lora_a") || strings.HasSuffix(n, ".lora_b"):
			mlx = true
		case isLegacyDiffusersKey(n):
			legacy = true
		}
		// each flag is tested only until one name sets it
		if !lowRank && (strings.Contains(n, ".lora_A") || strings.Contains(n, ".lora_B")) {
			lowRank = true
		}
		// "transformer." is also GPT-2/BLOOM's own root module: it is a
		// diffusers component only in front of DiT block names.
		if !component && hasComponentPrefix(n) && (!strings.HasPrefix(n, "transformer.") || hasUNetSegment(n)) {
			component = true
		}
		if !unetLike && hasUNetSegment(n) {
			unetLike = true
		}
		if !vit && (strings.HasPrefix(n, "w_a_") || strings.HasPrefix(n, "w_b_")) {
			vit = true
		}
	}
	switch {
	case cfg.IsMLX() || mlx:
		return DialectMLX
	case kohya:
		return DialectKohya
	case legacy:
		return DialectDiffusersLegacy
	case peft, peftConfig:
		return DialectPEFT
	case lowRank && (component || unetLike || meta["lora_adapter_metadata"] != ""):
		return DialectDiffusers
	case lowRank:
		return DialectPEFT
	case vit:
		return DialectUnknown
	}
	return DialectUnknown
}

// parsedKey is one tensor name split into module and role.
type parsedKey struct {
	module string
	role   string
	emb    bool
	ok     bool // the role was recognised
}

// parseKey splits a tensor name into module and role by the rules of
// dialect d.
func parseKey(d Dialect, name string, adapterNames []string) parsedKey {
	switch d {
	case DialectKohya:
		return parseKohyaKey(name)
	case DialectMLX:
		return parseMLXKey(name)
	case DialectDiffusersLegacy:
		return parseLegacyKey(name)
	case DialectUnknown:
		return parseUnknownKey(name)
	}
	return parsePEFTKey(name, adapterNames)
}

func parsePEFTKey(name string, adapterNames []string) parsedKey {
	if name == "prompt_embeddings" || name == "prefix_task_cols" || name == "prefix_task_rows" {
		return parsedKey{module: "prompt_embeddings", role: name, ok: true}
	}
	key := strings.TrimPrefix(name, "base_model.model.")
	key = stripAdapterName(key, adapterNames)
	for _, r := range lycorisRoles {
		if i := len(key) - len(r) - 1; i >= 0 && key[i] == '.' && key[i+1:] == r {
			return parsedKey{module: key[:i], role: r, ok: true}
		}
	}
	for _, s := range peftSuffixes {
		if strings.HasSuffix(key, s.suffix) && len(key) > len(s.suffix) {
			return parsedKey{module: strings.TrimSuffix(key, s.suffix), role: s.role, emb: s.emb, ok: true}
		}
	}
	return unknownKey(key)
}

// unknownKey keeps an unrecognised tensor as a passthrough tensor.
func unknownKey(key string) parsedKey {
	if i := strings.LastIndexByte(key, '.'); i > 0 && i < len(key)-1 {
		return parsedKey{module: key[:i], role: key[i+1:]}
	}
	return parsedKey{module: key, role: "tensor"}
}

var legacyRe = regexp.MustCompile(`^(.*)\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$`)

func parseLegacyKey(name string) parsedKey {
	key := strings.Replace(name, ".processor.", ".", 1)
	if m := legacyRe.FindStringSubmatch(key); m != nil {
		mod := m[1] + "." + m[2]
		if m[2] == "to_out" {
			mod += ".0"
		}
		role := RoleA
		if m[3] == "up" {
			role = RoleB
		}
		return parsedKey{module: mod, role: role, ok: true}
	}
	for _, s := range []struct{ suf, role string }{
		{".lora.down.weight", RoleA}, {".lora.up.weight", RoleB},
		{".lora_linear_layer.down.weight", RoleA}, {".lora_linear_layer.up.weight", RoleB},
	} {
		if strings.HasSuffix(key, s.suf) {
			return parsedKey{module: strings.TrimSuffix(key, s.suf), role: s.role, ok: true}
		}
	}
	return parsePEFTKey(key, nil)
}

func parseKohyaKey(name string) parsedKey {
	for _, s := range []struct{ suf, role string }{
		{".lora_down.weight", RoleA}, {".lora_up.weight", RoleB}, {".alpha", RoleAlpha},
		{".dora_scale", RoleMagnitude}, {".lora_mid.weight", "lora_mid"},
		{".diff", RoleDiff}, {".diff_b", RoleDiffBias}, {".w_norm", RoleDiff}, {".b_norm", RoleDiffBias},
	} {
		if strings.HasSuffix(name, s.suf) {
			return parsedKey{module: strings.TrimSuffix(name, s.suf), role: s.role, ok: true}
		}
	}
	return parsePEFTKey(name, nil)
}

func parseMLXKey(name string) parsedKey {
	for _, s := range []struct{ suf, role string }{
		{".lora_a", RoleA}, {".lora_b", RoleB}, {".m", RoleMagnitude},
	} {
		if strings.HasSuffix(name, s.suf) {
			return parsedKey{module: strings.TrimSuffix(name, s.suf), role: s.role, ok: true}
		}
	}
	return parsePEFTKey(name, nil)
}

var vitKeyRe = regexp.MustCompile(`^w_([ab])_(\d+)$`)

func parseUnknownKey(name string) parsedKey {
	if m := vitKeyRe.FindStringSubmatch(name); m != nil {
		role := RoleA
		if m[1] == "b" {
			role = RoleB
		}
		return parsedKey{module: "w_" + m[2], role: role, ok: true}
	}
	return parsePEFTKey(name, nil)
}

// classification is the result of grouping a file's tensors into modules.
type classification struct {
	dialect  Dialect
	producer string
	modules  []*Module
	shared   map[string]TensorRef
	unknown  []string // tensors kept as passthrough because their role is not known
	warnings []string
	err      error // the tensors cannot be read as one adapter
}

// classify groups tensors into modules and assigns each a kind, a rank and
// in/out features. It reads no tensor data.
func classify(tensors []TensorRef, meta map[string]string, cfg *Config, peftConfig bool, adapterNames []string) *classification {
	return classifyOf(tensors, func(t *TensorRef) TensorRef { return *t }, meta, cfg, peftConfig, adapterNames)
}

// classifyOf is classify of the tensors ref returns for list, so that a
// header's own list (safetensors.TensorInfo) needs no copy as TensorRefs.
func classifyOf[T any](list []T, ref func(*T) TensorRef, meta map[string]string, cfg *Config, peftConfig bool, adapterNames []string) *classification {
	names := func(yield func(string) bool) {
		for i := range list {
			if !yield(ref(&list[i]).Name) {
				return
			}
		}
	}
	cl := &classification{dialect: detectDialect(names, meta, cfg, peftConfig), shared: map[string]TensorRef{}}
	cl.producer = detectProducer(cl.dialect, names, meta, cfg)
	if len(adapterNames) == 0 {
		adapterNames = defaultAdapterNames
	}
	if cl.dialect == DialectPEFT || cl.dialect == DialectUnknown || cl.dialect == DialectDiffusers {
		extra := keyAdapterNames(names, adapterNames)
		switch {
		case len(extra) == 1:
			adapterNames = append(slices.Clone(adapterNames), extra[0])
			cl.warnings = append(cl.warnings, fmt.Sprintf("tensor keys carry the adapter name %q (as a state_dict of the PeftModel does); it is stripped", extra[0]))
		case len(extra) > 1:
			cl.err = fmt.Errorf("%w: tensor keys carry %d adapter names (%s): the file holds several adapters; save each on its own, as PEFT's save_pretrained does", ErrUnsupported, len(extra), strings.Join(extra, ", "))
			return cl
		}
	}
	// Group the tensors by module: one roleTable entry per tensor, chained
	// module by module in file order (see roles.go).
	tab := &roleTable{ents: make([]roleEntry, len(list)), n: len(list), ref: func(i int) TensorRef { return ref(&list[i]) }}
	var (
		byName = make(map[string]int32, len(list)/2)
		order  []*Module                   // first-seen order: usually sorted already
		embed  []bool                      // by module
		many   map[*Module]map[string]bool // the roles of modules of more than 8 tensors
	)
	for i := range list {
		t := ref(&list[i])
		if t.Name == "base_model.vera_A" || t.Name == "base_model.vera_B" {
			cl.shared[strings.TrimPrefix(t.Name, "base_model.")] = t
			continue
		}
		pk := parseKey(cl.dialect, t.Name, adapterNames)
		if !pk.ok {
			cl.unknown = append(cl.unknown, t.Name)
		}
		j, ok := byName[pk.module]
		if !ok {
			j = int32(len(order))
			byName[pk.module] = j
			order = append(order, &Module{Name: pk.module})
			embed = append(embed, false)
		}
		m, role := order[j], pk.role
		if pk.emb {
			embed[j] = true
		}
		var dup bool
		if seen := many[m]; seen != nil {
			dup = seen[role]
		} else {
			n := 0
			for k := m.first; k != 0; k = tab.ents[k-1].next {
				dup = dup || tab.ents[k-1].role == role
				n++
			}
			if n >= 8 {
				if many == nil {
					many = map[*Module]map[string]bool{}
				}
				seen = make(map[string]bool, 2*n)
				for k := m.first; k != 0; k = tab.ents[k-1].next {
					seen[tab.ents[k-1].role] = true
				}
				many[m] = seen
			}
		}
		if dup {
			// Two tensors map to one role (e.g. lora_A.weight and a stray
			// lora_A): keep both, the second under its full name.
			cl.warnings = append(cl.warnings, fmt.Sprintf("tensor %q maps to role %s of module %q which is already taken; kept as passthrough", t.Name, role, m.Name))
			role = t.Name
		}
		if seen := many[m]; seen != nil {
			seen[role] = true
		}
		tab.ents[i] = roleEntry{role: role, idx: int32(i)}
		m.addEntry(tab, i)
	}
	byName, many = nil, nil
	for j, m := range order {
		cl.finish(m, embed[j], cfg)
	}
	cl.modules = order
	byModuleName := func(a, b *Module) int { return strings.Compare(a.Name, b.Name) }
	if !slices.IsSortedFunc(cl.modules, byModuleName) {
		slices.SortFunc(cl.modules, byModuleName) // names are unique
	}
	if len(cl.shared) > 0 {
		for _, m := range cl.modules {
			if m.Kind == KindVeRA {
				for _, k := range slices.Sorted(maps.Keys(cl.shared)) {
					m.setTensor(k, cl.shared[k])
				}
			}
		}
	}
	cl.veraIn()
	cl.flagWrapper()
	cl.dropRecognised()
	return cl
}

// dropRecognised removes from cl.unknown the tensors of modules whose kind
// is one of otherMethods: their role is known, only not computed.
func (cl *classification) dropRecognised() {
	if len(cl.unknown) == 0 {
		return
	}
	known := map[string]bool{}
	for _, m := range cl.modules {
		if !m.Kind.Supported() {
			for _, t := range m.tensors() {
				known[t.Name] = true
			}
		}
	}
	cl.unknown = slices.DeleteFunc(cl.unknown, func(n string) bool { return known[n] })
}

// hasPrefix reports whether one of m's roles starts with p.
func hasPrefix(m *Module, p string) bool {
	for k := range m.tensors() {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

func dim(s []int, i int) int {
	if i < 0 {
		i += len(s)
	}
	if i < 0 || i >= len(s) {
		return 0
	}
	return s[i]
}

// finish assigns kind, rank and features of one module.
func (cl *classification) finish(m *Module, emb bool, cfg *Config) {
	a, hasA := m.tensor(RoleA)
	b, hasB := m.tensor(RoleB)
	peftType := ""
	if cfg != nil {
		peftType = strings.ToUpper(cfg.PeftType)
	}
	switch {
	case hasA && hasB:
		m.Kind = KindLoRA
		switch cl.dialect {
		case DialectMLX:
			m.Transposed = true
			if len(a.Shape) == 3 { // SwitchLinear: a (E,r,in), b (E,out,r)
				m.Experts = a.Shape[0]
				m.Rank, m.InFeatures, m.OutFeatures = a.Shape[1], a.Shape[2], dim(b.Shape, 1)
			} else { // a (in,r), b (r,out)
				m.Rank, m.InFeatures, m.OutFeatures = dim(a.Shape, 1), dim(a.Shape, 0), dim(b.Shape, 1)
			}
			if isEmbeddingName(m.Name) {
				m.Kind = KindLoRAEmbedding
			}
		default:
			m.Rank, m.InFeatures, m.OutFeatures = dim(a.Shape, 0), dim(a.Shape, 1), dim(b.Shape, 0)
			if len(a.Shape) > 2 {
				m.Kind = KindLoRAConv
				m.Kernel = append([]int(nil), a.Shape[2:]...)
			}
			if emb {
				m.Kind = KindLoRAEmbedding
			}
		}
		switch {
		case hasRole(m, RoleE) || peftType == "ADALORA":
			m.Kind = KindAdaLoRA
		case hasRole(m, RoleDiag):
			m.Kind = KindKaSA
		case hasRole(m, RoleMagnitude):
			m.Kind = KindDoRA
		}
	case hasA || hasB:
		m.Kind = KindIncomplete
		if hasA {
			m.Rank = dim(a.Shape, 0)
			m.InFeatures = dim(a.Shape, 1)
			if cl.dialect == DialectMLX {
				m.Rank, m.InFeatures = dim(a.Shape, 1), dim(a.Shape, 0)
			}
		} else {
			m.Rank, m.OutFeatures = dim(b.Shape, 1), dim(b.Shape, 0)
			if cl.dialect == DialectMLX {
				m.Rank, m.OutFeatures = dim(b.Shape, 0), dim(b.Shape, 1)
			}
		}
	case hasRole(m, RoleIA3):
		m.Kind = KindIA3
		l := m.tensorRef(RoleIA3).Shape
		// Linear: (out,1); feed-forward: (1,in); conv: (1,C,1,1)
		if len(l) == 2 && l[0] == 1 && l[1] != 1 {
			m.Feedforward, m.InFeatures = true, l[1]
		} else if len(l) == 2 {
			m.OutFeatures = l[0]
		} else if len(l) == 4 {
			ff := false
			if cfg != nil {
				ff, _ = cfg.FeedforwardModules.Matches(m.Name)
			}
			m.Feedforward = ff
			if ff {
				m.InFeatures = l[1]
			} else {
				m.OutFeatures = l[1]
			}
		}
	case hasPrefix(m, "hada_"):
		m.Kind = KindLoHa
		lohaDims(m)
	case hasPrefix(m, "lokr_"):
		m.Kind = KindLoKr
		lokrDims(m)
	case hasPrefix(m, "vera_lambda_"):
		m.Kind = KindVeRA
		veraDims(m)
	case hasRole(m, RolePrompt):
		m.Kind = KindPrompt
		if peftType == "PREFIX_TUNING" {
			m.Kind = KindPrefix
		}
	case hasRole(m, RoleDiff) || hasRole(m, RoleDiffBias):
		m.Kind = KindDiff
		if d, ok := m.tensor(RoleDiff); ok && len(d.Shape) > 0 {
			m.OutFeatures, m.InFeatures = d.Shape[0], 1
			if len(d.Shape) > 1 {
				m.InFeatures = d.Shape[1]
			}
			if len(d.Shape) > 2 {
				m.Kernel = append([]int(nil), d.Shape[2:]...)
			}
		} else if b, ok := m.tensor(RoleDiffBias); ok && len(b.Shape) == 1 {
			m.OutFeatures = b.Shape[0]
		}
	default:
		if k := otherMethod(m); k != "" {
			m.Kind = k
			break
		}
		m.Kind = KindFull
		if w, ok := m.tensor(RoleWeight); ok && len(w.Shape) >= 2 {
			m.OutFeatures, m.InFeatures = w.Shape[0], w.Shape[1]
		}
	}
}

// otherMethods are PEFT methods adaptool recognises by their tensor names
// (a role or a module-path segment equal to name, or starting with it when
// name ends in "_": PEFT's adapter_layer_names) but computes no ΔW for.
// Their modules get the method as their Kind, so that every operation
// refuses them by name instead of taking their tensors for whole-module
// replacements. Short, common-looking names are matched exactly.
var otherMethods = []struct {
	name string
	kind Kind
}{
	{"oft_r", "oft"}, {"oft_s", "oft"}, {"oft_R", "oft"}, {"boft_", "boft"},
	{"fourierft_", "fourierft"}, {"waveft_", "waveft"}, {"hra_u", "hra"}, {"vblora_", "vblora"},
	{"bone_block", "bone"}, {"miss_block", "miss"}, {"c3a_", "c3a"}, {"randlora_", "randlora"},
	{"shira_", "shira"}, {"poly_lora_A", "poly"}, {"poly_lora_B", "poly"}, {"poly_router", "poly"},
	{"gralora_", "gralora"}, {"delora_", "delora"}, {"road_theta", "road"}, {"road_alpha", "road"},
	{"ln_tuning_layers", "ln_tuning"},
}

// otherMethod returns the Kind of m when its tensors belong to one of
// otherMethods (the first match in its path, then in its sorted roles),
// else "".
func otherMethod(m *Module) Kind {
	roles := make([]string, 0, m.numTensors())
	for role := range m.tensors() {
		roles = append(roles, role)
	}
	slices.Sort(roles)
	for _, s := range append(strings.Split(m.Name, "."), roles...) {
		if k := OtherMethod(s); k != "" {
			return k
		}
	}
	return ""
}

// OtherMethod returns the kind of a PEFT method adaptool recognises but
// computes no ΔW for (OFT, BOFT, FourierFT, WaveFT, HRA, VB-LoRA, Bone,
// MiSS, C3A, RandLoRA, SHiRA, Poly, GraLoRA, DeLoRA, RoAd, LN tuning) when
// seg, one dot-separated segment of a tensor name, is one of its tensor or
// layer names (oft_r, boft_R, fourierft_spectrum, hra_u, vblora_logits_A,
// ln_tuning_layers, …), else "".
func OtherMethod(seg string) Kind {
	for _, o := range otherMethods {
		if seg == o.name || strings.HasSuffix(o.name, "_") && strings.HasPrefix(seg, o.name) {
			return o.kind
		}
	}
	return ""
}

// Supported reports whether adaptool computes a ΔW (or a replacement) for
// modules of kind k: false for the methods it only recognises (otherMethods).
func (k Kind) Supported() bool {
	for _, o := range otherMethods {
		if o.kind == k {
			return false
		}
	}
	return true
}

func hasRole(m *Module, role string) bool {
	_, ok := m.tensor(role)
	return ok
}

func isEmbeddingName(name string) bool {
	last := name[strings.LastIndexByte(name, '.')+1:]
	switch last {
	case "embed_tokens", "wte", "wpe", "word_embeddings", "embeddings", "shared", "tok_embeddings", "embed":
		return true
	}
	return false
}

// flagWrapper warns about LoRA wrapped around a ModulesToSaveWrapper: keys
// X.lora_A next to X.modules_to_save.lora_A and X.original_module.lora_A.
func (cl *classification) flagWrapper() {
	var parents map[string]bool // X of every module X.modules_to_save / X.original_module
	for _, m := range cl.modules {
		for _, suf := range []string{".modules_to_save", ".original_module"} {
			if strings.HasSuffix(m.Name, suf) {
				parent := strings.TrimSuffix(m.Name, suf)
				if parents == nil {
					parents = map[string]bool{}
				}
				parents[parent] = true
				if m.Kind != KindFull {
					m.Wrapped = true
					if suf == ".modules_to_save" {
						cl.warnings = append(cl.warnings, fmt.Sprintf("module %q: LoRA was applied to a ModulesToSaveWrapper (keys %s.lora_*, %s.modules_to_save.lora_*, %s.original_module.lora_*); which copy a merge should target is ambiguous", parent, parent, parent, parent))
					}
				}
			}
		}
	}
	if parents == nil {
		return
	}
	for _, m := range cl.modules {
		if parents[m.Name] {
			m.Wrapped = true
		}
	}
}

// detectProducer names the software that most likely wrote the file.
func detectProducer(d Dialect, names iter.Seq[string], meta map[string]string, cfg *Config) string {
	if s := meta["software"]; s != "" {
		var sw struct {
			Name string `json:"name"`
		}
		if json.Unmarshal([]byte(s), &sw) == nil && sw.Name != "" {
			return sw.Name
		}
	}
	_, kohyaMeta := meta["ss_network_module"]
	switch d {
	case DialectMLX:
		return "mlx-lm"
	case DialectKohya:
		if strings.Contains(meta["ss_network_module"], "lycoris") {
			return "lycoris"
		}
		return "kohya-ss"
	case DialectDiffusersLegacy:
		return "diffusers"
	case DialectDiffusers:
		if kohyaMeta || meta["ss_output_name"] != "" || meta["sshs_model_hash"] != "" {
			return "ai-toolkit"
		}
		return "diffusers"
	case DialectPEFT:
		if cfg != nil && cfg.PeftVersion != "" {
			return "peft " + cfg.PeftVersion
		}
		return "peft"
	}
	for n := range names {
		if vitKeyRe.MatchString(n) {
			return "LoRA-ViT"
		}
	}
	return ""
}
