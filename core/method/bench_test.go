package method

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// BenchmarkMethods4096 quantizes a 4096×4096 float32 matrix to INT4 g128 with each method
// (cost goals on 2 cores: mse ≤ 0.3 s, hqq ≤ 1 s, gptq ≤ 60 s). gptq gets H = XᵀX + I
// over 512 correlated samples (full rank; its cost does not depend on H's values).
// Run: make bench-method.
func BenchmarkMethods4096(b *testing.B) {
	const n = 4096
	w := heavyWeights(n, n, 9)
	src := tensor.FromFloat32(w, n, n)
	var ht *tensor.Tensor
	for _, tc := range []struct {
		m    Method
		spec quant.Spec
	}{
		{RTN, quant.Spec{Format: quant.Int4, GroupSize: 128}},
		{RTN, quant.Spec{Format: quant.Int4, GroupSize: 128, Scheme: quant.Asymmetric}},
		{MSE, quant.Spec{Format: quant.Int4, GroupSize: 128}},
		{MSE, quant.Spec{Format: quant.Int4, GroupSize: 128, Scheme: quant.Asymmetric}},
		{HQQ, quant.Spec{Format: quant.Int4, GroupSize: 128, Scheme: quant.Asymmetric}},
		{GPTQ, quant.Spec{Format: quant.Int4, GroupSize: 128}},
	} {
		b.Run(fmt.Sprintf("%s/%v", tc.m, tc.spec.Scheme), func(b *testing.B) {
			o := Options{}
			if tc.m == GPTQ {
				if ht == nil {
					ht = benchHessian(512, n)
				}
				o.Hessian = ht
			}
			spec := tc.spec
			if _, err := spec.Normalize(src.Shape); err != nil {
				b.Fatal(err)
			}
			np := spec.NumParams(src.Shape)
			dst := make([]byte, n*n/2)
			sc, zp := make([]float32, np), make([]int32, np)
			b.SetBytes(int64(4 * n * n))
			b.ResetTimer()
			cpu0 := processCPU()
			for range b.N {
				if _, err := Quantize(tc.m, dst, src, spec, sc, zp, o); err != nil {
					b.Fatal(err)
				}
			}
			// CPU seconds per matrix: on a shared machine the wall clock swings with the
			// neighbours' load; on 2 idle cores the wall time is about half of this.
			b.ReportMetric(float64(processCPU()-cpu0)/1e9/float64(b.N), "cpu-s/op")
		})
	}
}

func benchHessian(samples, k int) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(11, 12))
	x := mat.NewDense(samples, k, nil)
	for s := range samples {
		base := rng.NormFloat64()
		for i := range k {
			x.Set(s, i, rng.NormFloat64()+0.5*base)
		}
	}
	var h mat.SymDense
	h.SymOuterK(1, x.T())
	out := make([]float32, k*k)
	for i := range k {
		for j := range k {
			out[i*k+j] = float32(h.At(i, j))
		}
		out[i*k+i]++
	}
	return tensor.FromFloat32(out, k, k)
}
