package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
)

// The one sharded reader (openIndex) over safetensors shards: index checks, metadata, order,
// ranges. TestOpenShardedTorch covers torch and mixed shards.

func TestShardedBadIndexes(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "outside.safetensors"), "x")
	dir := filepath.Join(root, "model")
	os.Mkdir(dir, 0o755)
	writeFile(t, filepath.Join(dir, "s1.safetensors"), "a", "b")
	writeFile(t, filepath.Join(dir, "s2.safetensors"), "b", "c")
	writeFile(t, filepath.Join(dir, "s3.safetensors"), "c")
	os.WriteFile(filepath.Join(dir, "pytorch_model-00001-of-00001.bin"), []byte("PK\x03\x04 a torch zip"), 0o644)
	cases := []struct {
		index string
		want  string
	}{
		{`{"weight_map":{"x":"../outside.safetensors"}}`, `shard path "../outside.safetensors" leaves the index's folder`},
		{`{"weight_map":{"x":"/etc/passwd"}}`, "leaves the index's folder"},
		{`{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"}}`, `tensor "b" appears in both shard s1.safetensors and shard s2.safetensors`},
		{`{"weight_map":{"a":"s1.safetensors"}}`, `tensor "b" of shard s1.safetensors is not listed`},
		{`{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s3.safetensors","d":"s3.safetensors"}}`, `lists tensor "d" in shard s3.safetensors, which has no such tensor`},
		{`{"weight_map":{"a":"s1.safetensors","b":"s3.safetensors"}}`, `tensor "b" is in shard s1.safetensors but weight_map says s3.safetensors`},
		{`{"weight_map":{"a":"missing.safetensors"}}`, "shard missing.safetensors"},
		{`{"weight_map":{"a":"s1.safetensors","a":"s1.safetensors"}}`, `key "a" appears twice`},
		{`{"weight_map":{"a":3}}`, `weight_map["a"] is 3, not a file name`},
		{`{"metadata":{}}`, "no weight_map"},
		{`{"weight_map":`, "not a valid JSON object"},
		{`[]`, "not a valid JSON object"},
		{`{"weight_map":{"a":"pytorch_model-00001-of-00001.bin"}}`, "shard pytorch_model-00001-of-00001.bin"},
	}
	for i, c := range cases {
		p := filepath.Join(dir, fmt.Sprintf("case%d.safetensors.index.json", i))
		os.WriteFile(p, []byte(c.index), 0o644)
		s, err := openIndex(p)
		if err == nil {
			s.Close()
			t.Errorf("openIndex(%s) succeeded, want error containing %q", c.index, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("openIndex(%s) error = %q, want it to contain %q and the index path", c.index, err, c.want)
		}
	}
	ok := filepath.Join(dir, "good.safetensors.index.json")
	os.WriteFile(ok, []byte(`{"metadata":{"total_size":12,"note":"n"},"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s3.safetensors"}}`), 0o644)
	s, err := openIndex(ok)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := len(s.Entries()); got != 3 {
		t.Errorf("good index: %d entries, want 3", got)
	}
	if md := s.Metadata(); md["total_size"] != "12" || md["note"] != "n" {
		t.Errorf("good index metadata = %v", md)
	}
}

// TestShardedOrder: shards that each list their tensors sorted by name (as the safetensors
// library writes them) carry no order, and the set lists its tensors by name across shards; a
// set whose shards keep an order of their own (as monoquant writes them) keeps it.
func TestShardedOrder(t *testing.T) {
	for _, c := range []struct {
		name   string
		shards [][]string
		want   []string
	}{
		{"sorted shards", [][]string{{"a.0", "m.layers.0", "m.layers.9"}, {"lm_head", "m.layers.10"}},
			[]string{"a.0", "lm_head", "m.layers.0", "m.layers.10", "m.layers.9"}},
		{"shards in their own order", [][]string{{"m.embed", "m.layers.0.q", "m.layers.0.k"}, {"m.norm", "lm_head"}},
			[]string{"m.embed", "m.layers.0.q", "m.layers.0.k", "m.norm", "lm_head"}},
	} {
		dir := t.TempDir()
		wm := map[string]string{}
		for i, names := range c.shards {
			f := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(c.shards))
			writeFile(t, filepath.Join(dir, f), names...)
			for _, n := range names {
				wm[n] = f
			}
		}
		idx, _ := json.Marshal(map[string]any{"metadata": map[string]string{}, "weight_map": wm})
		p := filepath.Join(dir, "model.safetensors.index.json")
		if err := os.WriteFile(p, idx, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := openIndex(p)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range s.Entries() {
			got = append(got, e.Name)
		}
		s.Close()
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: entries %v, want %v", c.name, got, c.want)
		}
	}
}

// TestShardedRanges: a set of safetensors shards reads and releases ranges (so large tensors
// stream); a set with a torch shard does not claim to.
func TestShardedRanges(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "s1.safetensors"), "a", "b")
	writeFile(t, filepath.Join(dir, "s2.safetensors"), "c")
	p := filepath.Join(dir, "model.safetensors.index.json")
	os.WriteFile(p, []byte(`{"weight_map":{"a":"s1.safetensors","b":"s1.safetensors","c":"s2.safetensors"}}`), 0o644)
	r, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rr, ok := r.(RangedReader)
	if !ok {
		t.Fatalf("%T does not read ranges", r)
	}
	dst := make([]byte, 4)
	if err := rr.ReadRange("c", 0, dst); err != nil {
		t.Errorf("ReadRange(c) = %v", err)
	}
	if err := rr.ReadRange("c", 5, dst); err == nil {
		t.Error("ReadRange past the tensor's end succeeded")
	}
	if err := rr.ReadRange("zz", 0, dst); err == nil || !strings.Contains(err.Error(), "no tensor") {
		t.Errorf("ReadRange of an unknown tensor = %v", err)
	}
	if sh, ok := r.(interface{ Shards() []string }); !ok || len(sh.Shards()) != 2 {
		t.Errorf("Shards() missing or wrong on %T", r)
	}
	mixed := t.TempDir()
	writeFile(t, filepath.Join(mixed, "a.bin"), "a")
	writeFile(t, filepath.Join(mixed, "b.safetensors"), "b")
	p = filepath.Join(mixed, "model.bin.index.json")
	os.WriteFile(p, []byte(`{"weight_map":{"a":"a.bin","b":"b.safetensors"}}`), 0o644)
	m, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, ok := m.(RangedReader); ok {
		t.Errorf("a set with a torch shard claims to read ranges")
	}
	if !errors.Is(func() error { _, err := Open(filepath.Join(mixed, "missing.index.json")); return err }(), os.ErrNotExist) {
		t.Error("a missing index is not ErrNotExist")
	}
}

// TestOpenOfficialSharded: the safetensors library's sharded fixture (testdata) reads as one
// checkpoint of 3 shards, every tensor the bytes its own shard holds.
func TestOpenOfficialSharded(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "checkpoints", "safetensors", "sharded")
	r, err := Open(filepath.Join(dir, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	shards := r.(interface{ Shards() []string }).Shards()
	if len(shards) != 3 {
		t.Fatalf("%d shards, want 3", len(shards))
	}
	n := 0
	for _, p := range shards {
		f, err := safetensors.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range f.Entries() {
			want, err := f.Tensor(e.Name)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Tensor(e.Name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Data, want.Data) || !slices.Equal(got.Shape, want.Shape) || got.DType != want.DType {
				t.Errorf("%s differs from its shard %s", e.Name, p)
			}
			n++
		}
		f.Close()
	}
	if n == 0 || n != len(r.Entries()) {
		t.Errorf("%d tensors in the shards, %d in the set", n, len(r.Entries()))
	}
}
