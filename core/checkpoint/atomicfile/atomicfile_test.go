package atomicfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// both runs a test with the unnamed temporary file (where the file system supports it) and with
// the named fallback.
func both(t *testing.T, fn func(t *testing.T)) {
	for _, named := range []bool{false, true} {
		t.Run(map[bool]string{false: "unnamed", true: "named"}[named], func(t *testing.T) {
			forceNamed = named
			defer func() { forceNamed = false }()
			fn(t)
		})
	}
}

func TestCommitReplacesTarget(t *testing.T) { both(t, testCommitReplacesTarget) }
func TestAbortLeavesOldFile(t *testing.T)   { both(t, testAbortLeavesOldFile) }

// TestNothingNamedWhileWriting: while an unnamed file is written, the folder holds only the old
// target; the committed file is readable by everyone (0644 before umask, like os.Create).
func TestNothingNamedWhileWriting(t *testing.T) {
	dir := t.TempDir()
	if !Unnamed(dir) {
		t.Skipf("%s does not support O_TMPFILE here; the named fallback is what runs", dir)
	}
	path := filepath.Join(dir, "m.pt")
	os.WriteFile(path, []byte("old"), 0o600)
	f, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("new contents"))
	assertOnly(t, dir, "m.pt")
	if err := f.Commit(); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, dir, "m.pt")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("committed file: %v %v, want mode 0644", st.Mode(), err)
	}
	if got, _ := os.ReadFile(path); string(got) != "new contents" {
		t.Errorf("committed file holds %q", got)
	}
	// A file dropped without Commit or Abort (as by a killed process) leaves nothing either.
	g, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	g.Write([]byte("lost"))
	g.File.Close()
	assertOnly(t, dir, "m.pt")
}

func testCommitReplacesTarget(t *testing.T) {
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

func testAbortLeavesOldFile(t *testing.T) {
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
