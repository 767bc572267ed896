package observer

import (
	"math/rand/v2"
	"testing"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// benchBatches returns n batches of rows×cols gaussian float32 with a slowly growing spread,
// so that most batches widen the range and go through the histogram combine, as in calibration.
func benchBatches(n, rows, cols int) []*tensor.Tensor {
	rng := rand.New(rand.NewPCG(7, 8))
	out := make([]*tensor.Tensor, n)
	for b := range out {
		v := make([]float32, rows*cols)
		s := 1 + float64(b)/50
		for i := range v {
			v[i] = float32(rng.NormFloat64() * s)
		}
		out[b] = tensor.FromFloat32(v, rows, cols)
	}
	return out
}

// BenchmarkHistogram100x64x4096 is the calibration the Python package is measured on against
// torch: 100 batches of 64×4096 float32 through a HistogramObserver, then calculate_qparams.
func BenchmarkHistogram100x64x4096(b *testing.B) {
	benchCalibration(b, benchBatches(100, 64, 4096))
}

// steadyBatches returns n batches of rows×cols gaussian float32 of one spread, the first holding
// ±6 (so the range settles after it: every later batch lies inside, torch's case of adding
// histc over the unchanged range).
func steadyBatches(n, rows, cols int) []*tensor.Tensor {
	rng := rand.New(rand.NewPCG(9, 10))
	out := make([]*tensor.Tensor, n)
	for b := range out {
		v := make([]float32, rows*cols)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		if b == 0 {
			v[0], v[1] = -6, 6
		}
		out[b] = tensor.FromFloat32(v, rows, cols)
	}
	return out
}

// BenchmarkHistogramSteady100x64x4096 is BenchmarkHistogram100x64x4096 on steadyBatches: the
// range no longer grows after the first batch.
func BenchmarkHistogramSteady100x64x4096(b *testing.B) {
	benchCalibration(b, steadyBatches(100, 64, 4096))
}

func benchCalibration(b *testing.B, batches []*tensor.Tensor) {
	b.SetBytes(int64(100 * 64 * 4096 * 4))
	b.ResetTimer()
	cpu0 := processCPU()
	defer func() {
		// The process CPU time per run (both cores' work): what the neighbours on a shared
		// machine barely move, unlike ns/op.
		if cpu := processCPU() - cpu0; cpu > 0 {
			b.ReportMetric(float64(cpu)/1e6/float64(b.N), "cpu-ms/op")
		}
	}()
	for i := 0; i < b.N; i++ {
		obs, _ := New(Options{Kind: Histogram})
		for _, x := range batches {
			if err := obs.Observe(x); err != nil {
				b.Fatal(err)
			}
		}
		if _, _, err := obs.QParams(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkObserve measures one 64×4096 batch per kind, in the steady state.
func BenchmarkObserve(b *testing.B) {
	batches := benchBatches(4, 64, 4096)
	for _, kind := range allKinds {
		b.Run(kind.String(), func(b *testing.B) {
			obs, _ := New(Options{Kind: kind})
			for _, x := range batches {
				_ = obs.Observe(x)
			}
			b.SetBytes(64 * 4096 * 4)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := obs.Observe(batches[i%len(batches)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHistogramQParams is _non_linear_param_search plus _calculate_qparams on a histogram
// of 100 calibration batches.
func BenchmarkHistogramQParams(b *testing.B) {
	obs, _ := New(Options{Kind: Histogram, DType: quant.QUInt8})
	for _, x := range benchBatches(20, 64, 4096) {
		_ = obs.Observe(x)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := obs.QParams(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpscale is one re-binning of a calibrated histogram into a range 10% wider (the
// work a range-widening batch adds besides counting its own values).
func BenchmarkUpscale(b *testing.B) {
	obs, _ := New(Options{Kind: Histogram})
	for _, x := range benchBatches(20, 64, 4096) {
		_ = obs.Observe(x)
	}
	h := obs.(*HistogramObserver)
	lo, hi := h.min*1.1, h.max*1.1
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.upscale(lo, hi)
	}
}

// BenchmarkHistogramFloor measures, on the same 100 batches of 64×4096, the parts of the work
// that no restructuring removes, as floors for BenchmarkHistogram100x64x4096:
//   - read: one min/max pass over the 100 batches (100 MiB, from memory: they do not fit in the
//     caches), the batch split between two goroutines as the observer splits it;
//   - histc: counting 100 × 64×4096 values into 2048 bins with the vector kernel, from the cache
//     (one batch, its halves counted by two goroutines, 100 times), as the observer counts a
//     batch that its min/max pass has just read (the kernel's floor is one store per value);
//   - upscale: 100 re-binnings of a calibrated histogram.
//
// ns/op is wall time; cpu-ms/op is the process CPU time per run (both goroutines).
func BenchmarkHistogramFloor(b *testing.B) {
	batches := benchBatches(100, 64, 4096)
	xs := make([][]float32, len(batches))
	for i, t := range batches {
		xs[i] = tensor.View[float32](t.Data)
	}
	cpuMetric := func(b *testing.B, cpu0 int64) {
		if cpu := processCPU() - cpu0; cpu > 0 {
			b.ReportMetric(float64(cpu)/1e6/float64(b.N), "cpu-ms/op")
		}
	}
	var sink float32
	b.Run("read", func(b *testing.B) {
		cpu0 := processCPU()
		for i := 0; i < b.N; i++ {
			for _, x := range xs {
				half := len(x) / 2
				done := make(chan float32)
				go func() {
					mn, _ := quant.MinMaxF32(x[half:])
					done <- mn
				}()
				mn, _ := quant.MinMaxF32(x[:half])
				sink += mn + <-done
			}
		}
		cpuMetric(b, cpu0)
	})
	b.Run("histc", func(b *testing.B) {
		counts := [2][]uint32{make([]uint32, 2049), make([]uint32, 2049)}
		cpu0 := processCPU()
		for i := 0; i < b.N; i++ {
			x := xs[len(xs)-1]
			mn, mx := quant.MinMaxF32(x)
			left, right := histBounds(mn, mx)
			for range 100 {
				half := len(x) / 2
				done := make(chan struct{})
				go func() {
					countBins(counts[1], x[half:], left, right, 2048, right-left)
					close(done)
				}()
				countBins(counts[0], x[:half], left, right, 2048, right-left)
				<-done
			}
		}
		cpuMetric(b, cpu0)
	})
	b.Run("upscale", func(b *testing.B) {
		obs, _ := New(Options{Kind: Histogram})
		for _, x := range batches[:20] {
			_ = obs.Observe(x)
		}
		h := obs.(*HistogramObserver)
		lo, hi := h.min*1.1, h.max*1.1
		cpu0 := processCPU()
		for i := 0; i < b.N; i++ {
			for range 100 {
				h.upscale(lo, hi)
			}
		}
		cpuMetric(b, cpu0)
	})
	_ = sink
}
