package model

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/tensor"
)

// A prune rule zeroes weights before quantization: the stored INT8 values are exactly 0 where
// core/prune says, every other rule's tensor is untouched, and the size is the unpruned one.
func TestQuantizePruned(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := NewModel()
	w := randTensor(rng, 8, 16)
	m.Add("fc1.weight", w)
	m.Add("fc2.weight", randTensor(rng, 4, 8))
	quant := func(rules string) *Result {
		t.Helper()
		rec, err := recipe.Parse([]byte(rules))
		if err != nil {
			t.Fatal(err)
		}
		res, err := m.Quantize(context.Background(), plan.Options{Recipe: rec}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	plain := quant(`[{"match": "*", "bits": 8}]`)
	for _, c := range []struct {
		rules string
		zeros int // of fc1's 128 weights
	}{
		{`[{"match": "fc1", "bits": 8, "prune": "2:4"}, {"match": "*", "bits": 8}]`, 64},
		{`[{"match": "fc1", "bits": 8, "prune": "magnitude", "sparsity": 0.25}, {"match": "*", "bits": 8}]`, 32},
	} {
		res := quant(c.rules)
		q, err := res.Tensor("fc1.weight")
		if err != nil {
			t.Fatal(err)
		}
		zeros := 0
		for _, b := range q.Data {
			if b == 0 {
				zeros++
			}
		}
		if zeros < c.zeros {
			t.Errorf("%s: %d stored zeros in fc1.weight, want at least %d", c.rules, zeros, c.zeros)
		}
		if strings.Contains(c.rules, "2:4") {
			for g := 0; g < len(q.Data); g += 4 {
				nz := 0
				for _, b := range q.Data[g : g+4] {
					if b != 0 {
						nz++
					}
				}
				if nz > 2 {
					t.Errorf("2:4: group %d of fc1.weight keeps %d non-zeros", g/4, nz)
				}
			}
		}
		a, _ := res.Tensor("fc2.weight")
		b, _ := plain.Tensor("fc2.weight")
		if string(a.Data) != string(b.Data) {
			t.Errorf("%s: fc2.weight (no prune rule) changed", c.rules)
		}
		if res.Report.TotalBytesAfter != plain.Report.TotalBytesAfter {
			t.Errorf("%s: %d bytes, unpruned %d: pruning must not change the stored size", c.rules, res.Report.TotalBytesAfter, plain.Report.TotalBytesAfter)
		}
		// The SQNR is measured against the weights before pruning: pruning's error counts.
		sq := func(r *Result) Decibels {
			for _, tr := range r.Report.Tensors {
				if tr.Name == "fc1.weight" {
					return tr.SQNR
				}
			}
			return 0
		}
		if sq(res) >= sq(plain)-3 {
			t.Errorf("%s: fc1 SQNR %.2f dB, unpruned %.2f dB: the pruned weights' error is not counted", c.rules, sq(res), sq(plain))
		}
		if !strings.Contains(res.Metadata()[MetadataKey], `"prune"`) {
			t.Errorf("%s: the file's resolved recipe does not record the prune key", c.rules)
		}
	}
	// The caller's weights are never written.
	again, _ := m.Tensor("fc1.weight")
	if string(again.Data) != string(w.Data) {
		t.Error("pruning wrote into the caller's tensor")
	}
	// 2:4 on rows of 6 values is an error naming the tensor.
	m2 := NewModel()
	m2.Add("fc.weight", tensor.FromFloat32(make([]float32, 12), 2, 6))
	rec, _ := recipe.Parse([]byte(`[{"match": "fc", "bits": 8, "prune": "2:4"}]`))
	if _, err := m2.Quantize(context.Background(), plan.Options{Recipe: rec}, nil); err == nil || !strings.Contains(err.Error(), `"fc.weight"`) {
		t.Errorf("2:4 on rows of 6: %v, want an error naming fc.weight", err)
	}
}

func TestPruneRecipeErrors(t *testing.T) {
	for _, c := range []struct{ rules, want string }{
		{`[{"match": "fc", "prune": "3:4"}]`, `prune "3:4" is not magnitude or 2:4`},
		{`[{"match": "fc", "prune": "magnitude"}]`, "needs a sparsity"},
		{`[{"match": "fc", "prune": "magnitude", "sparsity": 1}]`, "needs a sparsity"},
		{`[{"match": "fc", "prune": "2:4", "sparsity": 0.5}]`, "2:4 always removes half"},
		{`[{"match": "fc", "sparsity": 0.5}]`, "applies to prune"},
		{`[{"match": "fc", "skip": true, "prune": "2:4"}]`, "skip rule"},
		{`[{"match": "fc1", "prune_units": 0.5}]`, "needs into"},
		{`[{"match": "fc1", "prune_units": 1.5, "into": "fc2"}]`, "between 0 and 1"},
		{`[{"match": "blocks.*.fc1", "prune_units": 0.5, "into": "fc2"}]`, "must name it exactly"},
	} {
		_, err := recipe.Parse([]byte(c.rules))
		if err == nil || !errors.Is(err, recipe.ErrRecipe) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%s) = %v, want an error containing %q", c.rules, err, c.want)
		}
	}
	if _, err := recipe.Parse([]byte(`[{"match": "fc1", "skip": true, "prune_units": 0.25, "into": "fc2"}]`)); err != nil {
		t.Errorf("prune_units on a skip rule: %v", err)
	}
}
