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

// Stream reads one tensor of a reader front to back and keeps about ReleaseEvery bytes of it
// resident: every ReleaseEvery bytes it releases the tensor's pages (checkpoint.Reader has no
// range release: the whole tensor is released, which drops the pages read so far) and fetches
// the tensor again, since data is valid only until Release. For a mapped reader the new view
// costs nothing; a reader that returns copies (a strided or big-endian .pt tensor) has nothing
// to release, so after the first fetch shows a new copy its data is kept as it is.
type Stream struct {
	r        checkpoint.Reader
	name     string
	T        *tensor.Tensor
	released int  // offset of the last release
	copies   bool // the reader copies: keep t
}

// Open starts reading the tensor called name of r.
func Open(r checkpoint.Reader, name string) (*Stream, error) {
	t, err := r.Tensor(name)
	if err != nil {
		return nil, err
	}
	return &Stream{r: r, name: name, T: t}, nil
}

// Bytes returns the tensor's bytes [off, end); off must not decrease from call to call, and
// the slice is valid until the next call.
func (s *Stream) Bytes(off, end int) ([]byte, error) {
	if !s.copies && off-s.released >= ReleaseEvery {
		s.r.Release(s.name)
		t, err := s.r.Tensor(s.name)
		if err != nil {
			return nil, err
		}
		if len(t.Data) != len(s.T.Data) {
			return nil, fmt.Errorf("tensor %q changed size while it was read", s.name)
		}
		s.copies = len(t.Data) > 0 && &t.Data[0] != &s.T.Data[0]
		s.T, s.released = t, off
	}
	return s.T.Data[off:end], nil
}

// Close releases the tensor's pages.
func (s *Stream) Close() { s.r.Release(s.name) }

// Equal reports whether two tensors hold the same bytes, compared ReleaseEvery bytes at
// a time so that neither is resident whole. A read error is returned through wrapA or wrapB,
// after the stream it came from.
func Equal(a, b *Stream, wrapA, wrapB func(error) error) (bool, error) {
	n := len(a.T.Data)
	if len(b.T.Data) != n {
		return false, nil
	}
	for off := 0; off < n; off += ReleaseEvery {
		end := min(off+ReleaseEvery, n)
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
