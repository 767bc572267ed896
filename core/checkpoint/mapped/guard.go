package mapped

import (
	"errors"
	"fmt"
	"io"
	"runtime/debug"
)

// ErrChanged reports that a mapped file was truncated (or otherwise changed) while it was
// being read: touching a page past its new end raises SIGBUS, which Guard turns into this
// error instead of a crash.
var ErrChanged = errors.New("file changed or truncated while reading")

// Guard runs fn, which reads mapped memory of the file at path, so that a fault on that memory
// (the file shrank under the mapping) returns an error wrapping ErrChanged instead of killing
// the process. Readers parse headers under Guard and never hand out slices of the mapping:
// tensor bytes are copied out under Guard (see Copy), so no caller touches mapped memory
// unguarded. Other panics are not affected.
func Guard(path string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); fault {
				err = fmt.Errorf("%s: %w", path, ErrChanged)
				return
			}
			panic(r)
		}
	}()
	return fn()
}

// Copy returns a heap copy of n bytes at off (see CopyTo).
func (m *File) Copy(path string, off, n int64) ([]byte, error) {
	if _, err := m.Slice(off, n); err != nil {
		return nil, err
	}
	dst := make([]byte, n)
	if err := m.CopyTo(path, off, dst); err != nil {
		return nil, err
	}
	return dst, nil
}

// CopyTo copies len(dst) bytes at off into dst: read from the file (pread) where it is open,
// else from the mapping under Guard. A file cut short meanwhile gives an error wrapping
// ErrChanged either way.
func (m *File) CopyTo(path string, off int64, dst []byte) error {
	src, err := m.Slice(off, int64(len(dst)))
	if err != nil {
		return err
	}
	if m.f != nil {
		n, err := m.f.ReadAt(dst, off)
		if n == len(dst) {
			return nil
		}
		if err == nil || errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: %w", path, ErrChanged)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	return Guard(path, func() error { copy(dst, src); return nil })
}
