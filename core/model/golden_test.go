package model

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// golden is testdata/golden/model/<name>.json, written by testdata/gen_model_golden.py from torch.
type golden struct {
	Types   map[string]string `json:"types"`
	Schemes map[string]struct {
		Tensors map[string]struct {
			SQNR        *float64 `json:"sqnr"`
			Signal      float64  `json:"signal"`
			Noise       float64  `json:"noise"`
			BytesBefore int64    `json:"bytes_before"`
			BytesAfter  int64    `json:"bytes_after"`
			LayerType   string   `json:"layer_type"`
		} `json:"tensors"`
		OverallSQNR          float64 `json:"overall_sqnr"`
		QuantizedBytesBefore int64   `json:"quantized_bytes_before"`
		QuantizedBytesAfter  int64   `json:"quantized_bytes_after"`
	} `json:"schemes"`
}

var goldenModels = []struct {
	name, stateDict, module string
}{
	{"digits_cnn", "../../examples/digits_cnn.safetensors", "../../examples/digits_cnn_module.pt"},
	{"tiny_transformer", "../../examples/tiny_transformer.safetensors", "../../examples/tiny_transformer_module.pt"},
	{"recurrent_mix", "../../testdata/golden/model/recurrent_mix.safetensors", "../../testdata/golden/model/recurrent_mix_module.pt"},
}

var goldenSchemes = map[string]plan.Options{
	"int8": {Bits: 8},
	"int4": {Bits: 4, Spec: quant.Spec{GroupSize: 32, Scheme: quant.Symmetric}, GroupFallback: &yes},
	"fp16": {Bits: 16},
}

var allQuantizable = []plan.LayerType{plan.Linear, plan.Conv1d, plan.Conv2d, plan.LSTM, plan.GRU, plan.Embedding}

func loadGolden(t *testing.T, name string) *golden {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../testdata/golden/model", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return &g
}

func relClose(got, want, rel float64) bool {
	return math.Abs(got-want) <= rel*math.Abs(want) || got == want
}

// TestGoldenReports quantizes the example models file to file and checks every number of the
// report against torch's own quantize → dequantize (testdata/gen_model_golden.py).
func TestGoldenReports(t *testing.T) {
	for _, gm := range goldenModels {
		g := loadGolden(t, gm.name)
		for scheme, opts := range goldenSchemes {
			t.Run(gm.name+"/"+scheme, func(t *testing.T) {
				want := g.Schemes[scheme]
				opts.LayerTypes = allQuantizable
				for _, suffix := range []string{".safetensors", ".pt"} {
					out := filepath.Join(t.TempDir(), "q"+suffix)
					rep, err := quantizeFile(gm.stateDict, out, opts)
					if err != nil {
						t.Fatal(err)
					}
					var names []string
					for _, tr := range rep.Tensors {
						names = append(names, tr.Name)
						w, ok := want.Tensors[tr.Name]
						if !ok {
							t.Errorf("%s: quantized %q, which torch's module tree does not call a quantizable weight", suffix, tr.Name)
							continue
						}
						if tr.LayerType != w.LayerType {
							t.Errorf("%s: %q layer type %s, torch's module says %s", suffix, tr.Name, tr.LayerType, w.LayerType)
						}
						if !relClose(tr.SignalEnergy, w.Signal, 1e-12) || !relClose(tr.NoiseEnergy, w.Noise, 1e-9) {
							t.Errorf("%s: %q energies (%v, %v), torch (%v, %v)", suffix, tr.Name, tr.SignalEnergy, tr.NoiseEnergy, w.Signal, w.Noise)
						}
						// torch's compute_sqnr works in float32: agree to 1e-3 dB.
						if w.SQNR != nil && math.Abs(float64(tr.SQNR)-*w.SQNR) > 1e-3 {
							t.Errorf("%s: %q SQNR %v dB, torch %v dB", suffix, tr.Name, float64(tr.SQNR), *w.SQNR)
						}
						if tr.BytesBefore != w.BytesBefore || tr.BytesAfter != w.BytesAfter {
							t.Errorf("%s: %q bytes %d → %d, torch %d → %d", suffix, tr.Name, tr.BytesBefore, tr.BytesAfter, w.BytesBefore, w.BytesAfter)
						}
					}
					if len(names) != len(want.Tensors) {
						var wn []string
						for n := range want.Tensors {
							wn = append(wn, n)
						}
						sort.Strings(names)
						sort.Strings(wn)
						t.Errorf("%s: quantized %q, want %q", suffix, names, wn)
					}
					if math.Abs(float64(rep.SQNR)-want.OverallSQNR) > 1e-9*math.Abs(want.OverallSQNR) {
						t.Errorf("%s: overall SQNR %v, want %v", suffix, float64(rep.SQNR), want.OverallSQNR)
					}
					if rep.QuantizedBytesBefore != want.QuantizedBytesBefore || rep.QuantizedBytesAfter != want.QuantizedBytesAfter {
						t.Errorf("%s: quantized bytes %d → %d, want %d → %d", suffix, rep.QuantizedBytesBefore, rep.QuantizedBytesAfter, want.QuantizedBytesBefore, want.QuantizedBytesAfter)
					}
					checkRoundTrip(t, gm.stateDict, out, rep)
				}
			})
		}
	}
}

// checkRoundTrip: the saved file, loaded and dequantized, gives the SQNR the report measured in
// memory, tensor by tensor.
func checkRoundTrip(t *testing.T, in, out string, rep *Report) {
	t.Helper()
	res, err := LoadResult(out)
	if err != nil {
		t.Fatalf("LoadResult(%s): %v", out, err)
	}
	dq, err := res.Dequantize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	src, err := LoadModel(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range rep.Tensors {
		x, _ := src.Tensor(tr.Name)
		y, err := dq.Tensor(tr.Name)
		if err != nil {
			t.Fatal(err)
		}
		xs, _ := x.Float32s()
		s, n := energyOf(xs, tensor.View[float32](y.Data))
		if got := OverallSQNR(s, n); !(math.Abs(got-float64(tr.SQNR)) < 1e-9 || got == float64(tr.SQNR)) {
			t.Errorf("%s: %q SQNR after save → load → dequantize %v, in memory %v", filepath.Base(out), tr.Name, got, float64(tr.SQNR))
		}
	}
}

// TestGoldenModuleTypes: the plan of a pickled nn.Module (types from class names) and of the
// bare state_dict (types from names and shapes) both agree with torch's isinstance checks.
func TestGoldenModuleTypes(t *testing.T) {
	for _, gm := range goldenModels {
		g := loadGolden(t, gm.name)
		for _, path := range []string{gm.module, gm.stateDict} {
			r, err := checkpoint.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(path, "_module.pt") && len(r.ModuleTypes()) == 0 {
				t.Errorf("%s: no module types read from a pickled module", path)
			}
			p, err := plan.NewPlan(r.Entries(), r.ModuleTypes(), plan.Options{LayerTypes: allQuantizable})
			r.Close()
			if err != nil {
				t.Fatal(err)
			}
			for _, tp := range p.Tensors {
				want, ok := g.Types[tp.Name]
				if !ok {
					continue // buffers: torch lists parameters only
				}
				got := string(tp.LayerType)
				if want == "other" && tp.Action == plan.ActionKeep {
					continue
				}
				if got != want {
					t.Errorf("%s: %q is %s (%s), torch's module says %s", filepath.Base(path), tp.Name, got, tp.Action, want)
				}
			}
		}
	}
}

// quantizeFile streams a checkpoint file into another through the plan (core/convert's
// pipeline without its checks, which live above this package).
func quantizeFile(in, out string, opts plan.Options) (*Report, error) {
	return quantizeFileRun(in, out, opts, Run{})
}

func quantizeFileRun(in, out string, opts plan.Options, run Run) (*Report, error) {
	r, err := checkpoint.Open(in)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	p, err := plan.PlanReader(r, opts)
	if err != nil {
		return nil, err
	}
	return Quantize(context.Background(), r, CreateFile(out), p, run)
}
