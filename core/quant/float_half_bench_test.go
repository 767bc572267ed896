package quant

import (
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkCastHalf casts a Llama-MLP-sized weight (4096×11008 float32, 180 MB) to Float16 and
// BFloat16 with the error measured, as quantize(bits=16) does, with each vector kernel the CPU
// runs: "warm" into an output written before (the kernel alone), "fresh" into newly mapped
// memory each time, as a caller's torch.empty gives (the first-touch page faults are part of the
// cost then). MB/s counts input bytes.
func BenchmarkCastHalf(b *testing.B) {
	x := benchWeight(b, 4096, 11008)
	for _, k := range append(halfKernels(), halfKernel{name: "scalar"}) {
		for _, f := range []Format{Float16, BFloat16} {
			spec := Spec{Format: f}
			for _, fresh := range []bool{false, true} {
				name := k.name + "/" + f.String() + "/warm"
				if fresh {
					name = k.name + "/" + f.String() + "/fresh"
				}
				b.Run(name, func(b *testing.B) {
					old := halfVector
					halfVector = k
					defer func() { halfVector = old }()
					b.SetBytes(int64(len(x.Data)))
					warm := make([]byte, 2*x.Len())
					for b.Loop() {
						dst := warm
						if fresh {
							b.StopTimer()
							m, err := unix.Mmap(-1, 0, 2*x.Len(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
							if err != nil {
								b.Fatal(err)
							}
							dst = m
							b.StartTimer()
						}
						if _, _, err := castFloatMeasured(dst, x, &spec, true); err != nil {
							b.Fatal(err)
						}
						if fresh {
							b.StopTimer()
							if err := unix.Munmap(dst); err != nil {
								b.Fatal(err)
							}
							b.StartTimer()
						}
					}
				})
			}
		}
	}
}
