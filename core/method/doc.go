// Package method decides how weights become integers. Every method writes exactly the stored
// form of core/quant (packed int8/int4 values, float32 scales, int32 zero points; see
// docs/FORMAT.md), so every reader of a quantized checkpoint keeps working; only the choice
// of scales, zero points and (for gptq) the rounding of each weight changes.
//
// # Methods
//
//	rtn   round to nearest with min/max qparams: core/quant.Quantize itself, bytes identical.
//	      Cost: one pass (GB/s).
//	mse   per granule (group, channel or tensor), search the clipping ratio p of the range
//	      [p·min, p·max] that minimises Σ(x − x̂)², as the clip searches of AWQ (Lin et al.
//	      2023, auto_clip) and llama.cpp (make_qx_quants) do. Grid: p = 1, 0.975, …, 0.525
//	      (Options.MSEGrid = 20 ratios, MSEStep = 0.025); qparams for each ratio by torch's
//	      min/max formula, error with the kernel's own rounding; a granule stops after two
//	      ratios in a row that did worse than its best. Cost: about 8 quantize passes.
//	hqq   Half-Quadratic Quantization (Badri & Shaji 2023, "HQQ: Half-Quadratic Quantization
//	      of Large Machine Learning Models"): no data; alternates a proximal step on a sparse
//	      (lp, p = 0.7) error term with a closed-form quadratic step for the qparams. The hqq
//	      package optimises a float zero point; the stored zero points here are integers, so
//	      the quadratic step fits scale and zero point and rounds the zero at every step,
//	      starting from the mse result and keeping the best (see hqqParams); then, with the
//	      integers kept, the step is rescaled so that each group's error is orthogonal to its
//	      weights (unshrink: a least-squares fit pulls every group toward its zero point, which
//	      the paper's min/max step does not, and a trained network's loss feels that shrink).
//	      Needs the asymmetric scheme. Cost: mse plus up to HQQIters (20) passes of two sweeps,
//	      plus five passes.
//	gptq  GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for
//	      Generative Pre-trained Transformers"): quantizes the columns (inputs) one by one and
//	      spreads each column's error over the columns not yet quantized through the inverse
//	      of the layer's input Hessian H = XᵀX (Options.Hessian, from the caller's calibration
//	      data): dampening λ = PercDamp·mean(diag H) (0.01 as in the paper), the upper
//	      Cholesky factor of H⁻¹, lazy batches of BlockSize (128) columns, optional act-order
//	      (decreasing diag H, with group qparams then fixed from the unquantized weights so
//	      groups stay consecutive columns). Cost: O(K³) for the factorization plus
//	      O(rows·K²) for the updates, float64 (gonum's BLAS/LAPACK in pure Go); memory:
//	      the weights as float64 (8·rows·K bytes) and four K×K float64 matrices.
//
// # Using it
//
//	spec := quant.Spec{Format: quant.Int4, GroupSize: 128, Scheme: quant.Asymmetric}
//	spec.Normalize(w.Shape)
//	dst := make([]byte, quant.PackedLen(spec.Format, w.Len()))
//	scale, zp := make([]float32, spec.NumParams(w.Shape)), make([]int32, spec.NumParams(w.Shape))
//	res, err := method.Quantize(method.HQQ, dst, w, spec, scale, zp, method.Options{})
//
//	// gptq: the tensor viewed as [rows, K]; H is [K, K] (float32 or float64)
//	res, err = method.Quantize(method.GPTQ, dst, w, spec, scale, zp, method.Options{Hessian: h})
//	if res.Singular { /* inputs that never fired, or rank-deficient H: damped, reported */ }
//
// core/model applies a method per tensor (Options.Method, Run.Hessians) and records it in
// the file config ("method": "hqq"); the CLI takes --method.
//
// # Bad input
//
// Errors wrap ErrMethod (unknown method, options out of range, a method that cannot produce
// the spec: a float format, hqq with the symmetric scheme, gptq per tensor or on a channel
// axis other than 0; gptq without a Hessian, with one of the wrong size, non-finite or not
// positive semi-definite), quant.ErrSpec (buffers, spec) or quant.ErrNonFinite (NaN/Inf in
// the weights: the methods other than rtn need finite weights). A singular Hessian is not an
// error: it is damped as in the paper, harder (×10, up to three times) if the Cholesky
// factorization still fails, and Result says so.
//
// # Why gonum
//
// gptq needs a Cholesky factorization, a triangular inverse and large matrix products of
// K×K float64 matrices (K = 4096 and more). gonum.org/v1/gonum is pure Go (no cgo, so
// libmonoquant.so stays one self-contained library), BSD-licensed, maintained for a decade,
// and its blocked LAPACK routines with assembly kernels are an order of magnitude faster
// than a hand-written triple loop, which would also be the riskier code.
package method
