package checkpoint

import (
	"bytes"
	"errors"
	"testing"
)

// windows is a RangedReader over one tensor's bytes that records what was read and released.
type windows struct {
	data              []byte
	reads, releases   [][2]int64
	residentMax, live int64
	failAt            int64
}

func (w *windows) ReadRange(name string, off int64, dst []byte) error {
	if w.failAt > 0 && off >= w.failAt {
		return errors.New("read failed")
	}
	copy(dst, w.data[off:])
	w.reads = append(w.reads, [2]int64{off, int64(len(dst))})
	w.live += int64(len(dst))
	w.residentMax = max(w.residentMax, w.live)
	return nil
}

func (w *windows) ReleaseRange(name string, off, n int64) {
	w.releases = append(w.releases, [2]int64{off, n})
	w.live -= n
}

func TestReadReleasing(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size, off int
	}{
		{"empty", 0, 0},
		{"one byte", 1, 0},
		{"one window", ReleasingWindow, 0},
		{"two and a bit", 2*ReleasingWindow + 3, 0},
		{"from an offset", 2*ReleasingWindow + 3, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := make([]byte, tc.size+tc.off)
			for i := range src {
				src[i] = byte(i * 7)
			}
			w := &windows{data: src}
			dst := make([]byte, tc.size)
			if err := ReadReleasing(w, "t", int64(tc.off), dst); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst, src[tc.off:]) {
				t.Errorf("ReadReleasing(size %d, off %d) copied other bytes", tc.size, tc.off)
			}
			if len(w.reads) != len(w.releases) {
				t.Errorf("%d windows read, %d released, want every window released", len(w.reads), len(w.releases))
			}
			for i := range w.reads {
				if w.reads[i] != w.releases[i] {
					t.Errorf("window %d: read %v, released %v", i, w.reads[i], w.releases[i])
				}
			}
			if w.residentMax > ReleasingWindow {
				t.Errorf("%d bytes of the file were resident at once, want at most one window (%d)", w.residentMax, ReleasingWindow)
			}
		})
	}
	w := &windows{data: make([]byte, 3*ReleasingWindow), failAt: ReleasingWindow}
	if err := ReadReleasing(w, "t", 0, make([]byte, 3*ReleasingWindow)); err == nil || err.Error() != "read failed" {
		t.Errorf("ReadReleasing with a failing read = %v, want the read's error", err)
	}
}
