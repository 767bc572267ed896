package quant_test

import (
	"fmt"
	"math"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// weights is a deterministic 64×256 "layer": smooth rows of different magnitudes.
func weights() ([]float32, *tensor.Tensor) {
	v := make([]float32, 64*256)
	for r := 0; r < 64; r++ {
		for c := 0; c < 256; c++ {
			v[r*256+c] = float32(math.Sin(float64(r*256+c)*0.37) * (0.01 + 0.002*float64(r)))
		}
	}
	return v, tensor.FromFloat32(v, 64, 256)
}

// Per-channel INT8, torch's default weight quantization: one scale per output row.
func Example_int8PerChannel() {
	v, w := weights()
	q, err := quant.QuantizeTensor(w, quant.Spec{Format: quant.Int8, Granularity: quant.PerChannel, Axis: 0})
	if err != nil {
		panic(err)
	}
	back, err := q.Dequantize()
	if err != nil {
		panic(err)
	}
	size := quant.SizeOf(w.Shape, 4, &q.Spec)
	fmt.Printf("scales: %d, first %.6g, zero point %d\n", len(q.Scale), q.Scale[0], q.ZeroPoint[0])
	fmt.Printf("w[1] = %.6f -> q %d -> %.6f\n", v[1], int8(q.Data[1]), back[1])
	fmt.Printf("SQNR %.1f dB, %.3f bits per weight, %d -> %d bytes\n",
		quant.SQNR(v, back), size.BitsPerWeight(), size.OriginalBytes, size.QuantizedBytes())
	// Output:
	// scales: 64, first 7.84312e-05, zero point 0
	// w[1] = 0.003616 -> q 46 -> 0.003608
	// SQNR 49.7 dB, 8.125 bits per weight, 65536 -> 16640 bytes
}

// Group-wise INT4: 128 values of a row share a scale; two values per byte.
func Example_int4GroupWise() {
	v, w := weights()
	spec := quant.Spec{Format: quant.Int4, Granularity: quant.PerGroup, GroupSize: 128, Scheme: quant.Asymmetric}
	q, err := quant.QuantizeTensor(w, spec)
	if err != nil {
		panic(err)
	}
	back, err := q.Dequantize()
	if err != nil {
		panic(err)
	}
	db, err := quant.SQNRQuantized(w, q.Data, q.Spec, q.Scale, q.ZeroPoint)
	if err != nil {
		panic(err)
	}
	size := quant.SizeOf(w.Shape, 4, &q.Spec)
	fmt.Printf("params shape %v, packed bytes %d\n", q.Spec.ParamShape(w.Shape), len(q.Data))
	fmt.Printf("byte 0 = %#02x: q[0] = %d, q[1] = %d\n", q.Data[0], quant.Nibble(q.Data, 0, true), quant.Nibble(q.Data, 1, true))
	fmt.Printf("SQNR %.1f dB (same without a copy: %v), %.2f bits per weight\n",
		quant.SQNR(v, back), math.Abs(db-quant.SQNR(v, back)) < 1e-9, size.BitsPerWeight())
	// Output:
	// params shape [64 2], packed bytes 8192
	// byte 0 = 0x2f: q[0] = -1, q[1] = 2
	// SQNR 24.7 dB (same without a copy: true), 4.50 bits per weight
}

// Casting to bfloat16 keeps the range and drops mantissa bits.
func Example_bfloat16() {
	v, w := weights()
	q, err := quant.QuantizeTensor(w, quant.Spec{Format: quant.BFloat16})
	if err != nil {
		panic(err)
	}
	back, _ := q.Dequantize()
	fmt.Printf("%.7f -> %.7f, SQNR %.1f dB, overflow %d\n", v[1], back[1], quant.SQNR(v, back), q.Stats.Overflow)
	// Output:
	// 0.0036162 -> 0.0036163, SQNR 56.0 dB, overflow 0
}
