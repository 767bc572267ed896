package model

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// blockElems is about how many elements one block covers: small enough that the block's float32
// input stays in a core's L2 cache between its two touches (min/max, then quantize-and-measure),
// so the tensor is read from memory once.
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

// quantizeMeasured quantizes src into data/scale/zp and measures Σx² and Σ(x−x̂)² (see
// quant.QuantizeMeasured). For specs whose qparams are per row (per-channel on axis 0,
// group-wise, float casts) it works on blocks of rows spread over the cores, each block
// quantized and measured while it is in cache; otherwise it quantizes the whole tensor at once.
// The bytes written are identical either way, and the sums are added in block order, so they do
// not depend on scheduling.
func quantizeMeasured(data []byte, src *tensor.Tensor, s quant.Spec, scale []float32, zp []int32) (quant.Stats, float64, float64, error) {
	if !blockable(&s, src.Shape) {
		st, en, err := quant.QuantizeMeasured(data, src, s, scale, zp)
		return st, en.Signal, en.Noise, err
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
		st  quant.Stats
		en  quant.Energy
		err error
	}
	res := make([]result, nblocks)
	var next atomic.Int64
	var wg sync.WaitGroup
	es := src.DType.Size()
	gpr := 1 // qparams per row
	if s.Format.IsInteger() && s.Granularity == quant.PerGroup {
		gpr = rowLen / s.GroupSize
	}
	// F16/BF16/F64 blocks (most large checkpoints are BF16) take the fused path too: quant
	// converts them a chunk at a time as it goes.
	for w := 0; w < min(runtime.GOMAXPROCS(0), nblocks); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
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
				st, en, err := quant.QuantizeMeasured(out, sub, s, sc, z)
				res[b] = result{st: st, en: en, err: err}
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
		sig += res[b].en.Signal
		noise += res[b].en.Noise
	}
	return st, sig, noise, nil
}
