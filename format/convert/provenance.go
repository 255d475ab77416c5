package convert

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
)

// The provenance keys every converted file records in its metadata (as the
// other adaptool writers do, SPEC "provenance"): the operation, its
// parameters and the sha256 of the input weights file.
const (
	metaOperation = "adaptool.operation"
	metaParams    = "adaptool.params"
	metaInputs    = "adaptool.inputs"
)

// inputRecord returns the adaptool.operation/params/inputs entries of a
// conversion of the file at path. A file that cannot be hashed (it was read
// a moment ago) gets an empty digest rather than failing the conversion.
func inputRecord(path, from, to string) map[string]string {
	sum := ""
	if f, err := os.Open(path); err == nil {
		h := sha256.New()
		if _, err := io.Copy(h, f); err == nil {
			sum = hex.EncodeToString(h.Sum(nil))
		}
		f.Close()
	}
	params, _ := json.Marshal(map[string]string{"from": from, "to": to})
	inputs, _ := json.Marshal([]map[string]string{{"path": path, "sha256": sum}})
	return map[string]string{metaOperation: "convert", metaParams: string(params), metaInputs: string(inputs)}
}
