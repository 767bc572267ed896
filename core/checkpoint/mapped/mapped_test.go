package mapped

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMapSliceRelease(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	want := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 100000)
	os.WriteFile(path, want, 0o644)
	m, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Size() != int64(len(want)) || !bytes.Equal(m.Bytes(), want) {
		t.Fatalf("mapping holds %d bytes, want the file's %d", m.Size(), len(want))
	}
	s, err := m.Slice(5000, 70000)
	if err != nil || !bytes.Equal(s, want[5000:75000]) {
		t.Fatalf("Slice(5000, 70000): err %v or wrong bytes", err)
	}
	m.Release(5000, 70000)
	if !bytes.Equal(s, want[5000:75000]) {
		t.Fatal("after Release the range no longer reads back the file's bytes")
	}
	for _, r := range [][2]int64{{-1, 1}, {0, -1}, {int64(len(want)), 1}, {1, int64(len(want))}} {
		if _, err := m.Slice(r[0], r[1]); err == nil || !strings.Contains(err.Error(), "outside") {
			t.Errorf("Slice(%d, %d) = %v, want an 'outside' error", r[0], r[1], err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestOpenEdgeCases(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	m, err := Open(empty)
	if err != nil || m.Size() != 0 || len(m.Bytes()) != 0 {
		t.Fatalf("Open(empty) = size %v err %v, want an empty mapping", m, err)
	}
	m.Release(0, 10)
	m.Close()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open(folder) = %v, want 'not a regular file'", err)
	}
	if _, err := Open(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("Open(missing) = %v, want a not-exist error", err)
	}
}
