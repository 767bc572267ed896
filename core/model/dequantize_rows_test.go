package model

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// quantizedCheckpoint stores one tensor of the given shape, quantized by the kernel as qshape
// under spec, in an in-memory quantized checkpoint with its config, as Quantize would store it.
func quantizedCheckpoint(t *testing.T, name string, rng *rand.Rand, shape, qshape []int, spec quant.Spec) (checkpoint.Reader, *Config) {
	t.Helper()
	x := randTensor(rng, qshape...)
	for i, v := range tensor.View[float32](x.Data) {
		tensor.View[float32](x.Data)[i] = v + 0.01 // off centre, so asymmetric zero points are not 0
	}
	q, err := quant.QuantizeTensor(x, spec)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	s := q.Spec
	tc := tensorConfig(&plan.TensorPlan{Name: name, DType: tensor.F32, Shape: shape, QuantShape: qshape, Spec: s, Layer: "layer", LayerType: plan.Linear})
	cfg := &Config{FormatVersion: FormatVersion, Tool: "monoquant", ToolVersion: ToolVersion, Mode: "weight_only", Tensors: map[string]*TensorConfig{name: tc}}
	md, err := cfg.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var zp []byte
	for _, v := range q.ZeroPoint {
		zp = binary.LittleEndian.AppendUint32(zp, uint32(v))
	}
	data := [][]byte{q.Data, tensor.Float32Bytes(q.Scale), zp}
	ck := newMemCheckpoint()
	for i, e := range storedEntries(name, &s, shape, qshape) {
		if err := ck.add(e.Name, &tensor.Tensor{DType: e.DType, Shape: e.Shape, Data: data[i]}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	ck.metadata[MetadataKey] = md
	got, err := ReadConfig(ck.Entries(), ck.Metadata())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return ck, got
}

// TestDequantizeRowsMatchesWhole: for every stored layout, every row range dequantizes to
// exactly the matching slice of DequantizeTensor's output, bit for bit, and writes nothing past
// it. The shapes make ranges start and end inside INT4 bytes, groups and channel runs.
func TestDequantizeRowsMatchesWhole(t *testing.T) {
	i8 := func(g quant.Granularity, axis int) quant.Spec {
		return quant.Spec{Format: quant.Int8, Granularity: g, Axis: axis}
	}
	u8 := func(g quant.Granularity, axis int) quant.Spec {
		return quant.Spec{Format: quant.Int8, Scheme: quant.Asymmetric, QDType: quant.QUInt8, Granularity: g, Axis: axis}
	}
	i4 := func(g quant.Granularity, axis, group int) quant.Spec {
		return quant.Spec{Format: quant.Int4, Granularity: g, Axis: axis, GroupSize: group}
	}
	u4 := func(g quant.Granularity, axis, group int) quant.Spec {
		return quant.Spec{Format: quant.Int4, Scheme: quant.Asymmetric, QDType: quant.QUInt4, Granularity: g, Axis: axis, GroupSize: group}
	}
	tests := []struct {
		shape, qshape []int
		spec          quant.Spec
	}{
		{[]int{7, 5, 3}, []int{7, 5, 3}, i8(quant.PerChannel, 0)},
		{[]int{6, 5, 3}, []int{6, 5, 3}, u8(quant.PerChannel, 1)},
		{[]int{5, 4, 3}, []int{5, 4, 3}, i8(quant.PerChannel, 2)}, // channel runs of one value
		{[]int{9, 7}, []int{9, 7}, u8(quant.PerTensor, 0)},
		{[]int{40, 2048}, []int{40, 2048}, i8(quant.PerChannel, 0)}, // rows long enough for the lookup table
		{[]int{70, 600}, []int{70, 600}, u8(quant.PerChannel, 1)},
		{[]int{6, 8}, []int{6, 8}, i4(quant.PerGroup, 0, 4)},
		{[]int{5, 9}, []int{5, 9}, u4(quant.PerGroup, 0, 3)},          // odd rows and groups
		{[]int{4, 3, 3}, []int{4, 9}, i4(quant.PerGroup, 0, 9)},       // a conv weight viewed as [O, rest]
		{[]int{6, 3, 5}, []int{6, 15}, u4(quant.PerGroup, 0, 5)},      // same, odd rows, groups across dims
		{[]int{12}, []int{12}, i4(quant.PerGroup, 0, 4)},              // 1-D: ranges cut groups
		{[]int{7, 5}, []int{7, 5}, i4(quant.PerChannel, 0, 0)},        // odd rows: ranges start on high nibbles
		{[]int{5, 3}, []int{5, 3}, u4(quant.PerChannel, 1, 0)},        // odd rows, channels on the last axis
		{[]int{7, 3}, []int{7, 3}, u4(quant.PerTensor, 0, 0)},         // odd rows
		{[]int{33, 257}, []int{33, 257}, i4(quant.PerChannel, 0, 0)},  // odd rows, several kernel workers
		{[]int{6, 4}, []int{3, 8}, u8(quant.PerChannel, 0)},           // channel runs span rows
		{[]int{8, 3}, []int{4, 6}, u8(quant.PerChannel, 1)},           // periods of channels span rows
		{[]int{9, 3}, []int{3, 9}, u4(quant.PerChannel, 1, 0)},        // and cut INT4 bytes
		{[]int{}, []int{}, u8(quant.PerTensor, 0)},                    // 0-d: one row of one value
		{[]int{0, 4}, []int{0, 4}, i8(quant.PerChannel, 0)},           // no rows
		{[]int{5, 3}, []int{5, 3}, quant.Spec{Format: quant.Float16}}, //
		{[]int{4, 3, 2}, []int{4, 3, 2}, quant.Spec{Format: quant.BFloat16}},
	}
	rng := rand.New(rand.NewPCG(7, 11))
	for _, tt := range tests {
		name := fmt.Sprintf("%v as %v %v %v axis %d group %d", tt.shape, tt.qshape, tt.spec.Format, tt.spec.Granularity, tt.spec.Axis, tt.spec.GroupSize)
		r, cfg := quantizedCheckpoint(t, "w", rng, tt.shape, tt.qshape, tt.spec)
		whole, err := DequantizeTensor(r, cfg, "w")
		if err != nil {
			t.Fatalf("%s: DequantizeTensor: %v", name, err)
		}
		want := tensor.View[float32](whole.Data)
		d, err := NewRowDequantizer(r, cfg, "w")
		if err != nil {
			t.Fatalf("%s: NewRowDequantizer: %v", name, err)
		}
		rows, rowLen := d.NumRows(), d.RowLen()
		if fmt.Sprint(d.Shape()) != fmt.Sprint(tt.shape) || rows*rowLen != len(want) {
			t.Errorf("%s: shape %v, %d rows of %d, want %v holding %d values", name, d.Shape(), rows, rowLen, tt.shape, len(want))
		}
		const guard = 3
		sentinel := math.Float32frombits(0x7fc0dead)
		for r0 := 0; r0 <= rows; r0++ {
			for r1 := r0; r1 <= rows; r1++ {
				n := (r1 - r0) * rowLen
				dst := make([]float32, n+guard)
				for i := range dst {
					dst[i] = sentinel
				}
				if err := d.Dequantize(r0, r1, dst); err != nil {
					t.Fatalf("%s: rows [%d, %d): %v", name, r0, r1, err)
				}
				for i := 0; i < n; i++ {
					if g, w := dst[i], want[r0*rowLen+i]; math.Float32bits(g) != math.Float32bits(w) {
						t.Fatalf("%s: rows [%d, %d): value %d (flat %d) = %v, want %v", name, r0, r1, i, r0*rowLen+i, g, w)
					}
				}
				for i := n; i < len(dst); i++ {
					if math.Float32bits(dst[i]) != math.Float32bits(sentinel) {
						t.Fatalf("%s: rows [%d, %d) wrote past its %d values, at %d", name, r0, r1, n, i)
					}
				}
			}
		}
		d.Close()
		d.Close() // twice is harmless
		if rows > 0 {
			dst := make([]float32, rowLen)
			if err := DequantizeRows(r, cfg, "w", rows-1, rows, dst); err != nil {
				t.Fatalf("%s: DequantizeRows: %v", name, err)
			}
			for i, v := range dst {
				if math.Float32bits(v) != math.Float32bits(want[(rows-1)*rowLen+i]) {
					t.Fatalf("%s: DequantizeRows of the last row: value %d = %v, want %v", name, i, v, want[(rows-1)*rowLen+i])
				}
			}
		}
	}
}

func TestDequantizeRowsErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	r, cfg := quantizedCheckpoint(t, "fc.weight", rng, []int{6, 4}, []int{6, 4}, quant.Spec{Format: quant.Int8, Granularity: quant.PerChannel})
	d, err := NewRowDequantizer(r, cfg, "fc.weight")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		r0, r1, buf int
		want        string
	}{
		{-1, 2, 100, "rows [-1, 2) are not a range of the 6 rows"},
		{0, 7, 100, "rows [0, 7) are not a range of the 6 rows"},
		{3, 2, 100, "rows [3, 2) are not a range of the 6 rows"},
		{1, 4, 11, "buffer holds 11 values, rows [1, 4) of tensor \"fc.weight\" need 12"},
		{0, 6, 0, "buffer holds 0 values"},
	} {
		err := d.Dequantize(tt.r0, tt.r1, make([]float32, tt.buf))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Dequantize(%d, %d, [%d]float32) = %v, want an error containing %q", tt.r0, tt.r1, tt.buf, err, tt.want)
		}
	}
	d.Close()
	if err := d.Dequantize(0, 1, make([]float32, 4)); err == nil || !strings.Contains(err.Error(), "after Close") {
		t.Errorf("Dequantize after Close = %v, want an error saying so", err)
	}
	if _, err := NewRowDequantizer(r, cfg, "fc.bias"); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), `"fc.bias"`) {
		t.Errorf("NewRowDequantizer of an unknown name = %v, want ErrFormat naming it", err)
	}
	if err := DequantizeRows(r, cfg, "nope", 0, 1, make([]float32, 4)); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("DequantizeRows of an unknown name = %v, want ErrFormat naming it", err)
	}
	if _, err := NewRowDequantizer(nil, cfg, "fc.weight"); err == nil {
		t.Errorf("NewRowDequantizer(nil reader) succeeded")
	}
	sc, _ := r.Tensor("fc.weight.scale")
	tensor.View[float32](sc.Data)[2] = float32(math.Inf(1))
	if _, err := NewRowDequantizer(r, cfg, "fc.weight"); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), `"fc.weight.scale": scale 2 is +Inf`) {
		t.Errorf("NewRowDequantizer with an infinite scale = %v, want ErrFormat naming the scale", err)
	}
}
