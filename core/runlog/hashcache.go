package runlog

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
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

// HashInputAsync returns the sha256 of an input file: from the run log's cache when the file
// is the one hashed before (same device, inode, size, mtime and ctime), else hashed in the
// background; Record then stores the new hash. logPath "" is DefaultPath. A log that cannot be
// read only means the file is hashed.
func HashInputAsync(ctx context.Context, logPath, path string) *Hashing {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	id, ok := statID(abs)
	if ok {
		if sum := cachedHash(ctx, logPath, abs, id); sum != "" {
			h := &Hashing{done: make(chan struct{}), ref: FileRef{Path: abs, SHA256: sum, Bytes: id.size}}
			close(h.done)
			return h
		}
	}
	h := &Hashing{done: make(chan struct{})}
	go func() {
		defer close(h.done)
		h.ref, h.err = HashFile(abs)
		if h.err == nil && ok {
			if after, ok2 := statID(abs); ok2 && after == id && time.Now().UnixNano()-id.ctime > racyWindow.Nanoseconds() {
				h.cache = &id // unchanged while hashed: safe to remember
			}
		}
	}()
	return h
}

func cachedHash(ctx context.Context, logPath, path string, id fileID) string {
	if logPath == "" {
		p, err := DefaultPath()
		if err != nil {
			return ""
		}
		logPath = p
	}
	if _, err := os.Stat(logPath); err != nil {
		return "" // no log yet: nothing cached, and reading must not create one
	}
	// A busy log must not hold up the quantization: the hash is then simply computed.
	l, err := Open(ctx, logPath, BusyTimeout(100*time.Millisecond))
	if err != nil {
		return ""
	}
	defer l.Close()
	var sum string
	err = l.db.QueryRowContext(ctx, `SELECT sha256 FROM file_hashes WHERE path = ? AND dev = ? AND ino = ? AND size = ?
		AND mtime_ns = ? AND ctime_ns = ?`, path, id.dev, id.ino, id.size, id.mtime, id.ctime).Scan(&sum)
	if err != nil {
		return ""
	}
	return sum
}

func storeHash(ctx context.Context, tx *sql.Tx, ref FileRef, id *fileID) error {
	if id == nil || ref.SHA256 == "" {
		return nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO file_hashes (path, dev, ino, size, mtime_ns, ctime_ns, sha256) VALUES (?,?,?,?,?,?,?)
		ON CONFLICT (path) DO UPDATE SET dev = excluded.dev, ino = excluded.ino, size = excluded.size,
		mtime_ns = excluded.mtime_ns, ctime_ns = excluded.ctime_ns, sha256 = excluded.sha256`,
		ref.Path, id.dev, id.ino, id.size, id.mtime, id.ctime, ref.SHA256)
	return err
}
