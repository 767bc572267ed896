package plan

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/names"
	"github.com/monoquant/monoquant/core/observer"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/tensor"
	"github.com/monoquant/monoquant/core/warning"
)

// LayerType is what kind of layer a tensor belongs to.
type LayerType string

// Layer types. Only the quantizable ones may be selected in Options.LayerTypes.
const (
	Linear    LayerType = "linear"
	Conv1d    LayerType = "conv1d"
	Conv2d    LayerType = "conv2d"
	Conv3d    LayerType = "conv3d"
	LSTM      LayerType = "lstm"
	GRU       LayerType = "gru"
	RNN       LayerType = "rnn"
	Embedding LayerType = "embedding"
	Norm      LayerType = "norm"  // LayerNorm, BatchNorm, GroupNorm, RMSNorm…: never quantized
	Other     LayerType = "other" // biases, buffers, unknown tensors: never quantized
)

var allLayerTypes = []LayerType{Linear, Conv1d, Conv2d, Conv3d, LSTM, GRU, RNN, Embedding, Norm, Other}

// DefaultLayerTypes is the selection when Options.LayerTypes is nil.
var DefaultLayerTypes = []LayerType{Linear, Conv2d, LSTM}

// Quantizable reports whether weights of this layer type can be selected for quantization.
func (t LayerType) Quantizable() bool {
	switch t {
	case Linear, Conv1d, Conv2d, Conv3d, LSTM, GRU, RNN, Embedding:
		return true
	}
	return false
}

// ParseLayerType maps a name ("linear", "conv2d", "lstm", …; case-insensitive) to a LayerType.
func ParseLayerType(s string) (LayerType, error) {
	l := LayerType(strings.ToLower(strings.TrimSpace(s)))
	for _, t := range allLayerTypes {
		if t == l {
			return t, nil
		}
	}
	return "", OptionErr("layers", "unknown layer type %q", s)
}

// Action is what the plan does with one tensor.
type Action string

const (
	// ActionQuantize: the tensor is replaced by quantized values (+ scale, zero point).
	ActionQuantize Action = "quantize"
	// ActionKeep: copied as it is.
	ActionKeep Action = "keep"
	// ActionAlias: the tensor shares its storage with another one (a tied parameter); it is not
	// stored, and the config's aliases map its name to the stored one (TensorPlan.AliasOf).
	ActionAlias Action = "alias"
)

// TensorPlan is the decision for one tensor of the input.
type TensorPlan struct {
	Name      string       `json:"name"`
	DType     tensor.DType `json:"-"`
	Shape     []int        `json:"shape"`
	Layer     string       `json:"layer"`      // module path ("encoder.layers.0.linear1"), "" when none
	LayerType LayerType    `json:"layer_type"` // what the tensor's layer is
	Action    Action       `json:"action"`
	Reason    string       `json:"reason,omitempty"` // why a tensor is kept
	// Spec is the normalized spec for quantized tensors; QuantShape the shape the kernel sees
	// (the tensor viewed as [shape[0], rest] for group-wise quantization).
	Spec       quant.Spec        `json:"-"`
	QuantShape []int             `json:"-"`
	Warnings   []warning.Warning `json:"-"`
	// Rule is the index of the rule of the resolved recipe (Plan.Recipe) that decided the
	// tensor, -1 when none selected it. Settings are that rule's resolved options.
	Rule     int             `json:"rule"`
	Settings recipe.Settings `json:"-"`
	// Method is how the weights become integers (core/method); "rtn" for float casts too.
	Method method.Method `json:"method,omitempty"`
	// AliasOf is, for ActionAlias, the tensor stored in its place (they share storage).
	AliasOf string `json:"alias_of,omitempty"`
	// Outliers are the input features (columns of the [out, in] weight) that calibration found
	// to be LLM.int8() outliers (Settings.OutlierThreshold > 0, static activations), ascending;
	// set by Quantize from the Calibration. They are stored in float (docs/FORMAT.md).
	Outliers []int `json:"-"`
}

// Plan lists every tensor of a checkpoint in file order with what will happen to it.
type Plan struct {
	Tensors []TensorPlan
	// Layers maps each layer that has at least one quantized tensor to its type.
	Layers map[string]LayerType
	// Activations maps each quantized layer to its activation mode ("none", "dynamic",
	// "static"); Observers each static layer to its observer's options.
	Activations map[string]string
	Observers   map[string]observer.Options
	// Recipe is the resolved recipe: the call's skips, the recipe's rules and the call's options
	// as a final "*" rule, every default filled in. Files store it; TensorPlan.Rule indexes it.
	Recipe   *recipe.Recipe
	Warnings []warning.Warning
	opts     *normalized
}

// Valid reports whether p was made by NewPlan (the zero Plan is not a plan).
func (p *Plan) Valid() bool { return p != nil && p.opts != nil }

// MethodOptions are the tuning options of the weight methods the plan was made with (without a
// Hessian: those come per layer).
func (p *Plan) MethodOptions() method.Options { return p.opts.mopts }

// StaticLayers lists the layers whose activations are calibrated, in file order.
func (p *Plan) StaticLayers() []string {
	var out []string
	for _, l := range p.LayerNames() {
		if p.Activations[l] == recipe.ActivationsStatic {
			out = append(out, l)
		}
	}
	return out
}

// HessianLayers maps each layer with a tensor whose method needs the layer's input Hessian
// (gptq) to the K of the [K, K] Hessian it needs (the inputs of the weight viewed as [rows, K]).
func (p *Plan) HessianLayers() map[string]int {
	out := map[string]int{}
	for _, t := range p.Quantized() {
		if t.Method.NeedsHessian() {
			if _, ok := out[t.Layer]; !ok {
				out[t.Layer] = tensor.NumElements(t.QuantShape[1:])
			}
		}
	}
	return out
}

// RuleName names the rule that decided a tensor, for messages and reports.
func (p *Plan) RuleName(i int) string {
	if i < 0 || i >= len(p.Recipe.Rules) {
		return ""
	}
	return recipe.RuleName(i, &p.Recipe.Rules[i])
}

// ruleWhere is " (rule 2 (\"x\"))" for a recipe's rule, "" for the call's own options, which
// need no pointing at.
func (p *Plan) ruleWhere(i int) string {
	if i < 0 || i >= len(p.Recipe.Rules) || p.opts.resolved.Rules[i].FromCall {
		return ""
	}
	return " (" + p.RuleName(i) + ")"
}

// Quantized returns the plans of the tensors to quantize, in file order.
func (p *Plan) Quantized() []*TensorPlan {
	var out []*TensorPlan
	for i := range p.Tensors {
		if p.Tensors[i].Action == ActionQuantize {
			out = append(out, &p.Tensors[i])
		}
	}
	return out
}

// LayerNames returns the quantized layers in file order.
func (p *Plan) LayerNames() []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range p.Quantized() {
		if !seen[t.Layer] {
			seen[t.Layer] = true
			out = append(out, t.Layer)
		}
	}
	return out
}

// NewPlan decides, for every tensor a checkpoint lists, which layer it belongs to, what type
// that layer is and whether it is quantized. Layer types come from ModuleTypes when the file
// holds a pickled nn.Module, and from names and shapes otherwise (see classify). It fails with
// ErrNothingToQuantize when the selection leaves no tensor.
func NewPlan(entries []checkpoint.Entry, moduleTypes map[string]string, opts Options) (*Plan, error) {
	n, err := opts.normalize()
	if err != nil {
		return nil, err
	}
	if len(opts.ModuleTypes) > 0 {
		merged := maps.Clone(opts.ModuleTypes)
		maps.Copy(merged, moduleTypes)
		moduleTypes = merged
	}
	return newPlan(entries, moduleTypes, n)
}

// PlanReader is NewPlan for the tensors, module types and tied tensors (checkpoint.Aliases)
// of an open checkpoint.
func PlanReader(r checkpoint.Reader, opts Options) (*Plan, error) {
	if r == nil {
		return nil, fmt.Errorf("model.PlanReader: nil reader")
	}
	if a := checkpoint.Aliases(r); len(a) > 0 {
		tied := maps.Clone(a)
		maps.Copy(tied, opts.Tied)
		opts.Tied = tied
	}
	return NewPlan(r.Entries(), r.ModuleTypes(), opts)
}

func newPlan(entries []checkpoint.Entry, moduleTypes map[string]string, n *normalized) (*Plan, error) {
	p := &Plan{Layers: map[string]LayerType{}, Activations: map[string]string{}, Observers: map[string]observer.Options{},
		Recipe: n.resolved.Recipe(), opts: n}
	c := newClassifier(entries, moduleTypes)
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		seen[e.Name] = true
	}
	rules := n.resolved.Rules
	used := make([]bool, len(rules))
	actRule := map[string]int{}      // layer → the rule that set its activation mode
	leftInFloat := map[string]bool{} // layers a left_in_float warning names
	for _, e := range entries {
		layer, lt, param := c.classify(e)
		tp := TensorPlan{Name: e.Name, DType: e.DType, Shape: append([]int(nil), e.Shape...), Layer: layer, LayerType: lt, Action: ActionKeep, Rule: -1}
		switch {
		case !e.DType.IsFloat():
			tp.Reason = fmt.Sprintf("%v is not a floating-point dtype", e.DType)
		case !lt.Quantizable() || !isWeightParam(lt, param):
			tp.Reason = fmt.Sprintf("%s of a %s layer is not a quantized weight", paramOrName(param, e.Name), lt)
		case len(e.Shape) < 2:
			tp.Reason = "fewer than 2 dimensions"
		case tensor.NumElements(e.Shape) == 0:
			tp.Reason = "empty tensor"
		default:
			ri := -1
			for i := range rules {
				types := n.ruleTyp[i]
				if types == nil {
					types = n.types
				}
				if types[lt] && rules[i].Pattern.Match(e.Name) {
					ri = i
					break
				}
			}
			if ri < 0 {
				tp.Reason = fmt.Sprintf("layer type %s is not selected", lt)
				break
			}
			used[ri] = true
			tp.Rule = ri
			rr := &rules[ri]
			if rr.Rule.Skip {
				tp.Reason = fmt.Sprintf("skipped by %s", recipe.RuleName(ri, &rr.Rule))
				if rr.FromCall {
					tp.Reason = fmt.Sprintf("skipped by pattern %q", rr.Rule.Match)
				}
				break
			}
			if cls, ok := c.modules[layer]; ok && n.classes != nil && !slices.ContainsFunc(c.chains[layer], func(k string) bool { return n.classes[k] }) {
				if !rr.FromCall {
					return nil, OptionErr("layers", "%s selects %q, a %s, and quantized %s modules cannot run here (this caller runs quantized %s); skip it",
						p.RuleName(ri), layer, cls, cls, strings.Join(slices.Sorted(maps.Keys(n.classes)), ", "))
				}
				tp.Reason = fmt.Sprintf("a quantized %s cannot run here (this caller runs quantized %s); left in float", cls, strings.Join(slices.Sorted(maps.Keys(n.classes)), ", "))
				if !leftInFloat[layer] {
					leftInFloat[layer] = true
					p.Warnings = append(p.Warnings, warning.Warning{Code: warning.LeftInFloat, Layer: layer, Message: fmt.Sprintf("%q (%s) is left in float: %s", layer, cls, tp.Reason)})
				}
				break
			}
			if n.runnable != nil && !n.runnable[lt] {
				return nil, OptionErr("layers", "%s selects %q, a %s layer, and quantized %s layers cannot run here (this caller runs %s); skip it or leave its type out",
					p.RuleName(ri), layer, lt, lt, typeList(n.runnable))
			}
			tp.Settings = rr.Settings
			if tp.Settings.OutlierThreshold > 0 && (lt != Linear || c.channelAxis(layer, lt) != 0) {
				// LLM.int8()'s float features are input columns of a Linear weight [out, in].
				if !rr.FromCall {
					return nil, OptionErr("outliers", "%s turns on outliers for %q, a %s layer; outliers apply to Linear layers (weights [out, in])", p.RuleName(ri), layer, lt)
				}
				tp.Settings.OutlierThreshold = 0
			}
			if err := planSpec(&tp, n.specFor(&rr.Settings), c.channelAxis(layer, lt), rr.Settings.GroupFallback); err != nil {
				return nil, fmt.Errorf("%w: tensor %q%s: %w", ErrOption, e.Name, p.ruleWhere(ri), err)
			}
			m, err := method.Parse(rr.Settings.Method)
			if err == nil && tp.Spec.Format.IsInteger() {
				err = m.Check(tp.Spec)
			}
			if err != nil {
				return nil, fmt.Errorf("%w: tensor %q%s: %w", ErrOption, e.Name, p.ruleWhere(ri), err)
			}
			tp.Method = m
			if !tp.Spec.Format.IsInteger() {
				tp.Method = method.RTN
			}
			claimed := []string{names.ScaleSuffix, names.ZeroPointSuffix}
			if tp.Settings.OutlierThreshold > 0 {
				claimed = append(claimed, names.OutlierColumnsSuffix, names.OutlierWeightSuffix)
			}
			for _, suffix := range claimed {
				if seen[e.Name+suffix] {
					return nil, fmt.Errorf("tensor %q: the checkpoint already has a tensor %q, which the quantized format needs for itself", e.Name, e.Name+suffix)
				}
			}
			if prev, ok := p.Activations[layer]; ok && prev != rr.Settings.Activations {
				return nil, fmt.Errorf("%w: layer %q: %s gives it activations %s but %s gives its tensor %q activations %s; a layer has one activation mode",
					ErrOption, layer, p.RuleName(actRule[layer]), prev, p.RuleName(ri), e.Name, rr.Settings.Activations)
			}
			p.Activations[layer], actRule[layer] = rr.Settings.Activations, ri
			if rr.Settings.Activations == recipe.ActivationsStatic {
				o, err := n.observerFor(rr.Settings.Observer)
				if err != nil {
					return nil, err
				}
				p.Observers[layer] = o
			}
			tp.Action = ActionQuantize
			p.Layers[layer] = lt
		}
		p.Tensors = append(p.Tensors, tp)
	}
	if err := p.tie(n.tied); err != nil {
		return nil, err
	}
	q := p.Quantized()
	if len(q) == 0 {
		return nil, fmt.Errorf("%w: no tensor of the selected layer types (%s) is left after the skip patterns and rules; the checkpoint has %d tensors", ErrNothingToQuantize, typeList(n.types), len(entries))
	}
	for i, rr := range rules {
		if used[i] || (rr.FromCall && !rr.Rule.Skip) {
			continue
		}
		what := recipe.RuleName(i, &rr.Rule) + " selects no layer"
		if rr.FromCall {
			what = fmt.Sprintf("skip pattern %q selects no layer", rr.Rule.Match)
		}
		p.Warnings = append(p.Warnings, warning.Warning{Code: warning.UnusedRule, Message: what + " (of the selected layer types); check the pattern against the layer names"})
	}
	for _, t := range q {
		p.Warnings = append(p.Warnings, t.Warnings...)
	}
	var guessed []string
	for _, l := range p.LayerNames() {
		if _, known := c.modules[l]; !known && looksConv1D(l) {
			guessed = append(guessed, l)
		}
	}
	if len(guessed) > 0 {
		p.Warnings = append(p.Warnings, warning.Warning{Code: warning.Architecture, Layer: guessed[0],
			Message: fmt.Sprintf("%s are named like GPT-2's Conv1D layers, whose weight is stored [in, out] (output channels on axis 1), but nothing names the architecture, so they are quantized as Linear layers [out, in] (axis 0); to say it, give the model folder or put its config.json (\"model_type\": \"gpt2\") beside the checkpoint, or quantize the live model from Python", names.List(guessed, 3))})
	}
	p.Warnings = append(p.Warnings, firstLastWarnings(p)...)
	return p, nil
}

// tie stores each group of tied tensors (alias → an earlier name, Options.Tied) once: the
// first member the rules quantize is stored (its layer's decision is the group's: GPT-2's
// lm_head quantizes the embedding it shares), else the first member is, kept as it is; a
// member a skip pattern or rule skips keeps the whole group float (a skip is an explicit
// "leave this float"). Every other member becomes an ActionAlias of the stored one. The
// warning names the group, so the report says which names share storage.
func (p *Plan) tie(tied map[string]string) error {
	if len(tied) == 0 {
		return nil
	}
	index := make(map[string]int, len(p.Tensors))
	for i := range p.Tensors {
		index[p.Tensors[i].Name] = i
	}
	root := func(name string) (string, error) {
		for range len(tied) + 1 { // a chain longer than the map has a cycle
			next, ok := tied[name]
			if !ok {
				return name, nil
			}
			if _, listed := index[next]; !listed {
				return "", fmt.Errorf("%w: tied: %q is tied to %q, which is not a tensor of the checkpoint", ErrOption, name, next)
			}
			name = next
		}
		return "", fmt.Errorf("%w: tied: the names tied to %q form a cycle", ErrOption, name)
	}
	groups := map[string][]int{}
	var order []string
	for i := range p.Tensors {
		name := p.Tensors[i].Name
		r, err := root(name)
		if err != nil {
			return err
		}
		if _, ok := groups[r]; !ok {
			order = append(order, r)
		}
		groups[r] = append(groups[r], i)
	}
	changed := false
	for _, r := range order {
		g := groups[r]
		if len(g) < 2 {
			continue
		}
		first := &p.Tensors[g[0]]
		stored := first
		skipped := ""
		for _, i := range g {
			if r := p.Tensors[i].Rule; r >= 0 && p.opts.resolved.Rules[r].Rule.Skip && skipped == "" {
				skipped = p.Tensors[i].Name
			}
		}
		for _, i := range g {
			if p.Tensors[i].Action == ActionQuantize && skipped == "" {
				stored = &p.Tensors[i]
				break
			}
		}
		var names, notes []string
		for _, i := range g {
			t := &p.Tensors[i]
			names = append(names, strconv.Quote(t.Name))
			if t.DType != first.DType || !slices.Equal(t.Shape, first.Shape) {
				return fmt.Errorf("%w: tied: %q (%v %v) and %q (%v %v) cannot share storage", ErrOption, t.Name, t.DType, t.Shape, first.Name, first.DType, first.Shape)
			}
			if t == stored {
				continue
			}
			switch {
			case t.Action == ActionKeep && stored.Action == ActionQuantize:
				notes = append(notes, fmt.Sprintf("%q alone would stay float (%s)", t.Name, t.Reason))
			case t.Action == ActionQuantize && skipped != "":
				notes = append(notes, fmt.Sprintf("%q is skipped, so %q stays float with it", skipped, t.Name))
			case t.Action == ActionQuantize && !sameSpec(&t.Spec, &stored.Spec):
				notes = append(notes, fmt.Sprintf("%q's own rule (%s) gives way", t.Name, t.Spec.Format))
			}
			*t = TensorPlan{Name: t.Name, DType: t.DType, Shape: t.Shape, Layer: t.Layer, LayerType: t.LayerType,
				Action: ActionAlias, AliasOf: stored.Name, Rule: -1,
				Reason: fmt.Sprintf("shares storage with %q, stored once under that name", stored.Name)}
			changed = true
		}
		if stored.Action == ActionQuantize && skipped != "" { // the first member itself was selected
			notes = append(notes, fmt.Sprintf("%q is skipped, so %q stays float with it", skipped, stored.Name))
			*stored = TensorPlan{Name: stored.Name, DType: stored.DType, Shape: stored.Shape, Layer: stored.Layer, LayerType: stored.LayerType,
				Action: ActionKeep, Rule: -1, Reason: fmt.Sprintf("tied to %q, which is skipped", skipped)}
			changed = true
		}
		how := "kept as it is"
		if stored.Action == ActionQuantize {
			how = fmt.Sprintf("quantized to %s as the %s layer %q's rule says", stored.Spec.Format, stored.LayerType, stored.Layer)
		}
		msg := fmt.Sprintf("%s share one storage: stored once as %q, %s; loading ties them again", strings.Join(names, " and "), stored.Name, how)
		if len(notes) > 0 {
			msg += " (" + strings.Join(notes, "; ") + ")"
		}
		p.Warnings = append(p.Warnings, warning.Warning{Code: warning.Tied, Tensor: stored.Name, Layer: stored.Layer, Message: msg})
	}
	if changed { // a layer whose only quantized tensor is now an alias is no longer quantized
		live := map[string]bool{}
		for _, t := range p.Quantized() {
			live[t.Layer] = true
		}
		for l := range p.Layers {
			if !live[l] {
				delete(p.Layers, l)
				delete(p.Activations, l)
				delete(p.Observers, l)
			}
		}
	}
	return nil
}

// sameSpec reports whether two tensors would be quantized the same way.
func sameSpec(a, b *quant.Spec) bool {
	return a.Format == b.Format && a.Scheme == b.Scheme && a.Granularity == b.Granularity && a.Axis == b.Axis && a.GroupSize == b.GroupSize && a.QDType == b.QDType
}

func paramOrName(param, name string) string {
	if param != "" {
		return param
	}
	return name
}

func typeList(m map[LayerType]bool) string {
	var out []string
	for _, t := range allLayerTypes {
		if m[t] {
			out = append(out, string(t))
		}
	}
	return strings.Join(out, ", ")
}

// minFallbackGroup is the smallest group the group-size fallback accepts: below it the scales
// cost more than INT8 per-channel (16 values share 32 bits of scale, 2 bits per weight).
const minFallbackGroup = 16

// smallInt4Elements: INT4 on a tensor with fewer weights than this draws a warning; small
// layers have little redundancy and cost little memory, so 4 bits save little and lose much.
const smallInt4Elements = 1 << 16

// planSpec fills the tensor's spec from the (normalized) template: the channel axis for
// per-channel, the 2-D view [shape[0], rest] and the group size (with its fallback) for
// group-wise.
func planSpec(tp *TensorPlan, tmpl quant.Spec, axis int, fallback bool) error {
	s := tmpl
	shape := tp.Shape
	qshape := append([]int(nil), shape...)
	switch {
	case !s.Format.IsInteger():
	case s.Granularity == quant.PerChannel:
		s.Axis = axis
	case s.Granularity == quant.PerGroup:
		rows, k := shape[0], tensor.NumElements(shape[1:])
		qshape = []int{rows, k}
		if gs := s.GroupSize; k%gs != 0 {
			if !fallback {
				return fmt.Errorf("group_size %d does not divide the row length %d (give a group size that divides it, or allow group_fallback)", gs, k)
			}
			// The largest divisor of the row not above the group size and not below
			// minFallbackGroup, or the group size itself when that is smaller (a group of 8
			// that does not divide the row has no smaller fallback: it goes to INT8).
			fb, lo := 0, min(minFallbackGroup, gs)
			for d := min(gs, k); d >= lo; d-- {
				if k%d == 0 {
					fb = d
					break
				}
			}
			w := warning.Warning{Code: warning.GroupFallback, Tensor: tp.Name, Layer: tp.Layer}
			if fb > 0 {
				w.Message = fmt.Sprintf("group size %d does not divide the row length %d; using group size %d", gs, k, fb)
				s.GroupSize = fb
			} else {
				w.Message = fmt.Sprintf("group size %d does not divide the row length %d and no group size from %d to %d does; using INT8 per-channel", gs, k, lo, gs)
				if lo == gs { // a group below 16 has no smaller fallback
					w.Message = fmt.Sprintf("group size %d does not divide the row length %d; using INT8 per-channel", gs, k)
				}
				s = quant.Spec{Format: quant.Int8, Scheme: tmpl.Scheme, Granularity: quant.PerChannel, Axis: axis,
					Eps: tmpl.Eps, NonFinite: tmpl.NonFinite, ReduceRange: tmpl.ReduceRange, QDType: quant.QInt8}
				if tmpl.QDType == quant.QUInt4 {
					s.QDType = quant.QUInt8
				}
				qshape = append([]int(nil), shape...)
			}
			tp.Warnings = append(tp.Warnings, w)
		}
	}
	if s.Format == quant.Int4 && tensor.NumElements(shape) < smallInt4Elements {
		tp.Warnings = append(tp.Warnings, warning.Warning{Code: warning.Int4Small, Tensor: tp.Name, Layer: tp.Layer,
			Message: fmt.Sprintf("INT4 on a small tensor (%d weights < %d): the saving is small and the error large", tensor.NumElements(shape), smallInt4Elements)})
	}
	if _, err := s.Normalize(qshape); err != nil {
		return err
	}
	tp.Spec, tp.QuantShape = s, qshape
	return nil
}

// firstLastWarnings: the first and last layers (the ones touching the input and the output)
// are the most sensitive to quantization error.
func firstLastWarnings(p *Plan) []warning.Warning {
	var cand []string
	seen := map[string]bool{}
	for _, t := range p.Tensors {
		if t.LayerType.Quantizable() && t.LayerType != Embedding && !seen[t.Layer] && len(t.Shape) >= 2 && t.DType.IsFloat() {
			seen[t.Layer] = true
			cand = append(cand, t.Layer)
		}
	}
	if len(cand) == 0 {
		return nil
	}
	cand, inferred := layerOrder(cand)
	note := ""
	if inferred {
		note = "; the file lists its tensors sorted by name, so this order was inferred from the names"
	}
	var out []warning.Warning
	first, last := cand[0], cand[len(cand)-1]
	if _, ok := p.Layers[first]; ok {
		out = append(out, warning.Warning{Code: warning.FirstLayer, Layer: first,
			Message: fmt.Sprintf("the first layer %q is quantized; it sees the raw input and is often the most sensitive (skip it if accuracy drops)%s", first, note)})
	}
	if _, ok := p.Layers[last]; ok && last != first {
		out = append(out, warning.Warning{Code: warning.LastLayer, Layer: last,
			Message: fmt.Sprintf("the last layer %q is quantized; it produces the output and is often the most sensitive (skip it if accuracy drops)%s", last, note)})
	}
	return out
}

// layerOrder returns the layers in forward order as far as the checkpoint tells: its own order
// (a torch state_dict or module lists them as they were registered), unless the names are
// sorted — safetensors files (and some tools) sort tensors by name, which says nothing about the
// forward order ("lm_head" before "model.layers.0", "layers.10" before "layers.2"). Then the order
// is inferred from the names (inferred reports whether that changed anything): input-side modules (embeddings, stems) first,
// heads (lm_head, classifier, …) last, block numbers compared as numbers, and inside a block
// attention before the MLP, each one's input projections before its output projection.
func layerOrder(layers []string) (ordered []string, inferred bool) {
	if len(layers) < 3 || !slices.IsSorted(layers) {
		return layers, false
	}
	out := slices.Clone(layers)
	slices.SortStableFunc(out, compareLayerNames)
	return out, !slices.Equal(out, layers)
}

func compareLayerNames(a, b string) int {
	if sa, sb := nameStage(a), nameStage(b); sa != sb {
		return sa - sb
	}
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < min(len(pa), len(pb)); i++ {
		x, y := pa[i], pb[i]
		if x == y {
			continue
		}
		nx, ex := strconv.Atoi(x)
		ny, ey := strconv.Atoi(y)
		switch {
		case ex == nil && ey == nil:
			return nx - ny
		case subRank(x) != subRank(y):
			return subRank(x) - subRank(y)
		}
		return strings.Compare(x, y)
	}
	return len(pa) - len(pb) // a module before its children (self_attn's in_proj before out_proj)
}

// nameStage is 0 for input-side modules, 2 for output heads, 1 for the rest.
func nameStage(name string) int {
	stage := 1
	for _, c := range strings.Split(strings.ToLower(name), ".") {
		switch {
		case c == "lm_head" || c == "classifier" || c == "head" || c == "heads" || c == "score" || c == "logits" || c == "pooler" || c == "fc_out" || c == "output_layer":
			return 2
		case strings.Contains(c, "embed") || c == "stem" || c == "wte" || c == "wpe" || c == "conv_in":
			stage = 0
		}
	}
	return stage
}

// subRank orders the parts of a transformer block: attention (and its q/k/v input
// projections) 0, attention output projection 1, MLP (and its input projections) 2, MLP output
// projection 3; 4 for names it does not know.
func subRank(c string) int {
	switch strings.ToLower(c) {
	case "self_attn", "attn", "attention", "self_attention", "q_proj", "k_proj", "v_proj", "qkv", "qkv_proj", "in_proj", "query", "key", "value", "c_attn", "wq", "wk", "wv", "wqkv":
		return 0
	case "o_proj", "out_proj", "wo":
		return 1
	case "mlp", "ffn", "feed_forward", "feedforward", "gate_proj", "up_proj", "fc1", "linear1", "w1", "w3", "c_fc", "intermediate":
		return 2
	case "down_proj", "fc2", "linear2", "w2":
		return 3
	}
	return 4
}

// classifier assigns tensors to layers.
type classifier struct {
	modules map[string]string   // module path → class name (last component) that types it
	chains  map[string][]string // module path → its classes, most derived first (short names)
	rnnH    map[string]int      // recurrent module → hidden size, from weight_hh / weight_hr
	byName  map[string]checkpoint.Entry
}

var rnnParam = regexp.MustCompile(`^(weight|bias)_(ih|hh|hr)_l(\d+)(_reverse)?$`)

func newClassifier(entries []checkpoint.Entry, moduleTypes map[string]string) *classifier {
	c := &classifier{rnnH: map[string]int{}, byName: map[string]checkpoint.Entry{}}
	if len(moduleTypes) > 0 {
		c.modules, c.chains = map[string]string{}, map[string][]string{}
		for k, v := range moduleTypes {
			c.modules[k] = knownClass(v)
			for _, n := range strings.Split(v, ",") {
				n = strings.TrimSpace(n)
				c.chains[k] = append(c.chains[k], n[strings.LastIndex(n, ".")+1:])
			}
		}
	}
	for _, e := range entries {
		c.byName[e.Name] = e
	}
	for _, e := range entries {
		mod, param := names.Split(e.Name)
		m := rnnParam.FindStringSubmatch(param)
		if m == nil || m[1] != "weight" || len(e.Shape) != 2 {
			continue
		}
		switch m[2] {
		case "hr": // LSTM with proj_size: weight_hr is [proj, H]
			c.rnnH[mod] = e.Shape[1]
		case "hh":
			if _, ok := c.rnnH[mod]; !ok {
				if _, proj := c.byName[prefixed(mod, "weight_hr_l"+m[3]+m[4])]; !proj {
					c.rnnH[mod] = e.Shape[1]
				}
			}
		}
	}
	return c
}

func prefixed(mod, param string) string {
	if mod == "" {
		return param
	}
	return mod + "." + param
}

// splitName splits "a.b.weight" into module "a.b" and parameter "weight".

func isWeightParam(lt LayerType, param string) bool {
	switch lt {
	case LSTM, GRU, RNN:
		m := rnnParam.FindStringSubmatch(param)
		return m != nil && m[1] == "weight"
	case Linear:
		return param == "weight" || param == "in_proj_weight" || strings.HasSuffix(param, "_proj_weight")
	}
	return param == "weight"
}

// classTypes maps torch.nn class names to layer types. NonDynamicallyQuantizableLinear is the
// out_proj of MultiheadAttention; Conv1D is Hugging Face's transposed linear (GPT-2).
var classTypes = map[string]LayerType{
	"Linear": Linear, "LazyLinear": Linear, "NonDynamicallyQuantizableLinear": Linear, "Conv1D": Linear,
	"MultiheadAttention": Linear,
	"Conv1d":             Conv1d, "LazyConv1d": Conv1d, "ConvTranspose1d": Conv1d,
	"Conv2d": Conv2d, "LazyConv2d": Conv2d, "ConvTranspose2d": Conv2d,
	"Conv3d": Conv3d, "LazyConv3d": Conv3d, "ConvTranspose3d": Conv3d,
	"LSTM": LSTM, "GRU": GRU, "RNN": RNN,
	"Embedding": Embedding, "EmbeddingBag": Embedding,
	"LayerNorm": Norm, "RMSNorm": Norm, "GroupNorm": Norm, "LocalResponseNorm": Norm,
	"BatchNorm1d": Norm, "BatchNorm2d": Norm, "BatchNorm3d": Norm, "SyncBatchNorm": Norm,
	"InstanceNorm1d": Norm, "InstanceNorm2d": Norm, "InstanceNorm3d": Norm,
}

// knownClass picks the class a module is typed by. v is a class name ("Linear",
// "torch.nn.modules.linear.Linear") or, from callers that know a class's bases (Python), the
// names of its method resolution order, most derived first, separated by commas
// ("my.QLinear,torch.nn.modules.linear.Linear,torch.nn.modules.module.Module"): the first one
// monoquant knows decides, so a subclass quantizes as its base.
func knownClass(v string) string {
	names := strings.Split(v, ",")
	for _, n := range names {
		n = strings.TrimSpace(n)
		n = n[strings.LastIndex(n, ".")+1:]
		if _, ok := classTypes[n]; ok {
			return n
		}
	}
	first := strings.TrimSpace(names[0])
	return first[strings.LastIndex(first, ".")+1:]
}

// classify returns a tensor's layer (module path), layer type and parameter name.
func (c *classifier) classify(e checkpoint.Entry) (string, LayerType, string) {
	mod, param := names.Split(e.Name)
	if c.modules != nil {
		if cls, ok := c.modules[mod]; ok {
			if lt, ok := classTypes[cls]; ok {
				return mod, lt, param
			}
			// A subclass or a class torch does not ship: decide by the tensor's shape.
		}
	}
	return mod, c.byShape(mod, param, e), param
}

var embeddingName = regexp.MustCompile(`(?i)(^|[._])(embed|embeds|embedding|embeddings|embed_tokens|wte|wpe|tok_embeddings|word_embeddings|position_embeddings|token_type_embeddings|shared|emb)$`)
var normName = regexp.MustCompile(`(?i)(norm_?\d*|ln_?\d*|bn\d*)$`)

// byShape types a tensor of a bare state_dict (or of an unknown module class) from its name
// and shape: recurrent weights by their parameter names (4H rows → LSTM, 3H → GRU, H → RNN),
// ".weight" by rank (2-D → linear unless the module name says embedding, 3-D → conv1d,
// 4-D → conv2d, 5-D → conv3d, 1-D → norm).
func (c *classifier) byShape(mod, param string, e checkpoint.Entry) LayerType {
	if m := rnnParam.FindStringSubmatch(param); m != nil {
		h, ok := c.rnnH[mod]
		if !ok || h == 0 || len(e.Shape) == 0 {
			return Other
		}
		rows := e.Shape[0]
		if m[2] == "hr" {
			return LSTM // only LSTM has projections
		}
		switch rows / h {
		case 4:
			if rows%h == 0 {
				return LSTM
			}
		case 3:
			if rows%h == 0 {
				return GRU
			}
		case 1:
			if rows == h {
				return RNN
			}
		}
		return Other
	}
	if param == "in_proj_weight" && len(e.Shape) == 2 {
		return Linear
	}
	if param != "weight" {
		// A bias or buffer belongs to the layer its sibling weight says.
		if w, ok := c.byName[prefixed(mod, "weight")]; ok {
			return c.byShape(mod, "weight", w)
		}
		return Other
	}
	leaf := mod[strings.LastIndex(mod, ".")+1:]
	switch len(e.Shape) {
	case 1:
		if normName.MatchString(leaf) {
			return Norm
		}
		return Other
	case 2:
		if embeddingName.MatchString(mod) {
			return Embedding
		}
		return Linear
	case 3:
		return Conv1d
	case 4:
		return Conv2d
	case 5:
		return Conv3d
	}
	return Other
}

// channelAxis is the output-channel axis of a layer's weight: 1 for transposed convolutions
// and Hugging Face's Conv1D (stored [in, out]), 0 for everything else.
func (c *classifier) channelAxis(layer string, _ LayerType) int {
	if c.modules == nil {
		return 0
	}
	switch c.modules[layer] {
	case "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d", "Conv1D":
		return 1
	}
	return 0
}
