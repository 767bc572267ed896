// Package forward runs single float32 layers — Linear (torch.nn.functional.linear) and Conv2d
// (F.conv2d) — as plain reference implementations, so that a quantized checkpoint can be judged
// by what matters to its user, the layer's output: the same input goes through the original
// and the dequantized weights and the outputs are compared (the CLI's validation). They
// accumulate in float64 (AVX2 dot products where the CPU has them) for exactness; they are not
// inference kernels.
package forward

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/monoquant/monoquant/core/tensor"
)

// The forward functions below run one Linear or Conv2d layer in plain float32 so that a
// quantized checkpoint can be checked by what matters to its user — the layer's output — and
// not only by the weight error: the same random input goes through the original weights and
// through the dequantized ones, and the two outputs are compared by SQNR (the CLI's output
// validation does this). They are reference implementations, written for clarity and exactness
// (float64 accumulation, so the measured difference is the weights' and not the summation
// order's); they are not fast kernels.

// Linear computes y = x·Wᵀ + b, torch.nn.functional.linear: x is [batch, in] row-major,
// w is [out, in], bias is nil or [out]. The result is [batch, out].
func Linear(x []float32, batch int, w []float32, out, in int, bias []float32) ([]float32, error) {
	if batch < 0 || out <= 0 || in <= 0 {
		return nil, fmt.Errorf("linear: bad sizes batch %d, out %d, in %d", batch, out, in)
	}
	if n := tensor.NumElements([]int{batch, in}); n < 0 || len(x) != n {
		return nil, fmt.Errorf("linear: input has %d values, want batch %d × in %d", len(x), batch, in)
	}
	if n := tensor.NumElements([]int{out, in}); n < 0 || len(w) != n {
		return nil, fmt.Errorf("linear: weight has %d values, want out %d × in %d", len(w), out, in)
	}
	if bias != nil && len(bias) != out {
		return nil, fmt.Errorf("linear: bias has %d values, want %d", len(bias), out)
	}
	y := make([]float32, batch*out)
	parallelRows(out, func(lo, hi int) {
		for o := lo; o < hi; o++ {
			wr := w[o*in : (o+1)*in]
			var bo float64
			if bias != nil {
				bo = float64(bias[o])
			}
			// Four input rows per pass over the weight row: each weight is loaded and widened
			// once for four independent sums (a weight matrix is read once per four rows, and
			// the four chains keep the FPU busy).
			b := 0
			for ; b+4 <= batch; b += 4 {
				x0, x1, x2, x3 := x[b*in:(b+1)*in], x[(b+1)*in:(b+2)*in], x[(b+2)*in:(b+3)*in], x[(b+3)*in:(b+4)*in]
				var a0, a1, a2, a3 float64
				i0 := 0
				if haveDotAVX2 && len(wr) >= 8 {
					// The bulk eight at a time; the products are exact in float64, so only the
					// order of the additions differs from the loop below.
					i0 = len(wr) &^ 7
					a0, a1, a2, a3 = dot4AVX2(&wr[0], &x0[0], &x1[0], &x2[0], &x3[0], i0)
				}
				for i := i0; i < len(wr); i++ {
					v := wr[i]
					wv := float64(v)
					a0 += wv * float64(x0[i])
					a1 += wv * float64(x1[i])
					a2 += wv * float64(x2[i])
					a3 += wv * float64(x3[i])
				}
				y[b*out+o], y[(b+1)*out+o] = float32(a0+bo), float32(a1+bo)
				y[(b+2)*out+o], y[(b+3)*out+o] = float32(a2+bo), float32(a3+bo)
			}
			for ; b < batch; b++ {
				xr := x[b*in : (b+1)*in]
				var acc float64
				for i, v := range wr {
					acc += float64(v) * float64(xr[i])
				}
				y[b*out+o] = float32(acc + bo)
			}
		}
	})
	return y, nil
}

// Conv2dParams are torch.nn.Conv2d's geometry arguments. The zero value means stride 1,
// padding 0, dilation 1, groups 1.
type Conv2dParams struct {
	Stride, Padding, Dilation [2]int
	Groups                    int
}

func (p Conv2dParams) normalized() Conv2dParams {
	for i := 0; i < 2; i++ {
		if p.Stride[i] == 0 {
			p.Stride[i] = 1
		}
		if p.Dilation[i] == 0 {
			p.Dilation[i] = 1
		}
	}
	if p.Groups == 0 {
		p.Groups = 1
	}
	return p
}

// Conv2d is a direct convolution, torch.nn.functional.conv2d: x is [N, C, H, W], w is
// [O, C/groups, kH, kW], bias nil or [O]. It returns the output and its shape [N, O, outH, outW].
func Conv2d(x []float32, xShape [4]int, w []float32, wShape [4]int, bias []float32, p Conv2dParams) ([]float32, [4]int, error) {
	p = p.normalized()
	var zero [4]int
	n, c, h, wd := xShape[0], xShape[1], xShape[2], xShape[3]
	o, cg, kh, kw := wShape[0], wShape[1], wShape[2], wShape[3]
	for i := 0; i < 2; i++ {
		if p.Stride[i] < 1 || p.Dilation[i] < 1 || p.Padding[i] < 0 {
			return nil, zero, fmt.Errorf("conv2d: bad stride %v, padding %v or dilation %v", p.Stride, p.Padding, p.Dilation)
		}
	}
	if p.Groups < 1 || o%p.Groups != 0 || c != cg*p.Groups {
		return nil, zero, fmt.Errorf("conv2d: input has %d channels, weight %v with groups %d needs %d (and out channels divisible by groups)", c, wShape, p.Groups, cg*p.Groups)
	}
	if nx := tensor.NumElements(xShape[:]); nx < 0 || len(x) != nx {
		return nil, zero, fmt.Errorf("conv2d: input has %d values, shape %v needs %d", len(x), xShape, nx)
	}
	if nw := tensor.NumElements(wShape[:]); nw <= 0 || len(w) != nw {
		return nil, zero, fmt.Errorf("conv2d: weight has %d values, shape %v needs %d", len(w), wShape, nw)
	}
	if bias != nil && len(bias) != o {
		return nil, zero, fmt.Errorf("conv2d: bias has %d values, want %d", len(bias), o)
	}
	oh := (h+2*p.Padding[0]-p.Dilation[0]*(kh-1)-1)/p.Stride[0] + 1
	ow := (wd+2*p.Padding[1]-p.Dilation[1]*(kw-1)-1)/p.Stride[1] + 1
	if oh < 1 || ow < 1 {
		return nil, zero, fmt.Errorf("conv2d: input %dx%d is smaller than the dilated kernel %dx%d", h, wd, kh, kw)
	}
	outShape := [4]int{n, o, oh, ow}
	y := make([]float32, n*o*oh*ow)
	opg := o / p.Groups
	parallelRows(o, func(lo, hi int) {
		for oc := lo; oc < hi; oc++ {
			g := oc / opg
			wk := w[oc*cg*kh*kw : (oc+1)*cg*kh*kw]
			for b := 0; b < n; b++ {
				for oy := 0; oy < oh; oy++ {
					for ox := 0; ox < ow; ox++ {
						var acc float64
						for ic := 0; ic < cg; ic++ {
							xc := x[((b*c)+g*cg+ic)*h*wd:]
							for ky := 0; ky < kh; ky++ {
								iy := oy*p.Stride[0] - p.Padding[0] + ky*p.Dilation[0]
								if iy < 0 || iy >= h {
									continue
								}
								for kx := 0; kx < kw; kx++ {
									ix := ox*p.Stride[1] - p.Padding[1] + kx*p.Dilation[1]
									if ix < 0 || ix >= wd {
										continue
									}
									acc += float64(wk[(ic*kh+ky)*kw+kx]) * float64(xc[iy*wd+ix])
								}
							}
						}
						if bias != nil {
							acc += float64(bias[oc])
						}
						y[((b*o+oc)*oh+oy)*ow+ox] = float32(acc)
					}
				}
			}
		}
	})
	return y, outShape, nil
}

// parallelRows splits [0, n) over the cores; each output row is independent.
func parallelRows(n int, fn func(lo, hi int)) {
	w := min(runtime.GOMAXPROCS(0), n)
	if w <= 1 {
		fn(0, n)
		return
	}
	per := (n + w - 1) / w
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}
