package model

import (
	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/warning"
)

// PlanDescription is a plan as data: what every caller shows (`monoquant plan`,
// monoquant.plan(), mq_model_plan_json) and what Python builds its quantized modules from. Every
// name, shape and dtype in it is core's decision; callers only read it.
type PlanDescription struct {
	Tensors []TensorDecision `json:"tensors"`
	Layers  []LayerDecision  `json:"layers"`
	// Recipe is the resolved recipe; TensorDecision.Rule indexes its rules.
	Recipe   *recipe.Recipe    `json:"recipe"`
	Warnings []warning.Warning `json:"warnings"`
	// BytesBefore and BytesAfter: every tensor's bytes now and once quantized (the projected size).
	BytesBefore int64 `json:"bytes_before"`
	BytesAfter  int64 `json:"bytes_after"`
	// Config is the quantization config the output will store (activation qparams come later,
	// from calibration).
	Config *Config `json:"config"`
}

// TensorDecision is what happens to one input tensor.
type TensorDecision struct {
	Name      string      `json:"name"`
	DType     string      `json:"dtype"`
	Shape     []int       `json:"shape"`
	Layer     string      `json:"layer"`
	LayerType string      `json:"layer_type"`
	Action    plan.Action `json:"action"`
	Reason    string      `json:"reason,omitempty"`
	// AliasOf is, for action "alias", the tensor stored in this one's place (they share storage).
	AliasOf string `json:"alias_of,omitempty"`
	// Rule is the index of the deciding rule in Recipe.Rules (-1: none selected the tensor);
	// RuleText names it in words.
	Rule     int    `json:"rule"`
	RuleText string `json:"rule_text,omitempty"`
	// Config is the tensor's entry of the file config (quantized tensors only).
	Config *TensorConfig `json:"config,omitempty"`
	// Stored lists the tensors the output holds for it, in order, with dtype and shape:
	// <name>, then <name>.scale and <name>.zero_point for the integer formats.
	Stored []StoredTensor `json:"stored"`
	Bytes  int64          `json:"bytes"`       // input bytes
	After  int64          `json:"bytes_after"` // stored bytes
}

// StoredTensor is one tensor of the output.
type StoredTensor struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
}

// LayerDecision is what happens to one quantized layer.
type LayerDecision struct {
	Name        string         `json:"name"`
	Type        plan.LayerType `json:"type"`
	Activations string         `json:"activations"`
	// Observer is the static activation observer's kind ("" unless static).
	Observer string `json:"observer,omitempty"`
	// HessianInputs is K when the layer's method (gptq) needs its input Hessian H = XᵀX, a
	// [K, K] matrix over calibration inputs (Model.SetHessian, Run.Hessians); 0 otherwise.
	HessianInputs int `json:"hessian_inputs,omitempty"`
}

// Describe returns a plan as data.
func Describe(p *plan.Plan) *PlanDescription {
	d := &PlanDescription{Recipe: p.Recipe, Warnings: append([]warning.Warning{}, p.Warnings...), Config: PlanConfig(p), Layers: []LayerDecision{}}
	for i := range p.Tensors {
		t := &p.Tensors[i]
		td := TensorDecision{Name: t.Name, DType: t.DType.String(), Shape: append([]int{}, t.Shape...), Layer: t.Layer,
			LayerType: string(t.LayerType), Action: t.Action, Reason: t.Reason, AliasOf: t.AliasOf, Rule: t.Rule, RuleText: p.RuleName(t.Rule),
			Bytes: entryBytes(t.DType, t.Shape)}
		var stored []checkpoint.Entry
		if t.Action == plan.ActionQuantize {
			td.Config = d.Config.Tensors[t.Name]
			stored = storedEntries(t.Name, &t.Spec, t.Shape, t.QuantShape)
		} else if t.Action != plan.ActionAlias { // an alias is stored under the name it aliases
			stored = []checkpoint.Entry{{Name: t.Name, DType: t.DType, Shape: t.Shape}}
		}
		for _, e := range stored {
			td.Stored = append(td.Stored, StoredTensor{Name: e.Name, DType: e.DType.String(), Shape: append([]int{}, e.Shape...)})
			td.After += storedBytes(e)
		}
		d.BytesBefore += td.Bytes
		d.BytesAfter += td.After
		d.Tensors = append(d.Tensors, td)
	}
	hl := p.HessianLayers()
	for _, l := range p.LayerNames() {
		ld := LayerDecision{Name: l, Type: p.Layers[l], Activations: p.Activations[l], HessianInputs: hl[l]}
		if o, ok := p.Observers[l]; ok {
			ld.Observer = o.Kind.String()
		}
		d.Layers = append(d.Layers, ld)
	}
	return d
}

// storedBytes is the size of a stored tensor; packed INT4 values count their bytes.
func storedBytes(e checkpoint.Entry) int64 { return entryBytes(e.DType, e.Shape) }
