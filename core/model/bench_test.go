package model

import (
	"math/rand/v2"
	"testing"

	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// BenchmarkQuantizeOne is the per-tensor work of a streaming run (quantize + error
// measurement) on an MLP-sized weight, in bytes of float32 input per second.
func BenchmarkQuantizeOne(b *testing.B) {
	x := randTensor(rand.New(rand.NewPCG(1, 1)), 2048, 5632)
	for _, c := range []struct {
		name string
		opts plan.Options
	}{{"int8_per_channel", plan.Options{Bits: 8}}, {"int4_g128", plan.Options{Bits: 4}}} {
		p, err := plan.NewPlan([]tensor.Info{{Name: "fc.weight", DType: tensor.F32, Shape: x.Shape}}, nil, c.opts)
		if err != nil {
			b.Fatal(err)
		}
		tp := &p.Tensors[0]
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(x.Data)))
			var buf quantBuffers
			for i := 0; i < b.N; i++ {
				if _, _, err := quantizeOne(tp, x, &buf, method.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/kernel_only", func(b *testing.B) {
			b.SetBytes(int64(len(x.Data)))
			q, _ := quant.QuantizeTensor(x, tp.Spec)
			for i := 0; i < b.N; i++ {
				quant.Quantize(q.Data, x, tp.Spec, q.Scale, q.ZeroPoint)
			}
		})
		b.Run(c.name+"/sqnr_quantized_only", func(b *testing.B) {
			b.SetBytes(int64(len(x.Data)))
			q, _ := quant.QuantizeTensor(x, tp.Spec)
			for i := 0; i < b.N; i++ {
				quant.SQNRQuantized(x, q.Data, q.Spec, q.Scale, q.ZeroPoint)
			}
		})
	}
}
