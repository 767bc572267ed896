//go:build !amd64

package observer

const haveHistcAVX2 = false

// histcAVX2 is never called off amd64 (haveHistcAVX2 is false); it exists so that countBins
// compiles everywhere.
func histcAVX2(counts *uint32, xs *float32, n int, left, right, nb, width, lastBin float32, dump uint32) {
}
