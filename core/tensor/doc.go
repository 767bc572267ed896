// Package tensor holds the one tensor type every part of the engine shares: a dtype, a shape and
// little-endian bytes in row-major (C-contiguous) order.
//
// A Tensor does not own its memory in any special way: Data may be a Go slice, a view into a
// memory-mapped file, or (for the length of one C call) a view over caller memory. Readers produce
// contiguous tensors; strides exist only at the edges (the C ABI and the torch reader), which make
// data contiguous before it reaches the engine.
//
// # Making tensors
//
//	w := tensor.FromFloat32(values, 64, 256)      // wraps a []float32, no copy
//	z := tensor.New(tensor.BF16, 3, 7)            // zeroed, owns its bytes
//	x := &tensor.Tensor{DType: tensor.F16, Shape: []int{2, 2}, Data: raw}
//	if err := x.Validate(); err != nil { ... }    // dtype known, len(Data) matches the shape
//
// DType names follow safetensors ("F32", "BF16", "I8", …): ParseDType and String convert.
//
// # Reading values
//
// Float32s gives float32 values of any float tensor: a view of F32 data (no copy, when the bytes
// are 4-byte aligned), a converted copy of F16, BF16 and F64 data. View[T] reinterprets bytes
// as []T in place when aligned (and copies otherwise: a memory-mapped file may place a tensor at
// any offset). ConvertToFloat32 converts a range of elements into a caller buffer, which is how
// the quantization kernels read non-F32 tensors in small chunks without a full copy.
//
// # Conversions
//
// F64 to float32 rounds to nearest even, as torch's .to(torch.float32). Float32ToF16 and
// Float32ToBF16 round to nearest even with overflow to ±Inf, as torch's .to(torch.float16) and
// .to(torch.bfloat16); NaN stays NaN.
package tensor
