package search

import (
	"encoding/json"

	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/tensor"
)

// PlanTensor is what LayersOf reads of one tensor of a plan (core/plan's TensorPlan, or its
// JSON: a caller's plan of a live model).
type PlanTensor struct {
	Name   string      `json:"name"`
	Shape  []int       `json:"shape"`
	Layer  string      `json:"layer"`
	Action plan.Action `json:"action"`
}

// LayersOf is the search space's layers for a plan: one per layer with a tensor the plan
// quantizes, in plan order, its weight count the sum over its quantized tensors and its row the
// greatest common divisor of their row lengths (an LSTM's weights have rows of two lengths; a
// group size must divide every one). A plan that quantizes nothing has no space: an error.
func LayersOf(tensors []PlanTensor) ([]Layer, error) {
	var out []Layer
	at := map[string]int{}
	for _, t := range tensors {
		if t.Action != plan.ActionQuantize {
			continue
		}
		name := t.Layer
		if name == "" {
			name = t.Name
		}
		i, ok := at[name]
		if !ok {
			i = len(out)
			at[name] = i
			out = append(out, Layer{Name: name})
		}
		row := 1
		if len(t.Shape) > 0 {
			row = tensor.NumElements(t.Shape[1:])
		}
		out[i].Params += int64(tensor.NumElements(t.Shape))
		out[i].Row = gcd(out[i].Row, row)
	}
	if len(out) == 0 {
		return nil, spaceErr("the plan quantizes no layer: there is nothing to search")
	}
	return out, nil
}

// LayersOfPlanJSON is LayersOf for a plan as JSON ({"tensors": [...], ...}).
func LayersOfPlanJSON(js []byte) ([]Layer, error) {
	var p struct {
		Tensors []PlanTensor `json:"tensors"`
	}
	if err := json.Unmarshal(js, &p); err != nil {
		return nil, spaceErr("plan: %v", err)
	}
	return LayersOf(p.Tensors)
}

// PlanLayers is LayersOf for a plan of core/plan.
func PlanLayers(p *plan.Plan) ([]Layer, error) {
	ts := make([]PlanTensor, len(p.Tensors))
	for i, t := range p.Tensors {
		ts[i] = PlanTensor{Name: t.Name, Shape: t.Shape, Layer: t.Layer, Action: t.Action}
	}
	return LayersOf(ts)
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	if a < 0 {
		return -a
	}
	return a
}
