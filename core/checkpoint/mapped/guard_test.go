package mapped

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestTruncatedWhileMapped: a file cut short after it was mapped must not crash the reader
// (SIGBUS on the vanished pages) but report ErrChanged.
func TestTruncatedWhileMapped(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.bin")
	page := os.Getpagesize()
	if err := os.WriteFile(p, make([]byte, 8*page), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := os.Truncate(p, int64(page)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Copy(p, int64(4*page), int64(page)); !errors.Is(err, ErrChanged) {
		t.Errorf("Copy past the new end = %v, want ErrChanged", err)
	}
	b, err := m.Copy(p, 0, int64(page))
	if err != nil || len(b) != page {
		t.Errorf("Copy within the file = %d bytes, %v", len(b), err)
	}
	err = Guard(p, func() error { sink = m.Bytes()[6*page]; return nil })
	if !errors.Is(err, ErrChanged) {
		t.Errorf("Guard(read past the new end) = %v, want ErrChanged", err)
	}
}

var sink byte
