// Package filebench compares quantized checkpoints of one model side by side, from the files
// alone (`monoquant bench`): each candidate against the float reference it was quantized from,
// on what a file can tell without running the model — its size, every quantized tensor's weight
// SQNR, every Linear and Conv2d layer's output SQNR on the same inputs (random normal inputs
// drawn from a seed, or the layer inputs of a file), and the time to load and dequantize it,
// measured in interleaved rounds. Which candidate wins, and whether the difference is
// significant at all, is core/abtest's decision, the same one Python's monoquant.benchmark uses.
//
// The output SQNR is measured per input sample: sample i is the i-th input of every layer run,
// its SQNR the summed output energies of those layers (10·log10(Σ‖y‖² / Σ‖y − ŷ‖²)), capped at
// SQNRCap for a candidate whose outputs are exact. Every candidate sees the same inputs, so the
// comparison is paired. A layer kept in float by a candidate runs with its stored weights like
// any other: the comparison always covers the same layers.
package filebench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/monoquant/monoquant/core/abtest"
	"github.com/monoquant/monoquant/core/blocks"
	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/forward"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/tensor"
)

// Defaults and bounds.
const (
	DefaultSamples = 16 // random inputs per layer
	DefaultRepeats = 10 // timed load-and-dequantize rounds
	MaxSamples     = 4096
	MaxRepeats     = 1000
	MaxCandidates  = 64
	// SQNRCap is the output SQNR (dB) a sample gets when a candidate's outputs equal the
	// reference's (no noise): finite, so that it can be averaged and resampled.
	SQNRCap = 300.0
	// Objectives: which decision names the winner.
	OutputSQNR = "output_sqnr"
	LoadTime   = "load_seconds"
)

// ErrBench marks files that cannot be compared, ErrOption a bad option (the message says why).
var (
	ErrBench  = errors.New("bench")
	ErrOption = errors.New("bench option")
)

func fail(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBench, fmt.Sprintf(format, args...))
}

func badOption(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrOption, fmt.Sprintf(format, args...))
}

// Candidate is a quantized checkpoint to compare, under a name.
type Candidate struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

// Options is a comparison to run.
type Options struct {
	Reference  string
	Candidates []Candidate
	// Inputs is a checkpoint of layer inputs (a tensor per layer, named by the layer, e.g.
	// "classifier.1", or by its weight): Linear [batch, in] (or [..., in]), Conv2d [batch, C, H,
	// W]. Every input has the same batch, the number of samples; layers without one are not
	// run. "" draws Samples random normal inputs per layer from Seed.
	Inputs    string
	Samples   int    // 0: DefaultSamples
	Repeats   int    // 0: DefaultRepeats
	Seed      uint64 // random inputs, the order of the rounds, the bootstrap
	Boot      int    // 0: abtest's default
	Objective string // OutputSQNR (default) or LoadTime
	// Tensors compared besides those a candidate quantized (a candidate that keeps one in
	// float compares its stored values): a search scores every candidate over the same layers.
	Tensors []Tensor
}

// Tensor names a weight and its layer.
type Tensor struct {
	Name      string `json:"name"`
	Layer     string `json:"layer"`
	LayerType string `json:"layer_type"`
}

// Layer is one quantized tensor of a candidate, against the reference.
type Layer struct {
	Tensor     string         `json:"tensor"`
	Layer      string         `json:"layer"`
	LayerType  string         `json:"layer_type"`
	Format     string         `json:"format"` // "float" where the candidate keeps it
	WeightSQNR model.Decibels `json:"weight_sqnr_db"`
	OutputSQNR model.Decibels `json:"output_sqnr_db"` // over every sample; NaN when not run
	Ran        bool           `json:"ran"`
}

// CandidateResult is what was measured of one candidate.
type CandidateResult struct {
	Name        string         `json:"name"`
	Path        string         `json:"path"`
	TensorBytes int64          `json:"tensor_bytes"` // every stored tensor's bytes, scales included
	FileBytes   int64          `json:"file_bytes"`
	WeightSQNR  model.Decibels `json:"weight_sqnr_db"` // the compared tensors' summed energies
	OutputSQNR  model.Decibels `json:"output_sqnr_db"` // every layer run, every sample
	Layers      []Layer        `json:"layers"`
	// Samples: the output SQNR of each input sample (dB, capped at SQNRCap); LoadSeconds: each
	// round's time to open the file and dequantize every quantized tensor to float32.
	Samples     []float64 `json:"output_sqnr_samples_db"`
	LoadSeconds []float64 `json:"load_seconds"`
}

// Result is the comparison.
type Result struct {
	Reference  string            `json:"reference"`
	Inputs     string            `json:"inputs"` // "random" or the file
	Samples    int               `json:"samples"`
	Repeats    int               `json:"repeats"`
	Seed       uint64            `json:"seed"`
	LayersRun  int               `json:"layers_run"`
	Candidates []CandidateResult `json:"candidates"`
	Output     *abtest.Decision  `json:"output_sqnr"` // nil when no layer ran
	Load       *abtest.Decision  `json:"load_seconds"`
	Objective  string            `json:"objective"`
	Winner     string            `json:"winner"` // "" when the difference is not significant
	Verdict    string            `json:"verdict"`
}

// side is one open candidate.
type side struct {
	r   checkpoint.Reader
	cfg *model.Config
	ent map[string]tensor.Info
}

// Run measures the candidates and decides. ctx stops it between blocks.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Repeats == 0 {
		o.Repeats = DefaultRepeats
	}
	if o.Objective == "" {
		o.Objective = OutputSQNR
	}
	switch {
	case o.Objective != OutputSQNR && o.Objective != LoadTime:
		return nil, badOption("objective %q is not %s or %s", o.Objective, OutputSQNR, LoadTime)
	case len(o.Candidates) < 2:
		return nil, badOption("want at least two candidates, got %d", len(o.Candidates))
	case o.Repeats < 3 || o.Repeats > MaxRepeats:
		return nil, badOption("repeats %d is not in [3, %d]", o.Repeats, MaxRepeats)
	}
	res, err := measure(ctx, o)
	if err != nil {
		return nil, err
	}
	if err := timeLoads(ctx, o, res, rand.New(rand.NewPCG(o.Seed, 0x74696d65))); err != nil { // "time"
		return nil, err
	}
	return res, decide(o, res)
}

// Measure measures one or more candidates (size, weight and output SQNR; no timing, no
// decision): what a search scores a candidate by.
func Measure(ctx context.Context, o Options) ([]CandidateResult, error) {
	if len(o.Candidates) < 1 {
		return nil, badOption("no candidate to measure")
	}
	res, err := measure(ctx, o)
	if err != nil {
		return nil, err
	}
	return res.Candidates, nil
}

func measure(ctx context.Context, o Options) (*Result, error) {
	if o.Samples == 0 {
		o.Samples = DefaultSamples
	}
	switch {
	case len(o.Candidates) > MaxCandidates:
		return nil, badOption("%d candidates, at most %d", len(o.Candidates), MaxCandidates)
	case o.Samples < 2 || o.Samples > MaxSamples:
		return nil, badOption("samples %d is not in [2, %d]", o.Samples, MaxSamples)
	}
	seen := map[string]bool{}
	for _, c := range o.Candidates {
		if seen[c.Name] {
			return nil, badOption("two candidates are named %q", c.Name)
		}
		seen[c.Name] = true
	}
	ref, err := checkpoint.Open(o.Reference)
	if err != nil {
		return nil, fmt.Errorf("reference %s: %w", o.Reference, err)
	}
	defer ref.Close()
	if model.IsQuantized(ref.Metadata()) {
		return nil, fail("the reference %s is a quantized checkpoint: give the float checkpoint the candidates were quantized from", o.Reference)
	}
	refEnt := map[string]tensor.Info{}
	for _, e := range ref.Entries() {
		refEnt[e.Name] = e
	}
	sides := make([]*side, len(o.Candidates))
	defer func() {
		for _, s := range sides {
			if s != nil {
				s.r.Close()
			}
		}
	}()
	res := &Result{Reference: o.Reference, Inputs: "random", Samples: o.Samples, Repeats: o.Repeats, Seed: o.Seed, Objective: o.Objective}
	// The tensors in play: every tensor some candidate quantized, and those asked for, in the
	// reference's order.
	inPlay := map[string]Tensor{}
	for _, t := range o.Tensors {
		inPlay[t.Name] = t
	}
	for i, c := range o.Candidates {
		s, err := openSide(c)
		if err != nil {
			return nil, err
		}
		sides[i] = s
		for name, tc := range s.cfg.Tensors {
			if _, ok := inPlay[name]; !ok {
				inPlay[name] = Tensor{Name: name, Layer: tc.Layer, LayerType: tc.LayerType}
			}
		}
		cr := CandidateResult{Name: c.Name, Path: c.Path, Layers: []Layer{}}
		for _, e := range s.r.Entries() {
			cr.TensorBytes += int64(e.DType.Size()) * int64(tensor.NumElements(e.Shape))
		}
		cr.FileBytes = convert.FileBytes(s.r, c.Path)
		res.Candidates = append(res.Candidates, cr)
	}
	var names []Tensor
	for _, e := range ref.Entries() {
		if t, ok := inPlay[e.Name]; ok {
			names = append(names, t)
			delete(inPlay, e.Name)
		}
	}
	for name := range inPlay {
		return nil, fail("candidate tensor %q is not in the reference %s: the candidates must be quantized from it", name, o.Reference)
	}
	var inputs checkpoint.Reader
	if o.Inputs != "" {
		if inputs, err = checkpoint.Open(o.Inputs); err != nil {
			return nil, fmt.Errorf("inputs %s: %w", o.Inputs, err)
		}
		defer inputs.Close()
		res.Inputs = o.Inputs
		if res.Samples, err = inputBatch(inputs); err != nil {
			return nil, err
		}
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x66696c65)) // "file"
	k := len(sides)
	sig := make([][]float64, k) // per candidate, per sample: summed output energies
	noise := make([][]float64, k)
	for i := range sig {
		sig[i], noise[i] = make([]float64, res.Samples), make([]float64, res.Samples)
	}
	weight := make([]blocks.Energy, k)
	output := make([]blocks.Energy, k)
	for _, t := range names {
		ran, err := benchTensor(ctx, ref, refEnt[t.Name], t, sides, inputs, res, rng, weight, output, sig, noise)
		if err != nil {
			return nil, err
		}
		if ran {
			res.LayersRun++
		}
	}
	for i := range res.Candidates {
		c := &res.Candidates[i]
		c.WeightSQNR = model.Decibels(weight[i].SQNR())
		c.OutputSQNR = model.Decibels(math.NaN())
		c.Samples = []float64{}
		if res.LayersRun > 0 {
			c.OutputSQNR = model.Decibels(output[i].SQNR())
			for s := range sig[i] {
				c.Samples = append(c.Samples, capped(model.OverallSQNR(sig[i][s], noise[i][s])))
			}
		}
	}
	return res, nil
}

func capped(db float64) float64 {
	if math.IsNaN(db) || db > SQNRCap {
		return SQNRCap // no noise (NaN: no signal either: outputs all zero, and equal)
	}
	return db
}

func openSide(c Candidate) (*side, error) {
	r, err := checkpoint.Open(c.Path)
	if err != nil {
		return nil, fmt.Errorf("candidate %s: %w", c.Name, err)
	}
	if !model.IsQuantized(r.Metadata()) {
		r.Close()
		return nil, fail("candidate %s (%s) is not a quantized checkpoint (no monoquant config in its metadata)", c.Name, c.Path)
	}
	cfg, err := model.LoadConfig(r)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("candidate %s: %w", c.Name, err)
	}
	s := &side{r: r, cfg: cfg, ent: map[string]tensor.Info{}}
	for _, e := range r.Entries() {
		s.ent[e.Name] = e
	}
	return s, nil
}

// open opens a tensor of the candidate as float32 rows, with its format ("float" for a stored
// float tensor).
func (s *side) open(name string, info tensor.Info, cand string) (*model.FloatRows, string, error) {
	if tc, ok := s.cfg.Tensors[name]; ok {
		if !slices.Equal(tc.Shape, info.Shape) {
			return nil, "", fail("candidate %s: tensor %q has shape %v, the reference's is %v", cand, name, tc.Shape, info.Shape)
		}
		d, err := model.NewRowDequantizer(s.r, s.cfg, name)
		if err != nil {
			return nil, "", fmt.Errorf("candidate %s: %w", cand, err)
		}
		return &model.FloatRows{Dequantizer: d}, tc.Format, nil
	}
	stored := name
	if a, ok := s.cfg.Aliases[name]; ok {
		stored = a
	}
	e, ok := s.ent[stored]
	if !ok {
		return nil, "", fail("candidate %s has no tensor %q", cand, name)
	}
	if !slices.Equal(e.Shape, info.Shape) || !e.DType.IsFloat() {
		return nil, "", fail("candidate %s: tensor %q is %v %v, the reference's is %v %v", cand, name, e.DType, e.Shape, info.DType, info.Shape)
	}
	st, err := blocks.Open(s.r, tensor.Info{Name: stored, DType: e.DType, Shape: e.Shape})
	if err != nil {
		return nil, "", fmt.Errorf("candidate %s: %w", cand, err)
	}
	return &model.FloatRows{Stream: st}, "float", nil
}

// block is how many values of a tensor are read at a time (4 MB of float32).
var block = 1 << 20

// benchTensor measures one tensor of every candidate: the weight SQNR and, for a Linear or
// Conv2d weight with an input, the layer's outputs per sample. It reports whether it ran.
func benchTensor(ctx context.Context, ref checkpoint.Reader, info tensor.Info, tc Tensor, sides []*side, inputs checkpoint.Reader, res *Result,
	rng *rand.Rand, weight, output []blocks.Energy, sig, noise [][]float64) (bool, error) {
	name := info.Name
	if !info.DType.IsFloat() {
		return false, fail("reference tensor %q is %v, not a float tensor", name, info.DType)
	}
	src, err := blocks.Open(ref, info)
	if err != nil {
		return false, fmt.Errorf("reference: %w", err)
	}
	defer src.Close()
	k := len(sides)
	readers := make([]*model.FloatRows, k)
	defer func() {
		for _, r := range readers {
			if r != nil {
				r.Close()
			}
		}
	}()
	layers := make([]Layer, k)
	for i, s := range sides {
		r, format, err := s.open(name, info, res.Candidates[i].Name)
		if err != nil {
			return false, err
		}
		readers[i] = r
		layers[i] = Layer{Tensor: name, Layer: tc.Layer, LayerType: tc.LayerType, Format: format, OutputSQNR: model.Decibels(math.NaN())}
	}
	rows, rowLen := 1, tensor.NumElements(info.Shape)
	if len(info.Shape) > 0 {
		rows, rowLen = info.Shape[0], tensor.NumElements(info.Shape[1:])
	}
	axis1 := false // GPT-2's Conv1D: the weight stored [in, out]
	for _, s := range sides {
		if t, ok := s.cfg.Tensors[name]; ok && t.Axis == 1 && t.LayerType == "linear" {
			axis1 = true
		}
	}
	lr, err := newLayerRun(ref, inputs, info, tc, res.Samples, axis1, rng)
	if err != nil {
		return false, err
	}
	var refBuf []float32
	we := make([]blocks.Energy, k)
	oe := make([]blocks.Energy, k)
	per := max(1, block/max(rowLen, 1))
	for r0 := 0; r0 < rows; r0 += per {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		r1 := min(r0+per, rows)
		es := src.DType.Size()
		raw, err := src.Bytes(r0*rowLen*es, r1*rowLen*es)
		if err != nil {
			return false, fmt.Errorf("reference: %w", err)
		}
		orig := blocks.Floats(raw, src.DType, &refBuf)
		var yRef []float32
		if lr != nil {
			if yRef, err = lr.run(r0, r1, orig); err != nil {
				return false, err
			}
			yRef = slices.Clone(yRef)
		}
		for i, rd := range readers {
			w, err := rd.Rows(r0, r1, rowLen)
			if err != nil {
				return false, fmt.Errorf("candidate %s: tensor %q: %w", res.Candidates[i].Name, name, err)
			}
			we[i].Add(orig, w, true)
			if lr == nil {
				continue
			}
			y, err := lr.run(r0, r1, w)
			if err != nil {
				return false, err
			}
			oe[i].Add(yRef, y, false)
			per := len(y) / res.Samples // values of one sample in this block
			for s := 0; s < res.Samples; s++ {
				e := blocks.Energy{}
				e.Add(yRef[s*per:(s+1)*per], y[s*per:(s+1)*per], false)
				sig[i][s] += e.Signal
				noise[i][s] += e.Noise
			}
		}
	}
	for i := range sides {
		layers[i].WeightSQNR = model.Decibels(we[i].SQNR())
		weight[i].Signal += we[i].Signal
		weight[i].Noise += we[i].Noise
		if lr != nil {
			layers[i].Ran = true
			layers[i].OutputSQNR = model.Decibels(oe[i].SQNR())
			output[i].Signal += oe[i].Signal
			output[i].Noise += oe[i].Noise
		}
		res.Candidates[i].Layers = append(res.Candidates[i].Layers, layers[i])
	}
	return lr != nil, nil
}

// timeLoads times, round after round in a shuffled order (after one round not timed, which
// warms the page cache), how long each candidate takes to open and dequantize every quantized
// tensor to float32.
func timeLoads(ctx context.Context, o Options, res *Result, rng *rand.Rand) error {
	order := make([]int, len(o.Candidates))
	for i := range order {
		order[i] = i
	}
	for round := -1; round < o.Repeats; round++ {
		rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		for _, i := range order {
			if err := ctx.Err(); err != nil {
				return err
			}
			t0 := time.Now()
			if err := loadAll(ctx, o.Candidates[i]); err != nil {
				return err
			}
			if round >= 0 {
				res.Candidates[i].LoadSeconds = append(res.Candidates[i].LoadSeconds, time.Since(t0).Seconds())
			}
		}
	}
	return nil
}

func loadAll(ctx context.Context, c Candidate) error {
	s, err := openSide(c)
	if err != nil {
		return err
	}
	defer s.r.Close()
	var buf []float32
	for _, name := range slices.Sorted(maps.Keys(s.cfg.Tensors)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		d, err := model.NewRowDequantizer(s.r, s.cfg, name)
		if err != nil {
			return fmt.Errorf("candidate %s: %w", c.Name, err)
		}
		per := max(1, block/max(d.RowLen(), 1))
		for r0 := 0; r0 < d.NumRows(); r0 += per {
			r1 := min(r0+per, d.NumRows())
			n := (r1 - r0) * d.RowLen()
			if cap(buf) < n {
				buf = make([]float32, n)
			}
			if err := d.Dequantize(r0, r1, buf[:n]); err != nil {
				d.Close()
				return fmt.Errorf("candidate %s: %w", c.Name, err)
			}
		}
		d.Close()
	}
	return nil
}

func decide(o Options, res *Result) error {
	samples := func(f func(c *CandidateResult) []float64) []abtest.Sample {
		var out []abtest.Sample
		for i := range res.Candidates {
			out = append(out, abtest.Sample{Name: res.Candidates[i].Name, Values: f(&res.Candidates[i])})
		}
		return out
	}
	var err error
	if o.Boot != 0 && (o.Boot < 100 || o.Boot > abtest.MaxBoot) {
		return badOption("boot %d is not in [100, %d]", o.Boot, abtest.MaxBoot)
	}
	res.Load, err = abtest.Compare(abtest.Request{Objective: "load time", Stat: abtest.Median, Goal: abtest.Min, Seed: o.Seed, Boot: o.Boot,
		Samples: samples(func(c *CandidateResult) []float64 { return c.LoadSeconds })})
	if err != nil {
		return err
	}
	if res.LayersRun > 0 {
		res.Output, err = abtest.Compare(abtest.Request{Objective: "output SQNR", Stat: abtest.Mean, Goal: abtest.Max, Seed: o.Seed, Boot: o.Boot, Paired: true,
			Samples: samples(func(c *CandidateResult) []float64 { return c.Samples })})
		if err != nil {
			return err
		}
	}
	d := res.Load
	if o.Objective == OutputSQNR {
		if res.Output == nil {
			return fail("no Linear or Conv2d layer ran (none is quantized, or --input names none): there is no output SQNR to decide on; use the objective %s", LoadTime)
		}
		d = res.Output
	}
	res.Winner, res.Verdict = d.Winner, d.Verdict
	return nil
}

// layerRun runs one Linear ([out, in]) or Conv2d ([O, C, kH, kW]) layer on the samples' inputs,
// a block of output rows (Linear) or channels (Conv2d) at a time, with the reference's bias. A
// convolution runs with stride 1, no padding and groups 1 (a state dict does not store the
// geometry; the error each output sees does not depend on it).
type layerRun struct {
	linear bool
	x      []float32
	rows   int // Linear: input rows (samples × rows per sample)
	in     int
	xs, ws [4]int
	bias   []float32
}

func newLayerRun(ref, inputs checkpoint.Reader, info tensor.Info, tc Tensor, samples int, axis1 bool, rng *rand.Rand) (*layerRun, error) {
	l := &layerRun{}
	switch {
	case tc.LayerType == "linear" && len(info.Shape) == 2:
		l.linear, l.in = true, info.Shape[1]
	case tc.LayerType == "conv2d" && len(info.Shape) == 4:
		l.ws = [4]int{info.Shape[0], info.Shape[1], info.Shape[2], info.Shape[3]}
	default:
		return nil, nil
	}
	if inputs == nil {
		if l.linear {
			l.rows = samples
			l.x = randn(rng, samples*l.in)
		} else {
			l.xs = [4]int{samples, l.ws[1], l.ws[2] + 3, l.ws[3] + 3}
			l.x = randn(rng, tensor.NumElements(l.xs[:]))
		}
	} else {
		if l.linear && axis1 {
			return nil, nil // GPT-2's Conv1D stores [in, out]: its input is not the file's row length
		}
		key := ""
		for _, k := range []string{tc.Layer, info.Name} {
			if hasEntry(inputs, k) {
				key = k
				break
			}
		}
		if key == "" {
			return nil, nil
		}
		t, err := inputs.Tensor(key)
		if err != nil {
			return nil, fmt.Errorf("inputs: %w", err)
		}
		defer inputs.Release(key)
		if !t.DType.IsFloat() {
			return nil, fail("input %q is %v, not a float tensor", key, t.DType)
		}
		x, err := t.Float32s()
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", key, err)
		}
		l.x = slices.Clone(x)
		if l.linear {
			if t.Shape[len(t.Shape)-1] != l.in {
				return nil, fail("input %q has shape %v: layer %s takes %d features (the last dimension)", key, t.Shape, tc.Layer, l.in)
			}
			l.rows = len(l.x) / l.in
		} else {
			if len(t.Shape) != 4 || t.Shape[1] != l.ws[1] || t.Shape[2] < l.ws[2] || t.Shape[3] < l.ws[3] {
				return nil, fail("input %q has shape %v: conv2d layer %s takes [batch, %d, H >= %d, W >= %d]", key, t.Shape, tc.Layer, l.ws[1], l.ws[2], l.ws[3])
			}
			l.xs = [4]int{t.Shape[0], t.Shape[1], t.Shape[2], t.Shape[3]}
		}
	}
	if strings.HasSuffix(info.Name, "weight") {
		bn := strings.TrimSuffix(info.Name, "weight") + "bias"
		if hasEntry(ref, bn) {
			b, err := ref.Tensor(bn)
			if err != nil {
				return nil, fmt.Errorf("reference: %w", err)
			}
			if len(b.Shape) == 1 && b.Shape[0] == info.Shape[0] && b.DType.IsFloat() {
				v, err := b.Float32s()
				if err != nil {
					ref.Release(bn)
					return nil, fmt.Errorf("reference: %w", err)
				}
				l.bias = slices.Clone(v)
			}
			ref.Release(bn)
		}
	}
	return l, nil
}

func hasEntry(r checkpoint.Reader, name string) bool {
	for _, e := range r.Entries() {
		if e.Name == name {
			return true
		}
	}
	return false
}

func randn(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return x
}

// run computes output rows (channels) [r0, r1) with w, those rows of the weight; the result
// holds each sample's outputs contiguously, sample after sample.
func (l *layerRun) run(r0, r1 int, w []float32) ([]float32, error) {
	var b []float32
	if l.bias != nil {
		b = l.bias[r0:r1]
	}
	if l.linear {
		return forward.Linear(l.x, l.rows, w, r1-r0, l.in, b)
	}
	ws := l.ws
	ws[0] = r1 - r0
	y, _, err := forward.Conv2d(l.x, l.xs, w, ws, b, forward.Conv2dParams{})
	return y, err
}

// inputBatch is the number of samples of an inputs file: the leading dimension every tensor
// in it shares.
func inputBatch(inputs checkpoint.Reader) (int, error) {
	n := -1
	first := ""
	for _, e := range inputs.Entries() {
		if len(e.Shape) < 2 {
			return 0, fail("input %q has shape %v: want [batch, ...] with a batch of samples", e.Name, e.Shape)
		}
		if n < 0 {
			n, first = e.Shape[0], e.Name
		} else if e.Shape[0] != n {
			return 0, fail("input %q has a batch of %d, input %q of %d: every input holds the same samples", e.Name, e.Shape[0], first, n)
		}
	}
	if n < 0 {
		return 0, fail("the inputs file holds no tensor")
	}
	if n < 2 || n > MaxSamples {
		return 0, fail("inputs hold %d samples (the batch dimension), want 2 to %d", n, MaxSamples)
	}
	return n, nil
}
