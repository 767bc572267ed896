package mapped

import (
	"errors"
	"fmt"
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

// Copy returns a heap copy of n bytes at off, read under Guard.
func (m *File) Copy(path string, off, n int64) ([]byte, error) {
	src, err := m.Slice(off, n)
	if err != nil {
		return nil, err
	}
	dst := make([]byte, len(src))
	if err := Guard(path, func() error { copy(dst, src); return nil }); err != nil {
		return nil, err
	}
	return dst, nil
}

// CopyTo copies len(dst) bytes at off into dst, under Guard.
func (m *File) CopyTo(path string, off int64, dst []byte) error {
	src, err := m.Slice(off, int64(len(dst)))
	if err != nil {
		return err
	}
	return Guard(path, func() error { copy(dst, src); return nil })
}
