//go:build asan

package tensor

// Under AddressSanitizer the scalar conversions run, so that ASan sees every store.
const (
	haveF16C = false
	haveAVX2 = false
)
