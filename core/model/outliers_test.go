package model

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/names"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/tensor"
	"github.com/monoquant/monoquant/core/warning"
)

// outlierBatches are inputs of a 32-feature layer in [-1, 1] with features 5 and 20 planted at
// magnitude 20..60 (LLM.int8()'s systematic outliers), feature 9 reaching 8 in the last batch.
func outlierBatches(n int) []*tensor.Tensor {
	rng := rand.New(rand.NewPCG(5, 9))
	var out []*tensor.Tensor
	for b := 0; b < n; b++ {
		x := randTensor(rng, 16, 32)
		v := tensor.View[float32](x.Data)
		for r := 0; r < 16; r++ {
			v[r*32+5] = 20 + 40*rng.Float32()
			v[r*32+20] = -(20 + 40*rng.Float32())
		}
		if b == n-1 {
			v[3*32+9] = 8
		}
		out = append(out, x)
	}
	return out
}

func outlierModel(t *testing.T) *Model {
	t.Helper()
	rng := rand.New(rand.NewPCG(3, 4))
	m := NewModel()
	for _, a := range []struct {
		name string
		x    *tensor.Tensor
	}{{"fc.weight", randTensor(rng, 8, 32)}, {"fc.bias", randTensor(rng, 8)}, {"head.weight", randTensor(rng, 4, 8)}} {
		if err := m.Add(a.name, a.x); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestOutliersStatic(t *testing.T) {
	xs := outlierBatches(3)
	run := func(opts plan.Options) *Result {
		m := outlierModel(t)
		if err := m.StartCalibration(opts); err != nil {
			t.Fatal(err)
		}
		for _, x := range xs {
			if err := m.Calibrate("fc", x); err != nil {
				t.Fatal(err)
			}
		}
		res, err := m.Quantize(context.Background(), opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	plain := run(plan.Options{Mode: plan.Static, Observer: "minmax"})
	res := run(plan.Options{Mode: plan.Static, Observer: "minmax", Outliers: true})

	tc := res.Config.Tensors["fc.weight"]
	if tc.OutlierThreshold != recipe.DefaultOutlierThreshold || tc.OutlierColumns != 3 {
		t.Fatalf("fc.weight config: outlier_threshold %v, outlier_columns %d; want %v and 3 (features 5, 9, 20)", tc.OutlierThreshold, tc.OutlierColumns, recipe.DefaultOutlierThreshold)
	}
	if ht := res.Config.Tensors["head.weight"]; ht.OutlierColumns != 0 || ht.OutlierThreshold != recipe.DefaultOutlierThreshold {
		t.Errorf("head.weight: %d outlier columns (threshold %v); its input saw no data, want 0 columns", ht.OutlierColumns, ht.OutlierThreshold)
	}
	a, pa := res.Config.Activations["fc"], plain.Config.Activations["fc"]
	if a.Outliers != 3 || a.OutlierThreshold != 6 {
		t.Errorf("fc activations: %d outliers at %v, want 3 at 6", a.Outliers, a.OutlierThreshold)
	}
	// The observer saw the input without the outlier features: a range of about [-1, 1]
	// instead of [-60, 60].
	if a.Max > 1.01 || a.Min < -1.01 || pa.Max < 20 {
		t.Errorf("activation range with outliers [%v, %v] (want inside [-1, 1]), without [%v, %v] (want beyond 20)", a.Min, a.Max, pa.Min, pa.Max)
	}
	if a.Scale[0] > pa.Scale[0]/20 {
		t.Errorf("activation scale %v with outliers, %v without: want at least 20x finer", a.Scale[0], pa.Scale[0])
	}
	ci, err := res.Tensor("fc.weight" + names.OutlierColumnsSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if got := tensor.View[int64](ci.Data); !slices.Equal(got, []int64{5, 9, 20}) || ci.DType != tensor.I64 {
		t.Errorf("outlier columns %v %v, want I64 [5 9 20]", ci.DType, got)
	}
	w, _ := outlierModel(t).Tensor("fc.weight")
	wv := tensor.View[float32](w.Data)
	ow, err := res.Tensor("fc.weight" + names.OutlierWeightSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ow.Shape, []int{8, 3}) || ow.DType != tensor.F32 {
		t.Fatalf("outlier weight %v %v, want F32 [8 3]", ow.DType, ow.Shape)
	}
	q, _ := res.Tensor("fc.weight")
	for r := 0; r < 8; r++ {
		for c, j := range []int{5, 9, 20} {
			if got := tensor.View[float32](ow.Data)[r*3+c]; got != wv[r*32+j] {
				t.Fatalf("outlier weight [%d, %d] = %v, want the float weight %v", r, c, got, wv[r*32+j])
			}
			if q.Data[r*32+j] != 0 {
				t.Fatalf("stored int8 at [%d, %d] = %d, want 0 (the column runs in float)", r, j, int8(q.Data[r*32+j]))
			}
		}
	}
	rep := res.Report
	if hasLayerWarning(rep, warning.ManyOutliers, "fc") {
		t.Errorf("3 outlier features of 32 drew a %s warning", warning.ManyOutliers)
	}
	for _, tr := range rep.Tensors {
		if tr.Name == "fc.weight" && (tr.OutlierColumns == nil || *tr.OutlierColumns != 3) {
			t.Errorf("report for fc.weight: outlier columns %v, want 3", tr.OutlierColumns)
		}
	}
	// Readers: the config validates, and dequantizing puts the float columns back exactly.
	if _, err := LoadConfig(res.Reader()); err != nil {
		t.Fatal(err)
	}
	dm, err := res.Dequantize(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dw, _ := dm.Tensor("fc.weight")
	dv := tensor.View[float32](dw.Data)
	for r := 0; r < 8; r++ {
		for _, j := range []int{5, 9, 20} {
			if dv[r*32+j] != wv[r*32+j] {
				t.Fatalf("dequantized [%d, %d] = %v, want %v exactly", r, j, dv[r*32+j], wv[r*32+j])
			}
		}
	}
	for _, e := range dm.Entries() {
		if strings.Contains(e.Name, "outlier") {
			t.Errorf("dequantized model keeps %q", e.Name)
		}
	}
	rows, err := NewRowDequantizer(res.Reader(), res.Config, "fc.weight")
	if err != nil {
		t.Fatal(err)
	}
	part := make([]float32, 2*32)
	if err := rows.Dequantize(3, 5, part); err != nil {
		t.Fatal(err)
	}
	rows.Close()
	if !slices.Equal(part, dv[3*32:5*32]) {
		t.Errorf("rows [3, 5) differ from the whole tensor's")
	}
	// The weight's own SQNR counts the exact float columns.
	if ts := findReport(rep, "fc.weight"); !(ts.SQNR > findReport(plain.Report, "fc.weight").SQNR-1) {
		t.Errorf("weight SQNR %v with outliers, %v without", ts.SQNR, findReport(plain.Report, "fc.weight").SQNR)
	}
}

func findReport(r *Report, name string) TensorReport {
	for _, t := range r.Tensors {
		if t.Name == name {
			return t
		}
	}
	return TensorReport{}
}

// tamperedReader replaces one tensor's bytes of a checkpoint.
type tamperedReader struct {
	checkpoint.Reader
	name string
	data []byte
}

func (r tamperedReader) Tensor(name string) (*tensor.Tensor, error) {
	t, err := r.Reader.Tensor(name)
	if err != nil || name != r.name {
		return t, err
	}
	return &tensor.Tensor{DType: t.DType, Shape: t.Shape, Data: r.data}, nil
}

func TestOutliersTamperedColumns(t *testing.T) {
	m := outlierModel(t)
	opts := plan.Options{Mode: plan.Static, Outliers: true, OutlierThreshold: 4}
	if err := m.StartCalibration(opts); err != nil {
		t.Fatal(err)
	}
	for _, x := range outlierBatches(2) {
		if err := m.Calibrate("fc", x); err != nil {
			t.Fatal(err)
		}
	}
	res, err := m.Quantize(context.Background(), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Config.Tensors["fc.weight"].OutlierThreshold; got != 4 {
		t.Fatalf("threshold %v, want 4", got)
	}
	// A threshold every feature reaches: the layer would run in float, and the report says so.
	low := plan.Options{Mode: plan.Static, OutlierThreshold: 1e-3}
	m = outlierModel(t)
	if err := m.StartCalibration(low); err != nil {
		t.Fatal(err)
	}
	if err := m.Calibrate("fc", outlierBatches(1)[0]); err != nil {
		t.Fatal(err)
	}
	lowRes, err := m.Quantize(context.Background(), low, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !hasLayerWarning(lowRes.Report, warning.ManyOutliers, "fc") {
		t.Errorf("threshold 1e-3: no %s warning: %v", warning.ManyOutliers, lowRes.Report.Warnings)
	}
	for _, idx := range [][]int64{{20, 5, 9}, {5, 9, 32}, {-1, 5, 9}, {5, 5, 9}} {
		b := make([]byte, 24)
		for i, v := range idx {
			binary.LittleEndian.PutUint64(b[8*i:], uint64(v))
		}
		_, err := LoadConfig(tamperedReader{res.Reader(), "fc.weight" + names.OutlierColumnsSuffix, b})
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "strictly ascending") {
			t.Errorf("outlier columns %v: LoadConfig = %v, want a format error", idx, err)
		}
	}
}

func TestOutlierOptions(t *testing.T) {
	neg := -1.0
	zero := 0.0
	off := false
	for _, tt := range []struct {
		name string
		opts plan.Options
		want string
	}{
		{"zero threshold", plan.Options{OutlierThreshold: -0.5}, "outlier_threshold -0.5 must be a finite number > 0"},
		{"int4", plan.Options{Bits: 4, Outliers: true}, "outliers apply to INT8"},
		{"weight-only", plan.Options{Activations: "none", Outliers: true}, "outliers apply to INT8"},
		{"recipe zero", plan.Options{Recipe: &recipe.Recipe{Rules: []recipe.Rule{{Match: "fc", OutlierThreshold: &zero}}}}, `rule 1 ("fc"): outlier_threshold 0 must be`},
		{"recipe negative", plan.Options{Recipe: &recipe.Recipe{Rules: []recipe.Rule{{Match: "fc", OutlierThreshold: &neg}}}}, "outlier_threshold -1 must be"},
		{"threshold and off", plan.Options{Recipe: &recipe.Recipe{Rules: []recipe.Rule{{Match: "fc", Outliers: &off, OutlierThreshold: new(float64(3))}}}}, "given with outliers false"},
		{"skip rule", plan.Options{Recipe: &recipe.Recipe{Rules: []recipe.Rule{{Match: "fc", Skip: true, Outliers: new(true)}}}}, "a skip rule takes no other option"},
	} {
		_, err := outlierModel(t).Plan(tt.opts)
		if !errors.Is(err, plan.ErrOption) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Plan = %v, want an option error containing %q", tt.name, err, tt.want)
		}
	}
	// A rule turns off what the call turned on; the base does not follow a rule to INT4.
	p, err := outlierModel(t).Plan(plan.Options{Outliers: true, Recipe: &recipe.Recipe{Rules: []recipe.Rule{
		{Match: "head", Bits: 4, GroupSize: 8}, {Match: "fc", Outliers: &off}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range p.Quantized() {
		if tp.Settings.OutlierThreshold != 0 {
			t.Errorf("%s: outlier threshold %v, want off", tp.Name, tp.Settings.OutlierThreshold)
		}
	}
	// A rule that turns outliers on takes the call's threshold.
	p, err = outlierModel(t).Plan(plan.Options{OutlierThreshold: 3, Recipe: &recipe.Recipe{Rules: []recipe.Rule{
		{Match: "fc", Outliers: new(true)}, {Match: "head", Outliers: &off}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range p.Quantized() {
		if want := map[string]float64{"fc.weight": 3}[tp.Name]; tp.Settings.OutlierThreshold != want {
			t.Errorf("%s: outlier threshold %v, want %v", tp.Name, tp.Settings.OutlierThreshold, want)
		}
	}
	o, err := plan.ParseOptions([]byte(`{"outliers": true, "outlier_threshold": 3.5}`))
	if err != nil || !o.Outliers || o.OutlierThreshold != 3.5 {
		t.Errorf("ParseOptions = %+v, %v", o, err)
	}
	if _, err := plan.ParseOptions([]byte(`{"outlier_threshold": 0}`)); err == nil || !strings.Contains(err.Error(), "outlier_threshold 0 must be") {
		t.Errorf("ParseOptions(threshold 0) = %v, want the rule", err)
	}
	// Dynamic: on in the config, nothing stored (features are found per batch at run time).
	res, err := outlierModel(t).Quantize(context.Background(), plan.Options{Outliers: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tc := res.Config.Tensors["fc.weight"]
	if tc.OutlierThreshold != 6 || tc.OutlierColumns != 0 || tc.Activations != "dynamic" {
		t.Errorf("dynamic: config %+v, want threshold 6, no stored columns", tc)
	}
	if got := res.Config.Recipe.Rules[len(res.Config.Recipe.Rules)-1].OutlierThreshold; got == nil || *got != 6 {
		t.Errorf("resolved recipe threshold %v, want 6", got)
	}
	for _, e := range res.Entries() {
		if strings.Contains(e.Name, "outlier") {
			t.Errorf("dynamic result stores %q", e.Name)
		}
	}
}
