package filebench

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/tensor"
)

const digits = "../../examples/digits_cnn.safetensors"

// quantized writes the digits CNN quantized under a recipe and returns the path.
func quantized(t *testing.T, dir, name, js string) string {
	t.Helper()
	r, err := recipe.Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, name+".safetensors")
	if _, err := convert.File(context.Background(), digits, out, plan.Options{Recipe: r}, convert.Run{}); err != nil {
		t.Fatalf("quantize %s: %v", name, err)
	}
	return out
}

func candidates(t *testing.T) (string, map[string]string) {
	dir := t.TempDir()
	return dir, map[string]string{
		"int8":  quantized(t, dir, "int8", `{"rules": [{"match": "*", "bits": 8}]}`),
		"int8b": quantized(t, dir, "int8b", `{"rules": [{"match": "*", "bits": 8}]}`),
		"int4":  quantized(t, dir, "int4", `{"rules": [{"match": "*", "bits": 4, "group_size": 32, "group_fallback": true}]}`),
		"fp16":  quantized(t, dir, "fp16", `{"rules": [{"match": "*", "bits": 16}]}`),
	}
}

func TestBenchRandomInputs(t *testing.T) {
	_, c := candidates(t)
	res, err := Run(context.Background(), Options{Reference: digits, Repeats: 3, Candidates: []Candidate{
		{"int4", c["int4"]}, {"int8", c["int8"]}, {"fp16", c["fp16"]}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("verdict %q; load %q", res.Verdict, res.Load.Verdict)
	by := map[string]CandidateResult{}
	for _, cr := range res.Candidates {
		by[cr.Name] = cr
		t.Logf("%s: %d bytes, weight %.2f dB, output %.2f dB, samples %.4g, load %.3g", cr.Name, cr.TensorBytes, cr.WeightSQNR, cr.OutputSQNR, cr.Samples[:3], cr.LoadSeconds)
		if len(cr.Samples) != DefaultSamples || len(cr.LoadSeconds) != 3 {
			t.Errorf("%s: %d samples, %d load times; want %d, 3", cr.Name, len(cr.Samples), len(cr.LoadSeconds), DefaultSamples)
		}
		if len(cr.Layers) != 4 {
			t.Errorf("%s: %d layers, want the CNN's 4", cr.Name, len(cr.Layers))
		}
	}
	if res.LayersRun != 4 {
		t.Errorf("layers run %d, want 4 (2 conv2d, 2 linear)", res.LayersRun)
	}
	// More bits, less error, on weights and on outputs; fewer bits, fewer bytes.
	if !(by["fp16"].OutputSQNR > by["int8"].OutputSQNR && by["int8"].OutputSQNR > by["int4"].OutputSQNR) {
		t.Errorf("output SQNR fp16 %v, int8 %v, int4 %v: want decreasing", by["fp16"].OutputSQNR, by["int8"].OutputSQNR, by["int4"].OutputSQNR)
	}
	if !(by["fp16"].WeightSQNR > by["int8"].WeightSQNR && by["int8"].WeightSQNR > by["int4"].WeightSQNR) {
		t.Errorf("weight SQNR fp16 %v, int8 %v, int4 %v: want decreasing", by["fp16"].WeightSQNR, by["int8"].WeightSQNR, by["int4"].WeightSQNR)
	}
	if !(by["int4"].TensorBytes < by["int8"].TensorBytes && by["int8"].TensorBytes < by["fp16"].TensorBytes) {
		t.Errorf("bytes int4 %d, int8 %d, fp16 %d: want increasing", by["int4"].TensorBytes, by["int8"].TensorBytes, by["fp16"].TensorBytes)
	}
	// fp16's outputs are ~50 dB above int8's on every sample: a winner.
	if res.Winner != "fp16" || !strings.HasPrefix(res.Verdict, "winner: fp16 (output SQNR") {
		t.Errorf("winner %q, verdict %q; want fp16", res.Winner, res.Verdict)
	}
	if res.Load == nil || len(res.Load.Estimates) != 3 {
		t.Errorf("load decision %+v", res.Load)
	}
}

func TestBenchSameFileTwiceIsNoDifference(t *testing.T) {
	_, c := candidates(t)
	res, err := Run(context.Background(), Options{Reference: digits, Repeats: 3, Candidates: []Candidate{{"A", c["int8"]}, {"B", c["int8b"]}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Winner != "" || !strings.HasPrefix(res.Verdict, "no significant difference in output SQNR") {
		t.Errorf("identical candidates: winner %q, verdict %q", res.Winner, res.Verdict)
	}
	if res.Candidates[0].OutputSQNR != res.Candidates[1].OutputSQNR {
		t.Errorf("identical files, output SQNR %v and %v", res.Candidates[0].OutputSQNR, res.Candidates[1].OutputSQNR)
	}
}

// writeInputs writes a safetensors file of float32 tensors.
func writeInputs(t *testing.T, path string, ts map[string][]int, rng *rand.Rand) {
	t.Helper()
	var entries []checkpoint.Entry
	for name, shape := range ts {
		entries = append(entries, tensor.Info{Name: name, DType: tensor.F32, Shape: shape})
	}
	w, err := checkpoint.Create(path, entries, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b := make([]byte, 4*tensor.NumElements(e.Shape))
		for i := 0; i < len(b); i += 4 {
			binary.LittleEndian.PutUint32(b[i:], math.Float32bits(float32(rng.NormFloat64())))
		}
		if err := w.Write(e.Name, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestBenchInputFile(t *testing.T) {
	dir, c := candidates(t)
	in := filepath.Join(dir, "inputs.safetensors")
	// classifier.1 takes 512 features? Read the shape from the reference.
	r, err := checkpoint.Open(digits)
	if err != nil {
		t.Fatal(err)
	}
	shapes := map[string][]int{}
	for _, e := range r.Entries() {
		shapes[e.Name] = e.Shape
	}
	r.Close()
	w := shapes["classifier.1.weight"]
	writeInputs(t, in, map[string][]int{"classifier.1": {5, w[1]}}, rand.New(rand.NewPCG(1, 1)))
	res, err := Run(context.Background(), Options{Reference: digits, Inputs: in, Repeats: 3, Candidates: []Candidate{{"int8", c["int8"]}, {"int4", c["int4"]}}})
	if err != nil {
		t.Fatal(err)
	}
	if res.LayersRun != 1 || res.Samples != 5 || len(res.Candidates[0].Samples) != 5 {
		t.Fatalf("layers run %d, samples %d (%d); want 1 layer, 5 samples", res.LayersRun, res.Samples, len(res.Candidates[0].Samples))
	}
	for _, l := range res.Candidates[0].Layers {
		if l.Ran != (l.Layer == "classifier.1") {
			t.Errorf("layer %s ran %v", l.Layer, l.Ran)
		}
	}
	// A wrong feature count is an error naming the input.
	writeInputs(t, in, map[string][]int{"classifier.1": {5, w[1] + 1}}, rand.New(rand.NewPCG(1, 1)))
	_, err = Run(context.Background(), Options{Reference: digits, Inputs: in, Repeats: 3, Candidates: []Candidate{{"int8", c["int8"]}, {"int4", c["int4"]}}})
	if err == nil || !strings.Contains(err.Error(), `input "classifier.1" has shape`) {
		t.Errorf("bad input shape: %v", err)
	}
}

func TestBenchBadInput(t *testing.T) {
	_, c := candidates(t)
	tests := []struct {
		o    Options
		want string
	}{
		{Options{Reference: digits, Candidates: []Candidate{{"A", c["int8"]}}}, "at least two candidates"},
		{Options{Reference: digits, Candidates: []Candidate{{"A", c["int8"]}, {"A", c["int4"]}}}, `two candidates are named "A"`},
		{Options{Reference: c["int8"], Candidates: []Candidate{{"A", c["int8"]}, {"B", c["int4"]}}}, "is a quantized checkpoint: give the float"},
		{Options{Reference: digits, Candidates: []Candidate{{"A", c["int8"]}, {"F", digits}}}, "F (" + digits + ") is not a quantized checkpoint"},
		{Options{Reference: "../../examples/tiny_transformer.safetensors", Candidates: []Candidate{{"A", c["int8"]}, {"B", c["int4"]}}}, "is not in the reference"},
		{Options{Reference: digits, Objective: "speed", Candidates: []Candidate{{"A", c["int8"]}, {"B", c["int4"]}}}, `objective "speed"`},
		{Options{Reference: digits, Repeats: 1, Candidates: []Candidate{{"A", c["int8"]}, {"B", c["int4"]}}}, "repeats 1"},
	}
	for _, tc := range tests {
		_, err := Run(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%+v) = %v, want an error containing %q", tc.o, err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Options{Reference: digits, Candidates: []Candidate{{"A", c["int8"]}, {"B", c["int4"]}}}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}

// Measure over a fixed set of tensors: a candidate that keeps three of the four layers in float
// is scored over all four (their stored weights, no noise), as a search compares candidates.
func TestMeasureOverGivenTensors(t *testing.T) {
	dir := t.TempDir()
	one := quantized(t, dir, "one", `{"rules": [{"match": "classifier.1", "bits": 4, "group_size": 32}, {"match": "*", "skip": true}]}`)
	alone, err := Measure(context.Background(), Options{Reference: digits, Candidates: []Candidate{{"one", one}}})
	if err != nil {
		t.Fatal(err)
	}
	var all []Tensor
	for _, l := range []struct{ n, typ string }{{"features.0", "conv2d"}, {"features.2", "conv2d"}, {"classifier.1", "linear"}, {"classifier.3", "linear"}} {
		all = append(all, Tensor{Name: l.n + ".weight", Layer: l.n, LayerType: l.typ})
	}
	over, err := Measure(context.Background(), Options{Reference: digits, Candidates: []Candidate{{"one", one}}, Tensors: all})
	if err != nil {
		t.Fatal(err)
	}
	if len(alone[0].Layers) != 1 || len(over[0].Layers) != 4 {
		t.Fatalf("layers %d and %d, want 1 and 4", len(alone[0].Layers), len(over[0].Layers))
	}
	// Same noise, more signal: a higher SQNR; the float layers are exact.
	if !(over[0].WeightSQNR > alone[0].WeightSQNR && over[0].OutputSQNR > alone[0].OutputSQNR) {
		t.Errorf("over all layers weight %v / output %v, alone %v / %v: want higher", over[0].WeightSQNR, over[0].OutputSQNR, alone[0].WeightSQNR, alone[0].OutputSQNR)
	}
	for _, l := range over[0].Layers {
		if (l.Format == "float") != (l.Layer != "classifier.1") || (l.Format == "float" && !math.IsInf(float64(l.WeightSQNR), 1)) {
			t.Errorf("layer %+v", l)
		}
	}
}
