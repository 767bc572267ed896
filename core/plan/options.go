package plan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/observer"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/recipe"
)

// ErrOption is wrapped by every error about invalid Options or a bad recipe; the message names
// the option (or the rule). It is recipe.ErrOption: one taxonomy for both packages.
var ErrOption = recipe.ErrOption

// ErrNothingToQuantize is returned when the selection leaves no tensor to quantize.
var ErrNothingToQuantize = errors.New("nothing to quantize")

// OptionErr is an error about one option (a recipe key), wrapping ErrOption: the message starts
// with the option's name.
func OptionErr(option, format string, a ...any) error {
	return &recipe.OptionError{Option: option, Msg: fmt.Sprintf("%s: %s", option, fmt.Sprintf(format, a...))}
}

// Mode is the activation mode of version 1's options, kept as an alias: WeightOnly leaves the
// choice to the defaults, Static is Activations "static" with calibration data.
type Mode int

const (
	// WeightOnly (the zero value) leaves the activation mode to Options.Activations and the
	// defaults (core/recipe).
	WeightOnly Mode = iota
	// Static: Options.Activations "static" and Options.Calibrated.
	Static
)

func (m Mode) String() string {
	if m == Static {
		return "static"
	}
	return "weight_only"
}

// Options choose what is quantized and how: the options of one call, as Python's quantize(),
// the CLI's flags and the C ABI's mq_model_config give them. They become the base rule of a
// recipe (core/recipe): Recipe's rules, first match wins, override them per layer, and the
// defaults of core/recipe fill what neither sets. The zero value is a valid configuration.
type Options struct {
	// Bits 8, 4 or 16 (0: the default, 8); BFloat16 makes 16 BF16 instead of FP16. DType names
	// the format instead ("int8", "int4", "fp16", "bf16"; aliases as in core/recipe).
	Bits     int
	BFloat16 bool
	DType    string
	// Scheme "symmetric" or "asymmetric" (aliases as in core/recipe); Spec.Scheme is the same
	// as a number.
	Scheme string
	// Spec: Scheme, GroupSize, QDType, NonFinite and SaturateFloat16 apply on top of Bits. With
	// Spec.Format set (the C ABI's bits 0) the spec is the template of every tensor of that
	// format, granularity, axis and ranges included (the axis is chosen per layer).
	Spec quant.Spec
	// GroupFallback: may an INT4 tensor whose rows the group size does not divide use a smaller
	// group (or INT8)? nil: only when the group size is the default.
	GroupFallback *bool
	// Recipe holds per-layer rules; nil means the call's options apply to every layer.
	Recipe *recipe.Recipe
	// LayerTypes to quantize; nil means the recipe's, else linear, conv2d and lstm.
	LayerTypes []LayerType
	// Skip holds patterns of modules or tensors to leave alone, in the one syntax of
	// recipe.Match ("fc", "encoder", "classifier.*", "*.lm_head"). They come before the
	// recipe's rules.
	Skip []string
	// Activations "none", "dynamic" or "static" ("" = the default of core/recipe).
	Activations string
	// Calibrated says that calibration data will be given: "static" becomes the default
	// activation mode, and is allowed at all.
	Calibrated bool
	// Mode is version 1's spelling: Static means Activations "static" and Calibrated.
	Mode Mode
	// Method is how weights become integers (core/method: "rtn", the default, "mse", "hqq" or
	// "gptq"); gptq needs each layer's input Hessian in Run.Hessians. MethodOptions tunes the
	// methods (its Hessian field is ignored: Hessians come per layer through Run).
	Method        string
	MethodOptions method.Options
	// Observer names the static activation observer: "minmax", "moving_average" or
	// "histogram" ("" = core/recipe's default). ActivationObserver, when its Kind is set, gives
	// torch's constructor arguments too and is used by every static layer whose observer is
	// of its kind.
	Observer           string
	ActivationObserver observer.Options
	// Runnable, when set, lists the layer types the caller can run once quantized: a selected
	// layer of another type is an error naming it.
	Runnable []LayerType
	// ModuleTypes adds module classes (path → class, as Model.SetModuleType takes them) to the
	// ones a checkpoint names itself, which win: core/convert gives those config.json's
	// architecture implies (ArchitectureModuleTypes).
	ModuleTypes map[string]string
	// RuntimeClasses, when set, lists the module classes the caller can run once quantized
	// (Python's quantized modules stand in for torch's Linear, Conv2d and LSTM). A layer whose
	// module is of another class stays float when the call's options select it (a
	// MultiheadAttention's in_proj_weight under the default layer types), with the reason; a
	// recipe rule that names it is an error.
	RuntimeClasses []string
	// Tied maps a tensor name to the name of an earlier tensor it shares storage with (tied
	// parameters: the same bytes, shape and strides), as checkpoint.Aliases finds them in a
	// torch file (PlanReader adds those) or a caller holding the live tensors gives them. Each
	// group is quantized once and stored once (ActionAlias); the config's aliases re-tie it.
	Tied map[string]string
}

// normalized is Options after defaults and validation: the resolved recipe and the spec
// template.
type normalized struct {
	spec     quant.Spec // template for tensors of spec.Format
	resolved *recipe.Resolved
	types    map[LayerType]bool // candidate layer types
	ruleTyp  []map[LayerType]bool
	actObs   observer.Options
	runnable map[LayerType]bool
	classes  map[string]bool
	mopts    method.Options
	tied     map[string]string
}

// SpecForBits returns the spec template for a bit width: 8 → INT8 per-channel symmetric, 4 →
// INT4 group-wise symmetric with recipe.DefaultGroupSize, 16 → FP16 or BF16.
func SpecForBits(bits int, bf16 bool) (quant.Spec, error) {
	switch bits {
	case 8:
		return quant.Spec{Format: quant.Int8, Scheme: quant.Symmetric, Granularity: quant.PerChannel}, nil
	case 4:
		return quant.Spec{Format: quant.Int4, Scheme: quant.Symmetric, Granularity: quant.PerGroup, GroupSize: recipe.DefaultGroupSize}, nil
	case 16:
		if bf16 {
			return quant.Spec{Format: quant.BFloat16}, nil
		}
		return quant.Spec{Format: quant.Float16}, nil
	}
	return quant.Spec{}, OptionErr("bits", "%d is not supported (want 8, 4 or 16)", bits)
}

// specForFormat is SpecForBits by format name.
func specForFormat(f string) quant.Spec {
	var s quant.Spec
	switch f {
	case "int8":
		s, _ = SpecForBits(8, false)
	case "int4":
		s, _ = SpecForBits(4, false)
	case "bf16":
		s, _ = SpecForBits(16, true)
	default:
		s, _ = SpecForBits(16, false)
	}
	return s
}

// baseRule is the call's options as a recipe rule.
func (o *Options) baseRule() (recipe.Rule, error) {
	b := recipe.Rule{Match: "*", Bits: o.Bits, DType: o.DType, GroupSize: o.Spec.GroupSize, GroupFallback: o.GroupFallback,
		Scheme: o.Scheme, Activations: o.Activations, Observer: o.Observer, Method: o.Method}
	switch {
	case o.Spec.Format != 0:
		b.Bits, b.DType = 0, o.Spec.Format.String()
	case o.BFloat16 && o.DType != "":
		return b, OptionErr("dtype", "give BFloat16 or DType, not both")
	case o.BFloat16:
		if o.Bits != 0 && o.Bits != 16 {
			return b, OptionErr("dtype", "bf16 applies to bits 16, not %d", o.Bits)
		}
		b.Bits, b.DType = 16, "bf16"
	}
	if o.Spec.Scheme != 0 && !(o.Spec.Format != 0 && !o.Spec.Format.IsInteger()) {
		if b.Scheme != "" && b.Scheme != o.Spec.Scheme.String() {
			return b, OptionErr("scheme", "%q and Spec.Scheme %v disagree", b.Scheme, o.Spec.Scheme)
		}
		b.Scheme = o.Spec.Scheme.String()
	}
	if o.Mode == Static {
		if b.Activations != "" && b.Activations != recipe.ActivationsStatic {
			return b, OptionErr("activations", "%q contradicts Mode Static", b.Activations)
		}
		b.Activations = recipe.ActivationsStatic
	} else if o.Mode != WeightOnly {
		return b, OptionErr("mode", "unknown mode %d", int(o.Mode))
	}
	if o.ActivationObserver.Kind != 0 {
		// torch's constructor arguments replace the observer's name whole
		b.Observer = o.ActivationObserver.Kind.String()
	}
	return b, nil
}

func (o *Options) normalize() (*normalized, error) {
	n := &normalized{tied: o.Tied}
	if o.ActivationObserver.Kind != 0 {
		a, err := activationOptions("", o.ActivationObserver)
		if err != nil {
			return nil, err
		}
		n.actObs = a
	}
	base, err := o.baseRule()
	if err != nil {
		return nil, err
	}
	var layerNames []string
	if o.LayerTypes != nil {
		if len(o.LayerTypes) == 0 {
			return nil, OptionErr("layers", "no layer types selected")
		}
		for _, t := range o.LayerTypes {
			layerNames = append(layerNames, string(t))
		}
	}
	res, err := recipe.Merge(o.Skip, o.Recipe, base, layerNames, o.Calibrated || o.Mode == Static)
	if err != nil {
		return nil, err
	}
	n.resolved = res
	if res.Layers == nil {
		for _, t := range DefaultLayerTypes {
			res.Layers = append(res.Layers, string(t))
		}
	}
	if n.types, err = layerSet(res.Layers, "layers"); err != nil {
		return nil, err
	}
	n.ruleTyp = make([]map[LayerType]bool, len(res.Rules))
	for i, rr := range res.Rules {
		if rr.Rule.Layers == nil {
			continue
		}
		if n.ruleTyp[i], err = layerSet(rr.Rule.Layers, recipe.RuleName(i, &rr.Rule)+": layers"); err != nil {
			return nil, err
		}
	}
	if o.Runnable != nil {
		if n.runnable, err = layerSet(layerStrings(o.Runnable), "runnable"); err != nil {
			return nil, err
		}
	}
	if o.RuntimeClasses != nil {
		n.classes = map[string]bool{}
		for _, c := range o.RuntimeClasses {
			n.classes[knownClass(c)] = true
		}
	}
	// The spec template: the call's Spec on top of its format's defaults. Check it against a
	// shape every granularity accepts, so that a bad scheme or qdtype is reported as an option
	// error before any tensor is read.
	baseFormat := res.Rules[len(res.Rules)-1].Settings.Format
	tmpl := specForFormat(baseFormat)
	if o.Spec.Format != 0 {
		tmpl = o.Spec
	}
	// One overflow rule for every model and file: FP16/BF16 saturate to their largest finite
	// value (counted and warned about); nothing writes ±Inf.
	tmpl.NonFinite, tmpl.SaturateFloat16 = o.Spec.NonFinite, true
	if o.Spec.QDType != 0 {
		tmpl.QDType = o.Spec.QDType
	}
	if tmpl.Format.IsInteger() && tmpl.Granularity == 0 {
		tmpl.Granularity = quant.PerChannel
		if tmpl.Format == quant.Int4 {
			tmpl.Granularity = quant.PerGroup
		}
	}
	probe := tmpl
	probe.Axis = 0
	probeShape := []int{2, 1}
	if probe.Granularity == quant.PerGroup {
		probe.GroupSize = 2
		probeShape = []int{2, 2}
	}
	if _, err := probe.Normalize(probeShape); err != nil {
		return nil, OptionErr("spec", "%v", err)
	}
	tmpl.Axis = 0
	n.spec = tmpl
	n.mopts = o.MethodOptions
	n.mopts.Hessian = nil
	return n, nil
}

func layerStrings(ts []LayerType) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = string(t)
	}
	return out
}

// layerSet parses layer type names, each quantizable.
func layerSet(names []string, what string) (map[LayerType]bool, error) {
	out := map[LayerType]bool{}
	for _, s := range names {
		t, err := ParseLayerType(s)
		if err != nil || !t.Quantizable() {
			return nil, OptionErr(what, "%q is not a quantizable layer type (want one of %s)", s, strings.Join(quantizableNames(), ", "))
		}
		out[t] = true
	}
	if len(out) == 0 {
		return nil, OptionErr(what, "no layer types selected")
	}
	return out, nil
}

// specFor turns a rule's settings into the quant.Spec of one tensor: the template when the
// formats agree (the C ABI's full specs), else the format's defaults; the settings' scheme and
// group size on top.
func (n *normalized) specFor(s *recipe.Settings) quant.Spec {
	var spec quant.Spec
	if n.spec.Format.String() == s.Format {
		spec = n.spec
	} else {
		spec = specForFormat(s.Format)
		spec.NonFinite, spec.SaturateFloat16, spec.Eps = n.spec.NonFinite, n.spec.SaturateFloat16, n.spec.Eps
		if spec.Format.IsInteger() && n.spec.Format.IsInteger() && n.spec.QDType != 0 {
			// signedness carries over between the integer formats (qint8 <-> qint4, quint8 <-> quint4)
			if n.spec.QDType.Unsigned() {
				spec.QDType = map[quant.Format]quant.QDType{quant.Int8: quant.QUInt8, quant.Int4: quant.QUInt4}[spec.Format]
			}
		}
	}
	if spec.Format.IsInteger() {
		switch s.Scheme {
		case "asymmetric":
			spec.Scheme = quant.Asymmetric
		default:
			spec.Scheme = quant.Symmetric
		}
		if spec.Granularity == quant.PerGroup {
			spec.GroupSize = s.GroupSize
		}
	}
	return spec
}

// observerFor is the static activation observer of a layer whose rule names kind.
func (n *normalized) observerFor(name string) (observer.Options, error) {
	if n.actObs.Kind != 0 && n.actObs.Kind.String() == name {
		return n.actObs, nil
	}
	return activationOptions(name, observer.Options{})
}

// activationOptions resolves the activation observer: quint8 affine, torch's defaults for
// activations, with the kind chosen by name.
func activationOptions(name string, tmpl observer.Options) (observer.Options, error) {
	if tmpl.Kind != 0 {
		if tmpl.Kind.PerChannel() {
			return tmpl, OptionErr("observer", "%v keeps one range per channel; activations need a per-tensor observer", tmpl.Kind)
		}
		// Refuse what torch's constructor would refuse now, not at the first calibration batch.
		if _, err := observer.New(tmpl); err != nil {
			return tmpl, OptionErr("observer", "%v", err)
		}
		return tmpl, nil
	}
	if name == "" {
		name = recipe.DefaultObserver
	}
	k, err := observer.ParseKind(name)
	if err != nil {
		return tmpl, OptionErr("observer", "%v", err)
	}
	if k.PerChannel() {
		return tmpl, OptionErr("observer", "%q keeps one range per channel; activations need minmax, moving_average or histogram", name)
	}
	tmpl.Kind = k
	if tmpl.DType == 0 {
		tmpl.DType = quant.QUInt8
	}
	if tmpl.Scheme == 0 {
		tmpl.Scheme = quant.Asymmetric
	}
	return tmpl, nil
}

func quantizableNames() []string {
	var out []string
	for _, t := range allLayerTypes {
		if t.Quantizable() {
			out = append(out, string(t))
		}
	}
	sort.Strings(out)
	return out
}

// ParseOptions reads a call's options from JSON, by the names every caller shares (the keys of
// a recipe rule, plus "layers", "skip" and "nonfinite"): {"bits": 4, "group_size": 64,
// "skip": ["lm_head"], "activations": "none"}. Two keys describe the caller rather than choose:
// "runtime_classes" (Options.RuntimeClasses) and "tied" (Options.Tied: {"lm_head.weight":
// "transformer.wte.weight"} for tensors that are one storage, as a live model's tied
// parameters are). Unknown keys are errors. Absent keys leave the
// choice to the defaults. This is how callers that work with names (Python) pass options
// without repeating a default or a check.
func ParseOptions(data []byte) (Options, error) {
	var o Options
	var raw struct {
		Bits          *int     `json:"bits"`
		DType         string   `json:"dtype"`
		GroupSize     *int     `json:"group_size"`
		GroupFallback *bool    `json:"group_fallback"`
		Scheme        string   `json:"scheme"`
		Activations   string   `json:"activations"`
		Observer      string   `json:"observer"`
		Method        string   `json:"method"`
		Layers        []string `json:"layers"`
		Skip          []string `json:"skip"`
		NonFinite     string   `json:"nonfinite"`
		// runtime_classes: the caller's capability, not a choice (see Options.RuntimeClasses)
		RuntimeClasses []string `json:"runtime_classes"`
		// tied: a fact about the caller's tensors, not a choice (see Options.Tied)
		Tied map[string]string `json:"tied"`
	}
	if len(data) > 1<<20 {
		return o, OptionErr("options", "%d bytes of options is more than 1 MiB", len(data))
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&raw); err != nil {
		msg := recipe.JSONMessage(err)
		if rest, ok := strings.CutPrefix(msg, "unknown key "); ok {
			msg = "unknown option " + strings.SplitN(rest, " (", 2)[0] + " (options are bits, dtype, group_size, group_fallback, scheme, activations, observer, method, layers, skip, nonfinite)"
		}
		return o, &recipe.OptionError{Option: "options", Msg: msg}
	}
	if raw.Bits != nil {
		if *raw.Bits == 0 {
			return o, OptionErr("bits", "0 is not supported (want 8, 4 or 16)")
		}
		o.Bits = *raw.Bits
	}
	if raw.GroupSize != nil {
		if err := recipe.CheckGroupSize(*raw.GroupSize); err != nil {
			return o, err
		}
		o.Spec.GroupSize = *raw.GroupSize
	}
	o.DType, o.GroupFallback, o.Scheme, o.Activations, o.Observer, o.Method = raw.DType, raw.GroupFallback, raw.Scheme, raw.Activations, raw.Observer, raw.Method
	o.Skip, o.RuntimeClasses, o.Tied = raw.Skip, raw.RuntimeClasses, raw.Tied
	if raw.Layers != nil {
		o.LayerTypes = []LayerType{}
		for _, l := range raw.Layers {
			t, err := ParseLayerType(l)
			if err != nil {
				return o, err
			}
			o.LayerTypes = append(o.LayerTypes, t)
		}
	}
	switch raw.NonFinite {
	case "", "reject":
	case "clamp":
		o.Spec.NonFinite = quant.ClampNonFinite
	default:
		return o, OptionErr("nonfinite", "%q is not reject or clamp", raw.NonFinite)
	}
	return o, nil
}
