package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/checkpoint/torchpt"
	"github.com/monoquant/monoquant/core/tensor"
)

func stHeader(h string, data int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	return append(append(b, h...), make([]byte, data)...)
}

func TestSniff(t *testing.T) {
	validST := stHeader(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1)
	cases := []struct {
		name string
		data []byte
		want Format
	}{
		{"model.bin", []byte("PK\x03\x04rest of a zip"), TorchZip},
		{"empty.pt", []byte("PK\x05\x06" + strings.Repeat("\x00", 18)), TorchZip},
		{"old.pt", []byte("\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"), TorchLegacy},
		{"weights.dat", validST, Safetensors},
		{"spaced.dat", stHeader(`   {}`, 0), Safetensors},
		{"index.dat", []byte(" \n{\"weight_map\": {}}"), SafetensorsIndex},
		{"x.safetensors.index.json", []byte("not json at all"), SafetensorsIndex},
		// Too broken for content to tell: the suffix picks the reader that explains the damage.
		{"cut.safetensors", validST[:20], Safetensors},
		{"lying.bin", append(binary.LittleEndian.AppendUint64(nil, 1<<40), '{'), Unknown},
		{"notes.txt", []byte("hello"), Unknown},
		{"empty.dat", nil, Unknown},
		{"pickle1.pkl", []byte("\x80\x01"), Unknown},
	}
	dir := t.TempDir()
	for _, c := range cases {
		p := filepath.Join(dir, c.name)
		os.WriteFile(p, c.data, 0o644)
		got, err := Sniff(p)
		if err != nil || got != c.want {
			t.Errorf("Sniff(%s = %q) = %v, %v; want %v", c.name, c.data, got, err, c.want)
		}
	}
	if _, err := Sniff(dir); err == nil {
		t.Errorf("Sniff(folder) succeeded")
	}
	if _, err := Sniff(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Sniff(missing) error = %v, want not exist", err)
	}
}

func TestOpenDispatches(t *testing.T) {
	root := filepath.Join("..", "..", "testdata", "checkpoints")
	// A safetensors file under a torch-like name and a torch file under a safetensors-like name
	// must still reach the right reader: content decides.
	dir := t.TempDir()
	stBytes, err := os.ReadFile(filepath.Join(root, "safetensors", "all_dtypes.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "disguised.bin"), stBytes, 0o644)
	ptBytes, err := os.ReadFile(filepath.Join(root, "torch", "model_state.pt"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "disguised.safetensors"), ptBytes, 0o644)

	cases := []struct {
		path string
		want string // the reader's type
	}{
		{filepath.Join(root, "safetensors", "all_dtypes.safetensors"), "*safetensors.File"},
		{filepath.Join(root, "safetensors", "sharded", "model.safetensors.index.json"), "sharded, ranged"},
		{filepath.Join(root, "torch", "model_state.pt"), "*torchpt.File"},
		{filepath.Join(root, "torch", "legacy.pt"), "*torchpt.File"},
		{filepath.Join(dir, "disguised.bin"), "*safetensors.File"},
		{filepath.Join(dir, "disguised.safetensors"), "*torchpt.File"},
	}
	for _, c := range cases {
		r, err := Open(c.path)
		if err != nil {
			t.Errorf("Open(%s): %v", c.path, err)
			continue
		}
		got := typeName(r)
		if got != c.want {
			t.Errorf("Open(%s) gave %s, want %s", c.path, got, c.want)
		}
		if len(r.Entries()) == 0 {
			t.Errorf("Open(%s) lists no tensors", c.path)
		}
		r.Close()
	}
}

func typeName(r Reader) string {
	switch r.(type) {
	case *safetensors.File:
		return "*safetensors.File"
	case *rangedShardedReader:
		return "sharded, ranged"
	case *torchpt.File:
		return "*torchpt.File"
	}
	return "other"
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	cases := []struct {
		path string
		want string
	}{
		{write("notes.txt", []byte("just text")), "not a safetensors, torch zip or legacy torch file"},
		{write("empty.pt", nil), "not a safetensors, torch zip or legacy torch file"},
		{write("cut.safetensors", stHeader(`{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1)[:30]), "runs past the end"},
		{filepath.Join(dir, "missing.safetensors"), "no such file"},
		{dir, "runs past the end"}, // a folder is a model folder: its one *.safetensors is its weights
		{t.TempDir(), "no weights"},
	}
	for _, c := range cases {
		r, err := Open(c.path)
		if err == nil {
			r.Close()
			t.Errorf("Open(%s) succeeded, want error containing %q", c.path, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("Open(%s) error = %q, want it to contain %q and the path", c.path, err, c.want)
		}
	}
}

func TestCreateBySuffix(t *testing.T) {
	entries := []Entry{
		{Name: "w", DType: tensor.F32, Shape: []int{2, 2}},
		{Name: "b", DType: tensor.BF16, Shape: []int{2}},
	}
	data := [][]byte{
		tensor.Float32Bytes([]float32{1, -2, 3.5, 1e-3}),
		{0x80, 0x3f, 0x00, 0xc0},
	}
	dir := t.TempDir()
	for _, name := range []string{"m.safetensors", "m.pt", "m.PTH", "m.bin"} {
		path := filepath.Join(dir, name)
		w, err := Create(path, entries, map[string]string{"k": "v"})
		if err != nil {
			t.Errorf("Create(%s): %v", name, err)
			continue
		}
		for i, e := range entries {
			if err := w.Write(e.Name, data[i]); err != nil {
				t.Fatalf("%s: Write(%s): %v", name, e.Name, err)
			}
		}
		if err := w.Commit(); err != nil {
			t.Fatalf("%s: Commit: %v", name, err)
		}
		r, err := Open(path)
		if err != nil {
			t.Fatalf("Open(%s) of what Create wrote: %v", name, err)
		}
		wantType := "*torchpt.File"
		if strings.HasSuffix(name, ".safetensors") {
			wantType = "*safetensors.File"
		}
		if got := typeName(r); got != wantType {
			t.Errorf("Create(%s) wrote a file read back as %s, want %s", name, got, wantType)
		}
		for i, e := range entries {
			got, err := r.Tensor(e.Name)
			if err != nil {
				t.Fatalf("%s: Tensor(%s): %v", name, e.Name, err)
			}
			if got.DType != e.DType || !bytes.Equal(got.Data, data[i]) {
				t.Errorf("%s: %s read back as %v %x, want %v %x", name, e.Name, got.DType, got.Data, e.DType, data[i])
			}
		}
		if r.Metadata()["k"] != "v" {
			t.Errorf("%s: metadata = %v, want k=v", name, r.Metadata())
		}
		r.Close()
	}
	if _, err := Create(filepath.Join(dir, "m.onnx"), entries, nil); err == nil || !strings.Contains(err.Error(), "use .safetensors, .pt, .pth or .bin") {
		t.Errorf("Create(m.onnx) error = %v", err)
	}
}

// writeFile writes F32 tensors named names (values i+1 for the i-th) with Create (format by suffix).
func writeFile(t *testing.T, path string, names ...string) {
	t.Helper()
	var entries []Entry
	for _, n := range names {
		entries = append(entries, Entry{Name: n, DType: tensor.F32, Shape: []int{2}})
	}
	w, err := Create(path, entries, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	for i, n := range names {
		if err := w.Write(n, tensor.Float32Bytes([]float32{float32(i + 1), -float32(i + 1)})); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// transformers writes pytorch_model.bin.index.json over torch shards with the safetensors index
// layout; Open reads such sets (and mixed ones) as one checkpoint, with the same checks.
func TestOpenShardedTorch(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "pytorch_model-00001-of-00002.bin"), "a", "b")
	writeFile(t, filepath.Join(dir, "pytorch_model-00002-of-00002.bin"), "c")
	writeFile(t, filepath.Join(dir, "extra.safetensors"), "d")
	writeFile(t, filepath.Join(dir, "dup.bin"), "a")
	os.WriteFile(filepath.Join(dir, "nested.index.json"), []byte(`{"weight_map":{}}`), 0o644)
	index := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	good := index("pytorch_model.bin.index.json", `{"metadata":{"total_size":24},"weight_map":{"a":"pytorch_model-00001-of-00002.bin","b":"pytorch_model-00001-of-00002.bin","c":"pytorch_model-00002-of-00002.bin"}}`)
	mixed := index("mixed.index.json", `{"weight_map":{"c":"pytorch_model-00002-of-00002.bin","d":"extra.safetensors"}}`)
	for _, p := range []string{good, mixed} {
		r, err := Open(p)
		if err != nil {
			t.Fatalf("Open(%s): %v", p, err)
		}
		for _, e := range r.Entries() {
			got, err := r.Tensor(e.Name)
			if err != nil {
				t.Fatalf("%s: Tensor(%s): %v", p, e.Name, err)
			}
			v, _ := got.Float32s()
			if len(v) != 2 || v[0] != -v[1] || v[0] < 1 {
				t.Errorf("%s: %s = %v, want [k -k]", p, e.Name, v)
			}
			r.Release(e.Name)
		}
		if md := r.Metadata(); md["format"] != "pt" {
			t.Errorf("%s: metadata %v lacks the shards' format=pt", p, md)
		}
		r.Close()
	}
	r, _ := Open(good)
	if n := len(r.Entries()); n != 3 || r.Metadata()["total_size"] != "24" {
		t.Errorf("Open(%s): %d entries, metadata %v; want 3 and total_size 24", good, n, r.Metadata())
	}
	if _, err := r.Tensor("zzz"); err == nil || !strings.Contains(err.Error(), `no tensor named "zzz"`) {
		t.Errorf("Tensor(zzz) error = %v", err)
	}
	r.Close()

	cases := []struct {
		body, want string
	}{
		{`{"weight_map":{"a":"dup.bin","b":"pytorch_model-00001-of-00002.bin"}}`, `tensor "a" appears in both shard dup.bin and shard pytorch_model-00001-of-00002.bin`},
		{`{"weight_map":{"a":"pytorch_model-00001-of-00002.bin","b":"pytorch_model-00001-of-00002.bin","x":"dup.bin"}}`, `tensor "a" is in shard dup.bin but weight_map says pytorch_model-00001-of-00002.bin`},
		{`{"weight_map":{"a":"pytorch_model-00001-of-00002.bin"}}`, `tensor "b" of shard pytorch_model-00001-of-00002.bin is not listed`},
		{`{"weight_map":{"c":"pytorch_model-00002-of-00002.bin","z":"pytorch_model-00002-of-00002.bin"}}`, `lists tensor "z" in shard pytorch_model-00002-of-00002.bin, which has no such tensor`},
		{`{"weight_map":{"c":"../x.bin"}}`, "leaves the index's folder"},
		{`{"weight_map":{"c":"nested.index.json"}}`, "is itself an index"},
		{`{"weight_map":{"c":"missing.bin"}}`, "shard missing.bin"},
		{`{"weight_map":[]}`, "weight_map"},
	}
	for i, c := range cases {
		p := index(fmt.Sprintf("bad%d.index.json", i), c.body)
		r, err := Open(p)
		if err == nil {
			r.Close()
			t.Errorf("Open(%s) succeeded, want error containing %q", c.body, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("Open(%s) error = %q, want it to contain %q and the index path", c.body, err, c.want)
		}
	}
}
