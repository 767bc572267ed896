//go:build unix

package observer

import "syscall"

// processCPU is the user+system CPU time this process has used, in nanoseconds. Benchmarks
// report throughput per CPU-second besides wall-clock MB/s, because a shared machine's load
// swings the wall clock far more than the kernels' own cost.
func processCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
