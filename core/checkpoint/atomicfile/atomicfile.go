// Package atomicfile writes a file so that readers see the old file or the complete new one,
// never a torn one: data goes to a temporary file in the target's folder, which is synced and
// renamed over the target, and the folder is synced so the rename survives a crash.
//
// The temporary file is unnamed while it is written (O_TMPFILE): a writer that is killed, even
// with SIGKILL, or a machine that loses power leaves nothing behind in the folder, since the
// kernel frees an inode no name points to. Only at Commit does it get a name (".<target>.tmp-*",
// linked through /proc/self/fd) and that name is at once renamed over the target. Where the
// file system or the system cannot do that (no O_TMPFILE support, no /proc), the file is a
// named ".<target>.tmp-*" from the start, and a killed writer leaves it behind.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// File is a file being written. Use it as an io.Writer, then Commit or Abort.
//
// Sequential writes are handed to the disk as they go (sync_file_range(SYNC_FILE_RANGE_WRITE)
// on each window of writebackWindow bytes) instead of piling up as dirty pages until Commit's
// fsync: the disk works while the caller computes what comes next, and the fsync finds little
// left to do. Nothing waits for that writeback before Commit, so a caller faster than the disk
// is never slowed below it.
type File struct {
	*os.File
	target  string
	done    bool
	unnamed bool // O_TMPFILE: no name until Commit links one

	written int64 // bytes written through Write, in order
	started int64 // writeback has been started for [0, started)
}

// writebackWindow is how much written data is handed to the disk at a time.
const writebackWindow = 32 << 20

// Write appends p, starting writeback of each full window. A large p (one big tensor) is
// written window by window so its writeback starts while the rest is still being copied.
func (f *File) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := f.File.Write(p[done:min(len(p), done+writebackWindow)])
		done += n
		f.written += int64(n)
		if f.written-f.started >= writebackWindow {
			startWriteback(f.File, f.started, f.written-f.started)
			f.started = f.written
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// Create starts writing path. The folder must exist and be writable; nothing at path changes
// until Commit.
func Create(path string) (*File, error) {
	dir, base := filepath.Dir(path), filepath.Base(path)
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("output folder %s: %w", dir, err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("output folder %s is not a folder", dir)
	}
	if !forceNamed {
		if f, ok := createUnnamed(dir, path); ok {
			return f, nil
		}
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("cannot write in %s: %w", dir, err)
	}
	pending.Store(f.Name(), struct{}{})
	return &File{File: f, target: path}, nil
}

// Unnamed reports whether files written in dir stay unnamed until Commit, so that a killed
// writer leaves nothing behind there (see the package comment).
func Unnamed(dir string) bool {
	if forceNamed {
		return false
	}
	f, ok := createUnnamed(dir, filepath.Join(dir, "probe"))
	if ok {
		f.Close()
	}
	return ok
}

// forceNamed makes Create use a named temporary file, as on systems without O_TMPFILE; tests
// set it to cover that path.
var forceNamed = false

// Commit syncs the data, renames the temporary file over the target and syncs the folder.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("%s: already committed or aborted", f.target)
	}
	f.done = true
	if err := f.Sync(); err != nil {
		f.discard()
		return fmt.Errorf("sync %s: %w", f.target, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.discard()
		return err
	}
	// Naming the file, the rename and the folder's sync run under the gate, so Stop either
	// waits for them or keeps them from starting (a Commit kept out blocks until the process
	// exits, having left no name behind).
	gate.RLock()
	defer gate.RUnlock()
	tmp := f.Name()
	if f.unnamed {
		var err error
		if tmp, err = f.link(); err != nil {
			f.Close()
			return err
		}
		pending.Store(tmp, struct{}{})
	}
	defer pending.Delete(tmp)
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close %s: %w", f.target, err)
	}
	if err := os.Rename(tmp, f.target); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename into %s: %w", f.target, err)
	}
	commits.Add(1)
	if d, err := os.Open(filepath.Dir(f.target)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Abort drops the temporary file. It is safe to call after Commit, where it does nothing.
func (f *File) Abort() error {
	if f.done {
		return nil
	}
	f.done = true
	return f.discard()
}

// discard closes the file and removes its temporary name, if it has one.
func (f *File) discard() error {
	f.Close()
	if f.unnamed {
		return nil // the kernel frees it with the last descriptor
	}
	pending.Delete(f.Name())
	return os.Remove(f.Name())
}

// pending holds the temporary names of files being written (named temporaries only: unnamed
// ones vanish with the process).
var pending sync.Map

var (
	// gate is held shared by each Commit's rename and for good by Stop.
	gate sync.RWMutex
	// commits counts the Commits whose rename put a file in place, in this process.
	commits atomic.Int64
)

// Commits returns how many files Commit has put in place in this process so far; a caller
// compares two readings to tell whether an interrupted job left any output.
func Commits() int64 { return commits.Load() }

// Stop is for a process that must exit at once (a second Ctrl-C, or a job that did not notice
// SIGTERM in time): it waits for a rename already under way, keeps every later Commit from
// renaming (they block until the process exits), removes the temporary file of every write
// still in progress, and returns Commits(). Stopping therefore never leaves a temporary file
// behind, and the count says truthfully whether any output was put in place. Call it once,
// just before os.Exit; nothing in the process can commit afterwards.
func Stop() int64 {
	gate.Lock()
	pending.Range(func(k, _ any) bool {
		os.Remove(k.(string))
		pending.Delete(k)
		return true
	})
	return commits.Load()
}
