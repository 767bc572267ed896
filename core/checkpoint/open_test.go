package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
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
		{filepath.Join(root, "safetensors", "sharded", "model.safetensors.index.json"), "*safetensors.Sharded"},
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
	case *safetensors.Sharded:
		return "*safetensors.Sharded"
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
		{dir, "not a regular file"},
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
