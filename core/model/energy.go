package model

import (
	"runtime"
	"sync"

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
	var qb []byte
	switch s.Format {
	case quant.Int8:
		qb = q[e0:e1]
	case quant.Int4:
		qb = q[e0/2 : (e1+1)/2]
	default:
		qb = q[2*e0 : 2*e1]
	}
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
