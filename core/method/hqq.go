package method

import (
	"math"
	"sync"

	"github.com/monoquant/monoquant/core/quant"
)

// hqq parameters of the hqq package's optimize_weights_proximal_legacy.
const (
	hqqLpNorm = 0.7
	hqqBeta   = 10.0
	hqqKappa  = 1.01
)

// hqqParams runs Badri & Shaji's half-quadratic zero-point optimisation per granule:
//
//	start: s = (qmax−qmin)/(max−min) (1 when max−min ≤ 1e-4, at most 2e4), z = −min·s
//	repeat: q = clamp(round(x·s + z)); x̂ = (q − z)/s
//	        e = shrink_lp(x − x̂, β)           // sign(d)·max(|d| − |d|^(p−1)/β, 0), p = 0.7
//	        z = mean(q − (x − e)·s); β *= 1.01
//
// stopping when the mean |x − x̂| stops falling. The hqq package stops on the error of the
// whole tensor and keeps the last zero; here each granule stops on its own error and keeps
// the zero that gave its best x̂, which is never worse. The float zero is then rounded to
// the stored integer zero point (clamped into the range) and the scale stored is 1/s.
func hqqParams(buf []float32, g granules, spec *quant.Spec, r quant.Range, o Options, scale []float32, zp []int32) error {
	qmax := float32(r.Max - r.Min)
	lo, hi := spec.QDType.Limits()
	var mu sync.Mutex
	var first error
	fail := func(err error) {
		mu.Lock()
		if first == nil {
			first = err
		}
		mu.Unlock()
	}
	parallelFor(g.count, func(a, b int) {
		var mn, mx, s1 [1]float32
		var z1 [1]int32
		wr := make([]float32, g.size)
		for c := a; c < b; c++ {
			xs := buf[c*g.size : (c+1)*g.size]
			s, z := hqqGranule(xs, wr, qmax, o.HQQIters)
			st := 1 / s
			if !(st >= spec.Eps) {
				st = spec.Eps
			}
			zi := int32(math.RoundToEven(float64(z))) + r.Min
			zi = max(min(zi, hi), lo)
			// The stored zero point is an integer, which can undo the optimisation on a
			// granule: keep the min/max (RTN) qparams where their squared error is lower.
			mn[0], mx[0] = minMax(xs)
			if err := quant.CalculateQParams(mn[:], mx[:], spec.QDType, spec.Scheme, r, spec.Eps, s1[:], z1[:]); err != nil {
				fail(err)
				return
			}
			if sqErr(xs, s1[0], z1[0], lo, hi) <= sqErr(xs, st, zi, lo, hi) {
				st, zi = s1[0], z1[0]
			}
			scale[c], zp[c] = st, zi
		}
	})
	return first
}

// hqqGranule returns the inverse scale and the float zero point of one granule.
func hqqGranule(xs, q []float32, qmax float32, iters int) (s, z float32) {
	mn, mx := minMax(xs)
	den := mx - mn
	s = qmax / den
	if float32(math.Abs(float64(den))) <= 1e-4 {
		s = 1
	}
	s = min(s, 2e4)
	z = -mn * s
	beta := float32(hqqBeta)
	best, bestZ := float32(math.Inf(1)), z
	n := float32(len(xs))
	for range iters {
		var errSum, zSum float32
		inv := 1 / s
		ib := 1 / beta
		for i, x := range xs {
			v := x*s + z
			v = max(min(v, qmax+1), -1)
			qv := (v + roundMagic) - roundMagic
			qv = max(min(qv, qmax), 0)
			q[i] = qv
			xr := (qv - z) * inv
			d := x - xr
			ad := float32(math.Abs(float64(d)))
			errSum += ad
			var e float32
			if ad > 0 {
				sh := ad - ib*powNeg03(ad)
				if sh > 0 {
					e = sh
					if d < 0 {
						e = -sh
					}
				}
			}
			zSum += qv - (x-e)*s
		}
		cur := errSum / n
		if !(cur < best) {
			break
		}
		best, bestZ = cur, z
		z = zSum / n
		beta *= hqqKappa
	}
	return s, bestZ
}

// powNeg03 is a^(lp−1) = a^−0.3 for a > 0 through a log series and an exp2 polynomial
// (relative error about 1e-6): math.Pow would dominate the method's cost.
func powNeg03(a float32) float32 {
	const ln2 = 0.6931471805599453
	bits := math.Float32bits(a)
	e := int32(bits>>23&0xFF) - 127
	m := math.Float32frombits(bits&0x007FFFFF | 0x3F800000) // [1, 2)
	if m > 1.4142135 {
		m *= 0.5
		e++
	}
	u := (m - 1) / (m + 1) // |u| < 0.172: ln m = 2·atanh(u)
	u2 := u * u
	lnm := 2 * u * (1 + u2*(1.0/3+u2*(0.2+u2*(1.0/7+u2*(1.0/9)))))
	y := -0.3 * (float32(e) + lnm*(1/ln2)) // log2 of the result
	k := float32(math.Floor(float64(y)))
	f := (y - k) * ln2
	p := 1 + f*(1+f*(0.5+f*(1.0/6+f*(1.0/24+f*(1.0/120+f*(1.0/720+f*(1.0/5040)))))))
	ki := int32(k)
	if ki < -126 {
		return 0
	}
	if ki > 127 {
		return float32(math.Inf(1))
	}
	return p * math.Float32frombits(uint32(ki+127)<<23)
}
