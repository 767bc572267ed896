package runlog

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// HashFile returns the identity of a checkpoint: the sha256 (hex) and size of a file, streamed
// in 1 MiB reads. A sharded checkpoint's index (*.index.json) or a model folder is more than one
// file: its sha256 is that of the lines "<name>\t<sha256 of the file>\n" for the index and
// every shard it names, or every file of the folder, sorted by name, and its size their sum.
func HashFile(path string) (FileRef, error) {
	base, names, err := members(path)
	if err != nil {
		return FileRef{Path: path}, fmt.Errorf("hashing %s: %w", path, err)
	}
	if names == nil {
		return hashOne(path)
	}
	sums := make([]string, len(names))
	var n int64
	for i, name := range names {
		ref, err := hashOne(filepath.Join(base, name))
		if err != nil {
			return FileRef{Path: path}, err
		}
		sums[i], n = ref.SHA256, n+ref.Bytes
	}
	return FileRef{Path: path, SHA256: combine(names, sums), Bytes: n}, nil
}

// hashOne is the sha256 and size of one file.
func hashOne(path string) (FileRef, error) {
	f, err := os.Open(path)
	if err != nil {
		return FileRef{Path: path}, fmt.Errorf("hashing %s: %w", path, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
	if err != nil {
		return FileRef{Path: path}, fmt.Errorf("hashing %s: %w", path, err)
	}
	return FileRef{Path: path, SHA256: hex.EncodeToString(h.Sum(nil)), Bytes: n}, nil
}

// Hashing is a file hash computed in the background, beside the quantization that reads the
// same file, so the log adds no wall time on a machine with a spare core.
type Hashing struct {
	done  chan struct{}
	ref   FileRef
	err   error
	cache []cachedFile // the file hashes Record may remember (HashInputAsync)
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
