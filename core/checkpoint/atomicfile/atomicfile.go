// Package atomicfile writes a file so that readers see the old file or the complete new one,
// never a torn one: data goes to a temporary file in the target's folder, which is synced and
// renamed over the target, and the folder is synced so the rename survives a crash.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// File is a file being written. Use it as an io.Writer (it is an *os.File underneath, so
// io.Copy and positioned writes work), then Commit or Abort.
type File struct {
	*os.File
	target string
	done   bool
}

// Create starts writing path. The folder must exist and be writable; nothing at path changes
// until Commit.
func Create(path string) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
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
