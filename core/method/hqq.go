package method

import (
	"math"

	"github.com/monoquant/monoquant/core/quant"
)

// hqq parameters of the hqq package's optimize_weights_proximal_legacy.
const (
	hqqLpNorm = 0.7
	hqqBeta   = 10.0
	hqqKappa  = 1.01
)

// hqqParams runs Badri & Shaji's half-quadratic quantization (HQQ) per granule, adapted to
// the stored form, whose zero points are integers. The hqq package optimises a float zero
// point with the scale fixed; rounding that zero afterwards loses the gain (on MiniLM's
// weights, INT4 g128: 19.77 dB with float zeros, 18.75 dB rounded, 19.45 dB for plain
// asymmetric RTN). Here the quadratic sub-problem is solved for both the scale and the zero
// point, the zero rounded at every step, and the start is the mse clip search's result:
//
//	start: (s, z) from mseParams (so never worse than mse)
//	repeat: q = clamp(round(x/s) + z)                      // the kernel's rounding
//	        e = shrink_lp(x − (q − z)·s, β)                // sign(d)·max(|d| − |d|^(p−1)/β, 0), p = 0.7
//	        (s, z') = least squares of x − e on (q − z'):  // the quadratic half
//	                  s = cov(q, x−e)/var(q), z' = mean(q) − mean(x−e)/s
//	        z = clamp(round(z')); β *= 1.01
//
// keeping the (s, z) of least squared error and stopping after two steps without a better
// one, or after HQQIters steps. lp = 0.7, β = 10, κ = 1.01 are the hqq package's defaults.
func hqqParams(buf []float32, g granules, spec *quant.Spec, r quant.Range, o Options, scale []float32, zp []int32) error {
	if err := mseParams(buf, g, spec, r, o, scale, zp); err != nil {
		return err
	}
	lo, hi := spec.QDType.Limits()
	parallelFor(g.count, func(a, b int) {
		q := make([]float32, g.size)
		for c := a; c < b; c++ {
			xs := buf[c*g.size : (c+1)*g.size]
			scale[c], zp[c] = hqqGranule(xs, q, scale[c], zp[c], lo, hi, spec.Eps, o.HQQIters)
		}
	})
	return nil
}

// hqqGranule refines one granule's (scale, integer zero point).
func hqqGranule(xs, q []float32, s float32, z int32, lo, hi int32, eps float32, iters int) (float32, int32) {
	best := sqErr(xs, s, z, lo, hi)
	bestS, bestZ := s, z
	beta := float32(hqqBeta)
	n := float32(len(xs))
	stale := 0
	for range iters {
		inv := 1 / s
		zf := float32(z)
		lof, hif := float32(lo), float32(hi)
		var sq, st, sqq, sqt float32
		thr := float32(math.Pow(float64(beta), -1/(2-hqqLpNorm)))
		for i, x := range xs {
			qv := clampf((x*inv+roundMagic)-roundMagic+zf, lof, hif)
			q[i] = qv
			d := x - (qv-zf)*s
			ad := float32(math.Abs(float64(d)))
			var e float32
			if ad > thr { // below thr = β^(−1/(2−p)), |d| − |d|^(p−1)/β ≤ 0: no pow needed
				if sh := ad - powNeg03(ad)/beta; sh > 0 {
					e = sh
					if d < 0 {
						e = -sh
					}
				}
			}
			t := x - e
			sq += qv
			st += t
			sqq += qv * qv
			sqt += qv * t
		}
		mq, mt := sq/n, st/n
		varq := sqq/n - mq*mq
		beta *= hqqKappa
		if !(varq > 0) {
			break
		}
		ns := (sqt/n - mq*mt) / varq
		if !(ns >= eps) || math.IsInf(float64(ns), 0) {
			break
		}
		nz := mq - mt/ns
		if !(math.Abs(float64(nz)) < 1<<20) {
			break
		}
		s = ns
		z = max(min(int32(math.RoundToEven(float64(nz))), hi), lo)
		if e := sqErr(xs, s, z, lo, hi); e < best {
			best, bestS, bestZ, stale = e, s, z, 0
		} else if stale++; stale >= 2 {
			break
		}
	}
	return bestS, bestZ
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
	if !(y > -126) {
		return 0
	}
	ki := int32(y) // truncates toward zero: floor for y ≥ 0, one too high below
	if float32(ki) > y {
		ki--
	}
	f := (y - float32(ki)) * ln2
	p := 1 + f*(1+f*(0.5+f*(1.0/6+f*(1.0/24+f*(1.0/120+f*(1.0/720+f*(1.0/5040)))))))
	if ki < -126 {
		return 0
	}
	if ki > 127 {
		return float32(math.Inf(1))
	}
	return p * math.Float32frombits(uint32(ki+127)<<23)
}
