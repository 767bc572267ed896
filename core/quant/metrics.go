package quant

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/monoquant/monoquant/core/tensor"
	"github.com/x448/float16"
)

// SQNR is torch's compute_sqnr (torch.ao.ns.fx.utils): 20·log10(‖x‖ / ‖x − y‖) in decibels, with
// the norms accumulated in float64. Equal inputs give +Inf; x = y = 0 gives NaN, as in torch.
func SQNR(x, y []float32) float64 {
	var ps, pn float64
	for i := range x {
		a := float64(x[i])
		d := a - float64(y[i])
		ps += float64(a * a) // float64(...) stops FMA fusion: the same sums on every platform
		pn += float64(d * d)
	}
	return 20 * math.Log10(math.Sqrt(ps)/math.Sqrt(pn))
}

// Size accounts for the bytes of one tensor before and after quantization.
type Size struct {
	Elements      int64
	OriginalBytes int64 // the tensor as it was (its dtype's width × elements)
	DataBytes     int64 // quantized values (packed for Int4)
	ParamBytes    int64 // scales (float32) and zero points (int32 where the scheme stores them)
}

// QuantizedBytes is DataBytes + ParamBytes.
func (s Size) QuantizedBytes() int64 { return s.DataBytes + s.ParamBytes }

// BitsPerWeight counts the scales and zero points too: 8-bit per-channel is a little over 8.
func (s Size) BitsPerWeight() float64 {
	if s.Elements == 0 {
		return 0
	}
	return float64(8*s.QuantizedBytes()) / float64(s.Elements)
}

// Add sums two accountings (for a whole model).
func (s Size) Add(o Size) Size {
	return Size{s.Elements + o.Elements, s.OriginalBytes + o.OriginalBytes, s.DataBytes + o.DataBytes, s.ParamBytes + o.ParamBytes}
}

// SizeOf accounts for a tensor of the given shape and original element width under a normalized
// spec. Symmetric signed schemes store no zero points (they are all 0).
func SizeOf(shape []int, origElemBytes int, spec *Spec) Size {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	s := Size{Elements: n, OriginalBytes: n * int64(origElemBytes), DataBytes: int64(PackedLen(spec.Format, int(n)))}
	if spec.Format.IsInteger() {
		np := int64(spec.NumParams(shape))
		s.ParamBytes = 4 * np
		if spec.StoresZeroPoint() {
			s.ParamBytes += 4 * np
		}
	}
	return s
}

// StoresZeroPoint reports whether a checkpoint needs the zero points: not for symmetric signed
// schemes, whose zero points are all 0.
func (s *Spec) StoresZeroPoint() bool {
	return s.Format.IsInteger() && (s.Scheme == Asymmetric || s.QDType.Unsigned())
}

// SQNRQuantized is SQNR(src, dequantized) without materialising the dequantized tensor: one
// parallel pass reads src and the quantized bytes q (as Quantize wrote them for spec, scale and
// zp) and accumulates both norms in float64. It works for every format; Float16 and BFloat16
// ignore scale and zp.
//
// The result equals SQNR(x, y) up to the order of the float64 additions. A src holding NaN or
// ±Inf is an error wrapping ErrNonFinite, unless spec.NonFinite is ClampNonFinite: then those
// elements are left out of both norms (torch's SQNR would be NaN).
func SQNRQuantized(src *tensor.Tensor, q []byte, spec Spec, scale []float32, zp []int32) (float64, error) {
	if err := checkInput(src); err != nil {
		return 0, err
	}
	if _, err := spec.Normalize(src.Shape); err != nil {
		return 0, err
	}
	n := src.Len()
	if need := PackedLen(spec.Format, n); len(q) < need {
		return 0, fmt.Errorf("%w: quantized data has %d bytes, need %d", ErrSpec, len(q), need)
	}
	if spec.Format.IsInteger() {
		if np := spec.NumParams(src.Shape); len(scale) < np || len(zp) < np {
			return 0, fmt.Errorf("%w: need %d scales and zero points, have %d and %d", ErrSpec, np, len(scale), len(zp))
		}
	}
	en, _, err := measure(src, q, &spec, scale, zp)
	if err != nil {
		return 0, err
	}
	return 20 * math.Log10(math.Sqrt(en.Signal)/math.Sqrt(en.Noise)), nil
}

// normAcc holds one worker's float64 sums: ‖x‖² in ps, ‖x − y‖² in pn.
type normAcc struct {
	ps, pn   float64
	bad      int // non-finite inputs, left out of the sums
	firstBad int
}

func (a *normAcc) add(i int, x, y float32) {
	if !isFinite(x) {
		if a.bad == 0 {
			a.firstBad = i
		}
		a.bad++
		return
	}
	v := float64(x)
	d := v - float64(y)
	a.ps += float64(v * v)
	a.pn += float64(d * d)
}

func (a *normAcc) halves(base int, xs []float32, h []byte, bf16 bool) {
	for i, x := range xs {
		a.add(base+i, x, halfValue(binary.LittleEndian.Uint16(h[2*i:]), bf16))
	}
}

// halfValue is the float32 value of a Float16 (or, with bf16, BFloat16) bit pattern.
func halfValue(h uint16, bf16 bool) float32 {
	if bf16 {
		return math.Float32frombits(uint32(h) << 16)
	}
	return float16.Frombits(h).Float32()
}

// sqnrChunk is how many dequantized values a worker holds at a time (on its stack).
const sqnrChunk = 2048

// run accumulates one run of a granule: y = (q − zp)·scale, one float32 rounding, as Dequantize,
// produced chunk by chunk into scratch by the same code Dequantize uses.
func (a *normAcc) run(off int, xs []float32, q []byte, spec *Spec, s float32, z int32, scratch *[sqnrChunk]float32) {
	signed := !spec.QDType.Unsigned()
	for i := 0; i < len(xs); i += sqnrChunk {
		part := xs[i:min(i+sqnrChunk, len(xs))]
		ys := scratch[:len(part)]
		dequantRun(ys, q, off+i, spec.Format, signed, s, z)
		for j, x := range part {
			a.add(off+i+j, x, ys[j])
		}
	}
}

func (a *normAcc) channels(l layout, base int, xs []float32, q []byte, spec *Spec, scale []float32, zp []int32) {
	if len(xs) == 0 {
		return // an empty tensor may have no channels to step through
	}
	signed := !spec.QDType.Unsigned()
	c, k := (base/l.runLen)%l.nchan, base%l.runLen
	for i, x := range xs {
		j := base + i
		a.add(j, x, float32(qAt(q, j, spec.Format, signed)-zp[c])*scale[c])
		if k++; k == l.runLen {
			k = 0
			if c++; c == l.nchan {
				c = 0
			}
		}
	}
}

// qAt reads quantized element i of Int8 or Int4 data.
func qAt(q []byte, i int, f Format, signed bool) int32 {
	switch {
	case f == Int4:
		return Nibble(q, i, signed)
	case signed:
		return int32(int8(q[i]))
	}
	return int32(q[i])
}
