package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// sqnrTolerance is how far (dB) the SQNR recomputed from the written file may drift from the
// one measured while quantizing: both sum the same float64 energies, only in another order.
const sqnrTolerance = 1e-3

// validation is what the post-write check (issue 5 §4) found; it is part of the report.
type validation struct {
	TensorsChecked   int          `json:"tensors_checked"`
	ConfigChecked    bool         `json:"config_checked"`
	SQNRConfirmed    int          `json:"sqnr_confirmed"`
	MaxSQNRDeviation float64      `json:"max_sqnr_deviation_db"`
	LayerOutputs     []layerCheck `json:"layer_outputs"`
}

// layerCheck is one layer run on a random input with the original and the dequantized weights.
type layerCheck struct {
	Tensor     string         `json:"tensor"`
	Layer      string         `json:"layer"`
	LayerType  string         `json:"layer_type"`
	InputShape []int          `json:"input_shape"`
	OutputSQNR model.Decibels `json:"output_sqnr_db"`
	WeightSQNR model.Decibels `json:"weight_sqnr_db"`
	Note       string         `json:"note,omitempty"`
}

// validateOutput reopens the written file and checks it against the input, the plan and the
// report. The input reader must still be open.
func validateOutput(ctx context.Context, in checkpoint.Reader, outPath string, plan *model.Plan, rep *model.Report) (*validation, error) {
	out, err := checkpoint.Open(outPath)
	if err != nil {
		return nil, fmt.Errorf("reopening %s: %w", outPath, err)
	}
	defer out.Close()
	v := &validation{LayerOutputs: []layerCheck{}}
	cfg, err := model.ReadConfig(out.Entries(), out.Metadata())
	if err != nil {
		return nil, err
	}
	v.ConfigChecked = true
	want := plan.OutputEntries()
	got := map[string]checkpoint.Entry{}
	for _, e := range out.Entries() {
		got[e.Name] = e
	}
	if len(got) != len(want) {
		return nil, fmt.Errorf("the output has %d tensors, the plan wrote %d", len(got), len(want))
	}
	for _, w := range want {
		g, ok := got[w.Name]
		if !ok {
			return nil, fmt.Errorf("tensor %q is missing from the output", w.Name)
		}
		if g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) {
			return nil, fmt.Errorf("tensor %q is %v %v in the output, the plan wrote %v %v", w.Name, g.DType, g.Shape, w.DType, w.Shape)
		}
	}
	reported := map[string]model.TensorReport{}
	for _, t := range rep.Tensors {
		reported[t.Name] = t
	}
	if len(cfg.Tensors) != len(plan.Quantized()) {
		return nil, fmt.Errorf("the config lists %d quantized tensors, the plan quantized %d", len(cfg.Tensors), len(plan.Quantized()))
	}
	rng := rand.New(rand.NewPCG(0x6d6f6e6f, 0x7175616e)) // fixed: reruns give the same figures
	for i := range plan.Tensors {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tp := &plan.Tensors[i]
		if tp.Action == model.ActionKeep {
			if err := sameBytes(in, out, tp.Name); err != nil {
				return nil, err
			}
			v.TensorsChecked++
			continue
		}
		if _, ok := cfg.Tensors[tp.Name]; !ok {
			return nil, fmt.Errorf("tensor %q was quantized but the config does not list it", tp.Name)
		}
		lc, dev, err := checkQuantized(in, out, cfg, tp, reported[tp.Name], rng)
		if err != nil {
			return nil, err
		}
		v.TensorsChecked++
		v.SQNRConfirmed++
		v.MaxSQNRDeviation = max(v.MaxSQNRDeviation, dev)
		if lc != nil {
			v.LayerOutputs = append(v.LayerOutputs, *lc)
		}
	}
	return v, nil
}

func sameBytes(in, out checkpoint.Reader, name string) error {
	a, err := in.Tensor(name)
	if err != nil {
		return fmt.Errorf("rereading input tensor %q: %w", name, err)
	}
	defer in.Release(name)
	b, err := out.Tensor(name)
	if err != nil {
		return fmt.Errorf("reading output tensor %q: %w", name, err)
	}
	defer out.Release(name)
	if !bytes.Equal(a.Data, b.Data) {
		return fmt.Errorf("tensor %q was to be copied unchanged but its bytes differ in the output", name)
	}
	return nil
}

// checkQuantized dequantizes one tensor from the written file, recomputes its SQNR against the
// input and, for Linear and Conv2d weights, compares the layer's outputs. It returns the layer
// check (nil for other layer types) and the SQNR deviation from the report.
func checkQuantized(in, out checkpoint.Reader, cfg *model.Config, tp *model.TensorPlan, tr model.TensorReport, rng *rand.Rand) (*layerCheck, float64, error) {
	if tr.Name == "" {
		return nil, 0, fmt.Errorf("tensor %q was quantized but the report does not list it", tp.Name)
	}
	deq, err := model.DequantizeTensor(out, cfg, tp.Name)
	if err != nil {
		return nil, 0, fmt.Errorf("dequantizing %q from the output: %w", tp.Name, err)
	}
	dq, err := deq.Float32s()
	if err != nil {
		return nil, 0, err
	}
	src, err := in.Tensor(tp.Name)
	if err != nil {
		return nil, 0, fmt.Errorf("rereading input tensor %q: %w", tp.Name, err)
	}
	defer in.Release(tp.Name)
	orig, err := src.Float32s()
	if err != nil {
		return nil, 0, fmt.Errorf("input tensor %q: %w", tp.Name, err)
	}
	if len(orig) != len(dq) {
		return nil, 0, fmt.Errorf("tensor %q dequantizes to %d values, the input has %d", tp.Name, len(dq), len(orig))
	}
	got := quant.SQNR(orig, dq)
	if tr.NonFinite > 0 {
		// The report leaves the clamped NaN/Inf inputs out of its sums; so does the check.
		got = finiteSQNR(orig, dq)
	}
	dev, ok := sqnrDeviation(got, float64(tr.SQNR))
	if !ok {
		return nil, 0, fmt.Errorf("tensor %q: SQNR recomputed from the file is %s, the report says %s", tp.Name, dB(got), dB(float64(tr.SQNR)))
	}
	lc, err := runLayer(in, tp, orig, dq, rng)
	if err != nil {
		return nil, 0, err
	}
	if lc != nil {
		lc.WeightSQNR = model.Decibels(got)
	}
	return lc, dev, nil
}

// finiteSQNR is quant.SQNR over the elements whose input is finite.
func finiteSQNR(x, y []float32) float64 {
	var fx, fy []float32
	for i, v := range x {
		if !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0) {
			fx, fy = append(fx, v), append(fy, y[i])
		}
	}
	return quant.SQNR(fx, fy)
}

// sqnrDeviation compares two SQNRs, treating equal infinities (exact) and NaN (all-zero) as equal.
func sqnrDeviation(a, b float64) (float64, bool) {
	switch {
	case math.IsNaN(a) || math.IsNaN(b):
		return 0, math.IsNaN(a) && math.IsNaN(b)
	case math.IsInf(a, 0) || math.IsInf(b, 0):
		return 0, a == b
	}
	d := math.Abs(a - b)
	return d, d <= sqnrTolerance
}

// runLayer runs a Linear ([out, in]) or Conv2d ([O, C, kH, kW]) weight on a random normal
// input, with the original and the dequantized weights and the layer's own bias. A convolution
// is run with stride 1, no padding and groups 1: the geometry is not stored in a state dict,
// and the error each output sees does not depend on it.
func runLayer(in checkpoint.Reader, tp *model.TensorPlan, orig, dq []float32, rng *rand.Rand) (*layerCheck, error) {
	bias := func(n int) ([]float32, error) {
		name := strings.TrimSuffix(tp.Name, "weight") + "bias"
		if name == tp.Name || !strings.HasSuffix(tp.Name, "weight") {
			return nil, nil
		}
		t, err := in.Tensor(name)
		if err != nil {
			return nil, nil // no bias: the layer was built with bias=False
		}
		defer in.Release(name)
		if len(t.Shape) != 1 || t.Shape[0] != n || !t.DType.IsFloat() {
			return nil, nil
		}
		b, err := t.Float32s()
		if err != nil {
			return nil, err
		}
		return append([]float32(nil), b...), nil
	}
	randn := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	lc := &layerCheck{Tensor: tp.Name, Layer: tp.Layer, LayerType: string(tp.LayerType)}
	switch {
	case tp.LayerType == model.Linear && len(tp.Shape) == 2:
		const batch = 4
		o, k := tp.Shape[0], tp.Shape[1]
		b, err := bias(o)
		if err != nil {
			return nil, err
		}
		x := randn(batch * k)
		y1, err := model.LinearForward(x, batch, orig, o, k, b)
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", tp.Layer, err)
		}
		y2, err := model.LinearForward(x, batch, dq, o, k, b)
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", tp.Layer, err)
		}
		lc.InputShape = []int{batch, k}
		lc.OutputSQNR = model.Decibels(quant.SQNR(y1, y2))
	case tp.LayerType == model.Conv2d && len(tp.Shape) == 4:
		ws := [4]int{tp.Shape[0], tp.Shape[1], tp.Shape[2], tp.Shape[3]}
		xs := [4]int{1, ws[1], ws[2] + 3, ws[3] + 3}
		b, err := bias(ws[0])
		if err != nil {
			return nil, err
		}
		x := randn(tensor.NumElements(xs[:]))
		y1, _, err := model.Conv2dForward(x, xs, orig, ws, b, model.Conv2dParams{})
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", tp.Layer, err)
		}
		y2, _, err := model.Conv2dForward(x, xs, dq, ws, b, model.Conv2dParams{})
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", tp.Layer, err)
		}
		lc.InputShape = xs[:]
		lc.OutputSQNR = model.Decibels(quant.SQNR(y1, y2))
	default:
		return nil, nil
	}
	return lc, nil
}
