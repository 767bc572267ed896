// Package observer watches tensors go by (activations during calibration, or weights) and turns
// what it saw into quantization parameters, at bit parity with torch.ao.quantization's observers
// in torch ≥ 2.5:
//
//	Kind                           torch class
//	MinMax                         MinMaxObserver
//	MovingAverageMinMax            MovingAverageMinMaxObserver
//	PerChannelMinMax               PerChannelMinMaxObserver
//	MovingAveragePerChannelMinMax  MovingAveragePerChannelMinMaxObserver
//	Histogram                      HistogramObserver
//
// An observer is made from Options, which are torch's constructor arguments; zero fields take
// torch's defaults (quint8, affine, eps = finfo(float32).eps, averaging constant 0.01, 2048 bins,
// channel axis 0):
//
//	obs, err := observer.New(observer.Options{Kind: observer.Histogram, DType: quant.QInt8})
//	for _, batch := range calibration {          // *tensor.Tensor: F32, F16, BF16 or F64
//		if err := obs.Observe(batch); err != nil { // NaN is refused, the state left as it was
//			return err
//		}
//	}
//	scale, zeroPoint, err := obs.QParams()       // torch's calculate_qparams()
//
// QParams returns one pair for the per-tensor kinds and one per channel (the index along ChAxis;
// negative axes count from the end) for the per-channel kinds; quant.Quantize and friends take
// them as they are. Before any data it returns torch's defaults, scale 1 and zero point 0.
//
// # Parity with torch
//
// Every number an observer keeps is what torch keeps, to the bit: running minima and maxima,
// the moving averages (old + c*(cur-old), three float32 roundings), the histogram counts, and the
// final scales and zero points. That needs more than the formulas: torch.histc's float32 bin
// arithmetic, torch.linspace computed with fused multiply-adds, torch.sum's cascade order, the
// float32/float64 mix of _non_linear_param_search. The tests replay batches recorded from real
// torch (testdata/gen_observer_golden.py) and compare bit patterns.
//
// torch.sum's order depends on the SIMD width ATen dispatches to; the package follows the
// machine's (AVX2: 8 lanes, AVX512: 16, overridable with ATEN_CPU_CAPABILITY as in torch). A
// histogram search that compares two error terms equal to the last bit could pick a different
// bin on a different torch build; the golden vectors were made on AVX2.
//
// Where torch has no useful answer this package differs on purpose, and says so with an error
// wrapping ErrInput: NaN in a batch (torch would poison the state), ±Inf for the min/max kinds
// (torch would produce an infinite range; the histogram drops infinities exactly as torch does),
// per-channel input with fewer than two dimensions or a changed channel count (torch fails or
// broadcasts). Invalid options wrap ErrOptions. HistogramObserver in torch does not cast its
// input to float32 (the other observers do); here every observer sees x.to(float32).
//
// Observers are not safe for concurrent use; Observe itself spreads a large batch over
// GOMAXPROCS goroutines and allocates nothing per element. The HistogramObserver shares a large
// float32 batch (at least 64K values) with one package-level helper goroutine, in 64 KiB chunks
// that each side claims as it goes (min/max first, then histc of the same chunks while they are
// in its cache, the old histogram's re-binning beside it): nothing is allocated or started per
// batch, and a helper that is busy or slow to be scheduled only takes fewer chunks. On amd64 the
// histc bins, the min/max and the re-binning's mid-points come from AVX2/FMA kernels; the
// portable Go code gives the same bits (the tests compare both paths on adversarial input).
package observer
