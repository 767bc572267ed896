package model

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/observer"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/tensor"
	"github.com/monoquant/monoquant/core/warning"
)

func batches(seed uint64, n int, shape ...int) []*tensor.Tensor {
	rng := rand.New(rand.NewPCG(seed, 7))
	var out []*tensor.Tensor
	for i := 0; i < n; i++ {
		t := randTensor(rng, shape...)
		v := tensor.View[float32](t.Data)
		for j := range v {
			v[j] = v[j]*float32(i+1)*20 + 0.3 // batches of growing range: order matters for moving averages
		}
		out = append(out, t)
	}
	return out
}

// direct runs an observer over batches outside the model, as the reference.
func direct(t *testing.T, opts observer.Options, xs []*tensor.Tensor) ([]float32, []int32) {
	o, err := observer.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range xs {
		if err := o.Observe(x); err != nil {
			t.Fatal(err)
		}
	}
	s, z, err := o.QParams()
	if err != nil {
		t.Fatal(err)
	}
	return s, z
}

func TestStaticCalibration(t *testing.T) {
	for _, name := range []string{"minmax", "moving_average", "histogram"} {
		m := testModel(t)
		opts := plan.Options{Mode: plan.Static, Observer: name}
		if err := m.StartCalibration(opts); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		xs := batches(3, 4, 8, 256)
		for _, x := range xs {
			if err := m.Calibrate("fc1", x); err != nil {
				t.Fatalf("%s: Calibrate: %v", name, err)
			}
		}
		res, err := m.Quantize(context.Background(), opts, nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		kind, _ := observer.ParseKind(name)
		ws, wz := direct(t, observer.Options{Kind: kind, DType: 2, Scheme: 2}, xs)
		a, ok := res.Config.Activations["fc1"]
		if !ok {
			t.Fatalf("%s: no activation qparams for fc1 in %v", name, res.Config.Activations)
		}
		if a.Scale[0] != ws[0] || a.ZeroPoint[0] != wz[0] || a.Batches != 4 || a.Observer != name || a.QDType != "quint8" {
			t.Errorf("%s: fc1 activations %+v, want scale %v zp %v after 4 batches", name, a, ws[0], wz[0])
		}
		if res.Config.Mode != "static" {
			t.Errorf("%s: mode %q, want static", name, res.Config.Mode)
		}
		for _, layer := range []string{"conv", "lstm", "fc2"} {
			if !hasLayerWarning(res.Report, warning.NoCalibration, layer) {
				t.Errorf("%s: no %s warning for uncalibrated layer %s: %v", name, warning.NoCalibration, layer, res.Report.Warnings)
			}
		}
	}
}

func hasLayerWarning(r *Report, code warning.Code, layer string) bool {
	for _, w := range r.Warnings {
		if w.Code == code && w.Layer == layer {
			return true
		}
	}
	return false
}

func TestCalibrationErrors(t *testing.T) {
	m := testModel(t)
	if err := m.Calibrate("fc1", tensor.New(tensor.F32, 2)); !errors.Is(err, ErrCalibration) {
		t.Errorf("Calibrate before StartCalibration: %v, want ErrCalibration", err)
	}
	if err := m.StartCalibration(plan.Options{Activations: "none"}); !errors.Is(err, plan.ErrOption) || !strings.Contains(err.Error(), "static") {
		t.Errorf("StartCalibration with weight-only activations: %v, want ErrOption", err)
	}
	opts := plan.Options{Mode: plan.Static, Observer: "minmax"}
	if err := m.StartCalibration(opts); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		layer string
		x     *tensor.Tensor
		want  string
	}{
		{"fc9", tensor.New(tensor.F32, 2), `"fc9" has no static activations`},
		{"norm", tensor.New(tensor.F32, 2), `"norm" has no static activations`},
		{"fc1", nil, "nil activation"},
		{"fc1", tensor.New(tensor.I32, 2), "not a floating-point"},
		{"fc1", &tensor.Tensor{DType: tensor.F32, Shape: []int{4}, Data: make([]byte, 3)}, "needs 16 bytes"},
		{"fc1", tensor.FromFloat32([]float32{1, float32(nanValue())}, 2), "fc1"},
	}
	for _, tt := range tests {
		err := m.Calibrate(tt.layer, tt.x)
		if err == nil || !errors.Is(err, ErrCalibration) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Calibrate(%q, %v): error %v, want ErrCalibration mentioning %q", tt.layer, tt.x, err, tt.want)
		}
	}
	// Static mode with observers that saw nothing is an error, not a silent float model.
	if _, err := m.Quantize(context.Background(), opts, nil); !errors.Is(err, ErrCalibration) {
		t.Errorf("Quantize with empty observers: %v, want ErrCalibration", err)
	}
}

func nanValue() float64 { var z float64; return z / z }

// TestCalibrateReader: a calibration file names batches "<layer>.<i>"; they are fed in numeric
// order even when the file lists them as sorted strings.
func TestCalibrateReader(t *testing.T) {
	m := testModel(t)
	opts := plan.Options{Mode: plan.Static, Observer: "moving_average"}
	p, err := m.Plan(opts)
	if err != nil {
		t.Fatal(err)
	}
	xs := batches(5, 11, 4, 256)
	file := NewModel()
	for _, i := range []int{0, 1, 10, 2, 3, 4, 5, 6, 7, 8, 9} { // string order of 0..10
		file.Add(fmt.Sprintf("fc1.%d", i), xs[i])
	}
	file.Add("fc2", batches(6, 1, 4, 64)[0])
	c, err := NewCalibration(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CalibrateReader(file.Reader()); err != nil {
		t.Fatal(err)
	}
	acts, _, err := c.Params()
	if err != nil {
		t.Fatal(err)
	}
	ws, wz := direct(t, observer.Options{Kind: observer.MovingAverageMinMax}, xs)
	if a := acts["fc1"]; a.Scale[0] != ws[0] || a.ZeroPoint[0] != wz[0] || a.Batches != 11 {
		t.Errorf("fc1 from file: %+v, want scale %v zp %v over 11 batches in order", a, ws[0], wz[0])
	}
	if a := acts["fc2"]; a.Batches != 1 {
		t.Errorf("fc2 from file: %+v, want one batch", a)
	}
	bad := NewModel()
	bad.Add("decoder.fc", xs[0])
	if err := c.CalibrateReader(bad.Reader()); err == nil || !strings.Contains(err.Error(), `"decoder.fc"`) {
		t.Errorf("calibration tensor of no layer: error %v, want one naming it", err)
	}
	if err := c.CalibrateReader(NewModel().Reader()); !errors.Is(err, ErrCalibration) {
		t.Errorf("empty calibration file: %v, want ErrCalibration", err)
	}
}

// outlierRatioRef is the definition: sort the strided sample of |x|, take torch.quantile's
// linear interpolation at 0.999.
func outlierRatioRef(v []float32) float64 {
	step := 1
	if len(v) > outlierSample {
		step = len(v) / outlierSample
	}
	var a []float64
	for i := 0; i < len(v); i += step {
		a = append(a, math.Abs(float64(v[i])))
	}
	sort.Float64s(a)
	pos := 0.999 * float64(len(a)-1)
	lo := int(pos)
	q := a[lo]
	if lo+1 < len(a) {
		q += (a[lo+1] - a[lo]) * (pos - float64(lo))
	}
	return a[len(a)-1] / q
}

func TestOutlierRatio(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{64, 100, 1000, 4097, 65536, 65537, 200000, 1 << 20} {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		v[rng.IntN(n)/7*7] = 300 // a spike (on the stride for the large sizes)
		got := float64(outlierRatio(tensor.FromFloat32(v, n)))
		if want := outlierRatioRef(v); math.Abs(got-want) > 1e-5*want {
			t.Errorf("n=%d: ratio %v, want %v", n, got, want)
		}
	}
	if r := outlierRatio(tensor.FromFloat32(make([]float32, 63), 63)); r != 0 {
		t.Errorf("63 values: ratio %v, want 0 (too few to say)", r)
	}
	if r := outlierRatio(tensor.FromFloat32(make([]float32, 100), 100)); r != 0 {
		t.Errorf("all zeros: ratio %v, want 0", r)
	}
}

// TestActivationOutlierWarning: a layer whose calibration input holds one spike gets the
// warning, naming the layer; smooth inputs get none.
func TestActivationOutlierWarning(t *testing.T) {
	for _, spike := range []bool{false, true} {
		m := testModel(t)
		opts := plan.Options{Mode: plan.Static, Observer: "histogram"}
		if err := m.StartCalibration(opts); err != nil {
			t.Fatal(err)
		}
		xs := batches(5, 3, 8, 256)
		if spike {
			tensor.View[float32](xs[1].Data)[77] = 1e5
		}
		for _, x := range xs {
			if err := m.Calibrate("fc1", x); err != nil {
				t.Fatal(err)
			}
		}
		res, err := m.Quantize(context.Background(), opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := hasLayerWarning(res.Report, warning.ActivationOutliers, "fc1"); got != spike {
			t.Errorf("spike=%v: %s warning for fc1 = %v; warnings %v", spike, warning.ActivationOutliers, got, res.Report.Warnings)
		}
	}
}
