package inspect

import "fmt"

// CheckResult is the outcome of checking an adapter against a base model
// (`adaptool check`). OK is true when Problems is empty.
type CheckResult struct {
	Adapter       string        `json:"adapter"`
	Base          string        `json:"base"`
	OK            bool          `json:"ok"`
	BaseTensors   int           `json:"base_tensors"`
	Modules       []CheckModule `json:"modules"`
	TargetMatches []TargetMatch `json:"target_matches"`
	Problems      []Problem     `json:"problems"`
	Warnings      []string      `json:"warnings"`
}

// CheckModule is one adapter module's verdict.
type CheckModule struct {
	Name       string `json:"name"`
	Kind       string `json:"kind"`
	BaseTensor string `json:"base_tensor"`
	BaseShape  []int  `json:"base_shape"`
	BaseDType  string `json:"base_dtype"`
	// AdapterDType is the dtype of the module's tensors (first role).
	AdapterDType string `json:"adapter_dtype"`
	// DeltaShape is the shape the adapter's delta (or replacement tensor)
	// has in the base tensor's frame.
	DeltaShape []int  `json:"delta_shape"`
	Status     string `json:"status"` // "ok", "missing", "shape-mismatch", "unchecked"
}

// Problem is one reason an adapter does not fit its base.
type Problem struct {
	Module string `json:"module"`
	Tensor string `json:"tensor,omitempty"`
	Rule   string `json:"rule"`
	Detail string `json:"detail"`
}

// String renders "module: rule: detail".
func (p Problem) String() string {
	if p.Tensor != "" {
		return fmt.Sprintf("%s (tensor %s): %s: %s", p.Module, p.Tensor, p.Rule, p.Detail)
	}
	return fmt.Sprintf("%s: %s: %s", p.Module, p.Rule, p.Detail)
}
