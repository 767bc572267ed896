package safetensors

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/zeebo/xxh3"

	"github.com/monoquant/monoquant/core/checkpoint/mapped"
	"github.com/monoquant/monoquant/core/tensor"
)

// The digest from the reads is the XXH3-128 of the whole file, whatever the reads were: in file
// order, reversed, shuffled, in parts, twice, or none at all.
func TestContentXXH3FromReads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	var entries []tensor.Info
	rng := rand.New(rand.NewSource(1))
	for i := range 7 {
		entries = append(entries, tensor.Info{Name: fmt.Sprintf("t%d", i), DType: tensor.U8, Shape: []int{1 + rng.Intn(3*gapWindow/2)}})
	}
	w, err := Create(path, entries, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b := make([]byte, e.Shape[0])
		rng.Read(b)
		if err := w.Write(e.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	whole, _ := os.ReadFile(path)
	want := func(p string) string {
		b, _ := os.ReadFile(p)
		s := xxh3.Hash128(b).Bytes()
		return hex.EncodeToString(s[:])
	}
	names := func(order []int) []string {
		out := make([]string, len(order))
		for i, j := range order {
			out[i] = entries[j].Name
		}
		return out
	}
	inOrder := []int{0, 1, 2, 3, 4, 5, 6}
	cases := []struct {
		name  string
		file  string
		reads []string
		parts bool
	}{
		{"in file order", path, names(inOrder), false},
		{"in file order, in parts", path, names(inOrder), true},
		{"reversed", path, names([]int{6, 5, 4, 3, 2, 1, 0}), false},
		{"shuffled, some twice, some never", path, names([]int{3, 1, 3, 6, 0, 1}), true},
		{"no reads", path, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Open(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.HashWhileReading(); err != nil {
				t.Fatal(err)
			}
			for _, n := range tc.reads {
				e := entries[f.index[n]]
				if !tc.parts {
					if _, err := f.Tensor(n); err != nil {
						t.Fatal(err)
					}
					continue
				}
				size := int64(e.Shape[0])
				for off := int64(0); off < size; off += 1000003 {
					part := make([]byte, min(1000003, size-off))
					if err := f.ReadRange(n, off, part); err != nil {
						t.Fatal(err)
					}
				}
			}
			sum, n, err := f.ContentXXH3()
			st, _ := os.Stat(tc.file)
			if err != nil || sum != want(tc.file) || n != st.Size() {
				t.Errorf("ContentXXH3 = %s, %d, %v; want %s, %d", sum, n, err, want(tc.file), st.Size())
			}
			if again, _, _ := f.ContentXXH3(); again != sum {
				t.Errorf("a second ContentXXH3 = %s, want %s", again, sum)
			}
		})
	}

	// Stopped (the digest was known elsewhere): the reads no longer hash, and no digest is given.
	f, _ := Open(path)
	f.HashWhileReading()
	f.StopHashing()
	f.Tensor(entries[0].Name)
	if f.seq.next != f.hdr.DataStart {
		t.Errorf("a read after StopHashing was hashed (%d bytes hashed, header %d)", f.seq.next, f.hdr.DataStart)
	}
	if _, _, err := f.ContentXXH3(); err == nil {
		t.Error("ContentXXH3 after StopHashing succeeded")
	}
	f.Close()

	// Not asked for: an error, not a digest of nothing.
	f, _ = Open(path)
	if _, _, err := f.ContentXXH3(); err == nil {
		t.Error("ContentXXH3 without HashWhileReading succeeded")
	}
	f.Close()
	// A file cut short under the reads: an error, never a crash.
	cut := filepath.Join(dir, "cut.safetensors")
	os.WriteFile(cut, whole, 0o644)
	f, err = Open(cut)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.HashWhileReading()
	os.Truncate(cut, int64(len(whole)/2))
	if _, _, err := f.ContentXXH3(); !errors.Is(err, mapped.ErrChanged) {
		t.Errorf("ContentXXH3 of a truncated file = %v; want ErrChanged", err)
	}
}
