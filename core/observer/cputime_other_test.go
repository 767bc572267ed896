//go:build !unix

package observer

func processCPU() int64 { return 0 }
