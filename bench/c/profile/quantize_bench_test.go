// Package benchc profiles the kernels behind mq_quantize_tensor without the C ABI, on the same
// 4096x4096 matrix as bench_quantize.c, so that `go test -bench . -cpuprofile` shows where the
// time of the C benchmark goes.
package benchc

import (
	"testing"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

func matrix() *tensor.Tensor {
	const n = 4096
	v := make([]float32, n*n)
	seed := uint32(42)
	for i := range v {
		seed = seed*1664525 + 1013904223
		v[i] = float32(int32(seed)) * (1.0 / 2147483648.0)
	}
	return tensor.FromFloat32(v, n, n)
}

func BenchmarkQuantize(b *testing.B) {
	x := matrix()
	for _, tc := range []struct {
		name string
		spec quant.Spec
	}{
		{"int8-per-channel", quant.Spec{Format: quant.Int8}},
		{"int4-g128", quant.Spec{Format: quant.Int4, Granularity: quant.PerGroup, GroupSize: 128}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := tc.spec
			if _, err := s.Normalize(x.Shape); err != nil {
				b.Fatal(err)
			}
			np := s.NumParams(x.Shape)
			dst := make([]byte, quant.PackedLen(s.Format, x.Len()))
			scale, zp := make([]float32, np), make([]int32, np)
			b.SetBytes(int64(len(x.Data)))
			for b.Loop() {
				if _, err := quant.Quantize(dst, x, tc.spec, scale, zp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPhases splits Quantize into its passes over the input: the per-granule min/max scan
// (quant.MinMax) and QuantizeWithParams, which is a NaN/Inf scan plus the rounding pass. Copying
// the matrix once (memmove) is the floor any pass over 64 MiB pays on this machine.
func BenchmarkPhases(b *testing.B) {
	x := matrix()
	spec := quant.Spec{Format: quant.Int8}
	if _, err := spec.Normalize(x.Shape); err != nil {
		b.Fatal(err)
	}
	np := spec.NumParams(x.Shape)
	mins, maxs := make([]float32, np), make([]float32, np)
	scale, zp := make([]float32, np), make([]int32, np)
	dst := make([]byte, x.Len())
	if _, err := quant.Quantize(dst, x, spec, scale, zp); err != nil {
		b.Fatal(err)
	}
	b.Run("minmax", func(b *testing.B) {
		b.SetBytes(int64(len(x.Data)))
		for b.Loop() {
			if _, err := quant.MinMax(x, &spec, mins, maxs); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("quantize-with-params", func(b *testing.B) {
		b.SetBytes(int64(len(x.Data)))
		for b.Loop() {
			if err := quant.QuantizeWithParams(dst, x, spec, scale, zp); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("memmove", func(b *testing.B) {
		cp := make([]byte, len(x.Data))
		b.SetBytes(int64(len(x.Data)))
		for b.Loop() {
			copy(cp, x.Data)
		}
	})
}
