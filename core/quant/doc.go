// Package quant turns float tensors into integer or half-precision ones and back, at numeric
// parity with PyTorch: the same scales, zero points and integers as torch.ao.quantization's
// MinMax observers followed by torch.quantize_per_tensor / torch.quantize_per_channel, bit for
// bit (testdata/gen_quant_golden.py generates the proof from a real torch; golden_test.go
// checks it).
//
// # Formats
//
// A Spec says what a tensor becomes:
//
//	Int8      one byte per value: QInt8 (-128..127) or QUInt8 (0..255)
//	Int4      two values per byte, QInt4 (-8..7, two's-complement nibbles) or QUInt4 (0..15);
//	          element 2i is the low nibble of byte i, element 2i+1 the high nibble
//	Float16   IEEE half, round to nearest even; overflow gives ±Inf, counted in Stats.Overflow
//	BFloat16  bfloat16, round to nearest even
//
// Integer formats come Symmetric (torch's per_*_symmetric: zero point 0, or the middle of an
// unsigned range) or Asymmetric (per_*_affine), and PerTensor, PerChannel (any Axis, negative
// counts from the end) or PerGroup (GroupSize consecutive values of the last dimension, per row,
// as group-wise INT4 weight quantization does). ReduceRange, QuantRange and Eps are torch's
// reduce_range, quant_min/quant_max and eps. The zero Spec fields take defaults: Symmetric,
// per-channel axis 0 for Int8, groups of 128 for Int4, signed storage.
//
// # The math
//
// For every granule (the whole tensor, one channel or one group):
//
//	min, max = aminmax(x)                      // torch's observer; 0 always inside the range
//	scale, zp = CalculateQParams(min, max)     // torch's _calculate_qparams, float32 per op
//	q = clamp(zp + round_half_even(x * (1/scale)), qmin, qmax)
//	dequantized = (q - zp) * scale             // one float32 rounding
//
// Symmetric scales divide by (qmax-qmin)/2, i.e. 127.5 for 8 bits, not 127: a value at the edge
// of the range may lose half a step to the clamp, exactly as in torch. Scales never fall below
// Eps, so all-zero channels and constants get a valid scale, never 0, NaN or Inf.
//
// Torch has no 4-bit dtype; the Int4 formats match torch's observers run on qint8 with
// quant_min=-8, quant_max=7 (quint8 with 0, 15), which torch treats as a custom range: the
// symmetric zero point of QUInt4 is therefore (0+15)//2 = 7.
//
// Inputs may be F32, F16, BF16 or F64; they are converted to float32 first, as torch's
// .to(torch.float32) does (F64 to F16/BF16 therefore rounds twice, as torch does too). F32 input
// is read in place, never copied.
//
// # Using it
//
// The one-call form allocates the outputs:
//
//	q, err := quant.QuantizeTensor(w, quant.Spec{Format: quant.Int4, GroupSize: 128})
//	// q.Data: packed nibbles; q.Scale, q.ZeroPoint: one per group, shape q.Spec.ParamShape(w.Shape)
//	back, err := q.Dequantize()
//	fmt.Println(quant.SQNR(wValues, back), "dB")
//
// The buffer form writes into caller memory (the C ABI hands it views of its own buffers):
//
//	spec := quant.Spec{Format: quant.Int8, Granularity: quant.PerChannel, Axis: 0}
//	if _, err := spec.Normalize(w.Shape); err != nil { ... }
//	dst := make([]byte, quant.PackedLen(spec.Format, w.Len()))
//	scale, zp := make([]float32, spec.NumParams(w.Shape)), make([]int32, spec.NumParams(w.Shape))
//	stats, err := quant.Quantize(dst, w, spec, scale, zp)
//	db, err := quant.SQNRQuantized(w, dst, spec, scale, zp)   // no dequantized copy
//
// QuantizeWithParams takes scales and zero points from elsewhere (an observer that saw
// calibration data, or a previous call). MinMax and CalculateQParams are the two halves of the
// qparam computation for callers that need them separately. SizeOf accounts bytes and bits per
// weight, scales and zero points included.
//
// # Bad input
//
// Errors wrap ErrSpec (an invalid spec, a buffer too short, a non-float input, an asymmetric
// range so wide that max − min overflows float32, where torch would carry an infinite scale)
// or ErrNonFinite (NaN or ±Inf in the input, with their count and the flat index of the first;
// an F64 value beyond the float32 range counts, as it becomes ±Inf in float32). With
// NonFinite: ClampNonFinite the non-finite values are instead left out of the ranges and
// quantized to the zero point (NaN) or the ends of the grid (±Inf).
//
// # Speed
//
// Large tensors are split across GOMAXPROCS goroutines; the results do not depend on the
// split. When every granule is one contiguous run (groups, or channels of the leading axis) and
// the input is F32, one pass per granule finds the range, computes the qparams and quantizes
// while the data is in cache; otherwise a min/max pass precedes the quantize pass. Nothing is
// allocated per element. Rounding and clamping happen on the bits of x*(1/scale) + 1.5·2^23,
// which rounds half to even exactly like torch and needs no branch; every intermediate is
// converted with float32(...) so that no platform fuses a multiply and an add into one FMA
// rounding. On amd64 with AVX2 and FMA, the min/max scan and the quantize loop run in assembly
// (eight values per instruction, the same float32 operations and integer clamp, so the same
// bytes: the golden tests, and tests and a fuzz target holding them to the scalar loops); under
// -asan the scalar loops run, so AddressSanitizer sees every store.
//
// QuantizeMeasured also returns the quantization error (Energy: Σx², Σ(x − x̂)²), accumulated
// in the quantize loop while each value is in a register; Energies sums the same over two float
// blocks. bench_test.go measures 4096×4096 float32 weights.
package quant
