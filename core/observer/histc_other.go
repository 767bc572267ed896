//go:build !amd64

package observer

// haveHistcAVX2 is false off amd64 (a variable so that tests can set it on every platform).
var haveHistcAVX2 = false

const histcAVX2Available = false

// histcAVX2 is never called off amd64 (haveHistcAVX2 is false); it exists so that countBins
// compiles everywhere.
func histcAVX2(counts *uint32, xs *float32, n int, left, right, nb, width, lastBin float32, dump uint32, buf *uint32) {
}
