// Package mapped memory-maps a file read-only, so headers can be parsed and tensors located
// without reading the whole file, and lets callers drop the pages of a range they are done
// with, so the resident memory of a pass over a large file stays about one tensor. Reads of the
// mapping go through Guard or Copy, which turn a truncation under the mapping (SIGBUS) into
// ErrChanged; OpenRegular refuses FIFOs and devices before opening them.
package mapped

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// File is a read-only mapping of a whole file, and the open file itself: Copy and CopyTo read
// with pread(2), so copying a tensor out never maps the file's pages into the process (the
// kernel's fault-around would leave up to 64 KiB around every small tensor resident, counted
// in the process's RSS until Close).
type File struct {
	data []byte
	size int64
	f    *os.File
}

// Open maps path read-only. An empty file gives an empty mapping.
func Open(path string) (*File, error) {
	f, st, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	size := st.Size()
	if size == 0 {
		f.Close()
		return &File{data: []byte{}}, nil
	}
	if int64(int(size)) != size {
		f.Close()
		return nil, fmt.Errorf("%s: %d bytes is too large to map", path, size)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return &File{data: b, size: size, f: f}, nil
}

// Bytes is the whole mapped file. Reading it after Close faults.
func (m *File) Bytes() []byte { return m.data }

// Size is the file's length in bytes.
func (m *File) Size() int64 { return m.size }

// Slice returns data[off:off+n] or an error if the range lies outside the file.
func (m *File) Slice(off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off > m.size || n > m.size-off {
		return nil, fmt.Errorf("range [%d, %d) lies outside the %d-byte file", off, off+n, m.size)
	}
	return m.data[off : off+n : off+n], nil
}

// Release drops the resident pages of a range (MADV_DONTNEED). The data can still be read
// afterwards: the kernel reads it again from the file.
func (m *File) Release(off, n int64) {
	if m.size == 0 || n <= 0 {
		return
	}
	page := int64(unix.Getpagesize())
	start := off &^ (page - 1)
	end := min(off+n, m.size)
	if start >= end {
		return
	}
	unix.Madvise(m.data[start:end], unix.MADV_DONTNEED)
}

// Close unmaps the file. It is safe to call twice.
func (m *File) Close() error {
	if m.data == nil || m.size == 0 {
		m.data = nil
		return nil
	}
	err := unix.Munmap(m.data)
	m.data = nil
	if m.f != nil {
		if cerr := m.f.Close(); err == nil {
			err = cerr
		}
		m.f = nil
	}
	return err
}
