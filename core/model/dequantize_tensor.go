package model

import (
	"errors"
	"fmt"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// DequantizeTensor returns one quantized tensor of a quantized checkpoint as float32 values in
// its original shape, with the same checks as Dequantize (scales positive and finite, zero
// points in range). It lets a caller look at one tensor at a time — verifying a freshly written
// file, comparing two checkpoints — without dequantizing the whole model into memory. cfg must
// come from ReadConfig on r. To hold less than one float32 copy of a large tensor, read it in
// blocks of rows with a RowDequantizer.
func DequantizeTensor(r checkpoint.Reader, cfg *Config, name string) (*tensor.Tensor, error) {
	if r == nil || cfg == nil {
		return nil, fmt.Errorf("model.DequantizeTensor: nil reader or config")
	}
	tc, ok := cfg.Tensors[name]
	if !ok || tc == nil {
		return nil, fmt.Errorf("%w: tensor %q is not a quantized tensor of this checkpoint", ErrFormat, name)
	}
	var buf []float32
	c := &captureWriter{}
	if _, _, err := dequantizeOne(r, c, name, tc, &buf); err != nil {
		return nil, err
	}
	return tensor.FromFloat32(buf[:tensor.NumElements(tc.Shape)], tc.Shape...), nil
}

// captureWriter is the one-tensor checkpoint.Writer dequantizeOne writes into; the values stay
// in dequantizeOne's buffer, so nothing is copied.
type captureWriter struct{ wrote bool }

func (c *captureWriter) Write(string, []byte) error { c.wrote = true; return nil }
func (c *captureWriter) Commit() error              { return nil }
func (c *captureWriter) Abort() error               { return nil }

// DequantizeRows writes rows [r0, r1) of one quantized tensor of a quantized checkpoint into
// dst as float32 values: exactly the elements DequantizeTensor returns at flat indices
// [r0·RowLen, r1·RowLen), where a row is an index along axis 0 of the original shape. dst must
// hold at least (r1−r0)·RowLen values. cfg must come from ReadConfig on r.
//
// Each call reads and checks the tensor's scales and zero points again; to read a tensor in
// many blocks, use a RowDequantizer, which loads them once.
func DequantizeRows(r checkpoint.Reader, cfg *Config, name string, r0, r1 int, dst []float32) error {
	d, err := NewRowDequantizer(r, cfg, name)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Dequantize(r0, r1, dst)
}

// RowDequantizer dequantizes one quantized tensor of a quantized checkpoint a block of rows
// at a time into caller buffers, so that a caller walking a large tensor (the CLI's post-write
// validation) holds one block of float32 values instead of a float32 copy of the whole tensor.
// A row is an index along axis 0 of the tensor's original shape (a 0-d tensor is one row of
// one value). Every stored layout is supported, whatever the range: per-tensor, per-channel on
// any axis, group-wise, packed INT4 (also when a range starts inside a byte) and FP16/BF16
// casts; the values are bit for bit those of DequantizeTensor.
//
// It holds the reader's view of the stored values from NewRowDequantizer until Close. It is not
// safe for concurrent use.
type RowDequantizer struct {
	r            checkpoint.Reader
	name         string
	tc           *TensorConfig
	spec         quant.Spec
	scale        []float32
	zp           []int32
	q            []byte // the stored values, as the reader returned them; nil after Close
	n            int    // elements
	rows, rowLen int
	scratch      []byte // INT4 values of a range that starts on a high nibble, realigned
	// outCols, outW: calibrated LLM.int8() outlier columns and their float values [rows,
	// len(outCols)], written over the (zero) stored integers of those columns.
	outCols []int
	outW    []float32

	used  int   // stored tensors read: values, scale, zero point
	bytes int64 // and their bytes
}

// NewRowDequantizer reads and checks the scales and zero points of tensor name (positive and
// finite scales, zero points within the storage type's range, as Dequantize checks them) and
// the reader's view of its stored values. cfg must come from ReadConfig on r. Errors about the
// checkpoint wrap ErrFormat and name the tensor. Call Close when done.
func NewRowDequantizer(r checkpoint.Reader, cfg *Config, name string) (*RowDequantizer, error) {
	if r == nil || cfg == nil {
		return nil, fmt.Errorf("model.NewRowDequantizer: nil reader or config")
	}
	tc, ok := cfg.Tensors[name]
	if !ok || tc == nil {
		return nil, fmt.Errorf("%w: tensor %q is not a quantized tensor of this checkpoint", ErrFormat, name)
	}
	return openRows(r, name, tc)
}

// openRows is NewRowDequantizer for a known tensor config; Dequantize and DequantizeTensor
// read through it too.
func openRows(r checkpoint.Reader, name string, tc *TensorConfig) (*RowDequantizer, error) {
	s, err := tc.Spec() // normalized, and checked against QuantShape and Shape
	if err != nil {
		return nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
	}
	n := tensor.NumElements(tc.Shape)
	d := &RowDequantizer{r: r, name: name, tc: tc, spec: s, n: n, rows: 1, rowLen: 1, used: 1}
	if len(tc.Shape) > 0 {
		d.rows, d.rowLen = tc.Shape[0], tensor.NumElements(tc.Shape[1:])
	}
	if s.Format.IsInteger() {
		scale, zp, err := readQParams(r, name, tc)
		if err != nil {
			return nil, err
		}
		d.scale, d.zp = scale, zp
		d.used, d.bytes = d.used+1, d.bytes+int64(4*len(scale))
		if s.StoresZeroPoint() {
			d.used, d.bytes = d.used+1, d.bytes+int64(4*len(zp))
		}
	}
	if tc.OutlierColumns > 0 {
		cols, w, err := readOutliers(r, name, tc)
		if err != nil {
			return nil, err
		}
		d.outCols, d.outW = cols, w
		d.used, d.bytes = d.used+2, d.bytes+int64(8*len(cols))+int64(len(w)*originalDType(tc).Size())
	}
	qt, err := r.Tensor(name)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	d.bytes += int64(len(qt.Data))
	if need := quant.PackedLen(s.Format, n); len(qt.Data) < need {
		r.Release(name)
		return nil, fmt.Errorf("%w: tensor %q: quantized data has %d bytes, need %d", ErrFormat, name, len(qt.Data), need)
	}
	d.q = qt.Data
	return d, nil
}

// Shape is the tensor's original shape (a copy).
func (d *RowDequantizer) Shape() []int { return append([]int{}, d.tc.Shape...) }

// NumRows is the length of axis 0 (1 for a 0-d tensor).
func (d *RowDequantizer) NumRows() int { return d.rows }

// RowLen is the number of values in one row: the product of the dimensions after the first.
func (d *RowDequantizer) RowLen() int { return d.rowLen }

// Dequantize writes rows [r0, r1) into dst[:(r1−r0)·RowLen()]: the values DequantizeTensor
// gives at those flat indices, bit for bit. An empty range writes nothing. A range outside
// [0, NumRows()], a dst too short, or a call after Close is an error.
func (d *RowDequantizer) Dequantize(r0, r1 int, dst []float32) error {
	if d.q == nil {
		return fmt.Errorf("model.RowDequantizer: tensor %q: dequantize after Close", d.name)
	}
	if r0 < 0 || r1 < r0 || r1 > d.rows {
		return fmt.Errorf("model.RowDequantizer: rows [%d, %d) are not a range of the %d rows of tensor %q", r0, r1, d.rows, d.name)
	}
	n := (r1 - r0) * d.rowLen
	if len(dst) < n {
		return fmt.Errorf("model.RowDequantizer: buffer holds %d values, rows [%d, %d) of tensor %q need %d", len(dst), r0, r1, d.name, n)
	}
	if n == 0 {
		return nil
	}
	if err := d.elements(dst[:n], r0*d.rowLen, r0*d.rowLen+n); err != nil {
		return fmt.Errorf("%w: tensor %q: %v", ErrFormat, d.name, err)
	}
	if k := len(d.outCols); k > 0 {
		for r := r0; r < r1; r++ {
			row := dst[(r-r0)*d.rowLen : (r-r0+1)*d.rowLen]
			for c, j := range d.outCols {
				row[j] = d.outW[r*k+c]
			}
		}
	}
	return nil
}

// Close releases the reader's view of the stored values (checkpoint.Reader.Release). It is safe
// to call twice; the reader itself stays open.
func (d *RowDequantizer) Close() {
	if d.q != nil {
		d.q = nil
		d.r.Release(d.name)
	}
}

// elements dequantizes flat elements [e0, e1) (of the quantizer's view, QuantShape, which
// orders elements as the original shape does) into dst with quant.Dequantize, the one
// dequantizing kernel: the whole tensor in one call; otherwise the range cut into pieces that
// are tensors of their own with the matching slice of the qparams.
//
// Integer qparams go by runs: per-channel on axis a, runs of prod(QuantShape[a+1:]) values
// share a scale, run k having channel k mod QuantShape[a]; group-wise, run k of GroupSize
// values is group k (one period of channels covers the tensor). A range then becomes: a
// partial run at either end (a per-tensor piece with that run's scale), runs up to the end of
// a period ([k, runLen] per-channel on axis 0 with scales c..c+k), and whole periods ([m,
// channels, runLen] per-channel on axis 1 with all scales). Every piece computes the same
// float32 products (q − zp)·scale as the whole-tensor call, so the values are identical.
func (d *RowDequantizer) elements(dst []float32, e0, e1 int) error {
	s := d.spec
	if e0 == 0 && e1 == d.n {
		return quant.Dequantize(dst, d.q, d.tc.QuantShape, s, d.scale, d.zp)
	}
	if !s.Format.IsInteger() || s.Granularity == quant.PerTensor {
		return d.piece(dst, e0, e1, []int{e1 - e0}, s, d.scale, d.zp)
	}
	var runLen, chans int
	switch s.Granularity {
	case quant.PerChannel:
		runLen, chans = tensor.NumElements(d.tc.QuantShape[s.Axis+1:]), d.tc.QuantShape[s.Axis]
	case quant.PerGroup:
		runLen, chans = s.GroupSize, d.n/s.GroupSize
	}
	if runLen <= 0 || chans <= 0 {
		return errors.New("no values to dequantize") // unreachable: n > 0 here
	}
	perTensor, perChannel := s, s
	perTensor.Granularity, perChannel.Granularity = quant.PerTensor, quant.PerChannel
	partial := func(e, end int) error {
		c := (e / runLen) % chans
		return d.piece(dst[e-e0:end-e0], e, end, []int{end - e}, perTensor, d.scale[c:c+1], d.zp[c:c+1])
	}
	e := e0
	if e%runLen != 0 {
		end := min((e/runLen+1)*runLen, e1)
		if err := partial(e, end); err != nil {
			return err
		}
		e = end
	}
	for e+runLen <= e1 {
		c := (e / runLen) % chans
		if m := (e1 - e) / (chans * runLen); c == 0 && m > 0 {
			perChannel.Axis = 1
			end := e + m*chans*runLen
			if err := d.piece(dst[e-e0:end-e0], e, end, []int{m, chans, runLen}, perChannel, d.scale, d.zp); err != nil {
				return err
			}
			e = end
			continue
		}
		k := min((e1-e)/runLen, chans-c)
		perChannel.Axis = 0
		end := e + k*runLen
		if err := d.piece(dst[e-e0:end-e0], e, end, []int{k, runLen}, perChannel, d.scale[c:c+k], d.zp[c:c+k]); err != nil {
			return err
		}
		e = end
	}
	if e < e1 {
		return partial(e, e1)
	}
	return nil
}

// piece dequantizes elements [e0, e1) as a tensor of the given shape, spec and qparams.
func (d *RowDequantizer) piece(dst []float32, e0, e1 int, shape []int, s quant.Spec, scale []float32, zp []int32) error {
	return quant.Dequantize(dst[:e1-e0], d.packed(e0, e1), shape, s, scale, zp)
}

// packed returns the stored bytes of elements [e0, e1) as a packed tensor of its own: a slice
// of the stored values, except for INT4 from an odd e0 (a high nibble), where the nibbles are
// shifted down by one into d.scratch so that element e0 becomes the low nibble of byte 0.
func (d *RowDequantizer) packed(e0, e1 int) []byte {
	if d.spec.Format != quant.Int4 || e0%2 == 0 {
		return quant.PackedRange(d.spec.Format, d.q, e0, e1)
	}
	src := d.q[e0/2 : (e1+1)/2] // src[0]'s high nibble is element e0
	nb := (e1 - e0 + 1) / 2
	if cap(d.scratch) < nb {
		d.scratch = make([]byte, nb)
	}
	out := d.scratch[:nb]
	for k := range out {
		b := src[k] >> 4
		if k+1 < len(src) {
			b |= src[k+1] << 4
		}
		out[k] = b
	}
	return out
}
