package safetensors

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadIndex(t *testing.T) {
	tests := []struct {
		name, json string
		wantErr    bool
		shards     []string
	}{
		{"ok", `{"metadata":{"total_size":8,"total_parameters":2},"weight_map":{"b":"m-2.safetensors","a":"m-1.safetensors","c":"m-1.safetensors"}}`, false, []string{"m-1.safetensors", "m-2.safetensors"}},
		{"escape", `{"weight_map":{"a":"../x.safetensors"}}`, true, nil},
		{"subdir", `{"weight_map":{"a":"d/x.safetensors"}}`, true, nil},
		{"backslash", `{"weight_map":{"a":"d\\x.safetensors"}}`, true, nil},
		{"empty name", `{"weight_map":{"a":""}}`, true, nil},
		{"no weight_map", `{"metadata":{}}`, true, nil},
		{"empty weight_map", `{"weight_map":{}}`, true, nil},
		{"trailing", `{"weight_map":{"a":"x.safetensors"}} {}`, true, nil},
		{"not json", `weight_map`, true, nil},
		{"wrong type", `{"weight_map":{"a":1}}`, true, nil},
		{"duplicate tensor", `{"weight_map":{"a":"x.safetensors","b":"x.safetensors","a":"y.safetensors"}}`, true, nil},
		{"two weight_maps", `{"weight_map":{"a":"x.safetensors"},"metadata":{},"weight_map":{"b":"y.safetensors"}}`, true, nil},
		{"duplicate metadata key", `{"metadata":{"total_size":1},"metadata":{},"weight_map":{"a":"x.safetensors"}}`, true, nil},
		{"same name nested elsewhere", `{"metadata":{"a":1,"b":{"a":2}},"weight_map":{"a":"x.safetensors","b":"x.safetensors"}}`, false, []string{"x.safetensors"}},
	}
	for _, tt := range tests {
		p := filepath.Join(t.TempDir(), "model.safetensors.index.json")
		if err := os.WriteFile(p, []byte(tt.json), 0o644); err != nil {
			t.Fatal(err)
		}
		idx, err := ReadIndex(p)
		if tt.wantErr {
			if !errors.Is(err, ErrInvalidIndex) || !IsFormatError(err) {
				t.Errorf("%s: err = %v, want ErrInvalidIndex", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := idx.Shards(); !slices.Equal(got, tt.shards) {
			t.Errorf("%s: shards %v, want %v", tt.name, got, tt.shards)
		}
	}
	if _, err := ReadIndex(filepath.Join(t.TempDir(), "none.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing index: %v", err)
	}
}

// A tensor named twice in weight_map is reported by name.
func TestReadIndexDuplicateNamesTensor(t *testing.T) {
	p := filepath.Join(t.TempDir(), "model.safetensors.index.json")
	if err := os.WriteFile(p, []byte(`{"weight_map":{"w.q":"a.safetensors","w.q":"b.safetensors"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ReadIndex(p)
	if err == nil || !strings.Contains(err.Error(), `"w.q"`) || !strings.Contains(err.Error(), "twice") || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want the file, the tensor and the rule", err)
	}
}
