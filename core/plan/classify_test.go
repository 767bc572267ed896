package plan

import (
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/tensor"
)

func TestClassifyWithoutQuantizableTensors(t *testing.T) {
	entries := []checkpoint.Entry{
		{Name: "norm.weight", DType: tensor.F32, Shape: []int{8}},
		{Name: "norm.bias", DType: tensor.F32, Shape: []int{8}},
		{Name: "steps", DType: tensor.I64, Shape: []int{}},
	}
	if _, err := NewPlan(entries, nil, Options{}); err == nil {
		t.Fatal("NewPlan on norms only: want ErrNothingToQuantize")
	}
	got := Classify(entries, nil)
	want := []TensorClass{{"norm.weight", "norm", Norm}, {"norm.bias", "norm", Norm}, {"steps", "", Other}}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("Classify(%q) = %+v, want %+v", entries[i].Name, got[i], want[i])
		}
	}
	// With module classes, the class decides.
	got = Classify([]checkpoint.Entry{{Name: "fc.weight", DType: tensor.F32, Shape: []int{4, 4}}},
		map[string]string{"fc": "torch.nn.modules.sparse.Embedding"})
	if got[0].LayerType != Embedding || got[0].Layer != "fc" {
		t.Errorf("Classify(fc.weight of an Embedding) = %+v, want layer fc of type embedding", got[0])
	}
}
