package atomicfile

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// TestStop runs Stop in a child process (it closes the gate for good): a file committed before
// Stop stays and is counted; a file still being written is dropped, and its Commit after Stop
// never puts it in place; the folder holds no temporary file afterwards. Named and unnamed
// temporaries both.
func TestStop(t *testing.T) {
	if dir := os.Getenv("ATOMICFILE_STOP_CHILD"); dir != "" {
		forceNamed = os.Getenv("ATOMICFILE_STOP_NAMED") == "1"
		stopChild(dir)
		return
	}
	for _, named := range []string{"0", "1"} {
		t.Run("named="+named, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "late.pt"), []byte("old"), 0o644)
			cmd := exec.Command(os.Args[0], "-test.run=^TestStop$")
			cmd.Env = append(os.Environ(), "ATOMICFILE_STOP_CHILD="+dir, "ATOMICFILE_STOP_NAMED="+named)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "stop counted 1 commit") {
				t.Errorf("child printed %q, want Stop to count the one commit before it", out)
			}
			if got, err := os.ReadFile(filepath.Join(dir, "early.pt")); err != nil || string(got) != "early" {
				t.Errorf("the file committed before Stop: %q, %v", got, err)
			}
			if got, _ := os.ReadFile(filepath.Join(dir, "late.pt")); string(got) != "old" {
				t.Errorf("a Commit after Stop replaced its target: it holds %q", got)
			}
			assertOnly(t, dir, "early.pt", "late.pt")
		})
	}
}

// stopChild commits one file, starts another, stops, and then tries to commit the second: that
// Commit must block (the gate is closed), so the process exits with it still waiting.
func stopChild(dir string) {
	early, err := Create(filepath.Join(dir, "early.pt"))
	if err == nil {
		early.Write([]byte("early"))
		err = early.Commit()
	}
	late, err2 := Create(filepath.Join(dir, "late.pt"))
	if err != nil || err2 != nil {
		fmt.Println("setup:", err, err2)
		os.Exit(1)
	}
	late.Write([]byte("late"))
	before := Commits()
	n := Stop()
	fmt.Printf("stop counted %d commit(s) (%d before)\n", n, before)
	returned := make(chan error, 1)
	go func() { returned <- late.Commit() }()
	select {
	case err := <-returned:
		fmt.Println("Commit after Stop returned:", err)
		os.Exit(1)
	case <-time.After(200 * time.Millisecond):
		// Still blocked, as it must be; the target is checked by the parent either way.
	}
	os.Exit(0)
}
