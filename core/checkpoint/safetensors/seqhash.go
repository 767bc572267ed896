package safetensors

import (
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/zeebo/xxh3"
)

// seqHash is the XXH3-128 of a whole file computed from the bytes the File's reads copy out
// anyway, so that the run log identifies an input without reading it a second time. The file is
// hashed in order: a read at the point hashed so far continues it, a read past it first hashes
// the bytes in between (read from the file), and a read of bytes already hashed (a tensor read
// twice, or out of order) adds nothing. ContentXXH3 hashes what no read covered, to the end.
// So the digest is always that of the whole file, whatever the reads; reads in file order (the
// file pipeline's) cost only the hashing of bytes already in the cache.
type seqHash struct {
	mu   sync.Mutex
	h    *xxh3.Hasher
	next int64 // bytes [0, next) are hashed
	// stopped: StopHashing came (the digest was known elsewhere); reads no longer hash.
	stopped bool
}

// gapWindow bounds the buffer that reads a skipped range to hash it.
const gapWindow = 4 << 20

// HashWhileReading makes the File compute the XXH3-128 of the whole file from its reads (see
// ContentXXH3); it hashes the header now. Calling it again does nothing.
func (f *File) HashWhileReading() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		return fmt.Errorf("safetensors %s: file is closed", f.path)
	}
	if f.seq != nil {
		return nil
	}
	s := &seqHash{h: xxh3.New()}
	if err := s.upTo(f, f.hdr.DataStart); err != nil {
		return fmt.Errorf("safetensors %s: %w", f.path, err)
	}
	f.seq = s
	return nil
}

// ContentXXH3 is the XXH3-128 (canonical hex, 32 digits, as `xxhsum -H2` prints it) and size of
// the whole file, after HashWhileReading: what the reads did not cover is read and hashed now.
// A file changed or cut short under the reads gives an error (mapped.ErrChanged).
func (f *File) ContentXXH3() (string, int64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.seq == nil {
		return "", 0, fmt.Errorf("safetensors %s: not hashing (HashWhileReading)", f.path)
	}
	if f.m == nil {
		return "", 0, fmt.Errorf("safetensors %s: file is closed", f.path)
	}
	s := f.seq
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return "", 0, fmt.Errorf("safetensors %s: hashing was stopped (StopHashing)", f.path)
	}
	if err := s.upTo(f, f.m.Size()); err != nil {
		return "", 0, fmt.Errorf("safetensors %s: %w", f.path, err)
	}
	return xxh3Hex(s.h), s.next, nil
}

// xxh3Hex is the canonical hex form of an XXH3-128 hash so far (32 digits, high half first, as
// `xxhsum -H2` prints it).
func xxh3Hex(h *xxh3.Hasher) string {
	b := h.Sum128().Bytes()
	return hex.EncodeToString(b[:])
}

// StopHashing ends HashWhileReading: the reads from now on are not hashed (the run log found
// the file's digest in its cache). ContentXXH3 then fails.
func (f *File) StopHashing() {
	f.mu.RLock()
	s := f.seq
	f.mu.RUnlock()
	if s == nil {
		return
	}
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
}

// saw adds the bytes b a read copied from file offset off (nil s: not hashing).
func (s *seqHash) saw(f *File, off int64, b []byte) error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	end := off + int64(len(b))
	if end <= s.next {
		return nil // hashed already
	}
	if off > s.next {
		if err := s.upTo(f, off); err != nil {
			return err
		}
	}
	s.h.Write(b[s.next-off:])
	s.next = end
	return nil
}

// upTo reads and hashes the file's bytes [next, end) (under s.mu, or before s is shared).
func (s *seqHash) upTo(f *File, end int64) error {
	if s.next >= end {
		return nil
	}
	buf := make([]byte, min(end-s.next, gapWindow))
	for s.next < end {
		part := buf[:min(int64(len(buf)), end-s.next)]
		if err := f.m.CopyTo(f.path, s.next, part); err != nil {
			return err
		}
		s.h.Write(part)
		s.next += int64(len(part))
	}
	return nil
}
