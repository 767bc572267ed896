// Package plan decides what happens to every tensor of a checkpoint or a module, before any
// data is read: the options of a call and a recipe (core/recipe) become a Plan, which types each
// tensor by its layer, picks the rule that decides it and its quantization spec, and gives
// warnings about the choice. core/model carries a plan out; core/convert runs the whole
// file-to-file pipeline.
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
// The spec template comes from Options.Bits (8 → INT8 per-channel symmetric, 4 → INT4
// group-wise asymmetric with group size 128, 16 → FP16 or BF16) or from Options.Spec.
// Options.Method chooses how weights become integers (core/method: rtn, mse, hqq, gptq; gptq
// takes each layer's input Hessian from Run.Hessians or Model.SetHessian). Group-wise quantization views a weight as
// [shape[0], rest]; when the group size does not divide a row, the plan uses the largest divisor
// of the row between 16 and the group size, else INT8 per-channel, and records a warning.
//
//	p, err := plan.NewPlan(entries, moduleTypes, plan.Options{Bits: 4, Skip: []string{"lm_head"}})
//
// The plan's Tensors list, in input order, each tensor's layer, layer type, action (quantize or
// keep, with the reason) and spec; its Warnings are data (core/warning).
package plan
