package runlog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// AddSHA256 stores the sha256 of the files a run recorded by XXH3, only while they still hold
// that content; a changed file stores nothing and says which it is.
func TestAddSHA256(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	in, out, cal := filepath.Join(dir, "in.pt"), filepath.Join(dir, "out.safetensors"), filepath.Join(dir, "acts.pt")
	os.WriteFile(in, []byte("the input"), 0o644)
	os.WriteFile(out, []byte("the output"), 0o644)
	os.WriteFile(cal, []byte("calibration"), 0o644)
	r := sampleRun(t, 8, 1, 1)
	var err error
	if r.Input, err = HashFile(in); err != nil {
		t.Fatal(err)
	}
	if r.Output, err = HashFile(out); err != nil {
		t.Fatal(err)
	}
	c, _ := HashFile(cal)
	r.Calibration = &Calibration{Path: cal, XXH3: c.XXH3, Count: 1, Shapes: [][]int{{2}}}
	l, err := Open(ctx, filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	id, err := l.Record(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Get(ctx, id); got.Input.SHA256 != "" || got.Output.SHA256 != "" || got.Output.XXH3 != r.Output.XXH3 {
		t.Fatalf("recorded %+v %+v: want XXH3 only", got.Input, got.Output)
	}
	up, err := l.AddSHA256(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	stored, _ := l.Get(ctx, id)
	for _, f := range []struct {
		what      string
		got, path string
	}{{"input", stored.Input.SHA256, in}, {"output", stored.Output.SHA256, out}, {"calibration", stored.Calibration.SHA256, cal}} {
		b, _ := os.ReadFile(f.path)
		if f.got != sumOf(b) {
			t.Errorf("%s sha256 stored %q, want %s", f.what, f.got, sumOf(b))
		}
	}
	if up.Output.SHA256 != stored.Output.SHA256 || stored.Output.XXH3 != r.Output.XXH3 {
		t.Errorf("returned %+v, stored %+v", up.Output, stored.Output)
	}

	// a changed output: an error naming it, and nothing stored
	id2, _ := l.Record(ctx, sampleRunWith(t, r))
	os.WriteFile(out, []byte("the output, changed"), 0o644)
	if _, err := l.AddSHA256(ctx, id2); !errors.Is(err, ErrFileChanged) || !strings.Contains(err.Error(), out) {
		t.Errorf("AddSHA256 of a changed output = %v; want ErrFileChanged naming %s", err, out)
	}
	if got, _ := l.Get(ctx, id2); got.Input.SHA256 != "" || got.Output.SHA256 != "" {
		t.Errorf("a failed AddSHA256 stored %+v %+v", got.Input, got.Output)
	}
	os.Remove(out)
	if _, err := l.AddSHA256(ctx, id2); !errors.Is(err, ErrFileChanged) {
		t.Errorf("AddSHA256 of a removed output = %v; want ErrFileChanged", err)
	}
	if _, err := l.AddSHA256(ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddSHA256 of no run = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.AddSHA256(cctx, id2); err == nil {
		t.Error("AddSHA256 with a cancelled context succeeded")
	}
}

// sampleRunWith is a copy of r to record again (Record assigns the id and uuid).
func sampleRunWith(t *testing.T, r *Run) *Run {
	c := *r
	c.ID, c.UUID = 0, ""
	return &c
}

// Only regular files are hashed: a FIFO named as an input must be an error, not a read that
// waits forever for a writer (a hang is go test's -timeout to catch).
func TestHashFileRefusesFIFO(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "model.safetensors")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("no FIFOs here:", err)
	}
	if _, err := HashFile(fifo); err == nil {
		t.Error("HashFile(FIFO) = nil error")
	}
	if ref, err := HashInputAsync(context.Background(), filepath.Join(t.TempDir(), FileName), fifo).Wait(); err == nil {
		t.Errorf("HashInputAsync(FIFO) = %+v, nil error", ref)
	}
}
