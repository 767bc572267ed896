// Package model works on whole checkpoints in the quantized format: given a plan (core/plan:
// what happens to each tensor), it quantizes them tensor by tensor from a checkpoint.Reader to a
// checkpoint.Writer, stores the result in the quantized checkpoint format of docs/FORMAT.md
// (PlanConfig, OutputEntries, Layout), reads that format back (ReadConfig; Dequantize for a whole
// file, DequantizeTensor for one tensor, RowDequantizer for a block of rows at a time) and
// reports what quantization cost (Report: sizes, bits per weight, SQNR per tensor and overall,
// warnings). Describe gives a plan as data, with the stored tensors it will write.
//
// # Quantizing
//
// For files:
//
//	res, err := convert.File(ctx, "model.safetensors", "model-int8.safetensors",
//		plan.Options{Bits: 8, Skip: []string{"lm_head"}}, convert.Run{})
//
// (core/convert is the file-to-file pipeline every caller runs; this package is what it runs.)
//
// Quantize streams any Reader into any Writer with a Plan, tensor by tensor; a writer goroutine
// overlaps the output with the next tensor's arithmetic. Tensors of 32 MiB and more are streamed
// a block of rows (about 8 MiB of input) at a time when the reader can release part of a tensor
// (checkpoint.RangeReleaser: safetensors) and the writer can take a tensor in parts
// (checkpoint.PartWriter: safetensors and .pt): quantized tensors whose qparams are per row
// (per-channel on axis 0, group-wise, FP16/BF16 casts) and kept tensors. The peak memory is then
// bounded by a few blocks, not by the largest tensor, and the output bytes are the same. A
// per-tensor scale needs the whole tensor's range first, so such tensors are not streamed. For tensors
// handed over by pointer (the C ABI, Python), a Model holds named tensors in memory and
// Model.Quantize returns a Result whose stored tensors can be read back, saved or dequantized.
//
// Static mode (Options.Mode = Static) also records each quantized layer's input activation
// qparams: a Calibration keeps one observer per layer ("minmax", "moving_average", "histogram"),
// fed by Calibrate or from a file of recorded activations (CalibrateReader).
//
// # Reports
//
// The overall SQNR is 10·log10(Σ‖x‖² / Σ‖x − x̂‖²) over every quantized tensor: the SQNR of all
// quantized weights seen as one vector. Per tensor it equals torch's compute_sqnr. Warnings are
// data (Warning.Code): first or last layer quantized, SQNR below LowSQNR, INT4 on small tensors,
// FP16 overflow, group-size fallbacks, layers without calibration data.
package model
