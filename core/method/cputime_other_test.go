//go:build !unix

package method

func processCPU() int64 { return 0 }
