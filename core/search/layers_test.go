package search

import (
	"errors"
	"reflect"
	"testing"

	"github.com/monoquant/monoquant/core/plan"
)

func TestLayersOf(t *testing.T) {
	q, k := plan.ActionQuantize, plan.ActionKeep
	got, err := LayersOf([]PlanTensor{
		{Name: "fc.weight", Shape: []int{16, 64}, Layer: "fc", Action: q},
		{Name: "fc.bias", Shape: []int{16}, Layer: "fc", Action: k},
		{Name: "lstm.weight_ih_l0", Shape: []int{256, 32}, Layer: "lstm", Action: q},
		{Name: "lstm.weight_hh_l0", Shape: []int{256, 64}, Layer: "lstm", Action: q},
		{Name: "conv.weight", Shape: []int{8, 3, 3, 3}, Layer: "conv", Action: q},
		{Name: "head.weight", Shape: []int{4, 64}, Layer: "head", Action: k},
	})
	want := []Layer{{Name: "fc", Params: 1024, Row: 64}, {Name: "lstm", Params: 256*32 + 256*64, Row: 32}, {Name: "conv", Params: 216, Row: 27}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("LayersOf = %+v, %v; want %+v", got, err, want)
	}
	js := `{"tensors": [{"name": "a.weight", "shape": [4, 6], "layer": "a", "action": "quantize"}, {"name": "b", "shape": [2], "action": "keep"}]}`
	if got, err := LayersOfPlanJSON([]byte(js)); err != nil || !reflect.DeepEqual(got, []Layer{{Name: "a", Params: 24, Row: 6}}) {
		t.Errorf("LayersOfPlanJSON = %+v, %v", got, err)
	}
	if _, err := LayersOf([]PlanTensor{{Name: "b", Shape: []int{2}, Action: k}}); !errors.Is(err, ErrSpace) {
		t.Errorf("nothing quantized: %v, want ErrSpace", err)
	}
}
