package observer_test

import (
	"fmt"
	"math"

	"github.com/monoquant/monoquant/core/observer"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// wave is a deterministic stand-in for calibration data: n values of a damped sine, scaled.
func wave(n int, amp, phase float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		t := float64(i) / float64(n)
		v[i] = float32(amp * math.Sin(40*t+phase) * math.Exp(-3*t))
	}
	return v
}

// A HistogramObserver over three calibration batches, the last with one outlier at 40. The search
// weighs the L2 error of clipping against that of a coarser grid: one value clipped from 40 to
// 2 costs more than 12287 values on a grid of 0.16, so here it keeps the whole range (torch 2.15
// gives the same scale and zero point).
func Example_histogram() {
	obs, err := observer.New(observer.Options{Kind: observer.Histogram})
	if err != nil {
		panic(err)
	}
	for b := 0; b < 3; b++ {
		x := wave(4096, 2, float64(b))
		if b == 2 {
			x[100] = 40 // an outlier
		}
		if err := obs.Observe(tensor.FromFloat32(x, 64, 64)); err != nil {
			panic(err)
		}
	}
	mn, mx := obs.Range()
	scale, zp, err := obs.QParams()
	if err != nil {
		panic(err)
	}
	fmt.Printf("observed range [%.4f, %.4f]\n", mn[0], mx[0])
	fmt.Printf("scale %.6f zero point %d (grid covers [%.4f, %.4f])\n",
		scale[0], zp[0], -float32(zp[0])*scale[0], float32(255-zp[0])*scale[0])
	// Output:
	// observed range [-1.6364, 40.0000]
	// scale 0.163200 zero point 10 (grid covers [-1.6320, 39.9841])
}

// A symmetric per-channel observer over the rows of a weight matrix, as for weight quantization.
func Example_perChannel() {
	obs, err := observer.New(observer.Options{
		Kind:   observer.PerChannelMinMax,
		DType:  quant.QInt8,
		Scheme: quant.Symmetric,
		ChAxis: 0, // rows: one scale per output feature
	})
	if err != nil {
		panic(err)
	}
	w := make([]float32, 0, 4*8)
	for row := 0; row < 4; row++ {
		w = append(w, wave(8, float64(row+1)/2, float64(row))...)
	}
	for batch := 0; batch < 2; batch++ { // weights are usually observed once; twice changes nothing
		if err := obs.Observe(tensor.FromFloat32(w, 4, 8)); err != nil {
			panic(err)
		}
	}
	scale, zp, _ := obs.QParams()
	for c := range scale {
		fmt.Printf("channel %d: scale %.6f zero point %d\n", c, scale[c], zp[c])
	}
	// Output:
	// channel 0: scale 0.002585 zero point 0
	// channel 1: scale 0.006600 zero point 0
	// channel 2: scale 0.010698 zero point 0
	// channel 3: scale 0.010666 zero point 0
}
