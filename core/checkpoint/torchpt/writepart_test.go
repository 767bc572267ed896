package torchpt

import (
	"archive/zip"
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/tensor"
)

// TestWritePartMatchesWrite writes a tensor in uneven parts: archive/zip must read every record
// back with a valid CRC and the same bytes as written whole, and our reader must too.
func TestWritePartMatchesWrite(t *testing.T) {
	dir := t.TempDir()
	entries := []tensor.Info{{Name: "a", DType: tensor.F32, Shape: []int{3, 5}}, {Name: "b", DType: tensor.I8, Shape: []int{7}}}
	a := make([]byte, 60)
	for i := range a {
		a[i] = byte(i * 7)
	}
	b := []byte{1, 2, 3, 4, 5, 6, 7}
	path := filepath.Join(dir, "parts.pt")
	w, err := Create(path, entries, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]byte{a[:1], a[1:33], a[33:]} {
		if err := w.WritePart("a", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WritePart("b", b[:2]); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePart("b", b); err == nil || !strings.Contains(err.Error(), "overruns") {
		t.Fatalf("overrun: %v", err)
	}
	if err := w.Write("b", b); err == nil || !strings.Contains(err.Error(), "WritePart") {
		t.Fatalf("Write after a part: %v", err)
	}
	if err := w.WritePart("b", b[2:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	got := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc) // checks the CRC at EOF
		rc.Close()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		got[f.Name[strings.Index(f.Name, "/")+1:]] = data
	}
	if !bytes.Equal(got["data/0"], a) || !bytes.Equal(got["data/1"], b) {
		t.Fatalf("records hold %v and %v", got["data/0"], got["data/1"])
	}
	r, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ta, err := r.Tensor("a")
	if err != nil || !bytes.Equal(ta.Data, a) {
		t.Fatalf("tensor a: %v", err)
	}

	half := filepath.Join(dir, "half.pt")
	w, err = Create(half, entries, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if err := w.WritePart("a", a[:10]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err == nil || !strings.Contains(err.Error(), "10 of its 60 bytes") {
		t.Fatalf("commit of a half-written tensor: %v", err)
	}
}
