package atomicfile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing [off, off+n) to the disk, without waiting.
// The error is ignored on purpose: this is a hint (tmpfs, for one, does not support it);
// Commit's fsync reports any real write error.
func startWriteback(f *os.File, off, n int64) {
	unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// createUnnamed opens an unnamed file in dir, if the system can later give it a name.
func createUnnamed(dir, target string) (*File, bool) {
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, false // the file system does not support it (or the kernel predates it)
	}
	f := os.NewFile(uintptr(fd), target+" (being written)")
	if _, err := os.Stat(procPath(f)); err != nil {
		f.Close() // no /proc: Commit could not link it
		return nil, false
	}
	return &File{File: f, target: target, unnamed: true}, true
}

func procPath(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// link gives an unnamed file a temporary name next to the target and returns it.
func (f *File) link() (string, error) {
	dir, base := filepath.Dir(f.target), filepath.Base(f.target)
	for range 100 {
		tmp := filepath.Join(dir, "."+base+".tmp-"+strconv.FormatUint(rand.Uint64()%1e10, 10))
		err := unix.Linkat(unix.AT_FDCWD, procPath(f.File), unix.AT_FDCWD, tmp, unix.AT_SYMLINK_FOLLOW)
		if err == nil {
			return tmp, nil
		}
		if !errors.Is(err, unix.EEXIST) {
			return "", fmt.Errorf("naming the written file in %s: %w", dir, err)
		}
	}
	return "", fmt.Errorf("naming the written file in %s: no free temporary name", dir)
}
