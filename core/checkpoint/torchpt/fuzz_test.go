package torchpt

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary files to the reader (zip layer, legacy layout, data.pkl, tensor
// views): Open and Tensor must return data or an error, never panic, hang or allocate by a
// claimed size. Seeds: every fixture and malicious file, plus testdata/fuzz/FuzzOpen.
func FuzzOpen(f *testing.F) {
	for _, pattern := range []string{fixtures + "/*.pt", malicious + "/*.pt"} {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil && len(b) < 64<<10 {
				f.Add(b)
			}
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.pt")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Skip(err)
		}
		r, err := Open(p)
		if err != nil {
			return
		}
		defer r.Close()
		for _, e := range r.Entries() {
			tt, err := r.Tensor(e.Name)
			if err != nil {
				continue
			}
			if err := tt.Validate(); err != nil {
				t.Fatalf("Tensor(%q) returned an invalid tensor: %v", e.Name, err)
			}
		}
	})
}
