//go:build !linux

package atomicfile

import (
	"fmt"
	"os"
)

// Off Linux there is no writeback hint (Commit's fsync does all the flushing) and no unnamed
// temporary file (the named fallback runs, and a killed writer leaves it behind).

func startWriteback(f *os.File, off, n int64) {}

func createUnnamed(dir, target string) (*File, bool) { return nil, false }

func (f *File) link() (string, error) {
	return "", fmt.Errorf("atomicfile: unnamed files are not supported here")
}
