package runlog

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// fileID is what says "the same file, unchanged": a write changes ctime, which no user call
// can set back (git's index relies on the same fields).
type fileID struct {
	dev, ino, size, mtime, ctime int64
}

// racyWindow: a file changed this recently is not cached. File times tick with the kernel's
// coarse clock (milliseconds), so two writes of the same size inside one tick look alike;
// git's index has the same rule ("racy git").
var racyWindow = 2 * time.Second

// HashInputAsync returns the identity (HashFile: XXH3-128) of an input file: from the run log's cache when the file
// is the one hashed before (same device, inode, size, mtime and ctime), else hashed in the
// background; Record then stores the new hash. logPath "" is DefaultPath. A log that cannot be
// read only means the file is hashed. A sharded checkpoint's index or a model folder gets the
// identity of all its files (HashFile), each file cached on its own.
func HashInputAsync(ctx context.Context, logPath, path string) *Hashing {
	h := &Hashing{done: make(chan struct{})}
	// All of it, the cache lookup (an open of the log: milliseconds) included, runs beside the
	// quantization, which starts at once.
	go func() {
		defer close(h.done)
		h.ref, h.cache, h.err = hashInput(ctx, logPath, path)
	}()
	return h
}

// StreamedDigest is a reader that computes the XXH3-128 of its whole file from the reads a
// quantization makes of it (safetensors.File after HashWhileReading): ContentXXH3 gives it
// once the reads are done, reading only what they did not cover; StopHashing ends the hashing
// when the digest is known otherwise (the log's cache).
type StreamedDigest interface {
	ContentXXH3() (sum string, size int64, err error)
	StopHashing()
}

// HashInputStreamed is HashInputAsync for one file that the quantization reads through s: the
// log's cache is looked up beside the quantization as there, but on a miss the identity is
// taken from s when Wait (SetInput) asks for it, after the quantization, instead of from a
// second read of the file. A sharded checkpoint or a folder goes as in HashInputAsync.
func HashInputStreamed(ctx context.Context, logPath, path string, s StreamedDigest) *Hashing {
	h := &Hashing{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		abs, err := filepath.Abs(path)
		if err != nil {
			abs = path
		}
		_, names, err := members(abs)
		if err != nil || names != nil {
			s.StopHashing()
			h.ref, h.cache, h.err = hashInput(ctx, logPath, path)
			return
		}
		id, ok := statID(abs)
		if sums := cachedHashes(ctx, logPath, []string{abs}, []fileID{id}, []bool{ok}); sums[0] != "" {
			s.StopHashing() // the reads made so far hashed a little for nothing; the rest will not
			h.ref = FileRef{Path: abs, XXH3: sums[0], Bytes: id.size}
			return
		}
		h.finish = func() {
			sum, n, err := s.ContentXXH3()
			if err != nil {
				h.ref, h.err = FileRef{Path: abs}, fmt.Errorf("hashing %s: %w", abs, err)
				return
			}
			h.ref = FileRef{Path: abs, XXH3: sum, Bytes: n}
			if after, same := statID(abs); ok && same && after == id && after.size == n && time.Now().UnixNano()-id.ctime > racyWindow.Nanoseconds() {
				h.cache = []cachedFile{{ref: h.ref, id: id}} // unchanged while read: safe to remember
			}
		}
	}()
	return h
}

// hashInput is HashInputAsync's work: the identity of path and the file hashes to cache.
func hashInput(ctx context.Context, logPath, path string) (FileRef, []cachedFile, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	base, names, err := members(abs)
	if err != nil {
		return FileRef{Path: abs}, nil, fmt.Errorf("hashing %s: %w", abs, err)
	}
	files := []string{abs}
	if names != nil {
		files = make([]string, len(names))
		for i, n := range names {
			files[i] = filepath.Join(base, n)
		}
	}
	ids := make([]fileID, len(files))
	oks := make([]bool, len(files))
	for i, f := range files {
		ids[i], oks[i] = statID(f)
	}
	sums := cachedHashes(ctx, logPath, files, ids, oks)
	var cache []cachedFile
	for i, f := range files {
		if sums[i] != "" {
			continue
		}
		ref, err := hashOne(ctx, f, false)
		if err != nil {
			return FileRef{Path: abs}, nil, err
		}
		sums[i] = ref.XXH3
		if !oks[i] {
			ids[i].size = ref.Bytes
			continue
		}
		if after, ok := statID(f); ok && after == ids[i] && time.Now().UnixNano()-ids[i].ctime > racyWindow.Nanoseconds() {
			cache = append(cache, cachedFile{ref: ref, id: ids[i]}) // unchanged while hashed: safe to remember
		}
	}
	var n int64
	for i := range files {
		n += ids[i].size
	}
	ref := FileRef{Path: abs, XXH3: sums[0], Bytes: n}
	if names != nil {
		ref.XXH3 = combine(names, sums)
	}
	return ref, cache, nil
}

// cachedFile is a file hash Record may remember in the log's cache.
type cachedFile struct {
	ref FileRef
	id  fileID
}

// cachedHashes looks files up in the log's hash cache (one open of the log): the cached XXH3
// of each file whose identity matches (oks[i]: its stat worked), "" for the others.
func cachedHashes(ctx context.Context, logPath string, files []string, ids []fileID, oks []bool) []string {
	sums := make([]string, len(files))
	if !slices.Contains(oks, true) {
		return sums
	}
	if logPath == "" {
		p, err := DefaultPath()
		if err != nil {
			return sums
		}
		logPath = p
	}
	if _, err := os.Stat(logPath); err != nil {
		return sums // no log yet: nothing cached, and reading must not create one
	}
	// A busy log must not hold up the quantization: the hash is then simply computed.
	l, err := Open(ctx, logPath, BusyTimeout(100*time.Millisecond))
	if err != nil {
		return sums
	}
	defer l.Close()
	for i, f := range files {
		if !oks[i] {
			continue
		}
		id := ids[i]
		var sum string
		if l.db.QueryRowContext(ctx, `SELECT xxh3 FROM file_hashes WHERE path = ? AND dev = ? AND ino = ? AND size = ?
			AND mtime_ns = ? AND ctime_ns = ? AND xxh3 != ''`, f, id.dev, id.ino, id.size, id.mtime, id.ctime).Scan(&sum) == nil {
			sums[i] = sum
		}
	}
	return sums
}

// storeHash remembers a file's digests by its identity; a digest not given ("") keeps the one
// cached for the same unchanged file.
func storeHash(ctx context.Context, tx *sql.Tx, ref FileRef, id fileID) error {
	if ref.SHA256 == "" && ref.XXH3 == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO file_hashes (path, dev, ino, size, mtime_ns, ctime_ns, sha256, xxh3) VALUES (?,?,?,?,?,?,?,?)
		ON CONFLICT (path) DO UPDATE SET
		sha256 = CASE WHEN excluded.sha256 != '' THEN excluded.sha256 WHEN `+sameFile+` THEN file_hashes.sha256 ELSE '' END,
		xxh3 = CASE WHEN excluded.xxh3 != '' THEN excluded.xxh3 WHEN `+sameFile+` THEN file_hashes.xxh3 ELSE '' END,
		dev = excluded.dev, ino = excluded.ino, size = excluded.size, mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns`,
		ref.Path, id.dev, id.ino, id.size, id.mtime, id.ctime, ref.SHA256, ref.XXH3)
	return err
}

// sameFile: the cached row is the file being stored, unchanged (SQL, in an upsert).
const sameFile = `file_hashes.dev = excluded.dev AND file_hashes.ino = excluded.ino AND file_hashes.size = excluded.size
		AND file_hashes.mtime_ns = excluded.mtime_ns AND file_hashes.ctime_ns = excluded.ctime_ns`
