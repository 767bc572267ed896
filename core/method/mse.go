package method

import (
	"github.com/monoquant/monoquant/core/quant"
)

// mseParams picks, per granule, the clipping ratio p of the grid 1, 1−step, … whose qparams
// (torch's min/max formula on [p·min, p·max]) give the least squared error, with the
// kernel's own rounding and clamp. Ties keep the larger range, so p = 1 (plain RTN) wins
// unless clipping strictly helps.
func mseParams(buf []float32, g granules, spec *quant.Spec, r quant.Range, o Options, scale []float32, zp []int32) error {
	lo, hi := spec.QDType.Limits()
	var firstErr error
	errOnce := make(chan error, 1)
	parallelFor(g.count, func(a, b int) {
		const chunk = 256
		mins, maxs := make([]float32, chunk), make([]float32, chunk)
		cmin, cmax := make([]float32, chunk), make([]float32, chunk)
		cs, cz := make([]float32, chunk), make([]int32, chunk)
		best := make([]float32, chunk)
		for c0 := a; c0 < b; c0 += chunk {
			n := min(chunk, b-c0)
			for i := range n {
				gx := buf[(c0+i)*g.size : (c0+i+1)*g.size]
				mins[i], maxs[i] = minMax(gx)
			}
			for k := range o.MSEGrid {
				p := float32(1 - float64(k)*o.MSEStep)
				for i := range n {
					cmin[i], cmax[i] = mins[i]*p, maxs[i]*p
				}
				if err := quant.CalculateQParams(cmin[:n], cmax[:n], spec.QDType, spec.Scheme, r, spec.Eps, cs, cz); err != nil {
					select {
					case errOnce <- err:
					default:
					}
					return
				}
				for i := range n {
					gx := buf[(c0+i)*g.size : (c0+i+1)*g.size]
					e := sqErr(gx, cs[i], cz[i], lo, hi)
					if k == 0 || e < best[i] {
						best[i], scale[c0+i], zp[c0+i] = e, cs[i], cz[i]
					}
				}
			}
		}
	})
	select {
	case firstErr = <-errOnce:
	default:
	}
	return firstErr
}
