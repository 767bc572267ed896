package observer

import (
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// The golden files come from testdata/gen_observer_golden.py (real torch); see that script for
// the layout. Floats are IEEE bit patterns, so every comparison below is exact.

type goldenBatch struct {
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Data  string `json:"data"`
}

type goldenCase struct {
	Name    string         `json:"name"`
	Options map[string]any `json:"options"`
	Input   string         `json:"input"`
	After   []struct {
		Min  []uint32 `json:"min"`
		Max  []uint32 `json:"max"`
		Hist string   `json:"hist"`
	} `json:"after"`
	Scale     []uint32 `json:"scale"`
	ZeroPoint []int64  `json:"zero_point"`
}

type goldenFile struct {
	Meta struct {
		Torch         string `json:"torch"`
		CPUCapability string `json:"cpu_capability"`
	} `json:"meta"`
	Kind   string                   `json:"kind"`
	Inputs map[string][]goldenBatch `json:"inputs"`
	Cases  []goldenCase             `json:"cases"`
}

func readGolden(t testing.TB, name string, v any) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "testdata", "golden", "observer", name+".json.gz"))
	if err != nil {
		t.Fatalf("golden file: %v (regenerate with .venv/bin/python testdata/gen_observer_golden.py)", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := json.NewDecoder(zr).Decode(v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// useLanes makes cascadeSum follow the torch build the golden file was generated on.
func useLanes(t testing.TB, capability string) {
	old := sumLanes
	switch capability {
	case "AVX512":
		sumLanes = 16
	default:
		sumLanes = 8
	}
	t.Cleanup(func() { sumLanes = old })
}

func (b goldenBatch) tensor(t testing.TB) *tensor.Tensor {
	raw, err := base64.StdEncoding.DecodeString(b.Data)
	if err != nil {
		t.Fatal(err)
	}
	dt, err := tensor.ParseDType(b.DType)
	if err != nil {
		t.Fatal(err)
	}
	return &tensor.Tensor{DType: dt, Shape: b.Shape, Data: raw}
}

func goldenOptions(t testing.TB, kind Kind, m map[string]any) Options {
	o := Options{Kind: kind}
	for k, v := range m {
		switch k {
		case "dtype":
			o.DType = map[string]quant.QDType{"quint8": quant.QUInt8, "qint8": quant.QInt8, "qint32": quant.QInt32}[v.(string)]
		case "scheme":
			o.Scheme = map[string]quant.Scheme{"affine": quant.Asymmetric, "symmetric": quant.Symmetric}[v.(string)]
		case "reduce_range":
			o.ReduceRange = v.(bool)
		case "quant_range":
			r := v.([]any)
			o.QuantRange = &[2]int{int(r[0].(float64)), int(r[1].(float64))}
		case "eps":
			o.Eps = float32(v.(float64))
		case "averaging_constant":
			o.AveragingConstant = float32(v.(float64))
		case "ch_axis":
			o.ChAxis = int(v.(float64))
		case "bins":
			o.Bins = int(v.(float64))
		default:
			t.Fatalf("unknown golden option %q", k)
		}
	}
	return o
}

func f32s(bits []uint32) []float32 {
	out := make([]float32, len(bits))
	for i, b := range bits {
		out[i] = math.Float32frombits(b)
	}
	return out
}

// sameBits compares float32 slices bit for bit and describes the first difference.
func sameBits(got, want []float32) string {
	if len(got) != len(want) {
		return fmt.Sprintf("length %d, want %d", len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			return fmt.Sprintf("[%d] = %v (%#08x), want %v (%#08x)", i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
	return ""
}

func TestGoldenParity(t *testing.T) {
	for _, kind := range []Kind{MinMax, MovingAverageMinMax, PerChannelMinMax, MovingAveragePerChannelMinMax, Histogram} {
		t.Run(kind.String(), func(t *testing.T) {
			var g goldenFile
			readGolden(t, kind.String(), &g)
			useLanes(t, g.Meta.CPUCapability)
			if len(g.Cases) == 0 {
				t.Fatal("no cases")
			}
			for _, c := range g.Cases {
				t.Run(c.Name, func(t *testing.T) {
					batches := g.Inputs[c.Input]
					if len(batches) != len(c.After) {
						t.Fatalf("%d batches but %d recorded states", len(batches), len(c.After))
					}
					opts := goldenOptions(t, kind, c.Options)
					obs, err := New(opts)
					if err != nil {
						t.Fatalf("New(%+v): %v", opts, err)
					}
					for i, b := range batches {
						x := b.tensor(t)
						if err := obs.Observe(x); err != nil {
							t.Fatalf("batch %d (%v %v): Observe: %v", i, x.DType, x.Shape, err)
						}
						mn, mx := obs.Range()
						if d := sameBits(mn, f32s(c.After[i].Min)); d != "" {
							t.Fatalf("after batch %d (%v %v): min%s", i, x.DType, x.Shape, d)
						}
						if d := sameBits(mx, f32s(c.After[i].Max)); d != "" {
							t.Fatalf("after batch %d (%v %v): max%s", i, x.DType, x.Shape, d)
						}
						if c.After[i].Hist != "" {
							raw, _ := base64.StdEncoding.DecodeString(c.After[i].Hist)
							want := tensor.View[float32](raw)
							got := obs.(*HistogramObserver).Histogram()
							if d := sameBits(got, want); d != "" {
								t.Fatalf("after batch %d (%v %v): histogram%s", i, x.DType, x.Shape, d)
							}
						}
					}
					scale, zp, err := obs.QParams()
					if err != nil {
						t.Fatalf("QParams: %v", err)
					}
					if d := sameBits(scale, f32s(c.Scale)); d != "" {
						t.Errorf("QParams scale%s", d)
					}
					if len(zp) != len(c.ZeroPoint) {
						t.Fatalf("QParams: %d zero points, want %d", len(zp), len(c.ZeroPoint))
					}
					for i := range zp {
						if int64(zp[i]) != c.ZeroPoint[i] {
							t.Errorf("QParams zero_point[%d] = %d, want %d", i, zp[i], c.ZeroPoint[i])
						}
					}
				})
			}
		})
	}
}

func TestCascadeSumMatchesTorch(t *testing.T) {
	var g struct {
		Meta struct {
			CPUCapability string `json:"cpu_capability"`
		} `json:"meta"`
		Cases []struct {
			Data []uint32 `json:"data"`
			Sum  []uint32 `json:"sum"`
		} `json:"cases"`
	}
	readGolden(t, "sum", &g)
	useLanes(t, g.Meta.CPUCapability)
	for _, c := range g.Cases {
		got := cascadeSum(f32s(c.Data), sumLanes)
		want := math.Float32frombits(c.Sum[0])
		if math.Float32bits(got) != c.Sum[0] {
			t.Errorf("cascadeSum(%d values) = %v (%#08x), torch.sum = %v (%#08x)", len(c.Data), got, math.Float32bits(got), want, c.Sum[0])
		}
	}
}
