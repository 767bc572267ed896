//go:build !amd64

package observer

// haveMidsFMA is false off amd64 (a variable so that tests can set it on every platform).
var haveMidsFMA = false

const midsFMAAvailable = false

// midsFMA is never called off amd64 (haveMidsFMA is false); it exists so that the upscale
// compiles everywhere.
func midsFMA(dst *float32, n int, c, s, half float32, i0, di int32) {}
