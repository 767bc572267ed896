package fold_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/fold"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/tensor"
)

func TestWeightsFollowsTorchFormula(t *testing.T) {
	// Two output channels of 3 values; channel 1 has no conv bias contribution.
	w := []float32{1, 2, 3, -1, 0.5, 4}
	b := []float32{0.5, -2}
	gamma := []float32{2, 0.25}
	beta := []float32{1, -1}
	mean := []float32{0.5, 1}
	variance := []float32{3.99999, 0.99999}
	wf, bf, err := fold.Weights(w, b, gamma, beta, mean, variance, 1e-5)
	if err != nil {
		t.Fatal(err)
	}
	for c := 0; c < 2; c++ {
		r := 1 / math.Sqrt(float64(variance[c])+1e-5)
		for j := 0; j < 3; j++ {
			want := float64(w[c*3+j]) * float64(gamma[c]) * r
			if math.Abs(float64(wf[c*3+j])-want) > 1e-6*math.Max(1, math.Abs(want)) {
				t.Errorf("W'[%d,%d] = %v, want %v", c, j, wf[c*3+j], want)
			}
		}
		want := (float64(b[c])-float64(mean[c]))*r*float64(gamma[c]) + float64(beta[c])
		if math.Abs(float64(bf[c])-want) > 1e-6 {
			t.Errorf("b'[%d] = %v, want %v", c, bf[c], want)
		}
	}
	// No bias: b = 0.
	_, bf0, err := fold.Weights(w, nil, gamma, beta, mean, variance, 1e-5)
	if err != nil {
		t.Fatal(err)
	}
	if want := float32(-0.5)*(1/float32(math.Sqrt(float64(float32(3.99999)+1e-5))))*2 + 1; math.Abs(float64(bf0[0]-want)) > 1e-6 {
		t.Errorf("b'[0] without bias = %v, want %v", bf0[0], want)
	}
	if _, _, err := fold.Weights(w, b, gamma, beta, mean, []float32{-1, 1}, 1e-5); err == nil || !strings.Contains(err.Error(), "running_var[0]") {
		t.Errorf("negative variance: err = %v, want one naming running_var[0]", err)
	}
	if _, _, err := fold.Weights(w, b, gamma[:1], beta, mean, variance, 1e-5); !errors.Is(err, fold.ErrFold) {
		t.Errorf("length mismatch: err = %v, want ErrFold", err)
	}
}

func convBN(t *testing.T, bias bool) *model.Model {
	t.Helper()
	m := model.NewModel()
	add := func(name string, v []float32, shape ...int) {
		if err := m.Add(name, tensor.FromFloat32(v, shape...)); err != nil {
			t.Fatal(err)
		}
	}
	w := make([]float32, 4*2*3*3)
	for i := range w {
		w[i] = float32(i%7) - 3
	}
	add("features.0.weight", w, 4, 2, 3, 3)
	if bias {
		add("features.0.bias", []float32{1, 2, 3, 4}, 4)
	}
	add("features.1.weight", []float32{1, 2, 0.5, 1}, 4)
	add("features.1.bias", []float32{0, 1, 0, -1}, 4)
	add("features.1.running_mean", []float32{0.1, 0.2, 0.3, 0.4}, 4)
	add("features.1.running_var", []float32{1, 2, 3, 4}, 4)
	nb := tensor.New(tensor.I64, 0)
	nb.Shape = []int{}
	nb.Data = make([]byte, 8)
	if err := m.Add("features.1.num_batches_tracked", nb); err != nil {
		t.Fatal(err)
	}
	add("fc.weight", make([]float32, 8), 2, 4)
	return m
}

func TestReaderFoldsAndHidesTheNorm(t *testing.T) {
	for _, bias := range []bool{true, false} {
		m := convBN(t, bias)
		r, err := fold.NewReader(m.Reader(), []fold.Pair{{Layer: "features.0", Norm: "features.1"}})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range r.Entries() {
			names = append(names, e.Name)
		}
		if got, want := strings.Join(names, ","), "features.0.weight,features.0.bias,fc.weight"; got != want {
			t.Errorf("bias=%v: entries %s, want %s", bias, got, want)
		}
		wt, err := r.Tensor("features.0.weight")
		if err != nil {
			t.Fatal(err)
		}
		bt, err := r.Tensor("features.0.bias")
		if err != nil {
			t.Fatal(err)
		}
		w0, _ := m.Tensor("features.0.weight")
		wv, _ := w0.Float32s()
		b := []float32{1, 2, 3, 4}
		if !bias {
			b = nil
		}
		ww, wb, _ := fold.Weights(wv, b, []float32{1, 2, 0.5, 1}, []float32{0, 1, 0, -1}, []float32{0.1, 0.2, 0.3, 0.4}, []float32{1, 2, 3, 4}, fold.DefaultEps)
		gw, _ := wt.Float32s()
		gb, _ := bt.Float32s()
		for i := range ww {
			if gw[i] != ww[i] {
				t.Fatalf("bias=%v: folded weight[%d] = %v, want %v", bias, i, gw[i], ww[i])
			}
		}
		for i := range wb {
			if gb[i] != wb[i] {
				t.Fatalf("bias=%v: folded bias[%d] = %v, want %v", bias, i, gb[i], wb[i])
			}
		}
	}
}

func TestReaderRefusesBadPairs(t *testing.T) {
	cases := []struct {
		pair fold.Pair
		want string
	}{
		{fold.Pair{Layer: "features.0", Norm: "features.2"}, `the norm "features.2" is not directly after the layer "features.0"`},
		{fold.Pair{Layer: "features.1", Norm: "features.0"}, `the norm "features.0" is not directly after the layer "features.1"`},
		{fold.Pair{Layer: "conv", Norm: "features.1"}, `no tensor "conv.weight"`},
		{fold.Pair{Layer: "features.0", Norm: "bn"}, `no tensor "bn.weight"`},
		{fold.Pair{Layer: "fc", Norm: "features.1"}, `want 2 float values`},
		{fold.Pair{Layer: "features.0", Norm: "features.1", Eps: -1}, `eps -1`},
		{fold.Pair{Layer: "features.0", Norm: "features.0"}, `already in`},
	}
	for _, c := range cases {
		_, err := fold.NewReader(convBN(t, true).Reader(), []fold.Pair{c.pair})
		if err == nil || !errors.Is(err, fold.ErrFold) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("NewReader(%+v) = %v, want ErrFold containing %q", c.pair, err, c.want)
		}
	}
}

func TestPairJSON(t *testing.T) {
	var ps []fold.Pair
	if err := json.Unmarshal([]byte(`[["a.0","a.1"],["b","bn","relu"],{"layer":"c","norm":"d","eps":0.001}]`), &ps); err != nil {
		t.Fatal(err)
	}
	want := []fold.Pair{{Layer: "a.0", Norm: "a.1"}, {Layer: "b", Norm: "bn", ReLU: "relu"}, {Layer: "c", Norm: "d", Eps: 0.001}}
	for i := range want {
		if ps[i] != want[i] {
			t.Errorf("pair %d = %+v, want %+v", i, ps[i], want[i])
		}
	}
	for _, bad := range []string{`[["a"]]`, `[["a","b","c","d"]]`, `[{"layer":"a","norm":"b","x":1}]`, `[[1,2]]`} {
		if err := json.Unmarshal([]byte(bad), &ps); err == nil {
			t.Errorf("Unmarshal(%s) accepted", bad)
		}
	}
}

func TestRecipeFoldQuantizesFoldedWeightsAndStoresThePairs(t *testing.T) {
	rec, err := recipe.Parse([]byte(`{"rules": [{"match": "*", "bits": 8}], "fold": [["features.0", "features.1"]]}`))
	if err != nil {
		t.Fatal(err)
	}
	m := convBN(t, false)
	res, err := m.Quantize(context.Background(), plan.Options{Recipe: rec, Skip: []string{"fc"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, e := range res.Entries() {
		names[e.Name] = true
	}
	if !names["features.0.bias"] || names["features.1.weight"] || names["features.1.running_var"] || names["features.1.num_batches_tracked"] {
		t.Errorf("output tensors %v: want features.0.bias added and no features.1.*", names)
	}
	if got := res.Config.Recipe.Fold; len(got) != 1 || got[0].Layer != "features.0" || got[0].Norm != "features.1" {
		t.Errorf("stored recipe fold = %+v", got)
	}
	// The call's pairs merge with the recipe's; a module in two pairs is refused.
	_, err = convBN(t, true).Quantize(context.Background(), plan.Options{Recipe: rec, Fold: []fold.Pair{{Layer: "fc", Norm: "features.1"}}}, nil)
	if err == nil || !strings.Contains(err.Error(), `"features.1" is already in`) {
		t.Errorf("conflicting pairs: err = %v", err)
	}
	for _, bad := range []string{`{"rules": [], "fold": [["a"]]}`, `{"rules": [], "fold": [["a", "b"], ["a", "c"]]}`} {
		if _, err := recipe.Parse([]byte(bad)); err == nil || !errors.Is(err, recipe.ErrRecipe) {
			t.Errorf("Parse(%s) = %v, want ErrRecipe", bad, err)
		}
	}
}
