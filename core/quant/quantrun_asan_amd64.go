//go:build asan

package quant

// Under AddressSanitizer (go build -asan) the scalar Go loops run instead of the vector
// kernels: assembly is not instrumented, and the ASan runs exist to see every store the engine
// makes into a caller's buffer.
const haveQuantAVX2, haveHalfAVX2, haveHalfAVX512 = false, false, false
