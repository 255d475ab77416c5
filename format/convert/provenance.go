package convert

import prov "github.com/adaptool/adaptool/internal/provenance"

// The provenance keys every converted file records in its metadata (as the
// other adaptool writers do, SPEC "provenance"): the operation, its
// parameters and the sha256 of the input weights file. They are the shared
// internal/provenance keys.
const (
	metaOperation = prov.MetaOperation
	metaParams    = prov.MetaParams
	metaInputs    = prov.MetaInputs
)

// inputRecord returns the provenance record (provenance.Record: operation
// "convert", params {"from","to"}, the input's sha256, the version) of a
// conversion of the file at path. A file that cannot be hashed (it was read
// a moment ago) gets an empty digest rather than failing the conversion.
func inputRecord(path, from, to string) map[string]string {
	sum, _ := prov.FileSHA256(path)
	return prov.Record("convert", "", map[string]string{"from": from, "to": to}, nil, nil,
		[]prov.Input{{Path: path, SHA256: sum}})
}
