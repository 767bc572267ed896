package quant

import (
	"math/rand/v2"
	"testing"

	"github.com/monoquant/monoquant/core/tensor"
)

// benchWeight is a 4096×4096 float32 matrix (64 MiB), the size of one large linear layer.
func benchWeight(b *testing.B, rows, cols int) *tensor.Tensor {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	v := make([]float32, rows*cols)
	for i := range v {
		v[i] = float32(r.NormFloat64() * 0.02)
	}
	return tensor.FromFloat32(v, rows, cols)
}

var benchSpecs = []struct {
	name string
	spec Spec
}{
	{"int8_per_channel_axis0", Spec{Format: Int8, Granularity: PerChannel, Axis: 0}},
	{"int8_per_channel_axis1", Spec{Format: Int8, Granularity: PerChannel, Axis: 1}},
	{"int8_per_tensor_asym", Spec{Format: Int8, Granularity: PerTensor, Scheme: Asymmetric, QDType: QUInt8}},
	{"int4_g128", Spec{Format: Int4, Granularity: PerGroup, GroupSize: 128}},
	{"int4_g32_asym", Spec{Format: Int4, Granularity: PerGroup, GroupSize: 32, Scheme: Asymmetric}},
	{"fp16", Spec{Format: Float16}},
	{"bf16", Spec{Format: BFloat16}},
}

// BenchmarkQuantize measures the whole Quantize call (min/max pass, qparams, quantize pass) on
// a 4096×4096 float32 weight; MB/s counts input bytes.
func BenchmarkQuantize(b *testing.B) {
	x := benchWeight(b, 4096, 4096)
	for _, bc := range benchSpecs {
		b.Run(bc.name, func(b *testing.B) {
			spec := bc.spec
			if _, err := spec.Normalize(x.Shape); err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, PackedLen(spec.Format, x.Len()))
			np := spec.NumParams(x.Shape)
			scale, zp := make([]float32, np), make([]int32, np)
			b.SetBytes(int64(len(x.Data)))
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				if _, err := Quantize(dst, x, spec, scale, zp); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu0, len(x.Data))
		})
	}
}

// BenchmarkDequantize measures Dequantize back to float32; MB/s counts output bytes.
func BenchmarkDequantize(b *testing.B) {
	x := benchWeight(b, 4096, 4096)
	for _, bc := range benchSpecs[:4] {
		b.Run(bc.name, func(b *testing.B) {
			q, err := QuantizeTensor(x, bc.spec)
			if err != nil {
				b.Fatal(err)
			}
			out := make([]float32, x.Len())
			b.SetBytes(int64(len(x.Data)))
			b.ReportAllocs()
			cpu0 := processCPU()
			defer func() { reportCPU(b, cpu0, len(x.Data)) }()
			for b.Loop() {
				if err := Dequantize(out, q.Data, q.Shape, q.Spec, q.Scale, q.ZeroPoint); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// reportCPU adds MB per CPU-second (all cores together): the throughput one core would reach if
// the work were spread perfectly, unaffected by other processes competing for the machine.
func reportCPU(b *testing.B, cpu0 int64, bytesPerOp int) {
	if cpu := processCPU() - cpu0; cpu > 0 {
		b.ReportMetric(float64(bytesPerOp)*float64(b.N)/(float64(cpu)/1e9)/1e6, "MB/cpu-s")
	}
}

// BenchmarkQuantizeBF16Input is BenchmarkQuantize on the same 4096×4096 weight stored as
// bfloat16 (as most large checkpoints are): the fused pass converts it chunk by chunk. MB/s
// counts the BF16 input bytes (half the float32 figure's bytes for the same values).
func BenchmarkQuantizeBF16Input(b *testing.B) {
	x := benchWeight(b, 4096, 4096)
	v := tensor.View[float32](x.Data)
	h := tensor.New(tensor.BF16, 4096, 4096)
	for i, f := range v {
		u := tensor.Float32ToBF16(f)
		h.Data[2*i], h.Data[2*i+1] = byte(u), byte(u>>8)
	}
	for _, bc := range []struct {
		name string
		spec Spec
	}{{"int8_per_channel", Spec{Format: Int8, Granularity: PerChannel}}, {"int4_g128", Spec{Format: Int4, Granularity: PerGroup, GroupSize: 128}}} {
		b.Run(bc.name, func(b *testing.B) {
			spec := bc.spec
			if _, err := spec.Normalize(h.Shape); err != nil {
				b.Fatal(err)
			}
			dst := make([]byte, PackedLen(spec.Format, h.Len()))
			np := spec.NumParams(h.Shape)
			scale, zp := make([]float32, np), make([]int32, np)
			b.SetBytes(int64(len(h.Data)))
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				if _, err := Quantize(dst, h, spec, scale, zp); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu0, len(h.Data))
		})
	}
}
