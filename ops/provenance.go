package ops

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"strconv"
)

// Provenance keys written into the output's __metadata__. Values are
// strings; the structured ones are JSON.
const (
	MetaOperation = "adaptool.operation" // "merge", "neg", "scale", "resize", "reweight", "prune"
	MetaMethod    = "adaptool.method"    // merge method (merge only)
	MetaParams    = "adaptool.params"    // the operation's parameter struct as JSON
	MetaWeights   = "adaptool.weights"   // JSON array of the user weights (merge only)
	MetaSeed      = "adaptool.seed"      // decimal seed (merge only)
	MetaInputs    = "adaptool.inputs"    // JSON array of {"path","sha256"} of each input weights file
	MetaVersion   = "adaptool.version"   // "adaptool" + the module version when known
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
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// provenance returns the __metadata__ entries of an operation.
func provenance(op, method string, params any, weights []float64, seed *uint64, inputs []InputInfo) map[string]string {
	m := map[string]string{MetaOperation: op}
	if method != "" {
		m[MetaMethod] = method
	}
	if b, err := json.Marshal(params); err == nil {
		m[MetaParams] = string(b)
	}
	if weights != nil {
		b, _ := json.Marshal(weights)
		m[MetaWeights] = string(b)
	}
	if seed != nil {
		m[MetaSeed] = strconv.FormatUint(*seed, 10)
	}
	type in struct {
		Path   string `json:"path"`
		SHA256 string `json:"sha256"`
	}
	ins := make([]in, len(inputs))
	for i, x := range inputs {
		ins[i] = in{x.Path, x.SHA256}
	}
	b, _ := json.Marshal(ins)
	m[MetaInputs] = string(b)
	m[MetaVersion] = Version
	return m
}

// Version is recorded in provenance; the CLI sets it to its build version.
var Version = "adaptool"
