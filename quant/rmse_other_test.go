package quant

import "testing"

// rmseCasesOther returns the reference-table rows of the other schemes
// (filled in as the schemes land).
func rmseCasesOther(t *testing.T) []struct {
	name string
	want float64
	run  func([]float32) []float32
} {
	return nil
}
