package runlog

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// cacheTest sets up a test of the log's hash cache: Linux (file identities), no racy window (the
// test's files are seconds old at most), a folder and the log's path in it.
func cacheTest(t *testing.T) (ctx context.Context, dir, logPath string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("file identities are read on Linux only")
	}
	old := racyWindow
	racyWindow = 0
	t.Cleanup(func() { racyWindow = old })
	dir = t.TempDir()
	return context.Background(), dir, filepath.Join(dir, FileName)
}

// rewriteSameSize writes data (the size the file had) over path and, when mtime is set, puts
// the file's mtime back, then makes sure the write shows in its ctime: a write within the file
// system's clock tick (a few ms, more on a busy machine or a coarse file system) keeps ctime,
// so it writes again until ctime moves, giving up after a minute.
func rewriteSameSize(t *testing.T, path string, data []byte, mtime time.Time) {
	t.Helper()
	before, ok := statID(path)
	if !ok {
		t.Fatalf("no file identity for %s", path)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if !mtime.IsZero() {
			if err := os.Chtimes(path, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
		after, _ := statID(path)
		if after.size != before.size || after.ino != before.ino {
			t.Fatalf("rewriting %s changed its size or inode: %+v, was %+v", path, after, before)
		}
		if after.ctime != before.ctime {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ctime of %s did not move in a minute of writes", path)
		}
	}
}

func TestHashInputCache(t *testing.T) {
	ctx, dir, logPath := cacheTest(t)
	in := filepath.Join(dir, "model.pt")
	os.WriteFile(in, []byte("weights v1"), 0o644)
	want, _ := HashFile(in)

	// No log yet: hashed, and the run remembers the hash when recorded.
	r := sampleRun(t, 8, 1, 1)
	if err := HashInputAsync(ctx, logPath, in).SetInput(r); err != nil {
		t.Fatal(err)
	}
	if r.Input != want {
		t.Fatalf("input = %+v, want %+v", r.Input, want)
	}
	if _, w := RecordOrWarn(ctx, logPath, r); w != "" {
		t.Fatal(w)
	}
	// The second lookup comes from the cache: prove it by planting a marker there.
	l, err := Open(ctx, logPath)
	if err != nil {
		t.Fatal(err)
	}
	marker := strings.Repeat("f", 32)
	if res, err := l.db.Exec(`UPDATE file_hashes SET xxh3 = ? WHERE path = ?`, marker, in); err != nil {
		t.Fatal(err)
	} else if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("%d cached hashes for %s, want 1", n, in)
	}
	l.Close()
	if ref, _ := HashInputAsync(ctx, logPath, in).Wait(); ref.XXH3 != marker {
		t.Errorf("unchanged file: xxh3 %s, want the cached %s", ref.XXH3, marker)
	}
	// Any write makes it another file: hashed again, even with the same size and mtime.
	st, _ := os.Stat(in)
	rewriteSameSize(t, in, []byte("weights v2"), st.ModTime())
	want2, _ := HashFile(in)
	if ref, _ := HashInputAsync(ctx, logPath, in).Wait(); ref.XXH3 != want2.XXH3 || ref.XXH3 == marker {
		t.Errorf("rewritten file: xxh3 %s, want %s", ref.XXH3, want2.XXH3)
	}
}

func TestHashInputCacheSkipsFreshFiles(t *testing.T) {
	ctx := context.Background()
	// An hour's window: however slowly a busy machine gets from the write to the hash, the
	// file is still fresh (the 2 s default could be crossed).
	old := racyWindow
	racyWindow = time.Hour
	t.Cleanup(func() { racyWindow = old })
	dir := t.TempDir()
	logPath := filepath.Join(dir, FileName)
	in := filepath.Join(dir, "model.pt")
	os.WriteFile(in, []byte("just written"), 0o644)
	r := sampleRun(t, 8, 1, 1)
	if err := HashInputAsync(ctx, logPath, in).SetInput(r); err != nil {
		t.Fatal(err)
	}
	if len(r.inputCache) != 0 {
		t.Error("a file written a moment ago was marked for the cache")
	}
}

// fakeStream counts how often the quantization's digest is asked for.
type fakeStream struct {
	sum     string
	size    int64
	calls   int
	stopped bool
}

func (f *fakeStream) ContentXXH3() (string, int64, error) { f.calls++; return f.sum, f.size, nil }
func (f *fakeStream) StopHashing()                        { f.stopped = true }

// HashInputStreamed takes the digest from the reads on a cache miss, remembers it like a hash,
// and on the next run finds it in the cache without asking the reads.
func TestHashInputStreamed(t *testing.T) {
	ctx, dir, logPath := cacheTest(t)
	in := filepath.Join(dir, "model.safetensors")
	os.WriteFile(in, []byte("weights"), 0o644)
	want, _ := HashFile(in)
	s := &fakeStream{sum: want.XXH3, size: want.Bytes}
	r := sampleRun(t, 8, 1, 1)
	if err := HashInputStreamed(ctx, logPath, in, s).SetInput(r); err != nil || r.Input.XXH3 != want.XXH3 || r.Input.Bytes != want.Bytes || s.calls != 1 {
		t.Fatalf("streamed input %+v, %v after %d calls; want %+v from one call", r.Input, err, s.calls, want)
	}
	if _, w := RecordOrWarn(ctx, logPath, r); w != "" {
		t.Fatal(w)
	}
	again := &fakeStream{sum: "not asked", size: 1}
	if ref, err := HashInputStreamed(ctx, logPath, in, again).Wait(); err != nil || ref.XXH3 != want.XXH3 || again.calls != 0 || !again.stopped {
		t.Errorf("second run: %+v, %v, %d calls, stopped %v; want the cached %s, no call, the hashing stopped", ref, err, again.calls, again.stopped, want.XXH3)
	}
	if s.stopped {
		t.Error("the first run (a cache miss) stopped the hashing it needed")
	}
}
