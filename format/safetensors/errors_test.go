package safetensors

import (
	"errors"
	"fmt"
	"testing"
)

func TestSentinelNames(t *testing.T) {
	names := []string{"HeaderTooSmall", "HeaderTooLarge", "InvalidHeaderLength", "InvalidHeader",
		"InvalidHeaderDeserialization", "InvalidOffset", "ValidationOverflow", "MisalignedSlice",
		"TensorInvalidInfo", "MetadataIncompleteBuffer", "TensorNotFound", "InvalidTensorView", "DuplicateKey"}
	for _, name := range names {
		s := SentinelByName(name)
		if s == nil {
			t.Errorf("SentinelByName(%q) = nil", name)
			continue
		}
		wrapped := &TensorError{File: "f", Tensor: "t", Err: fmt.Errorf("%w: detail", s)}
		if got := RuleName(wrapped); got != name {
			t.Errorf("RuleName(%v) = %q, want %q", wrapped, got, name)
		}
	}
	if SentinelByName("InvalidHeaderStart") != nil || SentinelByName("") != nil {
		t.Error("unknown names must give nil")
	}
	if RuleName(errors.New("other")) != "" || RuleName(nil) != "" {
		t.Error("RuleName of a foreign error must be empty")
	}
}
