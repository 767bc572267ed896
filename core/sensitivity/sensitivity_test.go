package sensitivity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/tensor"
)

// threeLayers: fc1 and fc3 have gaussian weights, fc2 a few large outliers per row, which
// INT4 (one scale per group) handles worst.
func threeLayers(t *testing.T) *model.Model {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	m := model.NewModel()
	for _, l := range []struct {
		name       string
		rows, cols int
		outliers   bool
	}{{"fc1", 64, 256, false}, {"fc2", 64, 256, true}, {"fc3", 32, 64, false}} {
		w := make([]float32, l.rows*l.cols)
		for i := range w {
			w[i] = float32(0.02 * rng.NormFloat64())
			if l.outliers && i%97 == 0 {
				w[i] *= 40
			}
		}
		if err := m.Add(l.name+".weight", tensor.FromFloat32(w, l.rows, l.cols)); err != nil {
			t.Fatal(err)
		}
		b := make([]float32, l.rows)
		if err := m.Add(l.name+".bias", tensor.FromFloat32(b, l.rows)); err != nil {
			t.Fatal(err)
		}
		if err := m.SetModuleType(l.name, "torch.nn.modules.linear.Linear"); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

func TestParseFormats(t *testing.T) {
	fs, err := ParseFormats(nil)
	if err != nil || len(fs) != 2 || fs[0].Name != "int8" || fs[1].Name != "int4" {
		t.Fatalf("ParseFormats(nil) = %+v, %v; want the defaults int8, int4", fs, err)
	}
	fs, err = ParseFormats([]byte(`["fp16", {"bits": 4, "group_size": 32, "method": "hqq"}, {"name": "small", "bits": 4, "group_size": 64}]`))
	if err != nil {
		t.Fatal(err)
	}
	if got := []string{fs[0].Name, fs[1].Name, fs[2].Name}; strings.Join(got, ",") != "fp16,int4-g32-hqq,small" {
		t.Errorf("names = %v", got)
	}
	if fs[1].Rule.GroupSize != 32 || fs[1].Rule.Method != "hqq" || fs[0].Rule.DType != "fp16" {
		t.Errorf("rules = %+v", fs)
	}
	for _, tc := range []struct{ in, want string }{
		{`[]`, "the list is empty"},
		{`{"bits": 4}`, "JSON list"},
		{`["int8", "int8"]`, `"int8" is taken`},
		{`[{"match": "fc", "bits": 4}]`, `"match" is not a format option`},
		{`[{"bits": 3}]`, "bits 3"},
		{`[{"bitz": 4}]`, "bitz"},
		{`["int3"]`, "int3"},
		{`[7]`, "format name or an object"},
	} {
		if _, err := ParseFormats([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseFormats(%s) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func measure(t *testing.T, m *model.Model, formats string) (*Session, *Table) {
	t.Helper()
	fs, err := ParseFormats([]byte(formats))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(m.Reader(), plan.Options{}, fs)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range s.Candidates() {
		if _, err := s.Quantize(context.Background(), m.Reader(), c.Layer, c.Format); err != nil {
			t.Fatal(err)
		}
	}
	tab, err := s.Table()
	if err != nil {
		t.Fatal(err)
	}
	return s, tab
}

func TestWeightTableRanksTheOutlierLayerFirst(t *testing.T) {
	m := threeLayers(t)
	s, tab := measure(t, m, `["int8", "int4"]`)
	if len(s.Layers()) != 3 || len(s.Candidates()) != 6 {
		t.Fatalf("layers %v, candidates %d", s.Layers(), len(s.Candidates()))
	}
	if tab.Metric != MetricWeightSQNR || tab.Layers[0].Name != "fc2" || tab.Layers[0].Rank != 1 {
		t.Fatalf("table = %+v, want weight_sqnr with fc2 first", tab)
	}
	// biases are not in any layer's quantized tensors: they are the other bytes
	if tab.OtherBytes != 4*(64+64+32) {
		t.Errorf("other bytes = %d, want %d", tab.OtherBytes, 4*(64+64+32))
	}
	for _, l := range tab.Layers {
		i8, i4 := l.Results[0], l.Results[1]
		if *i8.WeightSQNR <= *i4.WeightSQNR || *i8.Score >= *i4.Score {
			t.Errorf("%s: int8 %v dB (score %v) vs int4 %v dB (score %v)", l.Name, *i8.WeightSQNR, *i8.Score, *i4.WeightSQNR, *i4.Score)
		}
		if math.Abs(*i4.Score-math.Pow(10, -float64(*i4.WeightSQNR)/10)) > 1e-12 {
			t.Errorf("%s: score %v is not 10^(-SQNR/10) of %v", l.Name, *i4.Score, *i4.WeightSQNR)
		}
		if l.Sensitivity != *i4.Score {
			t.Errorf("%s: sensitivity %v, want the int4 (smallest) score %v", l.Name, l.Sensitivity, *i4.Score)
		}
		// INT8 per-channel symmetric: one byte a weight plus a float32 scale per row
		if l.Name == "fc1" && (i8.BytesAfter != 64*256+64*4 || math.Abs(i8.BitsPerWeight-8*float64(64*256+64*4)/(64*256)) > 1e-12) {
			t.Errorf("fc1 int8: %d bytes, %v bits/weight", i8.BytesAfter, i8.BitsPerWeight)
		}
	}
	if got := tab.Sensitivity(); len(got) != 3 || got["fc2"] <= got["fc1"] {
		t.Errorf("Sensitivity() = %v", got)
	}
	// JSON round trip
	js, _ := json.Marshal(tab)
	back, err := ParseTable(js)
	if err != nil {
		t.Fatal(err)
	}
	js2, _ := json.Marshal(back)
	if !bytes.Equal(js, js2) {
		t.Errorf("table JSON does not round trip:\n%s\n%s", js, js2)
	}
}

// A layer quantized alone is byte for byte what quantizing the whole model with the same
// recipe stores for it.
func TestQuantizeAloneMatchesTheWholeModel(t *testing.T) {
	m := threeLayers(t)
	fs, _ := ParseFormats([]byte(`[{"bits": 4, "group_size": 64, "method": "mse"}]`))
	s, err := New(m.Reader(), plan.Options{}, fs)
	if err != nil {
		t.Fatal(err)
	}
	c := s.Candidates()[1]
	alone, err := s.Quantize(context.Background(), m.Reader(), c.Layer, c.Format)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := m.Quantize(context.Background(), plan.Options{Recipe: c.Recipe}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(alone.Entries()) != 3 { // weight, scale, zero point
		t.Fatalf("alone stores %v", alone.Entries())
	}
	for _, e := range alone.Entries() {
		a, _ := alone.Tensor(e.Name)
		w, err := whole.Tensor(e.Name)
		if err != nil || !bytes.Equal(a.Data, w.Data) {
			t.Errorf("%s differs from the whole model's (%v)", e.Name, err)
		}
	}
	if c.BytesAfter != alone.Report.QuantizedBytesAfter {
		t.Errorf("candidate bytes %d, stored %d", c.BytesAfter, alone.Report.QuantizedBytesAfter)
	}
}

func TestOutputSQNRAccumulatesOverBatches(t *testing.T) {
	m := threeLayers(t)
	fs, _ := ParseFormats(nil)
	s, err := New(m.Reader(), plan.Options{}, fs)
	if err != nil {
		t.Fatal(err)
	}
	ref1, out1 := tensor.FromFloat32([]float32{3, 4}, 1, 2), tensor.FromFloat32([]float32{3, 3}, 1, 2) // 25, 1
	ref2, out2 := tensor.FromFloat32([]float32{0, 5}, 1, 2), tensor.FromFloat32([]float32{2, 5}, 1, 2) // 25, 4
	for _, p := range [][2]*tensor.Tensor{{ref1, out1}, {ref2, out2}} {
		if err := s.AddOutput("fc1", "int4", p[0], p[1]); err != nil {
			t.Fatal(err)
		}
	}
	tab, err := s.Table()
	if err != nil {
		t.Fatal(err)
	}
	if tab.Metric != MetricOutputSQNR {
		t.Fatalf("metric %q", tab.Metric)
	}
	var fc1 LayerRow
	for _, l := range tab.Layers {
		if l.Name == "fc1" {
			fc1 = l
		}
	}
	want := 10 * math.Log10(50.0/5)
	if got := float64(*fc1.Results[1].OutputSQNR); math.Abs(got-want) > 1e-9 || *fc1.Results[1].Score != 0.1 {
		t.Errorf("fc1 int4 output SQNR %v (score %v), want %v (0.1)", got, *fc1.Results[1].Score, want)
	}
	if fc1.Results[0].Score != nil || tab.Layers[0].Name != "fc1" {
		t.Errorf("unmeasured candidates have a score, or the measured layer is not first: %+v", tab.Layers)
	}
	for _, tc := range []struct {
		layer, format string
		ref, out      *tensor.Tensor
		want          string
	}{
		{"fc9", "int4", ref1, out1, `layer "fc9" is not in the table (its layers: fc1, fc2, fc3)`},
		{"fc1", "int2", ref1, out1, `format "int2" is not in the table (its formats: int8, int4)`},
		{"fc1", "int4", ref1, tensor.FromFloat32([]float32{1, 2}, 2, 1), "same shape"},
		{"fc1", "int4", ref1, tensor.FromFloat32([]float32{1, float32(math.NaN())}, 1, 2), "NaN"},
	} {
		if err := s.AddOutput(tc.layer, tc.format, tc.ref, tc.out); err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrSensitivity) {
			t.Errorf("AddOutput(%s, %s) = %v, want %q", tc.layer, tc.format, err, tc.want)
		}
	}
	// a user metric needs the baseline, and then wins over the outputs
	if err := s.SetMetric("fc2", "int4", 0.7); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Table(); err == nil || !strings.Contains(err.Error(), "float model's value") {
		t.Errorf("Table without a baseline = %v", err)
	}
	if err := s.SetBaseline(0.9); err != nil {
		t.Fatal(err)
	}
	tab, _ = s.Table()
	if tab.Metric != MetricUser || *tab.Baseline != 0.9 || tab.Layers[0].Name != "fc2" || math.Abs(tab.Layers[0].Sensitivity-0.2) > 1e-12 {
		t.Errorf("user table = %+v", tab.Layers[0])
	}
	if err := s.SetMetric("fc2", "int4", math.Inf(1)); err == nil {
		t.Error("an infinite metric was accepted")
	}
}

func TestNewChecksTheOptions(t *testing.T) {
	m := threeLayers(t)
	fs, _ := ParseFormats([]byte(`[{"bits": 4, "group_size": 48, "group_fallback": false}]`))
	if _, err := New(m.Reader(), plan.Options{}, fs); err == nil || !strings.Contains(err.Error(), "48") {
		t.Errorf("a group size that fits no row: %v", err)
	}
	fs, _ = ParseFormats(nil)
	if _, err := New(m.Reader(), plan.Options{Skip: []string{"*"}}, fs); err == nil {
		t.Error("no layer to measure was accepted")
	}
	s, err := New(m.Reader(), plan.Options{Skip: []string{"fc2"}}, fs)
	if err != nil || len(s.Layers()) != 2 {
		t.Errorf("skip fc2: %v, %v", s, err)
	}
}

// table builds a table from (bytes, score) per layer and format.
func table(formats []string, layers map[string][][2]float64, order []string, params int64, other int64) *Table {
	t := &Table{Metric: MetricOutputSQNR, OtherBytes: other}
	for _, f := range formats {
		dt := f
		if f != "int4" && f != "int8" && f != "fp16" {
			dt = "int8" // a made-up name: any valid rule
		}
		t.Formats = append(t.Formats, Format{Name: f, Rule: recipe.Rule{DType: dt}})
	}
	for i, name := range order {
		row := LayerRow{Layer: Layer{Name: name, Type: "linear", Params: params}, Index: i}
		for fi, bs := range layers[name] {
			sc := bs[1]
			row.Results = append(row.Results, Result{Format: formats[fi], BytesAfter: int64(bs[0]), Score: &sc})
		}
		t.Layers = append(t.Layers, row)
	}
	return t
}

func TestRecipeForGreedy(t *testing.T) {
	// Three layers of 1000 weights; int4 500 bytes, int8 1000, fp16 2000.
	tab := table([]string{"int4", "int8", "fp16"}, map[string][][2]float64{
		"a": {{500, 0.10}, {1000, 0.001}, {2000, 0}},
		"b": {{500, 0.01}, {1000, 0.0001}, {2000, 0}},
		"c": {{500, 0.05}, {1000, 0.01}, {2000, 0}},
	}, []string{"a", "b", "c"}, 1000, 100)
	for _, tc := range []struct {
		budget Budget
		want   string
	}{
		{Budget{MaxBitsPerWeight: 4}, "int4 int4 int4"},
		{Budget{MaxBitsPerWeight: 5.4}, "int8 int4 int4"}, // a's step is the most efficient
		{Budget{MaxBitsPerWeight: 6.7}, "int8 int4 int8"}, // then c's (0.04/500 > b's 0.0099/500)
		{Budget{MaxBitsPerWeight: 8}, "int8 int8 int8"},
		{Budget{MaxSize: 100 + 3000}, "int8 int8 int8"},
		{Budget{MaxSize: 100 + 2999}, "int8 int4 int8"},
		{Budget{MaxBitsPerWeight: 16}, "fp16 fp16 fp16"},
	} {
		ch, err := RecipeFor(tab, tc.budget)
		if err != nil {
			t.Fatalf("%+v: %v", tc.budget, err)
		}
		var got []string
		for _, l := range ch.Layers {
			got = append(got, l.Format)
		}
		if strings.Join(got, " ") != tc.want {
			t.Errorf("RecipeFor(%+v) = %v, want %s", tc.budget, got, tc.want)
		}
		if tc.budget.MaxBitsPerWeight != 0 && ch.BitsPerWeight > tc.budget.MaxBitsPerWeight || tc.budget.MaxSize != 0 && ch.Bytes > tc.budget.MaxSize {
			t.Errorf("%+v: over budget: %+v", tc.budget, ch)
		}
		if n := len(ch.Recipe.Rules); n != 4 || ch.Recipe.Rules[3].Match != "*" || !ch.Recipe.Rules[3].Skip || ch.Recipe.Rules[0].Match != "a" || ch.Recipe.Rules[0].DType != got[0] {
			t.Errorf("recipe %+v", ch.Recipe.Rules)
		}
	}
	if _, err := RecipeFor(tab, Budget{MaxBitsPerWeight: 3.9}); err == nil || !strings.Contains(err.Error(), "takes 4 bits per weight") {
		t.Errorf("unreachable budget: %v", err)
	}
	if _, err := RecipeFor(tab, Budget{MaxSize: 1000}); err == nil || !strings.Contains(err.Error(), "takes 1600 bytes (100 of them outside") {
		t.Errorf("unreachable size: %v", err)
	}
	for _, b := range []string{`{}`, `{"max_size": 1, "max_bits_per_weight": 4}`, `{"max_bits": 4}`, `{"max_bits_per_weight": -1}`} {
		if _, err := ParseBudget([]byte(b)); err == nil {
			t.Errorf("ParseBudget(%s) accepted", b)
		}
	}
}

// A format that costs more and does not help, or helps less per byte than a bigger one, is
// never chosen.
func TestRecipeForSkipsDominatedFormats(t *testing.T) {
	tab := table([]string{"small", "worse", "mid", "big"}, map[string][][2]float64{
		"a": {{100, 1}, {150, 1.5}, {200, 0.9}, {300, 0}},
	}, []string{"a"}, 100, 0)
	ch, err := RecipeFor(tab, Budget{MaxSize: 299})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Layers[0].Format != "small" { // mid is under the hull (0.1 per 100 bytes, then 0.9)
		t.Errorf("chose %s", ch.Layers[0].Format)
	}
	ch, _ = RecipeFor(tab, Budget{MaxSize: 300})
	if ch.Layers[0].Format != "big" {
		t.Errorf("chose %s", ch.Layers[0].Format)
	}
}

// On random tables the greedy stays within budget and is never worse than the brute-force
// optimum by more than the largest single score (the bound of the LP-relaxation greedy).
func TestRecipeForAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for trial := 0; trial < 200; trial++ {
		n := 1 + rng.IntN(5)
		layers := map[string][][2]float64{}
		var order []string
		for i := 0; i < n; i++ {
			name := string(rune('a' + i))
			order = append(order, name)
			s := rng.Float64()
			layers[name] = [][2]float64{{500, s}, {1000, s * rng.Float64() * 0.5}, {2000, 0}}
		}
		tab := table([]string{"int4", "int8", "fp16"}, layers, order, 1000, 0)
		limit := int64(500*n + rng.IntN(1500*n+1))
		ch, err := RecipeFor(tab, Budget{MaxSize: limit})
		if err != nil {
			t.Fatal(err)
		}
		if ch.Bytes > limit {
			t.Fatalf("trial %d: %d bytes over %d", trial, ch.Bytes, limit)
		}
		best, maxScore := math.Inf(1), 0.0
		for _, l := range layers {
			maxScore = math.Max(maxScore, l[0][1])
		}
		var rec func(i int, bytes int64, score float64)
		rec = func(i int, bytes int64, score float64) {
			if bytes > limit {
				return
			}
			if i == n {
				best = math.Min(best, score)
				return
			}
			for _, o := range layers[order[i]] {
				rec(i+1, bytes+int64(o[0]), score+o[1])
			}
		}
		rec(0, 0, 0)
		if ch.Score < best-1e-12 || ch.Score > best+maxScore+1e-12 {
			t.Fatalf("trial %d: greedy %v, optimum %v (max score %v)", trial, ch.Score, best, maxScore)
		}
	}
}

// Descendant layers' rules come before their ancestors' (first match wins).
func TestRecipeForOrdersNestedLayers(t *testing.T) {
	tab := table([]string{"int4", "int8"}, map[string][][2]float64{
		"enc": {{500, 0.1}, {1000, 0}}, "enc.fc": {{500, 0.1}, {1000, 0}},
	}, []string{"enc", "enc.fc"}, 1000, 0)
	ch, err := RecipeFor(tab, Budget{MaxBitsPerWeight: 8})
	if err != nil {
		t.Fatal(err)
	}
	if ch.Recipe.Rules[0].Match != "enc.fc" || ch.Recipe.Rules[1].Match != "enc" {
		t.Errorf("rules %+v", ch.Recipe.Rules)
	}
}
