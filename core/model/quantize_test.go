package model

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
	"github.com/monoquant/monoquant/core/warning"
)

func randTensor(rng *rand.Rand, shape ...int) *tensor.Tensor {
	n := tensor.NumElements(shape)
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * 0.05)
	}
	return tensor.FromFloat32(v, shape...)
}

// testModel is a small model: two linears, a conv, an LSTM, norms and biases.
func testModel(t *testing.T) *Model {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	m := NewModel()
	add := func(name string, x *tensor.Tensor) {
		if err := m.Add(name, x); err != nil {
			t.Fatal(err)
		}
	}
	add("conv.weight", randTensor(rng, 16, 3, 3, 3))
	add("conv.bias", randTensor(rng, 16))
	add("lstm.weight_ih_l0", randTensor(rng, 128, 64))
	add("lstm.weight_hh_l0", randTensor(rng, 128, 32))
	add("lstm.bias_ih_l0", randTensor(rng, 128))
	add("fc1.weight", randTensor(rng, 64, 256))
	add("fc1.bias", randTensor(rng, 64))
	add("norm.weight", randTensor(rng, 64))
	add("fc2.weight", randTensor(rng, 10, 64))
	add("steps", &tensor.Tensor{DType: tensor.I64, Shape: []int{}, Data: make([]byte, 8)})
	return m
}

// naiveSymmetricPerRow is an independent INT8 symmetric per-row quantize-dequantize, in
// float64 where torch's float32 arithmetic cannot matter for the checked tolerance.
func naiveSymmetricPerRow(x []float32, rows int, qmax float64) []float32 {
	out := make([]float32, len(x))
	k := len(x) / rows
	for r := 0; r < rows; r++ {
		row := x[r*k : (r+1)*k]
		amax := 0.0
		for _, v := range row {
			amax = math.Max(amax, math.Abs(float64(v)))
		}
		s := float64(float32(amax / ((qmax*2 + 1) / 2)))
		for i, v := range row {
			q := math.RoundToEven(float64(v) / s)
			q = math.Max(-qmax-1, math.Min(qmax, q))
			out[r*k+i] = float32(q * s)
		}
	}
	return out
}

func energyOf(x, y []float32) (float64, float64) {
	var s, n float64
	for i := range x {
		a := float64(x[i])
		d := a - float64(y[i])
		s += a * a
		n += d * d
	}
	return s, n
}

func TestQuantizeInMemoryReport(t *testing.T) {
	m := testModel(t)
	res, err := m.Quantize(context.Background(), plan.Options{Bits: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep := res.Report
	if rep.TensorsQuantized != 5 || rep.TensorsKept != 5 {
		t.Fatalf("quantized %d kept %d tensors, want 5 and 5", rep.TensorsQuantized, rep.TensorsKept)
	}
	var sig, noise float64
	var before, after, total int64
	for _, e := range m.Entries() {
		total += entryBytes(e.DType, e.Shape)
	}
	for _, tr := range rep.Tensors {
		src, _ := m.Tensor(tr.Name)
		x, _ := src.Float32s()
		rows := src.Shape[0]
		want := naiveSymmetricPerRow(x, rows, 127)
		ws, wn := energyOf(x, want)
		if math.Abs(tr.SignalEnergy-ws) > 1e-9*ws || math.Abs(tr.NoiseEnergy-wn) > 1e-6*wn {
			t.Errorf("%s: energies (%g, %g), want (%g, %g)", tr.Name, tr.SignalEnergy, tr.NoiseEnergy, ws, wn)
		}
		// torch's compute_sqnr, through core/quant on the stored values.
		q, _ := res.Tensor(tr.Name)
		sc, _ := res.Tensor(tr.Name + ".scale")
		deq := make([]float32, len(x))
		spec := quant.Spec{Format: quant.Int8, Granularity: quant.PerChannel}
		if err := quant.Dequantize(deq, q.Data, src.Shape, spec, tensor.View[float32](sc.Data), make([]int32, rows)); err != nil {
			t.Fatal(err)
		}
		if got, want := float64(tr.SQNR), quant.SQNR(x, deq); math.Abs(got-want) > 1e-9 {
			t.Errorf("%s: SQNR %v dB, compute_sqnr gives %v", tr.Name, got, want)
		}
		nel := int64(len(x))
		wantAfter := nel + 4*int64(rows) // int8 values + one float32 scale per row, no zero points
		if tr.BytesBefore != 4*nel || tr.BytesAfter != wantAfter {
			t.Errorf("%s: bytes %d → %d, want %d → %d", tr.Name, tr.BytesBefore, tr.BytesAfter, 4*nel, wantAfter)
		}
		if want := float64(8*wantAfter) / float64(nel); math.Abs(tr.BitsPerWeight-want) > 1e-12 {
			t.Errorf("%s: %v bits per weight, want %v", tr.Name, tr.BitsPerWeight, want)
		}
		sig += ws
		noise += wn
		before += 4 * nel
		after += wantAfter
	}
	if want := 10 * math.Log10(sig/noise); math.Abs(float64(rep.SQNR)-want) > 1e-6 {
		t.Errorf("overall SQNR %v, want %v", rep.SQNR, want)
	}
	if rep.QuantizedBytesBefore != before || rep.QuantizedBytesAfter != after {
		t.Errorf("quantized bytes %d → %d, want %d → %d", rep.QuantizedBytesBefore, rep.QuantizedBytesAfter, before, after)
	}
	if rep.TotalBytesBefore != total || rep.TotalBytesAfter != total-before+after {
		t.Errorf("total bytes %d → %d, want %d → %d", rep.TotalBytesBefore, rep.TotalBytesAfter, total, total-before+after)
	}
	for i := 1; i < len(rep.Tensors); i++ {
		if rep.Tensors[i].SQNR < rep.Tensors[i-1].SQNR {
			t.Errorf("tensors not worst first: %v before %v", rep.Tensors[i-1].SQNR, rep.Tensors[i].SQNR)
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("report does not marshal: %v", err)
	}
}

func TestQuantizeStoredTensors(t *testing.T) {
	m := testModel(t)
	tests := []struct {
		name   string
		opts   plan.Options
		check  map[string]checkpoint.Entry // stored name → dtype/shape
		absent []string
	}{
		{"int8", plan.Options{Bits: 8}, map[string]checkpoint.Entry{
			"fc1.weight":       ent("fc1.weight", tensor.I8, 64, 256),
			"fc1.weight.scale": ent("fc1.weight.scale", tensor.F32, 64),
			"conv.weight":      ent("conv.weight", tensor.I8, 16, 3, 3, 3),
			"fc1.bias":         ent("fc1.bias", tensor.F32, 64),
			"steps":            ent("steps", tensor.I64),
		}, []string{"fc1.weight.zero_point"}},
		{"int8 asym quint8", plan.Options{Bits: 8, Spec: quant.Spec{Scheme: quant.Asymmetric, QDType: quant.QUInt8}}, map[string]checkpoint.Entry{
			"fc1.weight":            ent("fc1.weight", tensor.U8, 64, 256),
			"fc1.weight.zero_point": ent("fc1.weight.zero_point", tensor.I32, 64),
		}, nil},
		{"int4 g64", plan.Options{Bits: 4, Spec: quant.Spec{GroupSize: 64}, GroupFallback: &yes}, map[string]checkpoint.Entry{
			"fc1.weight":       ent("fc1.weight", tensor.U8, 64, 128),
			"fc1.weight.scale": ent("fc1.weight.scale", tensor.F32, 64, 4),
		}, nil},
		{"fp16", plan.Options{Bits: 16}, map[string]checkpoint.Entry{
			"fc1.weight": ent("fc1.weight", tensor.F16, 64, 256),
		}, []string{"fc1.weight.scale"}},
		{"bf16", plan.Options{Bits: 16, BFloat16: true}, map[string]checkpoint.Entry{
			"fc2.weight": ent("fc2.weight", tensor.BF16, 10, 64),
		}, []string{"fc2.weight.scale"}},
	}
	// conv.weight [16,3,3,3] under INT4 g64: its rows have 27 values, no divisor in [16, 64]
	// divides 27 except 27 itself → group size 27, odd last dimension → flat packed bytes.
	tests[2].check["conv.weight"] = ent("conv.weight", tensor.U8, (16*27+1)/2)
	for _, tt := range tests {
		res, err := m.Quantize(context.Background(), tt.opts, nil)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		got := map[string]checkpoint.Entry{}
		for _, e := range res.Entries() {
			got[e.Name] = e
		}
		for name, want := range tt.check {
			g, ok := got[name]
			if !ok || g.DType != want.DType || !slices.Equal(g.Shape, want.Shape) {
				t.Errorf("%s: stored %q = %v %v (present %v), want %v %v", tt.name, name, g.DType, g.Shape, ok, want.DType, want.Shape)
			}
		}
		for _, name := range tt.absent {
			if _, ok := got[name]; ok {
				t.Errorf("%s: stored %q, want it absent", tt.name, name)
			}
		}
		cfg, err := ReadConfig(res.Entries(), res.Metadata())
		if err != nil {
			t.Errorf("%s: ReadConfig: %v", tt.name, err)
			continue
		}
		if cfg.FormatVersion != 1 || cfg.Tool != "monoquant" || cfg.ToolVersion != ToolVersion || len(cfg.Tensors) != 5 {
			t.Errorf("%s: config %+v", tt.name, cfg)
		}
	}
}

// TestDequantizeMatchesKernel: the model-level dequantization gives exactly what the kernel's
// own quantize → dequantize gives for each tensor.
func TestDequantizeMatchesKernel(t *testing.T) {
	m := testModel(t)
	for _, opts := range []plan.Options{{Bits: 8}, {Bits: 4, Spec: quant.Spec{GroupSize: 32}, GroupFallback: &yes}, {Bits: 8, Spec: quant.Spec{Scheme: quant.Asymmetric}}, {Bits: 16}, {Bits: 16, BFloat16: true}} {
		res, err := m.Quantize(context.Background(), opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		dq, err := res.Dequantize(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(dq.Entries()) != len(m.Entries()) {
			t.Fatalf("bits %d: dequantized model has %d tensors, want %d", opts.Bits, len(dq.Entries()), len(m.Entries()))
		}
		p, _ := m.Plan(opts)
		for _, tp := range p.Tensors {
			src, _ := m.Tensor(tp.Name)
			got, err := dq.Tensor(tp.Name)
			if err != nil {
				t.Fatal(err)
			}
			if tp.Action == plan.ActionKeep {
				if got.DType != src.DType || string(got.Data) != string(src.Data) {
					t.Errorf("bits %d: kept tensor %q changed", opts.Bits, tp.Name)
				}
				continue
			}
			q, err := quant.QuantizeTensor(&tensor.Tensor{DType: src.DType, Shape: tp.QuantShape, Data: src.Data}, tp.Spec)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := q.Dequantize()
			if got.DType != tensor.F32 || !slices.Equal(got.Shape, src.Shape) {
				t.Errorf("bits %d: %q dequantized as %v %v, want F32 %v", opts.Bits, tp.Name, got.DType, got.Shape, src.Shape)
				continue
			}
			g := tensor.View[float32](got.Data)
			for i := range want {
				if g[i] != want[i] {
					t.Errorf("bits %d: %q[%d] = %v, want %v", opts.Bits, tp.Name, i, g[i], want[i])
					break
				}
			}
		}
		if _, ok := dq.Reader().Metadata()[MetadataKey]; ok {
			t.Errorf("bits %d: dequantized metadata still has %q", opts.Bits, MetadataKey)
		}
	}
}

func TestQuantizeErrors(t *testing.T) {
	nan := []float32{1, 2, float32(math.NaN()), 4}
	m := NewModel()
	m.Add("fc.weight", tensor.FromFloat32(nan, 2, 2))
	_, err := m.Quantize(context.Background(), plan.Options{}, nil)
	if err == nil || !errors.Is(err, quant.ErrNonFinite) || !strings.Contains(err.Error(), `"fc.weight"`) {
		t.Errorf("NaN weight: error %v, want ErrNonFinite naming \"fc.weight\"", err)
	}
	// With the clamp option the NaN becomes the zero point and a warning says so.
	res, err := m.Quantize(context.Background(), plan.Options{Spec: quant.Spec{NonFinite: quant.ClampNonFinite}}, nil)
	if err != nil {
		t.Fatalf("NaN weight with clamp: %v", err)
	}
	if !hasWarning(res.Report, warning.NonFiniteClamp, "fc.weight") {
		t.Errorf("NaN weight with clamp: warnings %v, want %s for fc.weight", res.Report.Warnings, warning.NonFiniteClamp)
	}
	// The report's SQNR is over the finite values: 1, 2 and 4 (the row [1 2] and the 4 of [NaN 4]).
	if tr := res.Report.Tensors[0]; tr.NonFinite != 1 || tr.SignalEnergy != 1+4+16 || math.IsNaN(float64(tr.SQNR)) || math.IsNaN(float64(res.Report.SQNR)) {
		t.Errorf("NaN weight with clamp: %d clamped, signal %v, SQNR %v (overall %v); want 1, 21 and finite", tr.NonFinite, tr.SignalEnergy, tr.SQNR, res.Report.SQNR)
	}

	big := NewModel()
	big.Add("fc.weight", tensor.FromFloat32([]float32{1e5, 1, 2, 3}, 2, 2))
	res, err = big.Quantize(context.Background(), plan.Options{Bits: 16}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !hasWarning(res.Report, warning.FP16Overflow, "fc.weight") || res.Report.Tensors[0].Overflow != 1 {
		t.Errorf("FP16 overflow: report %+v, want one overflow and a warning", res.Report)
	}
	// One overflow rule: the stored value is the largest finite half, never Inf, and the
	// report's numbers stay finite (JSON cannot hold Inf).
	st, _ := res.Tensor("fc.weight")
	if h := binary.LittleEndian.Uint16(st.Data); h != 0x7BFF || math.IsInf(res.Report.Tensors[0].NoiseEnergy, 0) {
		t.Errorf("FP16 overflow stored %#04x (noise %v), want 0x7bff saturated and finite noise", h, res.Report.Tensors[0].NoiseEnergy)
	}
	if _, err := json.Marshal(res.Report); err != nil {
		t.Errorf("the report of a saturated FP16 model does not encode: %v", err)
	}

	if err := NewModel().Add("x", nil); err == nil {
		t.Error("Add(nil) succeeded")
	}
	bad := &tensor.Tensor{DType: tensor.F32, Shape: []int{3}, Data: make([]byte, 8)}
	if err := NewModel().Add("x", bad); err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("Add of a short tensor: error %v, want one naming \"x\"", err)
	}
	dup := NewModel()
	dup.Add("x", tensor.New(tensor.F32, 2))
	if err := dup.Add("x", tensor.New(tensor.F32, 2)); err == nil {
		t.Error("duplicate Add succeeded")
	}
	if _, err := testModel(t).Quantize(context.Background(), plan.Options{Mode: plan.Static}, nil); !errors.Is(err, ErrCalibration) {
		t.Errorf("static mode without calibration: error %v, want ErrCalibration", err)
	}
	// Quantizing a quantized checkpoint is refused.
	res, _ = testModel(t).Quantize(context.Background(), plan.Options{}, nil)
	p, err := plan.NewPlan(res.Entries(), nil, plan.Options{LayerTypes: []plan.LayerType{plan.Linear, plan.Conv2d, plan.LSTM}})
	if err == nil {
		_, err = Quantize(context.Background(), res.Reader(), memCreate(new(*memWriter)), p, Run{})
	}
	if err == nil {
		t.Error("quantizing a quantized checkpoint succeeded")
	}
}

func hasWarning(r *Report, code warning.Code, tensorName string) bool {
	for _, w := range r.Warnings {
		if w.Code == code && (tensorName == "" || w.Tensor == tensorName) {
			return true
		}
	}
	return false
}

func memCreate(out **memWriter) CreateFunc {
	return func(e []checkpoint.Entry, md map[string]string) (checkpoint.Writer, error) {
		*out = newMemWriter(e, md)
		return *out, nil
	}
}

func TestProgressAndCancel(t *testing.T) {
	m := testModel(t)
	var seen []Progress
	_, err := m.Quantize(context.Background(), plan.Options{}, func(p Progress) { seen = append(seen, p) })
	if err != nil {
		t.Fatal(err)
	}
	n := len(m.Entries())
	if len(seen) != n {
		t.Fatalf("%d progress calls, want %d", len(seen), n)
	}
	last := seen[n-1]
	if last.TensorsDone != n || last.TensorsTotal != n || last.BytesDone != last.BytesTotal {
		t.Errorf("last progress %+v, want all tensors and bytes done", last)
	}
	for i := 1; i < n; i++ {
		if seen[i].BytesDone < seen[i-1].BytesDone || seen[i].TensorsDone != i+1 {
			t.Errorf("progress %d: %+v after %+v", i, seen[i], seen[i-1])
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var mw *memWriter
	p, _ := m.Plan(plan.Options{})
	calls := 0
	_, err = Quantize(ctx, m.Reader(), memCreate(&mw), p, Run{Progress: func(Progress) {
		calls++
		if calls == 2 {
			cancel()
		}
	}})
	if !errors.Is(err, context.Canceled) || calls != 2 {
		t.Errorf("cancelled run: error %v after %d tensors, want context.Canceled after 2", err, calls)
	}
}

func TestReadConfigErrors(t *testing.T) {
	res, err := testModel(t).Quantize(context.Background(), plan.Options{Bits: 8, Spec: quant.Spec{Scheme: quant.Asymmetric}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := res.Metadata()[MetadataKey]
	edit := func(f func(c map[string]any)) string {
		var c map[string]any
		json.Unmarshal([]byte(good), &c)
		f(c)
		b, _ := json.Marshal(c)
		return string(b)
	}
	fc1 := func(c map[string]any) map[string]any {
		return c["tensors"].(map[string]any)["fc1.weight"].(map[string]any)
	}
	entries := res.Entries()
	drop := func(name string) []checkpoint.Entry {
		var out []checkpoint.Entry
		for _, e := range entries {
			if e.Name != name {
				out = append(out, e)
			}
		}
		return out
	}
	reshape := func(name string, shape ...int) []checkpoint.Entry {
		out := append([]checkpoint.Entry(nil), entries...)
		for i := range out {
			if out[i].Name == name {
				out[i].Shape = shape
			}
		}
		return out
	}
	tests := []struct {
		name    string
		entries []checkpoint.Entry
		meta    string
		want    string
	}{
		{"not json", entries, "{", "not valid JSON"},
		{"version", entries, edit(func(c map[string]any) { c["format_version"] = 2 }), "format_version 2"},
		{"no tensors", entries, edit(func(c map[string]any) { c["tensors"] = map[string]any{} }), "no quantized tensors"},
		{"missing scale", drop("fc1.weight.scale"), good, `"fc1.weight.scale"`},
		{"missing zero point", drop("fc1.weight.zero_point"), good, `"fc1.weight.zero_point"`},
		{"scale shape", reshape("fc1.weight.scale", 32), good, `"fc1.weight.scale"`},
		{"values shape", reshape("fc1.weight", 64, 128), good, `"fc1.weight"`},
		{"format", entries, edit(func(c map[string]any) { fc1(c)["format"] = "int3" }), "int3"},
		{"bits", entries, edit(func(c map[string]any) { fc1(c)["bits"] = 4 }), "bits 4"},
		{"scheme", entries, edit(func(c map[string]any) { fc1(c)["scheme"] = "odd" }), "odd"},
		{"axis", entries, edit(func(c map[string]any) { fc1(c)["axis"] = 5 }), "axis"},
		{"zero point flag", entries, edit(func(c map[string]any) { fc1(c)["zero_point"] = false }), "zero_point"},
		{"quant shape", entries, edit(func(c map[string]any) { fc1(c)["quant_shape"] = []int{3} }), "quant_shape"},
	}
	for _, tt := range tests {
		_, err := ReadConfig(tt.entries, map[string]string{MetadataKey: tt.meta})
		if err == nil || !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ReadConfig error %v, want ErrFormat mentioning %s", tt.name, err, tt.want)
		}
	}
	if _, err := ReadConfig(entries, map[string]string{}); !errors.Is(err, ErrFormat) {
		t.Errorf("no metadata: error %v, want ErrFormat", err)
	}
}

// TestDequantizeRejectsBadParams: values that the config cannot catch (a zero scale, a zero
// point outside the range) are caught while dequantizing, naming the tensor.
func TestDequantizeRejectsBadParams(t *testing.T) {
	res, err := testModel(t).Quantize(context.Background(), plan.Options{Bits: 8, Spec: quant.Spec{Scheme: quant.Asymmetric, QDType: quant.QInt8}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sc, _ := res.Tensor("fc2.weight.scale")
	saved := tensor.View[float32](sc.Data)[3]
	tensor.View[float32](sc.Data)[3] = 0
	_, err = res.Dequantize(context.Background())
	if err == nil || !strings.Contains(err.Error(), `"fc2.weight.scale"`) {
		t.Errorf("zero scale: error %v, want one naming fc2.weight.scale", err)
	}
	tensor.View[float32](sc.Data)[3] = saved
	zp, _ := res.Tensor("fc1.weight.zero_point")
	tensor.View[int32](zp.Data)[0] = 300
	_, err = res.Dequantize(context.Background())
	if err == nil || !strings.Contains(err.Error(), `"fc1.weight.zero_point"`) {
		t.Errorf("zero point 300: error %v, want one naming fc1.weight.zero_point", err)
	}
}

func TestDecibelsJSON(t *testing.T) {
	for _, v := range []float64{math.Inf(1), math.Inf(-1), 42.5, math.NaN()} {
		b, err := json.Marshal(Decibels(v))
		if err != nil {
			t.Fatalf("Marshal(%v): %v", v, err)
		}
		var d Decibels
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if !(float64(d) == v || (math.IsNaN(v) && math.IsNaN(float64(d)))) {
			t.Errorf("round trip of %v via %s = %v", v, b, d)
		}
	}
}

// TestBlockedMatchesWhole: quantizing in cache-sized blocks of rows gives the very bytes, stats
// and energies of quantizing the tensor in one piece, for every blockable spec, odd row
// lengths with INT4 and non-F32 input included.
func TestBlockedMatchesWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	big := randTensor(rng, 301, 999)
	tensor.View[float32](big.Data)[5] = 3e5 // overflows FP16
	h := tensor.New(tensor.BF16, 130, 512)
	for i := range h.Data {
		h.Data[i] = byte(rng.IntN(256) & 0xBF)
	}
	specs := []quant.Spec{
		{Format: quant.Int8, Granularity: quant.PerChannel},
		{Format: quant.Int8, Scheme: quant.Asymmetric, QDType: quant.QUInt8, Granularity: quant.PerChannel},
		{Format: quant.Int4, Granularity: quant.PerGroup, GroupSize: 333},
		{Format: quant.Int4, Granularity: quant.PerGroup, GroupSize: 128},
		{Format: quant.Int4, Scheme: quant.Asymmetric, QDType: quant.QUInt4, Granularity: quant.PerGroup, GroupSize: 32},
		{Format: quant.Int4, Granularity: quant.PerChannel},
		{Format: quant.Float16},
		{Format: quant.BFloat16},
	}
	even := randTensor(rng, 257, 512)
	wide := randTensor(rng, 40, 2048) // rows long enough for the per-row lookup table
	half := tensor.New(tensor.F16, 64, 384)
	for i := 0; i < len(half.Data); i += 2 {
		half.Data[i], half.Data[i+1] = byte(rng.IntN(256)), byte(rng.IntN(0x78)) // finite halves
	}
	// F32 at an odd address, as in a memory-mapped file whose header length is not a multiple of 4.
	odd := randTensor(rng, 96, 256)
	buf := make([]byte, len(odd.Data)+1)
	copy(buf[1:], odd.Data)
	odd.Data = buf[1:]
	for _, x := range []*tensor.Tensor{big, h, even, wide, half, odd} {
		for _, s := range specs {
			if s.Granularity == quant.PerGroup && x.Shape[1]%s.GroupSize != 0 {
				continue
			}
			if !blockable(&s, x.Shape) {
				t.Fatalf("%v %v: not blockable", s.Format, s.Granularity)
			}
			want, err := quant.QuantizeTensor(x, s)
			if err != nil {
				t.Fatal(err)
			}
			data := make([]byte, len(want.Data))
			np := len(want.Scale)
			sc, zp := make([]float32, np), make([]int32, np)
			st, sig, noise, err := quantizeMeasured(data, x, s, sc, zp)
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("%v %v %v %v", x.DType, x.Shape, s.Format, s.Granularity)
			if string(data) != string(want.Data) || fmt.Sprint(sc) != fmt.Sprint(want.Scale) || fmt.Sprint(zp) != fmt.Sprint(want.ZeroPoint) {
				t.Errorf("%s: blocked bytes or qparams differ from the whole-tensor kernel", name)
			}
			if st.Overflow != want.Stats.Overflow {
				t.Errorf("%s: overflow %d, want %d", name, st.Overflow, want.Stats.Overflow)
			}
			// Independently: the kernel's own dequantization, summed in one sequential pass.
			xs, _ := x.Float32s()
			deq, err := want.Dequantize()
			if err != nil {
				t.Fatal(err)
			}
			ws, wn := energyOf(xs, deq)
			if !relClose(sig, ws, 1e-12) || !relClose(noise, wn, 1e-12) {
				t.Errorf("%s: energies (%v, %v), from quant.Dequantize (%v, %v)", name, sig, noise, ws, wn)
			}
			if db, err := quant.SQNRQuantized(x, data, s, sc, zp); err == nil && !math.IsInf(db, 0) && math.Abs(db-OverallSQNR(sig, noise)) > 1e-9 {
				t.Errorf("%s: SQNR %v from energies, quant.SQNRQuantized %v", name, OverallSQNR(sig, noise), db)
			}
		}
	}
	// A NaN in a late block is reported with its flat index in the whole tensor.
	v := tensor.View[float32](big.Data)
	v[250*999+7] = float32(math.NaN())
	_, _, _, err := quantizeMeasured(make([]byte, len(big.Data)/4), big, specs[0], make([]float32, 301), make([]int32, 301))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(250*999+7)) {
		t.Errorf("NaN at %d: error %v, want one naming that flat index", 250*999+7, err)
	}
}

// failingWriter fails its n-th Write and records Abort.
type failingWriter struct {
	n, writes       int
	aborted, commit bool
}

func (f *failingWriter) Write(name string, _ []byte) error {
	f.writes++
	if f.writes == f.n {
		return fmt.Errorf("disk full while writing %s", name)
	}
	return nil
}
func (f *failingWriter) Commit() error { f.commit = true; return nil }
func (f *failingWriter) Abort() error  { f.aborted = true; return nil }

// TestWriterFailure: a write error anywhere stops the run with the error, aborts the output and
// never commits, whichever tensor (kept or quantized) it hits.
func TestWriterFailure(t *testing.T) {
	m := testModel(t)
	p, _ := m.Plan(plan.Options{})
	total := len(OutputEntries(p))
	for n := 1; n <= total; n++ {
		fw := &failingWriter{n: n}
		_, err := Quantize(context.Background(), m.Reader(), func([]checkpoint.Entry, map[string]string) (checkpoint.Writer, error) { return fw, nil }, p, Run{})
		if err == nil || !strings.Contains(err.Error(), "disk full") {
			t.Errorf("write %d of %d fails: error %v, want the writer's error", n, total, err)
		}
		if !fw.aborted || fw.commit {
			t.Errorf("write %d of %d fails: aborted %v, committed %v; want aborted, not committed", n, total, fw.aborted, fw.commit)
		}
	}
}

// Dequantize gives each tensor back in its original dtype: a BF16 model's weights come back
// BF16 (rounded to nearest even from the float32 dequantization), an F32 model's F32.
func TestDequantizeKeepsTheOriginalDType(t *testing.T) {
	for _, dt := range []tensor.DType{tensor.BF16, tensor.F16, tensor.F32, tensor.F64} {
		vals := []float32{0.5, -1.25, 2, 0.125, 3, -0.75, 1.5, -2}
		src := tensor.FromFloat32(vals, 2, 4)
		w := &tensor.Tensor{DType: dt, Shape: []int{2, 4}, Data: asDType(vals, dt)}
		m := NewModel()
		if err := m.Add("fc.weight", w); err != nil {
			t.Fatal(err)
		}
		res, err := m.Quantize(context.Background(), plan.Options{Bits: 8}, nil)
		if err != nil {
			t.Fatal(err)
		}
		back, err := res.Dequantize(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got, _ := back.Tensor("fc.weight")
		if got.DType != dt || !slices.Equal(got.Shape, src.Shape) {
			t.Errorf("%v model: dequantized %v %v, want %v %v", dt, got.DType, got.Shape, dt, src.Shape)
		}
	}
}
