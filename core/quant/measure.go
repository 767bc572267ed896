package quant

import (
	"runtime"
	"sync"

	"github.com/monoquant/monoquant/core/tensor"
)

// Energy holds the two sums behind SQNR: Signal = Σx² and Noise = Σ(x − x̂)², in float64, where
// x̂ is the value Dequantize gives back for x. SQNR in decibels is 10·log10(Signal/Noise).
type Energy struct {
	Signal, Noise float64
}

// QuantizeMeasured is Quantize that also measures the quantization error: it returns what
// Quantize returns, plus the Energy of src against its dequantized form. For contiguous
// granules (per-channel on a leading axis, group-wise) the error is measured in the quantizing
// pass, while each value is in a register; otherwise in a second pass over src and
// dst. The stored bytes and qparams are Quantize's.
//
// Non-finite inputs fail as in Quantize; under ClampNonFinite they are left out of both sums.
// The sums equal a sequential float64 loop up to the order of the additions.
func QuantizeMeasured(dst []byte, src *tensor.Tensor, spec Spec, scale []float32, zp []int32) (Stats, Energy, error) {
	var en Energy
	st, err := quantize(dst, src, spec, scale, zp, &en)
	if err != nil {
		return st, Energy{}, err
	}
	return st, en, nil
}

// Energies returns the Energy of y against the reference x (equal lengths): Σx² and Σ(x − y)²
// in float64, the sums behind SQNR(x, y), for callers that measure a tensor block by block and
// add the blocks up. With skipNonFinite, the pairs whose x is NaN or ±Inf are left out (as the
// report does for clamped inputs). The sums equal a sequential float64 loop up to the order of
// the additions.
func Energies(x, y []float32, skipNonFinite bool) Energy {
	y = y[:len(x)]
	var e Energy
	i := 0
	if skipNonFinite {
		for j, v := range x {
			if isFinite(v) {
				a := float64(v)
				d := a - float64(y[j])
				e.Signal += a * a
				e.Noise += d * d
			}
		}
		return e
	}
	if haveQuantAVX2 && len(x) >= 8 {
		i = len(x) &^ 7
		e.Signal, e.Noise = energyAVX2(&x[0], &y[0], i)
	}
	for ; i < len(x); i++ {
		a := float64(x[i])
		d := a - float64(y[i])
		e.Signal += a * a
		e.Noise += d * d
	}
	return e
}

// quantRunMeasured quantizes one run of a granule (finite values, as quantRun8 and quantRun4
// do, into the same bytes) and, when measure is set, returns Σx² and Σ(x − x̂)² over it. The
// bulk goes through the AVX2 kernel where the CPU has one; a leading odd nibble, the tail and
// other CPUs take the scalar loops.
func quantRunMeasured(dst []byte, off int, xs []float32, g grid, four, measure bool) (sig, noise float64) {
	i := 0
	if haveQuantAVX2 {
		h := 0
		if four && off&1 == 1 {
			h = 1 // the first value is the high nibble of a byte the previous run began
		}
		if n := (len(xs) - h) &^ 7; n > 0 {
			if h == 1 {
				quantRun4(dst, off, xs[:1], g)
			}
			j := off + h
			// The kernels index raw pointers: these slicings are their bounds checks.
			in := xs[h : h+n]
			if four {
				out := dst[j>>1 : (j+n)>>1]
				sig, noise = quantMeasure4AVX2(&out[0], &in[0], n, g.inv, g.scale, g.loB, g.hiB, g.zb, measure)
			} else {
				out := dst[j : j+n]
				sig, noise = quantMeasure8AVX2(&out[0], &in[0], n, g.inv, g.scale, g.loB, g.hiB, g.zb, measure)
			}
			if measure && h == 1 {
				s, e := measureRun(xs[:1], &g)
				sig, noise = sig+s, noise+e
			}
			i = h + n
		}
	}
	rest := xs[i:]
	if four {
		quantRun4(dst, off+i, rest, g)
	} else {
		quantRun8(dst[off+i:off+len(xs)], rest, g)
	}
	if !measure {
		return 0, 0
	}
	s, e := measureRun(rest, &g)
	return sig + s, noise + e
}

// measureRun returns Σx² and Σ(x − x̂)² over finite xs, x̂ = (q(x) − zp)·scale with Dequantize's
// one float32 rounding.
func measureRun(xs []float32, g *grid) (sig, noise float64) {
	inv, loB, hiB, zb := g.inv, g.loB, g.hiB, g.zb
	for _, x := range xs {
		y := float32(quantOne(x, inv, loB, hiB, zb)-g.z) * g.scale
		v := float64(x)
		d := v - float64(y)
		sig += v * v
		noise += d * d
	}
	return sig, noise
}

// measure is the second-pass measurement: one parallel pass reads src and the quantized bytes
// q (as Quantize wrote them for spec, scale and zp; any format) and accumulates both sums in
// float64, each worker's share added in order. Non-finite inputs are counted in the Stats and
// left out of the sums. spec is normalized for src.Shape and the lengths checked.
func measure(src *tensor.Tensor, q []byte, spec *Spec, scale []float32, zp []int32) (Energy, Stats, error) {
	l := newLayout(src.Shape, spec)
	var (
		mu     sync.Mutex
		st     = Stats{FirstNonFinite: -1}
		shares = make([]Energy, runtime.GOMAXPROCS(0))
	)
	parallel(src.Len(), func(w, a, b int) {
		var acc normAcc
		var scratch [sqnrChunk]float32
		local := Stats{FirstNonFinite: -1}
		floats(src, a, b, func(base int, xs []float32) {
			switch spec.Format {
			case Float16, BFloat16:
				acc.halves(base, xs, q[2*base:2*(base+len(xs))], spec.Format == BFloat16)
			default:
				if l.short() {
					acc.channels(l, base, xs, q, spec, scale, zp)
					return
				}
				l.eachRun(base, xs, func(g, off int, run []float32) {
					acc.run(off, run, q, spec, scale[g], zp[g], &scratch)
				})
			}
		})
		if acc.bad > 0 {
			local.NonFinite, local.FirstNonFinite = acc.bad, acc.firstBad
		}
		mu.Lock()
		shares[w] = Energy{acc.ps, acc.pn}
		st.merge(local)
		mu.Unlock()
	})
	var en Energy
	for _, s := range shares {
		en.Signal += s.Signal
		en.Noise += s.Noise
	}
	if st.NonFinite > 0 && spec.NonFinite != ClampNonFinite {
		return Energy{}, st, nonFiniteErr(st)
	}
	return en, st, nil
}
