// Package model works on whole checkpoints: it decides which tensors to quantize (a Plan),
// quantizes them tensor by tensor from a checkpoint.Reader to a checkpoint.Writer, stores the
// result in the quantized checkpoint format of docs/FORMAT.md, reads that format back
// (ReadConfig; Dequantize for a whole file, DequantizeTensor for one tensor, RowDequantizer for
// a block of rows at a time) and reports what quantization cost (Report: sizes, bits per weight,
// SQNR per tensor and overall, warnings).
//
// # Plans
//
// NewPlan types every tensor by its layer. A file holding a pickled nn.Module names each
// module's class (ModuleTypes), and torch's classes map to layer types (Linear, Conv1d/2d/3d and
// their transposed forms, LSTM, GRU, RNN, Embedding, the norms). A bare state_dict, or a module of
// a class monoquant does not know (a subclass, a custom module), is typed by names and shapes:
// recurrent weights by their parameter names (weight_ih_l0 …) and row counts (4H rows → LSTM, 3H →
// GRU), ".weight" by rank (2-D → linear unless the module's name says embedding — embed, wte,
// wpe, …; 3-D → conv1d; 4-D → conv2d), 1-D tensors never. Options.LayerTypes selects the types
// (default linear, conv2d, lstm; embedding is opt-in) and Options.Skip removes modules by exact
// name, prefix or glob ("classifier.*", "*.lm_head"). Biases, norms and non-float tensors are
// copied as they are.
//
// The spec template comes from Options.Bits (8 → INT8 per-channel, 4 → INT4 group-wise with group
// size 128, 16 → FP16 or BF16) or from Options.Spec. Group-wise quantization views a weight as
// [shape[0], rest]; when the group size does not divide a row, the plan uses the largest divisor
// of the row between 16 and the group size, else INT8 per-channel, and records a warning.
//
// # Quantizing
//
// For files:
//
//	res, err := convert.File(ctx, "model.safetensors", "model-int8.safetensors",
//		model.Options{Bits: 8, Skip: []string{"lm_head"}}, convert.Run{})
//
// (core/convert is the file-to-file pipeline every caller runs; this package is what it runs.)
//
// Quantize streams any Reader into any Writer with a Plan, so the peak memory is about one
// tensor; a writer goroutine overlaps the output with the next tensor's arithmetic. For tensors
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
