package safetensors

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseHeader feeds arbitrary files to the header parser. It must never panic, and whatever
// it accepts must describe ranges that tile the data area exactly with the right sizes, since
// the reader slices the mapping with those ranges unchecked.
//
// Seeds: the corpus in testdata/fuzz/FuzzParseHeader plus every fixture file, good and bad.
func FuzzParseHeader(f *testing.F) {
	for _, pattern := range []string{"*.safetensors", "sharded/*.safetensors", "bad/*.safetensors"} {
		files, _ := filepath.Glob(filepath.Join(fixtureDir, pattern))
		for _, p := range files {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, file []byte) {
		h, err := ParseHeader(file)
		if err != nil {
			return
		}
		if h.DataStart < 8 || h.DataStart > int64(len(file)) {
			t.Fatalf("DataStart %d outside the %d-byte file", h.DataStart, len(file))
		}
		if len(h.Entries) != len(h.Offsets) || h.Metadata == nil {
			t.Fatalf("%d entries, %d offsets, metadata %v", len(h.Entries), len(h.Offsets), h.Metadata)
		}
		pos := int64(0)
		for i, e := range h.Entries {
			off := h.Offsets[i]
			if off[0] != pos || off[1] < off[0] {
				t.Fatalf("entry %q range %v does not continue at %d", e.Name, off, pos)
			}
			n := 1
			for _, d := range e.Shape {
				if d < 0 {
					t.Fatalf("entry %q negative dim in %v", e.Name, e.Shape)
				}
				n *= d
			}
			if int64(n*e.DType.Size()) != off[1]-off[0] {
				t.Fatalf("entry %q: shape %v of %v but range %v", e.Name, e.Shape, e.DType, off)
			}
			pos = off[1]
		}
		if h.DataStart+pos != int64(len(file)) {
			t.Fatalf("entries end at %d, file is %d bytes", h.DataStart+pos, len(file))
		}
	})
}

// FuzzParseIndex feeds arbitrary index files to the sharded index parser: it must never panic,
// and an accepted index has only non-empty shard names.
func FuzzParseIndex(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join(fixtureDir, "sharded", "model.safetensors.index.json")); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"metadata":{"total_size":12,"x":"y","n":null},"weight_map":{"a":"s1.safetensors"}}`))
	f.Add([]byte(`{"weight_map":{"a":"../x","a":"y"}}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		wm, meta, err := ParseIndex(raw)
		if err != nil {
			return
		}
		if wm == nil || meta == nil {
			t.Fatalf("accepted index gave nil maps: %v %v", wm, meta)
		}
		for k, v := range wm {
			if v == "" {
				t.Fatalf("tensor %q maps to an empty shard name", k)
			}
		}
	})
}
