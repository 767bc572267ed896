package model

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/plan"
)

// TestWithConfigAndOpenResult: a caller's copy of a quantized model's tensors with its config
// (plus a tied alias) becomes a Result only when the config matches the tensors; saved, the file
// opens with OpenResult, whose tensors read from the file match, and a bad alias is refused.
func TestWithConfigAndOpenResult(t *testing.T) {
	res, err := testModel(t).Quantize(context.Background(), plan.Options{Bits: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(res.Metadata()[MetadataKey]), &cfg); err != nil {
		t.Fatal(err)
	}
	first := res.Entries()[0].Name
	copyOf := func() *Model {
		m := NewModel()
		for _, e := range res.Entries() {
			x, _ := res.Tensor(e.Name)
			if err := m.Add(e.Name, x); err != nil {
				t.Fatal(err)
			}
		}
		return m
	}
	with := func(aliases map[string]string) string {
		c := map[string]any{}
		for k, v := range cfg {
			c[k] = v
		}
		if aliases != nil {
			c["aliases"] = aliases
		}
		b, _ := json.Marshal(c)
		return string(b)
	}
	for _, tc := range []struct {
		name    string
		cfg     string
		wantErr string
	}{
		{"alias of a stored tensor", with(map[string]string{"tied.weight": first}), ""},
		{"alias of nothing", with(map[string]string{"tied.weight": "nope.weight"}), "does not store"},
		{"alias that is stored", with(map[string]string{first: first}), "is stored in the file"},
		{"not json", "{", "not valid JSON"},
	} {
		m := copyOf()
		r, err := m.WithConfig(tc.cfg)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: WithConfig error %v, want one containing %q", tc.name, err, tc.wantErr)
			}
			if _, ok := m.ck.metadata[MetadataKey]; ok {
				t.Errorf("%s: a refused config stayed on the model", tc.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: WithConfig: %v", tc.name, err)
		}
		if r.Config.Aliases["tied.weight"] != first {
			t.Errorf("%s: aliases %v", tc.name, r.Config.Aliases)
		}
		path := filepath.Join(t.TempDir(), "q.safetensors")
		if err := r.Save(context.Background(), path); err != nil {
			t.Fatal(err)
		}
		o, err := OpenResult(path)
		if err != nil {
			t.Fatalf("OpenResult: %v", err)
		}
		for _, e := range res.Entries() {
			a, _ := res.Tensor(e.Name)
			b, err := o.Tensor(e.Name)
			if err != nil || string(a.Data) != string(b.Data) {
				t.Errorf("OpenResult: tensor %q differs (err %v)", e.Name, err)
			}
		}
		if err := o.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := o.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
	// a float checkpoint is not a quantized one
	path := filepath.Join(t.TempDir(), "f.safetensors")
	if err := testModel(t).Save(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenResult(path); err == nil || !strings.Contains(err.Error(), "not a monoquant checkpoint") {
		t.Errorf("OpenResult(float file) = %v, want a not-a-monoquant-checkpoint error", err)
	}
}
