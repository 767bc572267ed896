// Package blocks reads tensors of a checkpoint a window at a time and sums SQNR energies block
// by block, so that checks over two checkpoints (a quantized file against its input, compare)
// never hold a float32 copy, or every mapped page, of a large tensor at once.
package blocks

import (
	"bytes"
	"fmt"
	"math"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// ReleaseEvery is how many bytes of one tensor a stream reads between two releases of its
// pages (a variable so that tests can make it small).
var ReleaseEvery = 64 << 20

// Stream reads one tensor of a reader front to back without holding it whole. A reader that
// can read and release ranges (checkpoint.RangeReader and RangeReleaser: safetensors) is read a
// window at a time into a reused buffer, each window's pages released once copied. Any other
// reader gives the tensor whole; then every ReleaseEvery bytes the stream releases the tensor's
// pages (which drops the pages read so far) and fetches it again, since data is valid only until
// Release. For a mapped reader the new view costs nothing; a reader that returns copies (a
// strided or big-endian .pt tensor) has nothing to release, so after the first fetch shows a new
// copy its data is kept as it is.
type Stream struct {
	DType tensor.DType
	Shape []int

	r        checkpoint.Reader
	ranges   checkpoint.RangedReader // nil: whole-tensor reads
	name     string
	size     int            // bytes
	t        *tensor.Tensor // whole-tensor reads
	buf      []byte         // ranged reads
	released int            // offset of the last release
	copies   bool           // the reader copies: keep t
}

// Open starts reading tensor info.Name of r, which the reader lists as info (its entry).
func Open(r checkpoint.Reader, info tensor.Info) (*Stream, error) {
	s := &Stream{DType: info.DType, Shape: info.Shape, r: r, name: info.Name}
	n := tensor.NumElements(info.Shape)
	if !info.DType.Valid() || n < 0 || n > math.MaxInt/info.DType.Size() {
		return nil, fmt.Errorf("tensor %q: invalid dtype %v or shape %v", info.Name, info.DType, info.Shape)
	}
	s.size = n * info.DType.Size()
	if rr, ok := r.(checkpoint.RangedReader); ok {
		s.ranges = rr
		return s, nil
	}
	t, err := r.Tensor(info.Name)
	if err != nil {
		return nil, err
	}
	if err := t.Validate(); err != nil {
		r.Release(info.Name)
		return nil, fmt.Errorf("tensor %q: %w", info.Name, err)
	}
	if t.DType != info.DType || len(t.Data) != s.size {
		r.Release(info.Name)
		return nil, fmt.Errorf("tensor %q is %v %v, the checkpoint listed it as %v %v", info.Name, t.DType, t.Shape, info.DType, info.Shape)
	}
	s.t = t
	return s, nil
}

// Len is the number of values.
func (s *Stream) Len() int { return s.size / s.DType.Size() }

// Bytes returns the tensor's bytes [off, end); off must not decrease from call to call, and
// the slice is valid until the next call.
func (s *Stream) Bytes(off, end int) ([]byte, error) {
	if off < 0 || end < off || end > s.size {
		return nil, fmt.Errorf("tensor %q: bytes [%d, %d) are outside its %d", s.name, off, end, s.size)
	}
	if s.ranges != nil {
		if cap(s.buf) < end-off {
			s.buf = make([]byte, end-off)
		}
		b := s.buf[:end-off]
		if err := s.ranges.ReadRange(s.name, int64(off), b); err != nil {
			return nil, err
		}
		s.ranges.ReleaseRange(s.name, int64(off), int64(end-off))
		return b, nil
	}
	if !s.copies && off-s.released >= ReleaseEvery {
		s.r.Release(s.name)
		t, err := s.r.Tensor(s.name)
		if err != nil {
			return nil, err
		}
		if len(t.Data) != len(s.t.Data) {
			return nil, fmt.Errorf("tensor %q changed size while it was read", s.name)
		}
		s.copies = len(t.Data) > 0 && &t.Data[0] != &s.t.Data[0]
		s.t, s.released = t, off
	}
	return s.t.Data[off:end], nil
}

// Close releases the tensor's pages.
func (s *Stream) Close() { s.r.Release(s.name) }

// Equal reports whether two tensors hold the same bytes, compared ReleaseEvery bytes at
// a time so that neither is resident whole. A read error is returned through wrapA or wrapB,
// after the stream it came from.
func Equal(a, b *Stream, wrapA, wrapB func(error) error) (bool, error) {
	n := a.size
	if b.size != n {
		return false, nil
	}
	step := min(ReleaseEvery, 8<<20) // the ranged reads' buffers
	for off := 0; off < n; off += step {
		end := min(off+step, n)
		x, err := a.Bytes(off, end)
		if err != nil {
			return false, wrapA(err)
		}
		y, err := b.Bytes(off, end)
		if err != nil {
			return false, wrapB(err)
		}
		if !bytes.Equal(x, y) {
			return false, nil
		}
	}
	return true, nil
}

// Floats returns stored values of dtype dt (a float type) as float32: a view of raw (the
// mapped file) for aligned F32, else converted into *buf.
func Floats(raw []byte, dt tensor.DType, buf *[]float32) []float32 {
	if dt == tensor.F32 && tensor.Aligned[float32](raw) {
		return tensor.View[float32](raw)
	}
	n := len(raw) / dt.Size()
	if cap(*buf) < n {
		*buf = make([]float32, n)
	}
	out := (*buf)[:n]
	tensor.ConvertToFloat32(out, dt, raw)
	return out
}

// Energy holds the sums behind quant.SQNR — Σx² and Σ(x − y)² in float64 — added up over the
// blocks of a tensor. compare's AddMaxAbs keeps quant.SQNR's sequential order, so that its
// figures are quant.SQNR's of the whole, bit for bit; the validation's Add trades that for speed.
type Energy struct{ Signal, Noise float64 }

// Add sums one block (quant.Energies: vector sums, so the order of the float64 additions
// differs from quant.SQNR's sequential loop, far below the validation's tolerance);
// finiteOnly leaves out the elements whose x is NaN or ±Inf.
func (e *Energy) Add(x, y []float32, finiteOnly bool) {
	s := quant.Energies(x, y, finiteOnly)
	e.Signal += s.Signal
	e.Noise += s.Noise
}

// AddMaxAbs is Add(x, y, false) that also returns the larger of maxAbs and the block's largest
// |x − y| (NaN once any difference is NaN), in the same pass.
func (e *Energy) AddMaxAbs(x, y []float32, maxAbs float64) float64 {
	y = y[:len(x)]
	sig, noise := e.Signal, e.Noise
	for i := range x {
		a := float64(x[i])
		d := a - float64(y[i])
		sig += float64(a * a) // as in add
		noise += float64(d * d)
		if ad := math.Abs(d); ad > maxAbs || math.IsNaN(ad) {
			maxAbs = ad
		}
	}
	e.Signal, e.Noise = sig, noise
	return maxAbs
}

// SQNR is quant.SQNR's formula: +Inf for no noise, NaN when both sums are 0.
func (e *Energy) SQNR() float64 {
	return 20 * math.Log10(math.Sqrt(e.Signal)/math.Sqrt(e.Noise))
}
