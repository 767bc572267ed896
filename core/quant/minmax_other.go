//go:build !amd64

package quant

const haveMinMaxAVX2 = false

// minMaxKeysAVX2 is never called off amd64 (haveMinMaxAVX2 is false); it exists so that
// minMaxRun compiles everywhere.
func minMaxKeysAVX2(xs *float32, n int) (mn, mx int32) { return 0, 0 }
