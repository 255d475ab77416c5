package ops

import prov "github.com/adaptool/adaptool/internal/provenance"

// Provenance keys written into the output's __metadata__ (the shared
// internal/provenance keys, re-exported for library users).
const (
	MetaOperation = prov.MetaOperation // "merge", "neg", "scale", "resize", "reweight", "prune", "apply", "extract"
	MetaMethod    = prov.MetaMethod    // merge method (merge only)
	MetaParams    = prov.MetaParams    // the operation's parameter struct as JSON
	MetaWeights   = prov.MetaWeights   // JSON array of the user weights (merge only)
	MetaSeed      = prov.MetaSeed      // decimal seed (merge, extract)
	MetaInputs    = prov.MetaInputs    // JSON array of {"path","sha256"} of each input weights file
	MetaVersion   = prov.MetaVersion   // "adaptool" + the module version when known
)

// InputInfo identifies one input.
type InputInfo struct {
	Path    string `json:"path"`              // as given
	Weights string `json:"weights"`           // the safetensors file read
	SHA256  string `json:"sha256"`            // of the weights file
	Dialect string `json:"dialect,omitempty"` // peft, kohya, ...
	Modules int    `json:"modules"`
}

// fileSHA256 streams a file through sha256.
func fileSHA256(path string) (string, error) { return prov.FileSHA256(path) }

// provenance returns the __metadata__ entries of an operation
// (internal/provenance.Record; each input is recorded by its Path as given).
func provenance(op, method string, params any, weights []float64, seed *uint64, inputs []InputInfo) map[string]string {
	ins := make([]prov.Input, len(inputs))
	for i, x := range inputs {
		ins[i] = prov.Input{Path: x.Path, SHA256: x.SHA256}
	}
	return prov.Record(op, method, params, weights, seed, ins)
}
