package safetensors

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/tensor"
)

// TestWritePartMatchesWrite writes the same tensors whole and in uneven parts: the files must be
// identical, and overrunning a tensor or committing one half written must be errors.
func TestWritePartMatchesWrite(t *testing.T) {
	dir := t.TempDir()
	entries := []tensor.Info{{Name: "a", DType: tensor.F32, Shape: []int{3, 5}}, {Name: "b", DType: tensor.I8, Shape: []int{7}}}
	a := make([]byte, 60)
	for i := range a {
		a[i] = byte(i * 7)
	}
	b := []byte{1, 2, 3, 4, 5, 6, 7}
	whole, parts := filepath.Join(dir, "whole.safetensors"), filepath.Join(dir, "parts.safetensors")
	w, err := Create(whole, entries, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write("a", a); err != nil {
		t.Fatal(err)
	}
	if err := w.Write("b", b); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	w, err = Create(parts, entries, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{a[:1], a[1:33], {}, a[33:]} {
		if err := w.WritePart("a", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WritePart("b", b[:3]); err != nil {
		t.Fatal(err)
	}
	if err := w.Write("b", b); err == nil || !strings.Contains(err.Error(), "WritePart") {
		t.Fatalf("Write after a part: %v", err)
	}
	if err := w.WritePart("b", b[:5]); err == nil || !strings.Contains(err.Error(), "overruns") {
		t.Fatalf("overrun: %v", err)
	}
	if err := w.WritePart("b", b[3:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	x, _ := os.ReadFile(whole)
	y, _ := os.ReadFile(parts)
	if !bytes.Equal(x, y) {
		t.Fatal("file written in parts differs from the one written whole")
	}

	half := filepath.Join(dir, "half.safetensors")
	w, err = Create(half, entries, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.WritePart("a", a[:10]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err == nil || !strings.Contains(err.Error(), `"a" is incomplete: 10 of its 60 bytes`) {
		t.Fatalf("commit of a half-written tensor: %v", err)
	}
	if _, err := os.Stat(half); !os.IsNotExist(err) {
		t.Fatalf("a failed commit left %s", half)
	}
}
