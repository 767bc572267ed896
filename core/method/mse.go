package method

import (
	"github.com/monoquant/monoquant/core/quant"
)

// mseParams picks, per granule, the clipping ratio p of the grid 1, 1−step, … whose qparams
// (torch's min/max formula on [p·min, p·max]) give the least squared error, with the
// kernel's own rounding and clamp. Ties keep the larger range, so p = 1 (plain RTN) wins
// unless clipping strictly helps. The error is close to unimodal in p, so a granule's
// search stops once two ratios in a row did worse than its best (AWQ's and llama.cpp's
// searches scan their whole grids; this halves the cost for the same choice on MiniLM).
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
		worse := make([]int8, chunk)
		for c0 := a; c0 < b; c0 += chunk {
			n := min(chunk, b-c0)
			for i := range n {
				gx := buf[(c0+i)*g.size : (c0+i+1)*g.size]
				mins[i], maxs[i] = minMax(gx)
				worse[i] = 0
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
				active := false
				for i := range n {
					if worse[i] >= 2 {
						continue
					}
					active = true
					gx := buf[(c0+i)*g.size : (c0+i+1)*g.size]
					e := sqErr(gx, cs[i], cz[i], lo, hi)
					if k == 0 || e < best[i] {
						best[i], scale[c0+i], zp[c0+i], worse[i] = e, cs[i], cz[i], 0
					} else {
						worse[i]++
					}
				}
				if !active {
					break
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
