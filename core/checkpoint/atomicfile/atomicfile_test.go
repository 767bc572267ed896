package atomicfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommitReplacesTarget(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.bin")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// More than two writeback windows, in uneven pieces, so the sync_file_range path runs.
	want := bytes.Repeat([]byte("0123456789abcdef"), (2*writebackWindow+12345)/16)
	for off := 0; off < len(want); off += 7 << 20 {
		if _, err := f.Write(want[off:min(off+7<<20, len(want))]); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("before Commit the target holds %q, want the old file", got[:min(len(got), 16)])
	}
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("after Commit: %d bytes (err %v), want %d identical bytes", len(got), err, len(want))
	}
	if err := f.Commit(); err == nil {
		t.Error("second Commit succeeded, want an error")
	}
	if err := f.Abort(); err != nil {
		t.Errorf("Abort after Commit = %v, want nil", err)
	}
	assertOnly(t, dir, "model.bin")
}

func TestAbortLeavesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.safetensors")
	os.WriteFile(path, []byte("old"), 0o644)
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("new data"))
	if err := f.Abort(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Fatalf("after Abort the target holds %q, want %q", got, "old")
	}
	assertOnly(t, dir, "x.safetensors")
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plain")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing", "out.pt"), "output folder"},
		{filepath.Join(file, "out.pt"), "not a folder"},
	} {
		if _, err := Create(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Create(%q) = %v, want an error containing %q", tc.path, err, tc.want)
		}
	}
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("folder holds %v, want only %v (no temporary files left)", got, names)
	}
}
