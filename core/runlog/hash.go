package runlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"path/filepath"
	"sync"

	"github.com/zeebo/xxh3"

	"github.com/monoquant/monoquant/core/checkpoint/mapped"
)

// HashFile returns the identity of a checkpoint as the run log records it: the XXH3-128 (hex,
// canonical, as `xxhsum -H2` prints it) and size of a file, streamed in 1 MiB reads. A sharded
// checkpoint's index (*.index.json) or a model folder is more than one file: its identity is
// the sha256 of the lines "<name>\t<XXH3-128 of the file>\n" for the index and every shard it
// names, or every file of the folder, sorted by name, and its size their sum.
//
// XXH3, not sha256, because the run log must not cost a quantization: XXH3 hashes at memory
// speed (19 GB/s here against sha256's 1.7 GB/s with SHA-NI), while INT8 quantization runs at
// about 2.5 GB/s of input per core. It guards against mistakes (a changed or different file),
// not adversaries; HashFileSHA256 adds the sha256 when one is wanted (`runs show --sha256`).
func HashFile(path string) (FileRef, error) { return hashFile(context.Background(), path, false) }

// HashFileSHA256 is HashFile with the sha256 too (FileRef.SHA256, the same rule for several
// files with the files' sha256s), both from one read.
func HashFileSHA256(path string) (FileRef, error) { return hashFile(context.Background(), path, true) }

// HashLike hashes path with the digests want has: the XXH3 when want has one, else (a run
// recorded before XXH3) the sha256, so that SameContent can compare the two.
func HashLike(path string, want FileRef) (FileRef, error) {
	return hashFile(context.Background(), path, want.XXH3 == "" && want.SHA256 != "")
}

// hashFile is HashFile (withSHA: HashFileSHA256); the reads stop when ctx is done.
func hashFile(ctx context.Context, path string, withSHA bool) (FileRef, error) {
	base, names, err := members(path)
	if err != nil {
		return FileRef{Path: path}, fmt.Errorf("hashing %s: %w", path, err)
	}
	if names == nil {
		return hashOne(ctx, path, withSHA)
	}
	xs, ss := make([]string, len(names)), make([]string, len(names))
	var n int64
	for i, name := range names {
		ref, err := hashOne(ctx, filepath.Join(base, name), withSHA)
		if err != nil {
			return FileRef{Path: path}, err
		}
		xs[i], ss[i], n = ref.XXH3, ref.SHA256, n+ref.Bytes
	}
	ref := FileRef{Path: path, XXH3: combine(names, xs), Bytes: n}
	if withSHA {
		ref.SHA256 = combine(names, ss)
	}
	return ref, nil
}

// xxh3Hex is the canonical hex form of a finished XXH3-128 hash (32 digits, high half first).
func xxh3Hex(h *xxh3.Hasher) string {
	b := h.Sum128().Bytes()
	return hex.EncodeToString(b[:])
}

// hashOne is the XXH3-128 (and with withSHA the sha256) and size of one file, read from a
// mapping of it (no copy into a buffer), a 4 MiB window at a time whose pages are dropped once
// hashed, so that the resident memory stays one window. Only regular files are hashed (a FIFO
// would block), and a file cut short while it is read gives an error (mapped.ErrChanged).
func hashOne(ctx context.Context, path string, withSHA bool) (FileRef, error) {
	m, err := mapped.Open(path)
	if err != nil {
		return FileRef{Path: path}, fmt.Errorf("hashing %s: %w", path, err)
	}
	defer m.Close()
	x := xxh3.New()
	var s hash.Hash
	if withSHA {
		s = sha256.New()
	}
	const window = 4 << 20
	err = mapped.Guard(path, func() error {
		data := m.Bytes()
		for off := 0; off < len(data); off += window {
			if err := ctx.Err(); err != nil {
				return err
			}
			w := data[off:min(off+window, len(data))]
			x.Write(w)
			if s != nil {
				s.Write(w)
			}
			m.Release(int64(off), int64(len(w)))
		}
		return nil
	})
	if err != nil {
		return FileRef{Path: path}, fmt.Errorf("hashing %s: %w", path, err)
	}
	ref := FileRef{Path: path, XXH3: xxh3Hex(x), Bytes: m.Size()}
	if withSHA {
		ref.SHA256 = hex.EncodeToString(s.Sum(nil))
	}
	return ref, nil
}

// Hashing is a file hash computed in the background, beside the quantization that reads the
// same file, so the log adds no wall time on a machine with a spare core.
type Hashing struct {
	done  chan struct{}
	ref   FileRef
	err   error
	cache []cachedFile // the file hashes Record may remember (HashInputAsync)
	// finish, when set once done is closed, completes the hash at the first Wait (a digest
	// the quantization's own reads computed: HashInputStreamed).
	finish func()
	once   sync.Once
}

// HashFileAsync starts hashing path; Wait returns the result.
func HashFileAsync(path string) *Hashing {
	h := &Hashing{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.ref, h.err = HashFile(path)
	}()
	return h
}

// Hashed is a Hashing already done: a hash computed elsewhere (while the file was written).
func Hashed(ref FileRef) *Hashing {
	h := &Hashing{done: make(chan struct{}), ref: ref}
	close(h.done)
	return h
}

// Wait returns the hash once it is computed.
func (h *Hashing) Wait() (FileRef, error) {
	<-h.done
	h.once.Do(func() {
		if h.finish != nil {
			h.finish()
		}
	})
	return h.ref, h.err
}

// SetInput waits for the hash and makes it the run's input; Record then remembers it in the
// log's hash cache when it was computed here (HashInputAsync).
func (h *Hashing) SetInput(r *Run) error {
	ref, err := h.Wait()
	if err != nil {
		return err
	}
	r.Input, r.inputCache = ref, h.cache
	return nil
}
