package model

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/tensor"
)

// memCheckpoint is a checkpoint held in memory: the in-memory Model's tensors, and the
// tensors of a quantized or dequantized Result. It implements checkpoint.Reader.
type memCheckpoint struct {
	entries     []checkpoint.Entry
	index       map[string]int
	data        [][]byte
	metadata    map[string]string
	moduleTypes map[string]string
	// releases, when set, counts the Release calls per tensor (Model.CountReleases).
	releases atomic.Pointer[releaseCount]
}

// releaseCount counts the Release calls of each tensor of a memCheckpoint; a tensor that has had
// readers of them is given back: none of the readers reads it again, so its memory may go.
type releaseCount struct {
	readers int32
	counts  []atomic.Int32
	mu      sync.Mutex
	back    []string      // given back and not yet taken
	tick    chan struct{} // a Release happened (capacity 1: a wake-up, not a count)
	stalled bool          // a wait gave up: the other readers stopped releasing
}

// waitBack waits until tensor i is given back, as long as the other readers keep releasing:
// a reader that releases nothing for patience is taken to have stopped, and no later call
// waits. It returns early when ctx is done.
func (rc *releaseCount) waitBack(ctx context.Context, i int, patience time.Duration) {
	if rc.stalled {
		return
	}
	t := time.NewTimer(patience)
	defer t.Stop()
	for rc.counts[i].Load() < rc.readers {
		select {
		case <-rc.tick:
			if !t.Stop() {
				<-t.C
			}
			t.Reset(patience)
		case <-t.C:
			rc.stalled = true
			return
		case <-ctx.Done():
			return
		}
	}
}

// take returns the tensors given back since the last take.
func (rc *releaseCount) take() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := rc.back
	rc.back = nil
	return out
}

func newMemCheckpoint() *memCheckpoint {
	return &memCheckpoint{index: map[string]int{}, metadata: map[string]string{}}
}

func (m *memCheckpoint) add(name string, t *tensor.Tensor) error {
	if name == "" {
		return fmt.Errorf("a tensor needs a name")
	}
	if t == nil {
		return fmt.Errorf("tensor %q is nil", name)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("tensor %q: %w", name, err)
	}
	if _, dup := m.index[name]; dup {
		return fmt.Errorf("tensor %q is already in the model", name)
	}
	m.index[name] = len(m.entries)
	m.entries = append(m.entries, checkpoint.Entry{Name: name, DType: t.DType, Shape: append([]int(nil), t.Shape...)})
	m.data = append(m.data, t.Data)
	return nil
}

func (m *memCheckpoint) Entries() []checkpoint.Entry { return m.entries }

func (m *memCheckpoint) Tensor(name string) (*tensor.Tensor, error) {
	i, ok := m.index[name]
	if !ok {
		return nil, fmt.Errorf("no tensor %q", name)
	}
	e := m.entries[i]
	return &tensor.Tensor{DType: e.DType, Shape: append([]int(nil), e.Shape...), Data: m.data[i]}, nil
}

// Release counts the call when the model counts releases (CountReleases); the memory itself is
// the caller's.
func (m *memCheckpoint) Release(name string) {
	rc := m.releases.Load()
	if rc == nil {
		return
	}
	i, ok := m.index[name]
	if !ok {
		return
	}
	if rc.counts[i].Add(1) == rc.readers {
		rc.mu.Lock()
		rc.back = append(rc.back, name)
		rc.mu.Unlock()
	}
	select {
	case rc.tick <- struct{}{}:
	default:
	}
}

func (m *memCheckpoint) Metadata() map[string]string    { return m.metadata }
func (m *memCheckpoint) ModuleTypes() map[string]string { return m.moduleTypes }
func (m *memCheckpoint) Close() error                   { return nil }

// ReadRange copies the bytes [off, off+len(dst)) of a tensor into dst (checkpoint.RangeReader),
// so that a large in-memory tensor is quantized in streamed blocks, as a file's would be.
func (m *memCheckpoint) ReadRange(name string, off int64, dst []byte) error {
	i, ok := m.index[name]
	if !ok {
		return fmt.Errorf("no tensor %q", name)
	}
	d := m.data[i]
	if off < 0 || off > int64(len(d)) || int64(len(dst)) > int64(len(d))-off {
		return fmt.Errorf("range [%d, %d) is outside the %d bytes of tensor %q", off, off+int64(len(dst)), len(d), name)
	}
	copy(dst, d[off:])
	return nil
}

// ViewRange returns the bytes [off, off+n) of a tensor without copying them (rangeViewer): the
// memory is the caller's and the quantization only reads it, as it reads Tensor's Data.
func (m *memCheckpoint) ViewRange(name string, off, n int64) ([]byte, error) {
	i, ok := m.index[name]
	if !ok {
		return nil, fmt.Errorf("no tensor %q", name)
	}
	d := m.data[i]
	if off < 0 || n < 0 || off > int64(len(d)) || n > int64(len(d))-off {
		return nil, fmt.Errorf("range [%d, %d) is outside the %d bytes of tensor %q", off, off+n, len(d), name)
	}
	return d[off : off+n : off+n], nil
}

// ReleaseRange does nothing: the memory is the caller's (checkpoint.RangeReleaser).
func (m *memCheckpoint) ReleaseRange(string, int64, int64) {}

// memWriter collects a written checkpoint into a memCheckpoint. Each tensor's bytes are copied
// into its output buffer: the caller's (QuantizeInto: a buffer per declared tensor, so that the
// result is written straight into memory the caller owns) or one allocated here. A tensor may
// come in parts (checkpoint.PartWriter), each copied at its place, so that a large tensor is
// never held twice.
type memWriter struct {
	out      *memCheckpoint
	declared []checkpoint.Entry
	bufs     [][]byte // the output buffer per declared tensor (nil: allocate one when needed)
	index    map[string]int
	next     int
	filled   int64  // bytes of declared[next] written so far by WritePart
	cur      []byte // declared[next]'s buffer while it is written in parts
	done     bool
}

func newMemWriter(entries []checkpoint.Entry, metadata map[string]string) *memWriter {
	out := newMemCheckpoint()
	out.metadata = maps.Clone(metadata)
	if out.metadata == nil {
		out.metadata = map[string]string{}
	}
	index := make(map[string]int, len(entries))
	for i, e := range entries {
		index[e.Name] = i
	}
	return &memWriter{out: out, declared: entries, bufs: make([][]byte, len(entries)), index: index}
}

// checkNext checks that name is the next declared tensor and returns its entry and size.
func (w *memWriter) checkNext(name string) (checkpoint.Entry, int64, error) {
	if w.done {
		return checkpoint.Entry{}, 0, fmt.Errorf("write of %q after Commit", name)
	}
	if w.next >= len(w.declared) {
		return checkpoint.Entry{}, 0, fmt.Errorf("write of %q: all %d declared tensors are written", name, len(w.declared))
	}
	e := w.declared[w.next]
	if e.Name != name {
		return checkpoint.Entry{}, 0, fmt.Errorf("write of %q out of order: %q comes next", name, e.Name)
	}
	return e, entryBytes(e.DType, e.Shape), nil
}

// buffer is declared tensor i's output memory: the caller's buffer, or a new one.
func (w *memWriter) buffer(i int, size int64) []byte {
	if w.bufs[i] != nil {
		return w.bufs[i][:size]
	}
	return make([]byte, size)
}

func (w *memWriter) Write(name string, data []byte) error {
	if w.cur != nil {
		return fmt.Errorf("write of %q while %q is written in parts (%d bytes so far)", name, w.declared[w.next].Name, w.filled)
	}
	e, size, err := w.checkNext(name)
	if err != nil {
		return err
	}
	if int64(len(data)) != size {
		return fmt.Errorf("write of %q: %d bytes, the tensor holds %d", name, len(data), size)
	}
	buf := w.buffer(w.next, size)
	if !sameMemory(buf, data) {
		copy(buf, data)
	}
	return w.finish(name, e, buf)
}

// WritePart copies part to its place in the next declared tensor (checkpoint.PartWriter).
func (w *memWriter) WritePart(name string, part []byte) error {
	e, size, err := w.checkNext(name)
	if err != nil {
		return err
	}
	if w.cur == nil {
		w.cur, w.filled = w.buffer(w.next, size), 0
	}
	if int64(len(part)) > size-w.filled {
		return fmt.Errorf("part of %q: %d bytes after %d of %d", name, len(part), w.filled, size)
	}
	if dst := w.cur[w.filled:]; !sameMemory(dst, part) {
		copy(dst, part)
	}
	w.filled += int64(len(part))
	if w.filled < size {
		return nil
	}
	buf := w.cur
	w.cur, w.filled = nil, 0
	return w.finish(name, e, buf)
}

func (w *memWriter) finish(name string, e checkpoint.Entry, buf []byte) error {
	if err := w.out.add(name, &tensor.Tensor{DType: e.DType, Shape: e.Shape, Data: buf}); err != nil {
		return err
	}
	w.next++
	return nil
}

func (w *memWriter) Commit() error {
	if w.cur != nil {
		return fmt.Errorf("commit with %q written in part (%d bytes)", w.declared[w.next].Name, w.filled)
	}
	if w.next != len(w.declared) {
		return fmt.Errorf("commit after %d of %d declared tensors", w.next, len(w.declared))
	}
	w.done = true
	return nil
}

func (w *memWriter) Abort() error { return nil }

// sameMemory reports whether b starts where a does: a tensor the engine quantized in place.
func sameMemory(a, b []byte) bool {
	return len(a) > 0 && len(b) > 0 && &a[0] == &b[0]
}
