package quant

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/tensor"
)

func randTensor(seed uint64, scale float64, shape ...int) *tensor.Tensor {
	r := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, tensor.NumElements(shape))
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return tensor.FromFloat32(v, shape...)
}

func f32s(t *tensor.Tensor) []float32 { return tensor.View[float32](t.Data) }

// refGranule maps a flat index to its scale index by explicit index arithmetic, independent of
// the kernels' run layout.
func refGranule(i int, shape []int, s *Spec) int {
	switch s.Granularity {
	case PerChannel:
		inner := 1
		for _, d := range shape[s.Axis+1:] {
			inner *= d
		}
		return (i / inner) % shape[s.Axis]
	case PerGroup:
		return i / s.GroupSize
	}
	return 0
}

// refQuantize is the textbook per-element formula (math.RoundToEven, no bit tricks, no
// parallelism), used to cross-check the kernels on shapes the golden set does not cover.
func refQuantize(t *testing.T, x []float32, shape []int, spec Spec) (q []int32, scale []float32, zp []int32) {
	t.Helper()
	r, err := spec.Normalize(shape)
	if err != nil {
		t.Fatal(err)
	}
	np := spec.NumParams(shape)
	mins, maxs := make([]float32, np), make([]float32, np)
	for i := range mins {
		mins[i], maxs[i] = float32(math.Inf(1)), float32(math.Inf(-1))
	}
	for i, v := range x {
		g := refGranule(i, shape, &spec)
		mins[g], maxs[g] = min(mins[g], v), max(maxs[g], v)
	}
	scale, zp = make([]float32, np), make([]int32, np)
	if err := CalculateQParams(mins, maxs, spec.QDType, spec.Scheme, r, spec.Eps, scale, zp); err != nil {
		t.Fatal(err)
	}
	lo, hi := spec.QDType.Limits()
	q = make([]int32, len(x))
	for i, v := range x {
		g := refGranule(i, shape, &spec)
		inv := float32(1) / scale[g]
		f := math.RoundToEven(float64(float32(v*inv))) + float64(zp[g])
		q[i] = int32(min(max(f, float64(lo)), float64(hi)))
	}
	return q, scale, zp
}

func unpack(q []byte, n int, spec *Spec) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = qAt(q, i, spec.Format, !spec.QDType.Unsigned())
	}
	return out
}

// TestQuantizeMatchesReference runs the kernels over shapes whose run layouts stress the
// splitting logic: short per-channel runs (axis at the end), odd group sizes that start runs
// on odd nibbles, tensors big enough to be split across goroutines, odd element counts.
func TestQuantizeMatchesReference(t *testing.T) {
	// Several workers even on a small machine, so that worker boundaries fall inside runs.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	cases := []struct {
		shape []int
		spec  Spec
		dtype tensor.DType // F32 when zero
	}{
		{[]int{301, 50, 7}, Spec{Format: Int8, Granularity: PerChannel, Axis: 1}, 0},
		{[]int{301, 50, 7}, Spec{Format: Int4, Granularity: PerChannel, Axis: 1, Scheme: Asymmetric}, tensor.BF16},
		{[]int{301, 50, 7}, Spec{Format: Int8, Granularity: PerChannel, Axis: 1, QDType: QUInt8}, tensor.F64},
		{[]int{301, 50, 7}, Spec{Format: Int4, Granularity: PerGroup, GroupSize: 7}, tensor.F16},
		{[]int{300, 257}, Spec{Format: Int8, Granularity: PerChannel, Axis: 1}, 0},
		{[]int{777, 131}, Spec{Format: Int8, Granularity: PerChannel, Axis: 1, Scheme: Asymmetric}, 0},
		{[]int{777, 131}, Spec{Format: Int8, Granularity: PerChannel, Axis: -1}, tensor.BF16},
		{[]int{2001, 51}, Spec{Format: Int4, Granularity: PerGroup, GroupSize: 17, Scheme: Asymmetric}, 0},
		{[]int{3001, 35}, Spec{Format: Int4, Granularity: PerChannel, Axis: 0}, 0},
		{[]int{1, 3001, 35}, Spec{Format: Int8, Granularity: PerChannel, Axis: 1, QDType: QUInt8}, 0},
		{[]int{300, 257}, Spec{Format: Int8, Granularity: PerChannel, Axis: 0, Scheme: Asymmetric, QDType: QUInt8}, 0},
		{[]int{40, 30, 7, 5}, Spec{Format: Int8, Granularity: PerChannel, Axis: 2, Scheme: Asymmetric}, 0},
		{[]int{40, 30, 7, 5}, Spec{Format: Int4, Granularity: PerChannel, Axis: 3}, 0},
		{[]int{40, 30, 7, 5}, Spec{Format: Int4, Granularity: PerChannel, Axis: -3, Scheme: Asymmetric, QDType: QUInt4}, 0},
		{[]int{999, 33}, Spec{Format: Int4, Granularity: PerGroup, GroupSize: 11, Scheme: Asymmetric}, 0},
		{[]int{999, 33}, Spec{Format: Int4, Granularity: PerGroup, GroupSize: 3, QDType: QUInt4}, 0},
		{[]int{1001, 64}, Spec{Format: Int4, Granularity: PerGroup, GroupSize: 64}, 0},
		{[]int{77777}, Spec{Format: Int4, Granularity: PerTensor, Scheme: Asymmetric}, 0},
		{[]int{77777}, Spec{Format: Int8, Granularity: PerTensor, QDType: QUInt8}, 0},
		{[]int{5, 3}, Spec{Format: Int4, Granularity: PerChannel, Axis: 1, ReduceRange: true, Scheme: Asymmetric}, 0},
		{[]int{1, 1}, Spec{Format: Int4, Granularity: PerGroup, GroupSize: 1}, 0},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%v_%v_%v_axis%d_%v", c.shape, c.spec.Format, c.spec.Granularity, c.spec.Axis, c.dtype), func(t *testing.T) {
			x := randTensor(uint64(i), 1, c.shape...)
			if c.dtype != 0 {
				x = encode(t, f32s(x), c.dtype, c.shape...)
			}
			xs, err := x.Float32s()
			if err != nil {
				t.Fatal(err)
			}
			q, err := QuantizeTensor(x, c.spec)
			if err != nil {
				t.Fatalf("QuantizeTensor: %v", err)
			}
			wq, ws, wz := refQuantize(t, xs, c.shape, c.spec)
			for g := range ws {
				if q.Scale[g] != ws[g] || q.ZeroPoint[g] != wz[g] {
					t.Fatalf("granule %d: scale, zp = %v, %d, want %v, %d", g, q.Scale[g], q.ZeroPoint[g], ws[g], wz[g])
				}
			}
			got := unpack(q.Data, x.Len(), &q.Spec)
			for j := range got {
				if got[j] != wq[j] {
					t.Fatalf("q[%d] = %d, want %d (x = %v)", j, got[j], wq[j], xs[j])
				}
			}
			if x.Len()%2 == 1 && q.Spec.Format == Int4 && q.Data[len(q.Data)-1]>>4 != 0 {
				t.Errorf("odd count %d: last byte %#02x, want an empty high nibble", x.Len(), q.Data[len(q.Data)-1])
			}
		})
	}
}

func TestNonFiniteRejected(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	vals := []float32{0.5, -1, 2, 3, 4, nan, 1, -inf, 2, inf}
	specs := []Spec{
		{Format: Int8, Granularity: PerTensor},
		{Format: Int8, Granularity: PerChannel, Axis: 1},
		{Format: Int4, Granularity: PerGroup, GroupSize: 5},
		{Format: Float16},
		{Format: BFloat16},
	}
	for _, dt := range []tensor.DType{tensor.F32, tensor.F16, tensor.BF16, tensor.F64} {
		x := encode(t, vals, dt, 2, 5)
		for _, spec := range specs {
			_, err := QuantizeTensor(x, spec)
			if !errors.Is(err, ErrNonFinite) {
				t.Errorf("QuantizeTensor(%v with NaN/Inf, %v %v) error = %v, want ErrNonFinite", dt, spec.Format, spec.Granularity, err)
				continue
			}
			if msg := err.Error(); !strings.Contains(msg, "3 non-finite values") || !strings.Contains(msg, "flat index 5") {
				t.Errorf("QuantizeTensor(%v, %v) error = %q, want the count 3 and first index 5", dt, spec.Format, msg)
			}
		}
	}
	// Caller-supplied qparams go through the same check.
	x := encode(t, vals, tensor.F32, 2, 5)
	err := QuantizeWithParams(make([]byte, 10), x, Spec{Format: Int8, Granularity: PerTensor}, []float32{0.1}, []int32{0})
	if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "flat index 5") {
		t.Errorf("QuantizeWithParams(NaN input) error = %v, want ErrNonFinite at index 5", err)
	}
	// A finite F64 that overflows float32 becomes Inf on torch's .to(float32) too.
	big := encode(t, nil, tensor.F64, 3)
	binary.LittleEndian.PutUint64(big.Data[8:], math.Float64bits(1e300))
	if _, err := QuantizeTensor(big, Spec{Format: Int8}); !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "flat index 1") {
		t.Errorf("QuantizeTensor(F64 1e300) error = %v, want ErrNonFinite at index 1", err)
	}
}

// encode builds a tensor of dtype dt holding vals (rounded to dt); nil vals gives zeros.
func encode(t *testing.T, vals []float32, dt tensor.DType, shape ...int) *tensor.Tensor {
	t.Helper()
	x := tensor.New(dt, shape...)
	for i, v := range vals {
		switch dt {
		case tensor.F32:
			binary.LittleEndian.PutUint32(x.Data[4*i:], math.Float32bits(v))
		case tensor.F64:
			binary.LittleEndian.PutUint64(x.Data[8*i:], math.Float64bits(float64(v)))
		case tensor.F16:
			binary.LittleEndian.PutUint16(x.Data[2*i:], tensor.Float32ToF16(v))
		case tensor.BF16:
			binary.LittleEndian.PutUint16(x.Data[2*i:], tensor.Float32ToBF16(v))
		}
	}
	return x
}

func TestClampNonFinite(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	vals := []float32{-1, nan, 0.5, inf, -inf, 2}
	finite := []float32{-1, 0.5, 2}
	cases := []struct {
		spec       Spec
		wantNaN    int32 // quantized value of NaN: the zero point
		wantPosInf int32
		wantNegInf int32
	}{
		{Spec{Format: Int8, Granularity: PerTensor}, 0, 127, -128},
		{Spec{Format: Int8, Granularity: PerTensor, Scheme: Asymmetric, QDType: QUInt8}, -1, 255, 0},
		{Spec{Format: Int4, Granularity: PerTensor}, 0, 7, -8},
		{Spec{Format: Int4, Granularity: PerTensor, Scheme: Asymmetric, QDType: QUInt4}, -1, 15, 0},
	}
	for _, c := range cases {
		spec := c.spec
		spec.NonFinite = ClampNonFinite
		q, err := QuantizeTensor(tensor.FromFloat32(vals, 6), spec)
		if err != nil {
			t.Fatalf("QuantizeTensor(%v clamp): %v", c.spec.Format, err)
		}
		if q.Stats.NonFinite != 3 || q.Stats.FirstNonFinite != 1 {
			t.Errorf("%v: Stats = %+v, want 3 non-finite, first at 1", spec.QDType, q.Stats)
		}
		// The qparams come from the finite values alone.
		ref, err := QuantizeTensor(tensor.FromFloat32(finite, 3), c.spec)
		if err != nil {
			t.Fatal(err)
		}
		if q.Scale[0] != ref.Scale[0] || q.ZeroPoint[0] != ref.ZeroPoint[0] {
			t.Errorf("%v: qparams %v/%d, want those of the finite values %v/%d", spec.QDType, q.Scale[0], q.ZeroPoint[0], ref.Scale[0], ref.ZeroPoint[0])
		}
		got := unpack(q.Data, 6, &q.Spec)
		wantNaN := c.wantNaN
		if wantNaN < 0 {
			wantNaN = q.ZeroPoint[0]
		}
		if got[1] != wantNaN || got[3] != c.wantPosInf || got[4] != c.wantNegInf {
			t.Errorf("%v: NaN, +Inf, -Inf -> %d, %d, %d; want %d, %d, %d", spec.QDType, got[1], got[3], got[4], wantNaN, c.wantPosInf, c.wantNegInf)
		}
		refq := unpack(ref.Data, 3, &ref.Spec)
		if got[0] != refq[0] || got[2] != refq[1] || got[5] != refq[2] {
			t.Errorf("%v: finite values -> %d %d %d, want %v", spec.QDType, got[0], got[2], got[5], refq)
		}
	}
	// Float casts keep NaN and Inf as they are.
	q, err := QuantizeTensor(tensor.FromFloat32(vals, 6), Spec{Format: Float16, NonFinite: ClampNonFinite})
	if err != nil {
		t.Fatal(err)
	}
	if h := binary.LittleEndian.Uint16(q.Data[2:]); h&0x7C00 != 0x7C00 || h&0x3FF == 0 {
		t.Errorf("fp16 of NaN = %#04x, want a NaN", h)
	}
	if h := binary.LittleEndian.Uint16(q.Data[6:]); h != 0x7C00 {
		t.Errorf("fp16 of +Inf = %#04x, want 0x7c00", h)
	}
	if q.Stats.Overflow != 0 {
		t.Errorf("fp16 Stats.Overflow = %d, want 0 (Inf inputs are not overflows)", q.Stats.Overflow)
	}
}

func TestFloat16Overflow(t *testing.T) {
	vals := []float32{65504, 65520, -1e6, 1, 70000}
	q, err := QuantizeTensor(tensor.FromFloat32(vals, 5), Spec{Format: Float16})
	if err != nil {
		t.Fatal(err)
	}
	if q.Stats.Overflow != 3 {
		t.Errorf("Stats.Overflow = %d, want 3", q.Stats.Overflow)
	}
	q, err = QuantizeTensor(tensor.FromFloat32(vals, 5), Spec{Format: Float16, SaturateFloat16: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint16{0x7BFF, 0x7BFF, 0xFBFF, 0x3C00, 0x7BFF} {
		if h := binary.LittleEndian.Uint16(q.Data[2*i:]); h != want {
			t.Errorf("saturating fp16 of %v = %#04x, want %#04x", vals[i], h, want)
		}
	}
	if q.Stats.Overflow != 3 {
		t.Errorf("saturating Stats.Overflow = %d, want 3 (saturated values are counted too)", q.Stats.Overflow)
	}
	// BF16 saturates to its largest finite value too.
	bvals := []float32{3.4e38, -3.4e38, 1}
	q, err = QuantizeTensor(tensor.FromFloat32(bvals, 3), Spec{Format: BFloat16, SaturateFloat16: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint16{0x7F7F, 0xFF7F, 0x3F80} {
		if h := binary.LittleEndian.Uint16(q.Data[2*i:]); h != want {
			t.Errorf("saturating bf16 of %v = %#04x, want %#04x", bvals[i], h, want)
		}
	}
	if q.Stats.Overflow != 2 {
		t.Errorf("saturating bf16 Stats.Overflow = %d, want 2", q.Stats.Overflow)
	}
}

func TestSpecAndBufferErrors(t *testing.T) {
	x := randTensor(1, 1, 4, 6)
	cases := []struct {
		name string
		run  func() error
		want string
	}{
		{"nil tensor", func() error { _, err := QuantizeTensor(nil, Spec{Format: Int8}); return err }, "nil tensor"},
		{"integer dtype", func() error {
			_, err := QuantizeTensor(&tensor.Tensor{DType: tensor.I32, Shape: []int{2}, Data: make([]byte, 8)}, Spec{Format: Int8})
			return err
		}, "input dtype I32 is not F32"},
		{"data length", func() error {
			_, err := QuantizeTensor(&tensor.Tensor{DType: tensor.F32, Shape: []int{2, 3}, Data: make([]byte, 20)}, Spec{Format: Int8})
			return err
		}, "needs 24 bytes, have 20"},
		{"group size", func() error {
			_, err := QuantizeTensor(x, Spec{Format: Int4, Granularity: PerGroup, GroupSize: 4})
			return err
		}, "group size 4 does not divide the last dimension 6"},
		{"negative group size", func() error {
			_, err := QuantizeTensor(x, Spec{Format: Int4, Granularity: PerGroup, GroupSize: -2})
			return err
		}, "group size -2 must be positive"},
		{"axis", func() error {
			_, err := QuantizeTensor(x, Spec{Format: Int8, Granularity: PerChannel, Axis: 2})
			return err
		}, "axis 2 out of range for shape [4 6]"},
		{"negative axis", func() error {
			_, err := QuantizeTensor(x, Spec{Format: Int8, Granularity: PerChannel, Axis: -3})
			return err
		}, "axis -3 out of range"},
		{"format", func() error { _, err := QuantizeTensor(x, Spec{Format: 9}); return err }, "unknown format"},
		{"storage type", func() error { _, err := QuantizeTensor(x, Spec{Format: Int4, QDType: QInt8}); return err }, "storage type qint8 does not match format int4"},
		{"eps", func() error { _, err := QuantizeTensor(x, Spec{Format: Int8, Eps: -1}); return err }, "eps -1 must be a positive finite number"},
		{"quint8 symmetric reduce_range", func() error {
			_, err := QuantizeTensor(x, Spec{Format: Int8, QDType: QUInt8, ReduceRange: true})
			return err
		}, "not supported"},
		{"range without zero", func() error {
			_, err := QuantizeTensor(x, Spec{Format: Int8, QuantRange: &[2]int{1, 100}})
			return err
		}, "must include 0"},
		{"range too wide", func() error {
			_, err := QuantizeTensor(x, Spec{Format: Int4, Granularity: PerTensor, QuantRange: &[2]int{-9, 7}})
			return err
		}, "does not fit qint4"},
		{"short int8 output", func() error {
			_, err := Quantize(make([]byte, 23), x, Spec{Format: Int8}, make([]float32, 4), make([]int32, 4))
			return err
		}, "output buffer has 23 bytes, need 24"},
		{"short int4 output", func() error {
			_, err := Quantize(make([]byte, 11), x, Spec{Format: Int4, GroupSize: 3}, make([]float32, 8), make([]int32, 8))
			return err
		}, "output buffer has 11 bytes, need 12"},
		{"short fp16 output", func() error {
			_, err := Quantize(make([]byte, 47), x, Spec{Format: Float16}, nil, nil)
			return err
		}, "output buffer has 47 bytes, need 48"},
		{"short scales", func() error {
			_, err := Quantize(make([]byte, 24), x, Spec{Format: Int8}, make([]float32, 3), make([]int32, 4))
			return err
		}, "need 4 scales and zero points, have 3 and 4"},
		{"with-params short output", func() error {
			return QuantizeWithParams(make([]byte, 2), x, Spec{Format: Int8, Granularity: PerTensor}, []float32{1}, []int32{0})
		}, "output buffer has 2 bytes, need 24"},
		{"with-params zero scale", func() error {
			return QuantizeWithParams(make([]byte, 24), x, Spec{Format: Int8, Granularity: PerTensor}, []float32{0}, []int32{0})
		}, "scale 0 is 0"},
		{"with-params NaN scale", func() error {
			return QuantizeWithParams(make([]byte, 24), x, Spec{Format: Int8, Granularity: PerTensor}, []float32{float32(math.NaN())}, []int32{0})
		}, "scale 0 is NaN"},
		{"with-params zero point", func() error {
			return QuantizeWithParams(make([]byte, 24), x, Spec{Format: Int8, Granularity: PerTensor}, []float32{1}, []int32{200})
		}, "zero point 0 is 200, outside qint8"},
		{"with-params float format", func() error {
			return QuantizeWithParams(make([]byte, 48), x, Spec{Format: BFloat16}, nil, nil)
		}, "bf16 has no qparams"},
		{"dequantize short output", func() error {
			return Dequantize(make([]float32, 23), make([]byte, 24), []int{4, 6}, Spec{Format: Int8}, make([]float32, 4), make([]int32, 4))
		}, "room for 23 values, need 24"},
		{"dequantize short input", func() error {
			return Dequantize(make([]float32, 24), make([]byte, 11), []int{4, 6}, Spec{Format: Int4, GroupSize: 6}, make([]float32, 4), make([]int32, 4))
		}, "quantized data has 11 bytes, need 12"},
		{"dequantize short scales", func() error {
			return Dequantize(make([]float32, 24), make([]byte, 24), []int{4, 6}, Spec{Format: Int8}, make([]float32, 1), make([]int32, 1))
		}, "need 4 scales"},
		{"dequantize bad shape", func() error {
			return Dequantize(make([]float32, 24), make([]byte, 24), []int{4, -6}, Spec{Format: Int8, Granularity: PerTensor}, make([]float32, 1), make([]int32, 1))
		}, "bad shape [4 -6]"},
		{"sqnr short data", func() error {
			_, err := SQNRQuantized(x, make([]byte, 10), Spec{Format: Int8}, make([]float32, 4), make([]int32, 4))
			return err
		}, "quantized data has 10 bytes, need 24"},
		{"range overflows float32", func() error {
			_, err := QuantizeTensor(tensor.FromFloat32([]float32{3e38, -3e38}, 2), Spec{Format: Int8, Granularity: PerTensor, Scheme: Asymmetric})
			return err
		}, "range [-3e+38, 3e+38] is too wide"},
		{"range overflows float32, fused", func() error {
			v := make([]float32, 64)
			v[3], v[9] = 3e38, -3e38
			_, err := QuantizeTensor(tensor.FromFloat32(v, 2, 32), Spec{Format: Int4, GroupSize: 32, Scheme: Asymmetric})
			return err
		}, "is too wide: max - min overflows float32 (granule 0)"},
		{"minmax short", func() error {
			s := Spec{Format: Int8}
			if _, err := s.Normalize(x.Shape); err != nil {
				return err
			}
			_, err := MinMax(x, &s, make([]float32, 2), make([]float32, 4))
			return err
		}, "room for 4 mins and maxes, have 2 and 4"},
	}
	for _, c := range cases {
		err := c.run()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error = %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// TestDegenerateRangesGetValidScales: all-zero channels, constants and tiny values never give a
// scale of 0, NaN or Inf, whatever the scheme.
func TestDegenerateRangesGetValidScales(t *testing.T) {
	inputs := map[string][]float32{
		"zeros":    make([]float32, 12),
		"constant": {3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3},
		"negconst": {-2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2, -2},
		"tiny":     {1e-38, -1e-45, 0, 1e-40, 0, 0, 0, 0, 0, 0, 0, 0},
	}
	for name, v := range inputs {
		for _, qd := range []QDType{QInt8, QUInt8, QInt4, QUInt4} {
			for _, sc := range []Scheme{Symmetric, Asymmetric} {
				for _, gr := range []Granularity{PerTensor, PerChannel, PerGroup} {
					f := Int8
					if qd == QInt4 || qd == QUInt4 {
						f = Int4
					}
					spec := Spec{Format: f, QDType: qd, Scheme: sc, Granularity: gr, GroupSize: 4}
					q, err := QuantizeTensor(tensor.FromFloat32(v, 3, 4), spec)
					if err != nil {
						t.Fatalf("%s %v %v %v: %v", name, qd, sc, gr, err)
					}
					lo, hi := qd.Limits()
					for i, s := range q.Scale {
						if !(s >= DefaultEps) || math.IsInf(float64(s), 0) {
							t.Errorf("%s %v %v %v: scale[%d] = %v, want finite and >= eps", name, qd, sc, gr, i, s)
						}
						if z := q.ZeroPoint[i]; z < lo || z > hi {
							t.Errorf("%s %v %v %v: zp[%d] = %d outside [%d, %d]", name, qd, sc, gr, i, z, lo, hi)
						}
					}
					deq, err := q.Dequantize()
					if err != nil {
						t.Fatal(err)
					}
					// A value on the edge of a symmetric grid (torch divides by 127.5, not 127)
					// may be clamped by half a step; never more.
					for i, d := range deq {
						s := float64(q.Scale[refGranule(i, []int{3, 4}, &q.Spec)])
						if math.IsNaN(float64(d)) || math.Abs(float64(d)-float64(v[i])) > 0.5001*s {
							t.Errorf("%s %v %v %v: deq[%d] = %v, want %v ± half a step (%v)", name, qd, sc, gr, i, d, v[i], s/2)
							break
						}
					}
				}
			}
		}
	}
}

// TestWorkerCountInvariance: results do not depend on how many goroutines split the work.
func TestWorkerCountInvariance(t *testing.T) {
	x := randTensor(9, 0.05, 513, 1030)
	xd := encode(t, f32s(x), tensor.BF16, 513, 1030)
	specs := []Spec{
		{Format: Int8, Granularity: PerChannel, Axis: 0},
		{Format: Int8, Granularity: PerChannel, Axis: 1, Scheme: Asymmetric},
		{Format: Int8, Granularity: PerTensor, QDType: QUInt8, Scheme: Asymmetric},
		{Format: Int4, Granularity: PerGroup, GroupSize: 103, Scheme: Asymmetric},
		{Format: Int4, Granularity: PerGroup, GroupSize: 5},
		{Format: Int4, Granularity: PerChannel, Axis: 1},
		{Format: Float16},
		{Format: BFloat16},
	}
	run := func(procs int, src *tensor.Tensor, spec Spec) *Quantized {
		prev := runtime.GOMAXPROCS(procs)
		defer runtime.GOMAXPROCS(prev)
		q, err := QuantizeTensor(src, spec)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	for _, src := range []*tensor.Tensor{x, xd} {
		for _, spec := range specs {
			one, many := run(1, src, spec), run(7, src, spec)
			name := fmt.Sprintf("%v %v %v axis %d", src.DType, spec.Format, spec.Granularity, spec.Axis)
			if string(one.Data) != string(many.Data) {
				t.Errorf("%s: quantized bytes differ between 1 and 7 goroutines", name)
			}
			for i := range one.Scale {
				if one.Scale[i] != many.Scale[i] || one.ZeroPoint[i] != many.ZeroPoint[i] {
					t.Errorf("%s: qparams %d differ: %v/%d vs %v/%d", name, i, one.Scale[i], one.ZeroPoint[i], many.Scale[i], many.ZeroPoint[i])
					break
				}
			}
			if one.Stats != many.Stats {
				t.Errorf("%s: Stats %+v vs %+v", name, one.Stats, many.Stats)
			}
		}
	}
}

func TestSQNRQuantizedMatchesSQNR(t *testing.T) {
	specs := []Spec{
		{Format: Int8, Granularity: PerChannel, Axis: 0},
		{Format: Int8, Granularity: PerChannel, Axis: 1, Scheme: Asymmetric, QDType: QUInt8},
		{Format: Int8, Granularity: PerTensor},
		{Format: Int4, Granularity: PerGroup, GroupSize: 32, Scheme: Asymmetric},
		{Format: Int4, Granularity: PerGroup, GroupSize: 7, QDType: QUInt4},
		{Format: Int4, Granularity: PerChannel, Axis: 1},
		{Format: Float16},
		{Format: BFloat16},
	}
	x := randTensor(3, 0.1, 301, 224)
	for _, src := range []*tensor.Tensor{x, encode(t, f32s(x), tensor.F16, 301, 224), encode(t, f32s(x), tensor.F64, 301, 224)} {
		xs, err := src.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		for _, spec := range specs {
			q, err := QuantizeTensor(src, spec)
			if err != nil {
				t.Fatal(err)
			}
			deq, err := q.Dequantize()
			if err != nil {
				t.Fatal(err)
			}
			want := SQNR(xs, deq)
			got, err := SQNRQuantized(src, q.Data, spec, q.Scale, q.ZeroPoint)
			if err != nil {
				t.Fatalf("SQNRQuantized(%v %v): %v", src.DType, spec.Format, err)
			}
			if math.Abs(got-want) > 1e-9*math.Abs(want) || math.IsNaN(got) {
				t.Errorf("SQNRQuantized(%v, %v %v) = %.12f dB, want SQNR(x, Dequantize) = %.12f dB", src.DType, spec.Format, spec.Granularity, got, want)
			}
		}
	}
	// Non-finite inputs: an error by default, left out of the sums with ClampNonFinite.
	v := []float32{1, 2, float32(math.NaN()), 4}
	spec := Spec{Format: Int8, Granularity: PerTensor, NonFinite: ClampNonFinite}
	q, err := QuantizeTensor(tensor.FromFloat32(v, 4), spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SQNRQuantized(tensor.FromFloat32(v, 4), q.Data, Spec{Format: Int8, Granularity: PerTensor}, q.Scale, q.ZeroPoint); !errors.Is(err, ErrNonFinite) {
		t.Errorf("SQNRQuantized(NaN input) error = %v, want ErrNonFinite", err)
	}
	got, err := SQNRQuantized(tensor.FromFloat32(v, 4), q.Data, spec, q.Scale, q.ZeroPoint)
	deq, _ := q.Dequantize()
	want := SQNR([]float32{1, 2, 4}, []float32{deq[0], deq[1], deq[3]})
	if err != nil || math.Abs(got-want) > 1e-9*math.Abs(want) {
		t.Errorf("SQNRQuantized(NaN input, clamp) = %v, %v; want %v over the finite values", got, err, want)
	}
}

func TestSQNREdges(t *testing.T) {
	cases := []struct {
		x, y []float32
		want float64
	}{
		{[]float32{1, 2}, []float32{1, 2}, math.Inf(1)},
		{[]float32{0, 0}, []float32{0, 0}, math.NaN()},
		{[]float32{3, 4}, []float32{3, 3}, 20 * math.Log10(5)},
	}
	for _, c := range cases {
		if got := SQNR(c.x, c.y); !sqnrClose(got, c.want) {
			t.Errorf("SQNR(%v, %v) = %v, want %v", c.x, c.y, got, c.want)
		}
	}
}

func TestSizeAccounting(t *testing.T) {
	cases := []struct {
		shape []int
		spec  Spec
		want  Size
	}{
		{[]int{64, 256}, Spec{Format: Int8}, Size{16384, 65536, 16384, 256}},
		{[]int{64, 256}, Spec{Format: Int8, Scheme: Asymmetric}, Size{16384, 65536, 16384, 512}},
		{[]int{64, 256}, Spec{Format: Int4, GroupSize: 128}, Size{16384, 65536, 8192, 512}},
		{[]int{3, 7}, Spec{Format: Int4, Granularity: PerTensor, QDType: QUInt4}, Size{21, 84, 11, 8}},
		{[]int{64, 256}, Spec{Format: BFloat16}, Size{16384, 65536, 32768, 0}},
	}
	for _, c := range cases {
		spec := c.spec
		if _, err := spec.Normalize(c.shape); err != nil {
			t.Fatal(err)
		}
		if got := SizeOf(c.shape, 4, &spec); got != c.want {
			t.Errorf("SizeOf(%v, %v %v) = %+v, want %+v", c.shape, spec.Format, spec.Scheme, got, c.want)
		}
	}
	if bpw := (Size{Elements: 16384, DataBytes: 8192, ParamBytes: 512}).BitsPerWeight(); bpw != 4.25 {
		t.Errorf("BitsPerWeight = %v, want 4.25", bpw)
	}
}

func TestResolveRange(t *testing.T) {
	cases := []struct {
		dt     QDType
		reduce bool
		custom *[2]int
		want   Range
	}{
		{QInt8, false, nil, Range{-128, 127, false}},
		{QInt8, true, nil, Range{-64, 63, false}},
		{QUInt8, true, nil, Range{0, 127, false}},
		{QInt8, true, &[2]int{-127, 127}, Range{-64, 63, true}},
		{QInt4, false, nil, Range{-8, 7, true}},
		{QUInt4, false, nil, Range{0, 15, true}},
		{QInt4, true, nil, Range{-4, 3, true}},
		{QInt32, true, nil, Range{math.MinInt32, math.MaxInt32, false}},
	}
	for _, c := range cases {
		got, err := ResolveRange(c.dt, c.reduce, c.custom)
		if err != nil || got != c.want {
			t.Errorf("ResolveRange(%v, %v, %v) = %+v, %v; want %+v", c.dt, c.reduce, c.custom, got, err, c.want)
		}
	}
}

// TestFusedMatchesTwoPass: F32 input with contiguous granules takes the one-pass kernel, other
// dtypes the two-pass one; on the same values (F64 holds every float32 exactly) both must agree,
// non-finite values and errors included.
func TestFusedMatchesTwoPass(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	x := randTensor(5, 0.3, 1001, 96)
	v := f32s(x)
	withBad := append([]float32(nil), v...)
	withBad[777] = float32(math.NaN())
	withBad[50000] = float32(math.Inf(-1))
	withBad[90001] = float32(math.Inf(1))
	specs := []Spec{
		{Format: Int8, Granularity: PerChannel, Axis: 0},
		{Format: Int8, Granularity: PerChannel, Axis: 0, Scheme: Asymmetric, QDType: QUInt8},
		{Format: Int4, Granularity: PerGroup, GroupSize: 32},
		{Format: Int4, Granularity: PerGroup, GroupSize: 48, Scheme: Asymmetric, QDType: QUInt4},
		{Format: Int4, Granularity: PerChannel, Axis: 0, Scheme: Asymmetric},
	}
	for _, vals := range [][]float32{v, withBad} {
		for _, policy := range []NonFinitePolicy{RejectNonFinite, ClampNonFinite} {
			for _, spec := range specs {
				spec.NonFinite = policy
				name := fmt.Sprintf("%v %v %v policy %d bad %v", spec.Format, spec.Granularity, spec.QDType, policy, &vals[0] == &withBad[0])
				fused, errF := QuantizeTensor(tensor.FromFloat32(vals, 1001, 96), spec)
				twoPass, errT := QuantizeTensor(encode(t, vals, tensor.F64, 1001, 96), spec)
				if (errF == nil) != (errT == nil) || (errF != nil && errF.Error() != errT.Error()) {
					t.Errorf("%s: errors differ: fused %v, two-pass %v", name, errF, errT)
					continue
				}
				if errF != nil {
					continue
				}
				if string(fused.Data) != string(twoPass.Data) || fused.Stats != twoPass.Stats {
					t.Errorf("%s: fused and two-pass results differ (stats %+v vs %+v)", name, fused.Stats, twoPass.Stats)
				}
				for i := range fused.Scale {
					if fused.Scale[i] != twoPass.Scale[i] || fused.ZeroPoint[i] != twoPass.ZeroPoint[i] {
						t.Errorf("%s: qparams %d differ", name, i)
						break
					}
				}
			}
		}
	}
}

// TestDequantizeMatchesFormula checks Dequantize (table-driven for long runs, stepped for short
// channel runs) against (q - zp) * scale computed element by element.
func TestDequantizeMatchesFormula(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	cases := []struct {
		shape []int
		spec  Spec
	}{
		{[]int{300, 700}, Spec{Format: Int8, Granularity: PerTensor}},
		{[]int{300, 700}, Spec{Format: Int8, Granularity: PerChannel, Axis: 0, Scheme: Asymmetric, QDType: QUInt8}},
		{[]int{300, 700}, Spec{Format: Int8, Granularity: PerChannel, Axis: 1, Scheme: Asymmetric}},
		{[]int{301, 77}, Spec{Format: Int4, Granularity: PerGroup, GroupSize: 11, Scheme: Asymmetric}},
		{[]int{301, 77}, Spec{Format: Int4, Granularity: PerChannel, Axis: 1, QDType: QUInt4}},
		{[]int{3001, 35}, Spec{Format: Int4, Granularity: PerChannel, Axis: 0, Scheme: Asymmetric}},
		{[]int{77777}, Spec{Format: Int4, Granularity: PerTensor, Scheme: Asymmetric, QDType: QUInt4}},
	}
	for i, c := range cases {
		x := randTensor(uint64(100+i), 2, c.shape...)
		q, err := QuantizeTensor(x, c.spec)
		if err != nil {
			t.Fatal(err)
		}
		got, err := q.Dequantize()
		if err != nil {
			t.Fatal(err)
		}
		signed := !q.Spec.QDType.Unsigned()
		for j := range got {
			g := refGranule(j, c.shape, &q.Spec)
			want := float32(qAt(q.Data, j, q.Spec.Format, signed)-q.ZeroPoint[g]) * q.Scale[g]
			if math.Float32bits(got[j]) != math.Float32bits(want) {
				t.Errorf("%v %v %v: deq[%d] = %v, want %v", c.shape, c.spec.Format, c.spec.Granularity, j, got[j], want)
				break
			}
		}
	}
}

// TestEmptyTensors: zero-sized tensors quantize to nothing; channels that saw no data get torch's
// untouched-observer qparams (scale 1, zero point 0).
func TestEmptyTensors(t *testing.T) {
	cases := []struct {
		shape []int
		spec  Spec
		np    int
	}{
		{[]int{0}, Spec{Format: Int8, Granularity: PerChannel}, 0},
		{[]int{3, 0}, Spec{Format: Int8, Granularity: PerChannel, Axis: 0}, 3},
		{[]int{0, 5}, Spec{Format: Int4, Granularity: PerChannel, Axis: 1}, 5},
		{[]int{4, 0}, Spec{Format: Int4, Granularity: PerGroup, GroupSize: 8}, 0},
		{[]int{0, 2}, Spec{Format: Int8, Granularity: PerTensor}, 1},
		{[]int{0}, Spec{Format: Float16}, 0},
	}
	for _, c := range cases {
		q, err := QuantizeTensor(tensor.New(tensor.F32, c.shape...), c.spec)
		if err != nil {
			t.Errorf("QuantizeTensor(empty %v, %v %v): %v", c.shape, c.spec.Format, c.spec.Granularity, err)
			continue
		}
		if len(q.Data) != 0 || len(q.Scale) != c.np {
			t.Errorf("QuantizeTensor(empty %v): %d bytes, %d scales; want 0 and %d", c.shape, len(q.Data), len(q.Scale), c.np)
		}
		for i := range q.Scale {
			if q.Scale[i] != 1 || q.ZeroPoint[i] != 0 {
				t.Errorf("QuantizeTensor(empty %v): qparams %d = %v/%d, want 1/0", c.shape, i, q.Scale[i], q.ZeroPoint[i])
			}
		}
		if _, err := q.Dequantize(); err != nil {
			t.Errorf("Dequantize(empty %v): %v", c.shape, err)
		}
	}
}

func TestMinMaxRun(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	negNaN := math.Float32frombits(0xFFC00000)
	cases := []struct {
		in               []float32
		wantMin, wantMax float32 // NaN means "must be non-finite"
	}{
		{[]float32{1}, 1, 1},
		{[]float32{3, -2, 5, 0.5, -7, 2}, -7, 5},
		{[]float32{-1e-45, 1e-45, -3e38, 3e38, 0}, -3e38, 3e38},
		{[]float32{float32(math.Copysign(0, -1)), 0, 0, 0, 0}, 0, 0},
		{[]float32{1, 2, 3, 4, 5, 6, 7, nan}, nan, nan},
		{[]float32{1, negNaN, 3, 4, 5}, nan, nan},
		{[]float32{1, 2, -inf, 4}, -inf, 4},
		{[]float32{1, inf, 3, 4, 0}, 0, inf},
	}
	for _, c := range cases {
		mn, mx := minMaxRun(c.in)
		if c.wantMin != c.wantMin || c.wantMax != c.wantMax {
			if isFinite(mn) && isFinite(mx) {
				t.Errorf("minMaxRun(%v) = %v, %v; want a non-finite result", c.in, mn, mx)
			}
			continue
		}
		if mn != c.wantMin || mx != c.wantMax {
			t.Errorf("minMaxRun(%v) = %v, %v; want %v, %v", c.in, mn, mx, c.wantMin, c.wantMax)
		}
	}
}

// TestUnalignedF32: F32 data at an odd address (as a memory-mapped file may place it) gives the
// same results as aligned data.
func TestUnalignedF32(t *testing.T) {
	x := randTensor(11, 1, 300, 256)
	buf := make([]byte, len(x.Data)+1)
	copy(buf[1:], x.Data)
	un := &tensor.Tensor{DType: tensor.F32, Shape: x.Shape, Data: buf[1:]}
	for _, spec := range []Spec{
		{Format: Int8, Granularity: PerChannel, Axis: 0},
		{Format: Int4, Granularity: PerGroup, GroupSize: 64, Scheme: Asymmetric},
		{Format: Int8, Granularity: PerChannel, Axis: 1},
		{Format: Float16},
	} {
		a, err := QuantizeTensor(x, spec)
		if err != nil {
			t.Fatal(err)
		}
		b, err := QuantizeTensor(un, spec)
		if err != nil {
			t.Fatal(err)
		}
		if string(a.Data) != string(b.Data) || fmt.Sprint(a.Scale) != fmt.Sprint(b.Scale) {
			t.Errorf("%v %v: unaligned input quantizes differently", spec.Format, spec.Granularity)
		}
	}
}
