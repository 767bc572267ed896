package model

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// energyChunk is about how many elements one step of the energy pass dequantizes into scratch:
// small enough to stay in cache, large enough to amortize the call.
const energyChunk = 1 << 14

// energies returns Σx² and Σ(x − x̂)² (float64) of src against the dequantized q, in one
// parallel pass over row blocks: nothing the size of the tensor is allocated, so the peak memory
// of a streaming run stays about one tensor. spec is normalized for src.Shape.
func energies(src *tensor.Tensor, q []byte, spec *quant.Spec, scale []float32, zp []int32) (signal, noise float64, err error) {
	shape := src.Shape
	n := tensor.NumElements(shape)
	rows := shape[0]
	rowLen := 1
	if rows > 0 {
		rowLen = n / rows
	}
	if n == 0 {
		return 0, 0, nil
	}
	step := max(1, energyChunk/max(rowLen, 1))
	if spec.Format == quant.Int4 && rowLen%2 == 1 && step%2 == 1 {
		// Every block must start on a byte of the packed data.
		step++
	}
	nblocks := (rows + step - 1) / step
	sig := make([]float64, nblocks)
	noi := make([]float64, nblocks)
	errs := make([]error, nblocks)
	workers := min(runtime.GOMAXPROCS(0), nblocks)
	var wg sync.WaitGroup
	next := make(chan int, nblocks)
	for b := 0; b < nblocks; b++ {
		next <- b
	}
	close(next)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deq := make([]float32, min(step, rows)*rowLen)
			var conv []float32
			if src.DType != tensor.F32 {
				conv = make([]float32, len(deq))
			}
			for b := range next {
				r0, r1 := b*step, min((b+1)*step, rows)
				sig[b], noi[b], errs[b] = blockEnergy(src, q, spec, scale, zp, r0, r1, rowLen, deq, conv)
			}
		}()
	}
	wg.Wait()
	// Summing the blocks in order makes the result independent of scheduling.
	for b := range sig {
		if errs[b] != nil {
			return 0, 0, errs[b]
		}
		signal += sig[b]
		noise += noi[b]
	}
	return signal, noise, nil
}

func blockEnergy(src *tensor.Tensor, q []byte, spec *quant.Spec, scale []float32, zp []int32, r0, r1, rowLen int, deq, conv []float32) (float64, float64, error) {
	e0, e1 := r0*rowLen, r1*rowLen
	sub := append([]int{r1 - r0}, src.Shape[1:]...)
	s := *spec
	var sc []float32
	var z []int32
	if s.Format.IsInteger() {
		sc, z = scale, zp
		switch {
		case s.Granularity == quant.PerChannel && s.Axis == 0:
			sc, z = scale[r0:r1], zp[r0:r1]
		case s.Granularity == quant.PerGroup:
			g := rowLen / s.GroupSize
			sc, z = scale[r0*g:r1*g], zp[r0*g:r1*g]
		}
	}
	if e, ok := granuleEnergy(src, q, &s, sc, z, r0, r1, rowLen); ok {
		return e[0], e[1], nil
	}
	qb := quant.PackedRange(s.Format, q, e0, e1)
	out := deq[:e1-e0]
	if err := quant.Dequantize(out, qb, sub, s, sc, z); err != nil {
		return 0, 0, err
	}
	var x []float32
	if src.DType == tensor.F32 {
		x = tensor.View[float32](src.Data[4*e0 : 4*e1])
	} else {
		es := src.DType.Size()
		x = conv[:e1-e0]
		tensor.ConvertToFloat32(x, src.DType, src.Data[es*e0:es*e1])
	}
	var ps, pn float64
	for i, v := range x {
		a := float64(v)
		d := a - float64(out[i])
		ps += a * a
		pn += d * d
	}
	return ps, pn, nil
}

// blockElems is about how many elements one block of the fused pass covers: small enough that
// the block's float32 input stays in a core's L2 cache across its three touches (min/max,
// quantize, error), so the tensor is read from memory once instead of three times.
const blockElems = 1 << 15

// blockable reports whether a spec's qparams depend on whole rows only, so the tensor can be
// quantized one block of rows at a time with the same result as in one piece.
func blockable(s *quant.Spec, shape []int) bool {
	if len(shape) == 0 || shape[0] < 2 {
		return false
	}
	switch {
	case !s.Format.IsInteger():
		return true
	case s.Granularity == quant.PerGroup:
		return true
	case s.Granularity == quant.PerChannel && s.Axis == 0:
		return true
	}
	return false
}

// quantizeMeasured quantizes src into data/scale/zp and measures Σx² and Σ(x−x̂)². For specs
// whose qparams are per row (per-channel on axis 0, group-wise, float casts) it works on blocks
// of rows spread over the cores, each block quantized and measured while it is in cache;
// otherwise it quantizes the whole tensor and measures it in a second pass. The bytes written
// are identical either way.
func quantizeMeasured(data []byte, src *tensor.Tensor, s quant.Spec, scale []float32, zp []int32) (quant.Stats, float64, float64, error) {
	if !blockable(&s, src.Shape) {
		st, err := quant.Quantize(data, src, s, scale, zp)
		if err != nil {
			return st, 0, 0, err
		}
		sig, noise, err := energies(src, data, &s, scale, zp)
		return st, sig, noise, err
	}
	rows := src.Shape[0]
	n := src.Len()
	rowLen := n / rows
	step := max(1, blockElems/max(rowLen, 1))
	if s.Format == quant.Int4 && rowLen%2 == 1 && step%2 == 1 {
		step++ // blocks start on a byte of the packed output
	}
	nblocks := (rows + step - 1) / step
	type result struct {
		st         quant.Stats
		sig, noise float64
		err        error
	}
	res := make([]result, nblocks)
	var next atomic.Int64
	var wg sync.WaitGroup
	es := src.DType.Size()
	gpr := 1 // qparams per row
	if s.Format.IsInteger() && s.Granularity == quant.PerGroup {
		gpr = rowLen / s.GroupSize
	}
	for w := 0; w < min(runtime.GOMAXPROCS(0), nblocks); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deq := make([]float32, min(step, rows)*rowLen)
			var conv []float32
			if src.DType != tensor.F32 {
				conv = make([]float32, len(deq))
			}
			for {
				b := int(next.Add(1) - 1)
				if b >= nblocks {
					return
				}
				r0, r1 := b*step, min((b+1)*step, rows)
				e0, e1 := r0*rowLen, r1*rowLen
				sub := &tensor.Tensor{DType: src.DType, Shape: append([]int{r1 - r0}, src.Shape[1:]...), Data: src.Data[es*e0 : es*e1]}
				out := quant.PackedRange(s.Format, data, e0, e1)
				var sc []float32
				var z []int32
				if s.Format.IsInteger() {
					sc, z = scale[r0*gpr:r1*gpr], zp[r0*gpr:r1*gpr]
				}
				st, err := quant.Quantize(out, sub, s, sc, z)
				if err != nil {
					res[b].err = err
					continue
				}
				sig, noise, err := blockEnergy(src, data, &s, scale, zp, r0, r1, rowLen, deq, conv)
				res[b] = result{st: st, sig: sig, noise: noise, err: err}
			}
		}()
	}
	wg.Wait()
	st := quant.Stats{FirstNonFinite: -1}
	var sig, noise float64
	for b := range res {
		if res[b].err != nil {
			// Quantize the whole tensor for the canonical error (flat indices of the tensor,
			// not of a block); this path only runs for bad input.
			if st2, err := quant.Quantize(data, src, s, scale, zp); err != nil {
				return st2, 0, 0, err
			}
			return st, 0, 0, res[b].err
		}
		r := res[b].st
		if r.NonFinite > 0 && st.FirstNonFinite < 0 {
			st.FirstNonFinite = b*step*rowLen + r.FirstNonFinite
		}
		st.NonFinite += r.NonFinite
		st.Overflow += r.Overflow
		sig += res[b].sig
		noise += res[b].noise
	}
	return st, sig, noise, nil
}

// granuleEnergy is the fast path of blockEnergy for F32 input and integer formats whose scales
// go by rows (per-channel on axis 0, group-wise): it dequantizes each value in a register, with
// Dequantize's exact float32 rounding, instead of through a scratch buffer. sc and z are the
// block's own qparams. ok is false when the case is not covered.
func granuleEnergy(src *tensor.Tensor, q []byte, s *quant.Spec, sc []float32, z []int32, r0, r1, rowLen int) (e [2]float64, ok bool) {
	if src.DType != tensor.F32 || !s.Format.IsInteger() {
		return e, false
	}
	runLen := rowLen
	switch {
	case s.Granularity == quant.PerGroup:
		runLen = s.GroupSize
	case s.Granularity == quant.PerChannel && s.Axis == 0:
	default:
		return e, false
	}
	e0, e1 := r0*rowLen, r1*rowLen
	x := tensor.View[float32](src.Data[4*e0 : 4*e1])
	signed := !s.QDType.Unsigned()
	var ps, pn float64
	var tbl [256]float32
	for g := 0; g < len(x)/runLen; g++ {
		sg, zg := sc[g], z[g]
		xs := x[g*runLen : (g+1)*runLen]
		base := e0 + g*runLen
		var a, b float64
		switch {
		case s.Format == quant.Int8 && runLen >= 1024:
			// A 256-entry table per granule holds Dequantize's exact value of every byte;
			// it pays for itself on long rows.
			for v := range tbl {
				q := int32(v)
				if signed {
					q = int32(int8(v))
				}
				tbl[v] = float32(float32(q-zg) * sg)
			}
			a, b = accum(xs, q[base:base+runLen], &tbl)
		case s.Format == quant.Int8:
			a, b = accumDirect8(xs, q[base:base+runLen], signed, sg, zg)
		case base%2 == 0 && runLen%2 == 0:
			// Two values per byte, the even index in the low nibble.
			var t16 [16]float32
			for v := range t16 {
				n := int32(v)
				if signed {
					n = int32(int8(byte(v)<<4) >> 4)
				}
				t16[v] = float32(float32(n-zg) * sg)
			}
			a, b = accumPacked(xs, q[base/2:(base+runLen)/2], &t16)
		default:
			for i, v := range xs {
				y := float32(float32(quant.Nibble(q, base+i, signed)-zg) * sg)
				av := float64(v)
				d := av - float64(y)
				a += av * av
				b += d * d
			}
		}
		ps += a
		pn += b
	}
	return [2]float64{ps, pn}, true
}

// accum returns Σx² and Σ(x − tbl[q])² with four independent accumulators each, so the loop is
// not bound by the latency of one chain of float64 additions.
func accum(xs []float32, qs []byte, tbl *[256]float32) (float64, float64) {
	var s0, s1, s2, s3, n0, n1, n2, n3 float64
	qs = qs[:len(xs)]
	i := 0
	for ; i+4 <= len(xs); i += 4 {
		x := xs[i : i+4 : i+4]
		q := qs[i : i+4 : i+4]
		a0, a1, a2, a3 := float64(x[0]), float64(x[1]), float64(x[2]), float64(x[3])
		d0, d1, d2, d3 := a0-float64(tbl[q[0]]), a1-float64(tbl[q[1]]), a2-float64(tbl[q[2]]), a3-float64(tbl[q[3]])
		s0 += a0 * a0
		s1 += a1 * a1
		s2 += a2 * a2
		s3 += a3 * a3
		n0 += d0 * d0
		n1 += d1 * d1
		n2 += d2 * d2
		n3 += d3 * d3
	}
	for ; i < len(xs); i++ {
		a := float64(xs[i])
		d := a - float64(tbl[qs[i]])
		s0 += a * a
		n0 += d * d
	}
	return (s0 + s1) + (s2 + s3), (n0 + n1) + (n2 + n3)
}

// accumPacked is accum over packed 4-bit values: byte i holds elements 2i (low nibble) and
// 2i+1 (high nibble); t16 maps a nibble to its value; len(xs) is even.
func accumPacked(xs []float32, qs []byte, t16 *[16]float32) (float64, float64) {
	var s0, s1, s2, s3, n0, n1, n2, n3 float64
	qs = qs[:len(xs)/2]
	i := 0
	for ; i+2 <= len(qs); i += 2 {
		x := xs[2*i : 2*i+4 : 2*i+4]
		b0, b1 := qs[i], qs[i+1]
		a0, a1, a2, a3 := float64(x[0]), float64(x[1]), float64(x[2]), float64(x[3])
		d0, d1 := a0-float64(t16[b0&0xF]), a1-float64(t16[b0>>4])
		d2, d3 := a2-float64(t16[b1&0xF]), a3-float64(t16[b1>>4])
		s0 += a0 * a0
		s1 += a1 * a1
		s2 += a2 * a2
		s3 += a3 * a3
		n0 += d0 * d0
		n1 += d1 * d1
		n2 += d2 * d2
		n3 += d3 * d3
	}
	for ; i < len(qs); i++ {
		b := qs[i]
		a0, a1 := float64(xs[2*i]), float64(xs[2*i+1])
		d0, d1 := a0-float64(t16[b&0xF]), a1-float64(t16[b>>4])
		s0 += a0*a0 + a1*a1
		n0 += d0*d0 + d1*d1
	}
	return (s0 + s1) + (s2 + s3), (n0 + n1) + (n2 + n3)
}

// accumDirect8 is accum for short INT8 runs, where building a table would cost more than it
// saves: each value is dequantized with Dequantize's one float32 rounding.
func accumDirect8(xs []float32, qs []byte, signed bool, sg float32, zg int32) (float64, float64) {
	var s0, s1, n0, n1 float64
	qs = qs[:len(xs)]
	deq := func(b byte) float64 {
		if signed {
			return float64(float32(float32(int32(int8(b))-zg) * sg))
		}
		return float64(float32(float32(int32(b)-zg) * sg))
	}
	i := 0
	for ; i+2 <= len(xs); i += 2 {
		a0, a1 := float64(xs[i]), float64(xs[i+1])
		d0, d1 := a0-deq(qs[i]), a1-deq(qs[i+1])
		s0 += a0 * a0
		s1 += a1 * a1
		n0 += d0 * d0
		n1 += d1 * d1
	}
	for ; i < len(xs); i++ {
		a := float64(xs[i])
		d := a - deq(qs[i])
		s0 += a * a
		n0 += d * d
	}
	return s0 + s1, n0 + n1
}
