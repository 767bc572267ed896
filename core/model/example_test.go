package model_test

import (
	"context"
	"fmt"

	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/tensor"
)

// A linear layer and its bias, quantized in memory to INT8 per-channel.
func ExampleModel_Quantize() {
	w := make([]float32, 4*64)
	for i := range w {
		w[i] = float32(i%17-8) / 10
	}
	m := model.NewModel()
	m.Add("fc.weight", tensor.FromFloat32(w, 4, 64))
	m.Add("fc.bias", tensor.FromFloat32(make([]float32, 4), 4))
	res, err := m.Quantize(context.Background(), plan.Options{Bits: 8}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range res.Entries() {
		fmt.Println(e.Name, e.DType, e.Shape)
	}
	r := res.Report
	fmt.Printf("%d → %d bytes, %.2f bits per weight, SQNR %.1f dB\n", r.TotalBytesBefore, r.TotalBytesAfter, r.BitsPerWeight, float64(r.SQNR))
	// Output:
	// fc.weight I8 [4 64]
	// fc.weight.scale F32 [4]
	// fc.bias F32 [4]
	// 1040 → 288 bytes, 8.50 bits per weight, SQNR 48.1 dB
}
