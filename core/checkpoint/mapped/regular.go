package mapped

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// OpenRegular opens path for reading only if it is a regular file. A FIFO, socket or device
// given as a checkpoint would block forever (a FIFO with no writer) or never end (/dev/zero),
// so it is refused by a stat before opening; the open itself is non-blocking and the opened
// descriptor is checked again, so a file swapped for a FIFO in between is refused too.
func OpenRegular(path string) (*os.File, os.FileInfo, error) {
	if st, err := os.Stat(path); err != nil {
		return nil, nil, err
	} else if !st.Mode().IsRegular() {
		return nil, nil, NotRegular(path, st)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, nil, NotRegular(path, st)
	}
	return f, st, nil
}

// NotRegular is the error for a path that is not a regular file, saying what it is instead.
func NotRegular(path string, st os.FileInfo) error {
	kind := "not a regular file"
	switch m := st.Mode(); {
	case m.IsDir():
		kind = "a directory, not a regular file"
	case m&os.ModeNamedPipe != 0:
		kind = "a FIFO (named pipe), not a regular file"
	case m&os.ModeSocket != 0:
		kind = "a socket, not a regular file"
	case m&os.ModeDevice != 0:
		kind = "a device, not a regular file"
	}
	return fmt.Errorf("%s is %s", path, kind)
}

// ReadRegular reads a whole regular file of at most max bytes (see OpenRegular). A file that
// grows past max while it is read is refused, never read without bound.
func ReadRegular(path string, max int64) ([]byte, error) {
	f, st, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st.Size() > max {
		return nil, fmt.Errorf("%s is %d bytes (limit %d)", path, st.Size(), max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s grew past %d bytes while it was read", path, max)
	}
	return b, nil
}
