//go:build !unix

package quant

func processCPU() int64 { return 0 }
