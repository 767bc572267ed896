// Package atomicfile writes a file so that readers see the old file or the complete new one,
// never a torn one: data goes to a temporary file in the target's folder, which is synced and
// renamed over the target, and the folder is synced so the rename survives a crash.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
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
	target string
	done   bool

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
			// The error is ignored on purpose: this is a hint (tmpfs, for one, does not support
			// it); Commit's fsync reports any real write error.
			unix.SyncFileRange(int(f.Fd()), f.started, f.written-f.started, unix.SYNC_FILE_RANGE_WRITE)
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
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("cannot write in %s: %w", dir, err)
	}
	return &File{File: f, target: path}, nil
}

// Commit syncs the data, renames the temporary file over the target and syncs the folder.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("%s: already committed or aborted", f.target)
	}
	f.done = true
	tmp := f.Name()
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("sync %s: %w", f.target, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("close %s: %w", f.target, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, f.target); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rename into %s: %w", f.target, err)
	}
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
	f.Close()
	return os.Remove(f.Name())
}
