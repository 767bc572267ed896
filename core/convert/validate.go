package convert

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/monoquant/monoquant/core/blocks"
	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/forward"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/tensor"
)

// SQNRTolerance is how far (dB) the SQNR recomputed from the written file may drift from the
// one measured while quantizing: both sum the same float64 energies, only in another order.
const SQNRTolerance = 1e-3

// Validation is what the post-write check (issue 5 §4) found; it is part of the report.
type Validation struct {
	TensorsChecked   int          `json:"tensors_checked"`
	AliasesChecked   int          `json:"aliases_checked,omitempty"` // tied names the config maps to a stored tensor
	ConfigChecked    bool         `json:"config_checked"`
	SQNRConfirmed    int          `json:"sqnr_confirmed"`
	MaxSQNRDeviation float64      `json:"max_sqnr_deviation_db"`
	LayerOutputs     []LayerCheck `json:"layer_outputs"`
}

// LayerCheck is one layer run on a random input with the original and the dequantized weights.
type LayerCheck struct {
	Tensor     string         `json:"tensor"`
	Layer      string         `json:"layer"`
	LayerType  string         `json:"layer_type"`
	InputShape []int          `json:"input_shape"`
	OutputSQNR model.Decibels `json:"output_sqnr_db"`
	WeightSQNR model.Decibels `json:"weight_sqnr_db"`
	Note       string         `json:"note,omitempty"`
}

// Validate reopens the written file and checks it against the input, the plan and the
// report. The input reader must still be open.
func Validate(ctx context.Context, in checkpoint.Reader, outPath string, p *plan.Plan, rep *model.Report) (*Validation, error) {
	out, err := checkpoint.Open(outPath)
	if err != nil {
		return nil, fmt.Errorf("reopening %s: %w", outPath, err)
	}
	defer out.Close()
	v := &Validation{LayerOutputs: []LayerCheck{}}
	cfg, err := model.ReadConfig(out.Entries(), out.Metadata())
	if err != nil {
		return nil, err
	}
	v.ConfigChecked = true
	want := model.OutputEntries(p)
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
	if len(cfg.Tensors) != len(p.Quantized()) {
		return nil, fmt.Errorf("the config lists %d quantized tensors, the plan quantized %d", len(cfg.Tensors), len(p.Quantized()))
	}
	rng := rand.New(rand.NewPCG(0x6d6f6e6f, 0x7175616e)) // fixed: reruns give the same figures
	for i := range p.Tensors {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tp := &p.Tensors[i]
		if tp.Action == plan.ActionAlias {
			if cfg.Aliases[tp.Name] != tp.AliasOf {
				return nil, fmt.Errorf("tensor %q shares storage with %q but the config's aliases say %q", tp.Name, tp.AliasOf, cfg.Aliases[tp.Name])
			}
			v.AliasesChecked++
			continue
		}
		if tp.Action == plan.ActionKeep {
			if err := sameBytes(in, out, tensor.Info{Name: tp.Name, DType: tp.DType, Shape: tp.Shape}); err != nil {
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

// sameBytes compares a tensor that was to be copied unchanged, window by window, so that a
// large one (an embedding table) is not resident twice, once per file.
func sameBytes(in, out checkpoint.Reader, info tensor.Info) error {
	name := info.Name
	a, err := blocks.Open(in, info)
	if err != nil {
		return fmt.Errorf("rereading input tensor %q: %w", name, err)
	}
	defer a.Close()
	b, err := blocks.Open(out, info)
	if err != nil {
		return fmt.Errorf("reading output tensor %q: %w", name, err)
	}
	defer b.Close()
	equal, err := blocks.Equal(a, b, func(err error) error {
		return fmt.Errorf("rereading input tensor %q: %w", name, err)
	}, func(err error) error {
		return fmt.Errorf("reading output tensor %q: %w", name, err)
	})
	if err == nil && !equal {
		err = fmt.Errorf("tensor %q was to be copied unchanged but its bytes differ in the output", name)
	}
	return err
}

// validateBlock is how many values (4 MB of float32) the check dequantizes at a time: enough
// rows of a tensor that the per-block work dominates, few enough that the check holds a block
// and not a float32 copy of the largest tensor beside its mapped input. A variable so that
// tests can make it small.
var validateBlock = 1 << 20

// checkQuantized dequantizes one tensor from the written file block of rows by block of rows,
// recomputes its SQNR against the input and, for Linear and Conv2d weights, compares the
// layer's outputs. It returns the layer check (nil for other layer types) and the SQNR
// deviation from the report.
func checkQuantized(in, out checkpoint.Reader, cfg *model.Config, tp *plan.TensorPlan, tr model.TensorReport, rng *rand.Rand) (*LayerCheck, float64, error) {
	if tr.Name == "" {
		return nil, 0, fmt.Errorf("tensor %q was quantized but the report does not list it", tp.Name)
	}
	deq, err := model.NewRowDequantizer(out, cfg, tp.Name)
	if err != nil {
		return nil, 0, fmt.Errorf("dequantizing %q from the output: %w", tp.Name, err)
	}
	defer deq.Close()
	if !slices.Equal(deq.Shape(), tp.Shape) {
		return nil, 0, fmt.Errorf("tensor %q has shape %v in the output's config, the plan says %v", tp.Name, deq.Shape(), tp.Shape)
	}
	src, err := blocks.Open(in, tensor.Info{Name: tp.Name, DType: tp.DType, Shape: tp.Shape})
	if err != nil {
		return nil, 0, fmt.Errorf("rereading input tensor %q: %w", tp.Name, err)
	}
	defer src.Close()
	if !src.DType.IsFloat() {
		return nil, 0, fmt.Errorf("input tensor %q: dtype %v is not a floating-point type", tp.Name, src.DType)
	}
	rowLen := deq.RowLen()
	if n := deq.NumRows() * rowLen; src.Len() != n {
		return nil, 0, fmt.Errorf("tensor %q dequantizes to %d values, the input has %d", tp.Name, n, src.Len())
	}
	layer, err := newLayerRun(in, tp, rng)
	if err != nil {
		return nil, 0, err
	}
	per := max(1, validateBlock/max(rowLen, 1))
	dq := make([]float32, min(per, deq.NumRows())*rowLen)
	var conv []float32 // input rows as float32, when they cannot be viewed in place
	var weight blocks.Energy
	for r0 := 0; r0 < deq.NumRows(); r0 += per {
		r1 := min(r0+per, deq.NumRows())
		d := dq[:(r1-r0)*rowLen]
		if err := deq.Dequantize(r0, r1, d); err != nil {
			return nil, 0, fmt.Errorf("dequantizing %q from the output: %w", tp.Name, err)
		}
		es := src.DType.Size()
		raw, err := src.Bytes(r0*rowLen*es, r1*rowLen*es)
		if err != nil {
			return nil, 0, fmt.Errorf("rereading input tensor %q: %w", tp.Name, err)
		}
		orig := blocks.Floats(raw, src.DType, &conv)
		// The report leaves clamped NaN/Inf inputs out of its sums; so does the check.
		weight.Add(orig, d, tr.NonFinite > 0)
		if layer != nil {
			if err := layer.block(r0, r1, orig, d); err != nil {
				return nil, 0, err
			}
		}
	}
	got := weight.SQNR()
	dev, ok := sqnrDeviation(got, float64(tr.SQNR))
	if !ok {
		return nil, 0, fmt.Errorf("tensor %q: SQNR recomputed from the file is %.4f dB, the report says %.4f dB", tp.Name, got, float64(tr.SQNR))
	}
	if layer == nil {
		return nil, dev, nil
	}
	layer.lc.OutputSQNR = model.Decibels(layer.out.SQNR())
	layer.lc.WeightSQNR = model.Decibels(got)
	return &layer.lc, dev, nil
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
	return d, d <= SQNRTolerance
}

// layerRun runs a Linear ([out, in]) or Conv2d ([O, C, kH, kW]) weight on a random normal
// input, with the original and the dequantized weights and the layer's own bias, one block of
// output rows (Linear) or output channels (Conv2d) at a time: output o only needs row o of the
// weight, so the block's outputs are those of the whole layer, value for value. A convolution
// is run with stride 1, no padding and groups 1: the geometry is not stored in a state dict,
// and the error each output sees does not depend on it.
type layerRun struct {
	lc     LayerCheck
	linear bool
	x      []float32
	xs, ws [4]int // Conv2d input and weight shapes
	bias   []float32
	out    blocks.Energy // the two outputs' sums, over the blocks
}

// newLayerRun draws the random input and reads the bias; nil for other layer types. The input
// comes from rng in the same order for every tensor, so reruns give the same figures.
func newLayerRun(in checkpoint.Reader, tp *plan.TensorPlan, rng *rand.Rand) (*layerRun, error) {
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
	l := &layerRun{lc: LayerCheck{Tensor: tp.Name, Layer: tp.Layer, LayerType: string(tp.LayerType)}}
	var err error
	switch {
	case tp.LayerType == plan.Linear && len(tp.Shape) == 2:
		o, k := tp.Shape[0], tp.Shape[1]
		if l.bias, err = bias(o); err != nil {
			return nil, err
		}
		l.linear, l.x = true, randn(linearBatch*k)
		l.lc.InputShape = []int{linearBatch, k}
		if tp.Spec.Axis == 1 {
			// GPT-2's Conv1D stores [in, out]: run block by block as the transposed product, whose
			// error on a random normal input has the same expectation (‖W − Ŵ‖ either way).
			l.lc.Note = "weight stored [in, out] (Conv1D): run as its transpose"
		}
	case tp.LayerType == plan.Conv2d && len(tp.Shape) == 4:
		l.ws = [4]int{tp.Shape[0], tp.Shape[1], tp.Shape[2], tp.Shape[3]}
		l.xs = [4]int{1, l.ws[1], l.ws[2] + 3, l.ws[3] + 3}
		if l.bias, err = bias(l.ws[0]); err != nil {
			return nil, err
		}
		l.x = randn(tensor.NumElements(l.xs[:]))
		l.lc.InputShape = l.xs[:]
	default:
		return nil, nil
	}
	return l, nil
}

// linearBatch is the number of random input rows a Linear layer is run on.
const linearBatch = 4

// block runs output rows [r0, r1) of the layer with the original and the dequantized weight
// rows and adds the two outputs to the sums.
func (l *layerRun) block(r0, r1 int, orig, dq []float32) error {
	var b []float32
	if l.bias != nil {
		b = l.bias[r0:r1]
	}
	run := func(w []float32) ([]float32, error) {
		if l.linear {
			return forward.Linear(l.x, linearBatch, w, r1-r0, len(l.x)/linearBatch, b)
		}
		ws := l.ws
		ws[0] = r1 - r0
		y, _, err := forward.Conv2d(l.x, l.xs, w, ws, b, forward.Conv2dParams{})
		return y, err
	}
	y1, err := run(orig)
	if err != nil {
		return fmt.Errorf("layer %q: %w", l.lc.Layer, err)
	}
	y2, err := run(dq)
	if err != nil {
		return fmt.Errorf("layer %q: %w", l.lc.Layer, err)
	}
	l.out.Add(y1, y2, false)
	return nil
}
