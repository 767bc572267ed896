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
//	start: (s, z) from mseParams
//	repeat: q = clamp(round(x/s) + z)                      // the kernel's rounding
//	        e = shrink_lp(x − (q − z)·s, β)                // sign(d)·max(|d| − |d|^(p−1)/β, 0), p = 0.7
//	        (s, z') = least squares of x − e on (q − z'):  // the quadratic half
//	                  s = cov(q, x−e)/var(q), z' = mean(q) − mean(x−e)/s
//	        z = clamp(round(z')); β *= 1.01
//
// keeping the (s, z) of least squared error and stopping after two steps without a better
// one, or after HQQIters steps; then, with those integers kept, the step is rescaled so that
// the error has no component along the weights (unshrink). lp = 0.7, β = 10, κ = 1.01 are the hqq package's defaults.
//
// buf (granule-major) is overwritten with the dequantized values x̂ = (q − z)·s, which the
// kernel maps back to the same integers.
func hqqParams(buf []float32, g granules, spec *quant.Spec, r quant.Range, o Options, scale []float32, zp []int32) error {
	if err := mseParams(buf, g, spec, r, o, scale, zp); err != nil {
		return err
	}
	lo, hi := spec.QDType.Limits()
	parallelFor(g.count, func(a, b int) {
		q := make([]float32, g.size)
		for c := a; c < b; c++ {
			xs := buf[c*g.size : (c+1)*g.size]
			s0, z0 := scale[c], zp[c]
			s, z := hqqGranule(xs, q, s0, z0, lo, hi, spec.Eps, o.HQQIters)
			// the integers to keep: the fit's, the start's, or the fit's step with a
			// neighbouring zero point, whichever has the least error once unshrunk
			_, best := unshrunk(xs, s, z, lo, hi, spec.Eps)
			for _, cand := range [...]struct {
				s float32
				z int32
			}{{s0, z0}, {s, z - 1}, {s, z + 1}} {
				if cand.z < lo || cand.z > hi {
					continue
				}
				if _, e := unshrunk(xs, cand.s, cand.z, lo, hi, spec.Eps); e < best {
					best, s, z = e, cand.s, cand.z
				}
			}
			scale[c], zp[c] = unshrink(xs, s, z, lo, hi, spec.Eps), z
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

// unshrink keeps a granule's integers q (the kernel's rounding of x with step s and zero
// point z) and rescales the step so that the error has no component along the weights:
// s' = Σ x² / Σ x·(q − z), so that Σ x·x̂ = Σ x² for x̂ = (q − z)·s'. It overwrites xs with
// x̂, which the kernel maps back to the same q, and returns s' (s when the granule has no
// signal: all its q equal z).
//
// A least-squares fit shrinks: its x̂ has Σ x̂² = Σ x² − Σ (x̂ − x)², every weight pulled
// toward the zero point by about 1/SQNR (0.8 % at 21 dB). The paper's HQQ keeps the min/max
// step and moves a float zero point only, so it does not; with the integer zero points stored
// here the fit has to move the step, and a trained network feels a shrink of a whole group
// far more than the same energy of uncorrelated error (its loss has a first-order term along
// the weights). Measured on bench/method/bench_perplexity.py's char-level GPT, INT4 g128
// (BENCHMARKS.md): the perplexity increase went from 1.10x rtn's to 0.75x, for 0.04 dB of
// weight SQNR.
func unshrink(xs []float32, s float32, z int32, lo, hi int32, eps float32) float32 {
	ns, _ := unshrunk(xs, s, z, lo, hi, eps)
	lof, hif := float32(lo-z), float32(hi-z)
	inv := 1 / s
	for i, x := range xs {
		xs[i] = clampf((x*inv+roundMagic)-roundMagic, lof, hif) * ns
	}
	return ns
}

// unshrunk returns unshrink's step for the integers of (s, z) and the squared error it gives.
func unshrunk(xs []float32, s float32, z int32, lo, hi int32, eps float32) (float32, float64) {
	lof, hif := float32(lo-z), float32(hi-z)
	inv := 1 / s
	var xx, xr, rr float64
	for _, x := range xs {
		r := float64(clampf((x*inv+roundMagic)-roundMagic, lof, hif))
		xx += float64(x) * float64(x)
		xr += float64(x) * r
		rr += r * r
	}
	ns := s
	if v := float32(xx / xr); xr > 0 && v >= eps && !math.IsInf(float64(v), 0) {
		ns = v
	}
	// Σ (x − r·s')² = Σx² − 2s'·Σx·r + s'²·Σr²
	return ns, xx - 2*float64(ns)*xr + float64(ns)*float64(ns)*rr
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
