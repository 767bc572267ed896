// Package recipe holds the one policy every caller shares: which layers are quantized and how.
//
// A Recipe is an ordered list of Rules; for each tensor the first rule whose pattern selects it
// decides (see Match for the one pattern syntax). A rule takes the option names a call takes —
// bits, dtype, group_size, group_fallback, scheme, observer, activations, method, outliers,
// outlier_threshold — and skip:
//
//	{"rules": [
//	  {"match": "blocks.*.fc2", "bits": 4, "group_size": 32},
//	  {"match": "head", "skip": true},
//	  {"match": "*", "bits": 8}
//	]}
//
// The options of the call itself (Python's quantize(bits=..., skip=...), the CLI's flags, the C
// config) act as one more rule, the base: a rule's unset options come from the base, the base's
// unset options from the defaults below. The call's skip patterns come first, as skip rules,
// so they win over the recipe. Resolve writes the whole thing out with every default filled in
// (the resolved recipe), which is stored in every quantized file: run again, it gives the same
// decisions whatever the defaults of a later version are.
//
// Defaults: bits 8 (INT8 per-channel); INT4 groups of DefaultGroupSize values, falling back per
// tensor to a smaller group (or INT8) with a warning when the default does not divide a row — a
// group size you give is used as is and a tensor it does not fit is an error, unless
// group_fallback is true; symmetric scheme; method "rtn"; activations "static" when calibration
// data is given, else "dynamic" for INT8 (per batch at run time, torch's quantize_dynamic) and
// "none" (weight-only) for the other formats; the static activation observer "histogram";
// LLM.int8() outlier handling off, and when turned on (outliers true) the threshold
// DefaultOutlierThreshold.
package recipe

import (
	"bytes"
	"maps"

	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/monoquant/monoquant/core/fold"
	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/prune"
)

// ErrOption is wrapped by every error about an option of a call or a rule.
var ErrOption = errors.New("invalid option")

// ErrRecipe is wrapped by every error about a recipe (and matches ErrOption too); the message
// names the rule (by its 1-based position and pattern) and the problem.
var ErrRecipe error = &sentinel{"invalid recipe", ErrOption}

type sentinel struct {
	msg    string
	parent error
}

func (s *sentinel) Error() string { return s.msg }
func (s *sentinel) Unwrap() error { return s.parent }

// OptionError is an option's problem: Option is its name as a recipe key ("group_size"), Msg
// the sentence that says what is wrong and names it the same way, so that callers with other
// spellings (the CLI's --group-size) can translate both.
type OptionError struct {
	Option string
	Msg    string
}

func (e *OptionError) Error() string        { return e.Msg }
func (e *OptionError) Is(target error) bool { return target == ErrOption }

func optErr(option, format string, a ...any) error {
	return &OptionError{Option: option, Msg: fmt.Sprintf(format, a...)}
}

// Defaults. They are written here and nowhere else: the C ABI, the CLI and Python read them
// from core (DefaultsJSON).
const (
	DefaultBits      = 8
	DefaultGroupSize = 128
	// DefaultScheme is INT8's; INT4 defaults to DefaultInt4Scheme: on all-MiniLM-L6-v2's 37
	// Linear weights (INT4 g128) asymmetric gains 1.02 dB of mean weight SQNR over symmetric
	// (19.45 against 18.43 dB) at round-to-nearest speed (docs/methods.md).
	DefaultScheme     = "symmetric"
	DefaultInt4Scheme = "asymmetric"
	DefaultObserver   = "histogram"
	DefaultMethod     = "rtn"
	// DefaultOutlierThreshold is LLM.int8()'s (Dettmers et al. 2022, §3.2): an input feature
	// with any |x| >= 6.0 goes through the matmul in float (docs/outliers.md).
	DefaultOutlierThreshold = 6.0
)

// Activation modes: one vocabulary in every caller and in the file config.
const (
	// ActivationsNone: weight-only; activations stay float.
	ActivationsNone = "none"
	// ActivationsDynamic: activations quantized per batch at run time (torch's quantize_dynamic).
	ActivationsDynamic = "dynamic"
	// ActivationsStatic: activations quantized with parameters calibrated ahead of time.
	ActivationsStatic = "static"
)

// Formats, schemes, observers and methods by their canonical names; aliases map to them.
var (
	formatNames = map[string]string{
		"int8": "int8", "int4": "int4", "fp16": "fp16", "bf16": "bf16",
		"float16": "fp16", "half": "fp16", "bfloat16": "bf16",
	}
	schemeNames = map[string]string{
		"symmetric": "symmetric", "sym": "symmetric",
		"asymmetric": "asymmetric", "asym": "asymmetric", "affine": "asymmetric",
	}
	activationNames = map[string]string{
		"none": ActivationsNone, "weight_only": ActivationsNone,
		"dynamic": ActivationsDynamic, "static": ActivationsStatic,
	}
	observerNames = []string{"minmax", "moving_average", "histogram"}
	// Methods lists the weight methods this build knows (core/method).
	Methods = method.Names()
)

// Spellings lists every spelling the engine accepts for an option whose values are names —
// "dtype", "scheme", "activations", "observer", "method" — canonical names and aliases, sorted
// (nil for any other option). Front ends check their flags against it and keep no list of their
// own, so a value one caller takes is taken by all.
func Spellings(option string) []string {
	var out []string
	switch option {
	case "dtype":
		out = slices.Collect(maps.Keys(formatNames))
	case "scheme":
		out = slices.Collect(maps.Keys(schemeNames))
	case "activations":
		out = slices.Collect(maps.Keys(activationNames))
	case "observer":
		out = slices.Clone(observerNames)
	case "method":
		out = slices.Clone(Methods)
	default:
		return nil
	}
	slices.Sort(out)
	return out
}

// Limits on what a recipe may hold, so a hostile file cannot make planning slow.
const (
	maxRecipeBytes = 4 << 20
	maxRules       = 1 << 16
)

// Rule is one line of a recipe. Zero values mean "not set" (taken from the base, then the
// defaults); GroupFallback is a pointer so that false can be set.
type Rule struct {
	// Match selects modules or tensors (see Match). Required.
	Match string `json:"match"`
	// Layers limits the rule to these layer types ("linear", "conv2d", ...). It also opts a
	// type in: a layer whose type is not among the recipe's (or the call's) layer types is
	// quantized only when a rule listing its type selects it.
	Layers []string `json:"layers,omitempty"`
	// Skip leaves what the rule selects in float; a skip rule takes no other option.
	Skip bool `json:"skip,omitempty"`
	// Bits 8, 4 or 16; DType "int8", "int4", "fp16" or "bf16" (bits 16 with dtype bf16 is BF16).
	Bits  int    `json:"bits,omitempty"`
	DType string `json:"dtype,omitempty"`
	// GroupSize is the INT4 group (values per scale along a row); GroupFallback lets a tensor
	// whose rows it does not divide use the largest divisor >= 16, else INT8 per-channel.
	GroupSize     int   `json:"group_size,omitempty"`
	GroupFallback *bool `json:"group_fallback,omitempty"`
	// Scheme "symmetric" or "asymmetric" (integer formats).
	Scheme string `json:"scheme,omitempty"`
	// Activations "none", "dynamic" or "static"; Observer the static mode's activation
	// observer: "minmax", "moving_average" or "histogram".
	Activations string `json:"activations,omitempty"`
	Observer    string `json:"observer,omitempty"`
	// Method is how weights become integers ("rtn": round to nearest).
	Method string `json:"method,omitempty"`
	// Prune zeroes weights before they are quantized (core/prune): "magnitude" (the smallest
	// |w|, a fraction Sparsity of each tensor) or "2:4" (2 of every 4 consecutive weights of a
	// row). The stored format is unchanged: a pruned layer is no smaller in the file.
	Prune    string  `json:"prune,omitempty"`
	Sparsity float64 `json:"sparsity,omitempty"`
	// PruneUnits removes this fraction of the layer's output units (its weight rows and bias)
	// together with the matching inputs of the layer named Into (an FFN's fc1 → fc2): both
	// layers really shrink (core/prune.Units decides which units). Only a caller that holds the
	// live layers applies it (Python's quantize); the file pipeline refuses it. Allowed on a
	// skip rule too (a float layer can lose units).
	PruneUnits float64 `json:"prune_units,omitempty"`
	Into       string  `json:"into,omitempty"`
	// Outliers turns on LLM.int8() outlier handling for INT8 Linear layers with dynamic or
	// static activations: input features whose magnitude reaches OutlierThreshold go through
	// the matmul in float, the rest in INT8. OutlierThreshold (> 0) implies Outliers; unset, it
	// is DefaultOutlierThreshold. Both are pointers so that a rule can turn off (false) what
	// the call turned on.
	Outliers         *bool    `json:"outliers,omitempty"`
	OutlierThreshold *float64 `json:"outlier_threshold,omitempty"`
}

// Recipe is an ordered list of rules plus the layer types that are candidates at all.
type Recipe struct {
	// Layers are the layer types considered (nil: the caller's, else the default selection).
	Layers []string `json:"layers,omitempty"`
	Rules  []Rule   `json:"rules"`
	// Fold lists BatchNorms to fold into the Conv2d/Linear before them (core/fold), each as
	// [layer, norm] or [layer, norm, relu], or {"layer", "norm", "relu", "eps"} (eps: the
	// norm's ε when not torch's default 1e-5).
	Fold []fold.Pair `json:"fold,omitempty"`
}

// Parse reads a recipe from JSON: an object {"layers": [...], "rules": [...]} or just the list of
// rules. Unknown keys are errors naming the rule.
func Parse(data []byte) (*Recipe, error) {
	if len(data) > maxRecipeBytes {
		return nil, fmt.Errorf("%w: %d bytes is more than the %d a recipe may hold", ErrRecipe, len(data), maxRecipeBytes)
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty recipe (want {\"rules\": [...]})", ErrRecipe)
	}
	var raw struct {
		Layers []string          `json:"layers"`
		Rules  []json.RawMessage `json:"rules"`
		Fold   []fold.Pair       `json:"fold"`
	}
	if data[0] == '[' {
		if err := json.Unmarshal(data, &raw.Rules); err != nil {
			return nil, fmt.Errorf("%w: %s", ErrRecipe, jsonMessage(err))
		}
	} else {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: %s (a recipe is {\"layers\": [...], \"rules\": [...], \"fold\": [...]})", ErrRecipe, jsonMessage(err))
		}
		if dec.More() {
			return nil, fmt.Errorf("%w: text after the recipe object", ErrRecipe)
		}
		if raw.Rules == nil {
			return nil, fmt.Errorf("%w: no \"rules\" list", ErrRecipe)
		}
	}
	if len(raw.Rules) > maxRules {
		return nil, fmt.Errorf("%w: %d rules is more than %d", ErrRecipe, len(raw.Rules), maxRules)
	}
	r := &Recipe{Layers: raw.Layers, Rules: make([]Rule, len(raw.Rules)), Fold: raw.Fold}
	for i, m := range raw.Rules {
		dec := json.NewDecoder(bytes.NewReader(m))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r.Rules[i]); err != nil {
			return nil, fmt.Errorf("%w: rule %d: %s", ErrRecipe, i+1, jsonMessage(err))
		}
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// JSONMessage says what encoding/json found in a recipe or options document, in the user's words.
func JSONMessage(err error) string { return jsonMessage(err) }

// jsonMessage says what encoding/json found in the user's words.
func jsonMessage(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "json: ")
	if rest, ok := strings.CutPrefix(msg, "unknown field "); ok {
		return "unknown key " + rest + " (a rule takes match, layers, skip, bits, dtype, group_size, group_fallback, scheme, activations, observer, method, outliers, outlier_threshold, prune, sparsity, prune_units, into)"
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("key %q: %s is not a %s", te.Field, te.Value, te.Type)
	}
	return msg
}

// Load reads a recipe file (JSON), refusing anything but a regular file of bounded size.
func Load(path string) (*Recipe, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("recipe %s: not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRecipeBytes+1))
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", path, err)
	}
	r, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", path, err)
	}
	return r, nil
}

// Validate checks every rule on its own (values, combinations); what depends on the tensors (a
// group size that does not fit, a rule that selects nothing) is checked when a plan is made.
func (r *Recipe) Validate() error {
	if err := fold.Validate(r.Fold); err != nil {
		return fmt.Errorf("%w: %v", ErrRecipe, err)
	}
	for i := range r.Rules {
		if err := r.Rules[i].validate(); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrRecipe, RuleName(i, &r.Rules[i]), err)
		}
	}
	return nil
}

// RuleName names a rule in messages: `rule 2 ("blocks.*.fc2")`.
func RuleName(i int, r *Rule) string {
	return fmt.Sprintf("rule %d (%q)", i+1, r.Match)
}

func (r *Rule) validate() error {
	if _, err := Compile(r.Match); err != nil {
		return fmt.Errorf("match: %v", err)
	}
	for _, l := range r.Layers {
		if strings.TrimSpace(l) == "" {
			return fmt.Errorf("layers: empty layer type")
		}
	}
	if err := r.validatePruning(); err != nil {
		return err
	}
	if r.Skip {
		if r.Prune != "" {
			return fmt.Errorf("prune %q applies to a quantized layer; a skip rule leaves it in float (prune_units may stay)", r.Prune)
		}
		if r.Bits != 0 || r.DType != "" || r.GroupSize != 0 || r.GroupFallback != nil || r.Scheme != "" ||
			r.Activations != "" || r.Observer != "" || r.Method != "" || r.Outliers != nil || r.OutlierThreshold != nil {
			return fmt.Errorf("a skip rule takes no other option (it leaves the layer in float)")
		}
		return nil
	}
	return r.validateOptions()
}

// validatePruning checks the pruning keys of a rule (core/prune).
func (r *Rule) validatePruning() error {
	switch r.Prune {
	case "":
		if r.Sparsity != 0 {
			return optErr("sparsity", "sparsity %v applies to prune \"magnitude\"", r.Sparsity)
		}
	case prune.Magnitude:
		if err := prune.CheckSparsity(r.Sparsity); err != nil {
			return optErr("sparsity", "prune magnitude needs a sparsity between 0 and 1 (exclusive), not %v", r.Sparsity)
		}
	case prune.TwoFour:
		if r.Sparsity != 0 {
			return optErr("sparsity", "sparsity applies to prune \"magnitude\"; 2:4 always removes half")
		}
	default:
		return optErr("prune", "prune %q is not %s", r.Prune, strings.Join(prune.Kinds, " or "))
	}
	if r.PruneUnits != 0 || r.Into != "" {
		if !(r.PruneUnits > 0 && r.PruneUnits < 1) {
			return optErr("prune_units", "prune_units %v must be between 0 and 1 (exclusive): the fraction of output units removed", r.PruneUnits)
		}
		if strings.TrimSpace(r.Into) == "" || strings.ContainsAny(r.Into, "*?[") {
			return optErr("into", "prune_units needs into: the name of the layer that takes these units as inputs (no wildcard), not %q", r.Into)
		}
		if strings.ContainsAny(r.Match, "*?[") {
			return optErr("prune_units", "prune_units removes units of one layer: match %q must name it exactly", r.Match)
		}
	}
	return nil
}

// PrunesUnits reports whether any rule of the recipe removes hidden units (prune_units).
func (r *Recipe) PrunesUnits() bool {
	return r != nil && slices.ContainsFunc(r.Rules, func(x Rule) bool { return x.PruneUnits != 0 })
}

// validateOptions checks the option fields (shared by rules and the base).
func (r *Rule) validateOptions() error {
	if _, err := r.format(); err != nil {
		return err
	}
	if r.GroupSize != 0 {
		if err := CheckGroupSize(r.GroupSize); err != nil {
			return err
		}
	}
	if r.Scheme != "" {
		if _, ok := schemeNames[strings.ToLower(r.Scheme)]; !ok {
			return optErr("scheme", "scheme %q is not symmetric or asymmetric", r.Scheme)
		}
	}
	if r.Activations != "" {
		if _, ok := activationNames[strings.ToLower(r.Activations)]; !ok {
			return optErr("activations", "activations %q is not none, dynamic or static", r.Activations)
		}
	}
	if r.Observer != "" && !slices.Contains(observerNames, strings.ToLower(r.Observer)) {
		return optErr("observer", "observer %q is not %s", r.Observer, strings.Join(observerNames, ", "))
	}
	if r.Method != "" && !slices.Contains(Methods, strings.ToLower(r.Method)) {
		return optErr("method", "method %q is not one of %s", r.Method, strings.Join(Methods, ", "))
	}
	if r.OutlierThreshold != nil {
		if err := CheckOutlierThreshold(*r.OutlierThreshold); err != nil {
			return err
		}
		if r.Outliers != nil && !*r.Outliers {
			return optErr("outlier_threshold", "outlier_threshold %g is given with outliers false; give one or the other", *r.OutlierThreshold)
		}
	}
	return nil
}

// CheckOutlierThreshold accepts a finite threshold > 0: an activation magnitude at or above
// it makes its input feature an outlier (0 or less would make every feature one).
func CheckOutlierThreshold(t float64) error {
	if !(t > 0) || math.IsInf(t, 0) {
		return optErr("outlier_threshold", "outlier_threshold %g must be a finite number > 0 (LLM.int8() uses %g)", t, DefaultOutlierThreshold)
	}
	return nil
}

// CheckGroupSize accepts any even group size >= 2 (whether it fits a tensor is checked per tensor).
func CheckGroupSize(gs int) error {
	if gs < 2 || gs%2 != 0 {
		return optErr("group_size", "group_size %d must be an even number >= 2", gs)
	}
	return nil
}

// format returns the canonical format the rule's bits/dtype ask for ("" when neither is set).
func (r *Rule) format() (string, error) {
	var fromBits string
	switch r.Bits {
	case 0:
	case 8:
		fromBits = "int8"
	case 4:
		fromBits = "int4"
	case 16:
		fromBits = "fp16"
	default:
		return "", optErr("bits", "bits %d is not supported (want 8, 4 or 16)", r.Bits)
	}
	if r.DType == "" {
		return fromBits, nil
	}
	f, ok := formatNames[strings.ToLower(r.DType)]
	if !ok {
		return "", optErr("dtype", "dtype %q is not int8, int4, fp16 or bf16", r.DType)
	}
	if r.Bits != 0 {
		if bitsOf(f) != r.Bits {
			return "", optErr("dtype", "bits %d and dtype %q disagree", r.Bits, r.DType)
		}
	}
	return f, nil
}

func bitsOf(format string) int {
	switch format {
	case "int8":
		return 8
	case "int4":
		return 4
	}
	return 16
}

// Settings are a rule's options with everything resolved: what a tensor it selects becomes.
type Settings struct {
	Format        string `json:"dtype"`                // int8, int4, fp16, bf16
	GroupSize     int    `json:"group_size,omitempty"` // int4
	GroupFallback bool   `json:"group_fallback"`       // int4: may a tensor fall back?
	Scheme        string `json:"scheme,omitempty"`     // integer formats
	Activations   string `json:"activations"`          // none, dynamic, static
	Observer      string `json:"observer,omitempty"`   // static
	Method        string `json:"method"`               // rtn, ...
	// Prune and Sparsity: weights zeroed before quantization (Rule.Prune); never from the base.
	Prune    string  `json:"prune,omitempty"`
	Sparsity float64 `json:"sparsity,omitempty"`
	// OutlierThreshold > 0: LLM.int8() outlier handling with this threshold (int8, dynamic or
	// static activations); 0: off.
	OutlierThreshold float64 `json:"outlier_threshold,omitempty"`
}

// Bits is the storage width of the format.
func (s *Settings) Bits() int { return bitsOf(s.Format) }

// IsInteger reports whether the format has scales (INT8, INT4).
func (s *Settings) IsInteger() bool { return s.Format == "int8" || s.Format == "int4" }

// DefaultActivations is the activation mode when neither a rule nor the call chooses one.
func DefaultActivations(format string, calibrated bool) string {
	switch {
	case format != "int8" && format != "int4":
		return ActivationsNone
	case calibrated:
		return ActivationsStatic
	case format == "int8":
		return ActivationsDynamic
	}
	return ActivationsNone
}

// Resolve gives the settings of a rule over a base (the call's options); calibrated says
// whether the caller has calibration data (it makes "static" the default activation mode and
// is required for it). Errors name the option.
func Resolve(rule, base *Rule, calibrated bool) (Settings, error) {
	var s Settings
	if err := base.validateOptions(); err != nil {
		return s, err
	}
	rf, err := rule.format()
	if err != nil {
		return s, err
	}
	bf, _ := base.format()
	// Options the rule sets itself must make sense with the rule's format; options inherited
	// from the base only apply where they can.
	own := rf != ""
	s.Format = rf
	if s.Format == "" {
		s.Format = bf
	}
	if s.Format == "" {
		s.Format = "int8"
	}
	integer := s.IsInteger()
	if rule.GroupSize != 0 && s.Format != "int4" {
		return s, optErr("group_size", "group_size %d applies to INT4 (bits 4), not %s", rule.GroupSize, s.Format)
	}
	if s.Format == "int4" {
		s.GroupSize = first(rule.GroupSize, base.GroupSize)
		explicit := s.GroupSize != 0
		if !explicit {
			s.GroupSize = DefaultGroupSize
		}
		s.GroupFallback = !explicit
		if fb := firstBool(rule.GroupFallback, base.GroupFallback); fb != nil {
			s.GroupFallback = *fb
		}
	} else if rule.GroupFallback != nil && own {
		return s, optErr("group_fallback", "group_fallback applies to INT4 (bits 4), not %s", s.Format)
	}
	scheme := firstStr(rule.Scheme, base.Scheme)
	switch {
	case rule.Scheme != "" && !integer:
		return s, optErr("scheme", "scheme applies to the integer formats (int8, int4), not %s", s.Format)
	case integer:
		m := strings.ToLower(firstStr(rule.Method, base.Method))
		switch {
		case scheme == "" && (s.Format == "int4" || m == "hqq"):
			// hqq moves the zero point: the scheme that stores one
			scheme = DefaultInt4Scheme
		case scheme == "":
			scheme = DefaultScheme
		}
		s.Scheme = schemeNames[strings.ToLower(scheme)]
		if m == "hqq" && s.Scheme != "asymmetric" {
			return s, optErr("method", "method hqq optimises the zero point and needs the asymmetric scheme, not %s", s.Scheme)
		}
	}
	act := firstStr(rule.Activations, base.Activations)
	if act == "" {
		act = DefaultActivations(s.Format, calibrated)
	}
	s.Activations = activationNames[strings.ToLower(act)]
	if !integer && s.Activations != ActivationsNone {
		if rule.Activations != "" || !own {
			return s, optErr("activations", "activations %q apply to the integer formats; %s layers run weight-only (activations none)", s.Activations, s.Format)
		}
		s.Activations = ActivationsNone
	}
	if s.Activations == ActivationsStatic && !calibrated {
		return s, optErr("activations", "activations static needs calibration data (give calibration data, or choose activations dynamic or none)")
	}
	obs := firstStr(rule.Observer, base.Observer)
	if s.Activations == ActivationsStatic {
		if obs == "" {
			obs = DefaultObserver
		}
		s.Observer = strings.ToLower(obs)
	} else if rule.Observer != "" {
		return s, optErr("observer", "observer %q applies to static activations, and these are %s", rule.Observer, s.Activations)
	}
	s.Method = strings.ToLower(firstStr(rule.Method, base.Method))
	if s.Method == "" {
		s.Method = DefaultMethod
	}
	if !integer && s.Method != DefaultMethod {
		if rule.Method != "" || !own {
			return s, optErr("method", "method %s applies to the integer formats; %s is a float cast", s.Method, s.Format)
		}
		s.Method = DefaultMethod // the base's method does not follow a rule to a float format
	}
	s.Prune, s.Sparsity = rule.Prune, rule.Sparsity
	on, t := outliersOf(rule)
	switch {
	case on == nil:
		on, t = outliersOf(base)
		if on != nil && *on && !(s.Format == "int8" && s.Activations != ActivationsNone) {
			on = nil // the base's outliers do not follow a rule to where they cannot apply
		}
	case rule.OutlierThreshold == nil && base.OutlierThreshold != nil:
		t = *base.OutlierThreshold // a rule that turns outliers on takes the call's threshold
	}
	if on != nil && *on {
		if s.Format != "int8" || s.Activations == ActivationsNone {
			return s, optErr("outliers", "outliers apply to INT8 (bits 8) with dynamic or static activations (the float features of LLM.int8()), not %s with activations %s", s.Format, s.Activations)
		}
		s.OutlierThreshold = t
	}
	return s, nil
}

// outliersOf is whether a rule sets outlier handling (nil: it does not say) and the threshold
// it gives (DefaultOutlierThreshold when it gives none).
func outliersOf(r *Rule) (*bool, float64) {
	t := DefaultOutlierThreshold
	if r.OutlierThreshold != nil {
		t = *r.OutlierThreshold
		on := true
		return &on, t
	}
	return r.Outliers, t
}

func first(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

func firstStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func firstBool(a, b *bool) *bool {
	if a != nil {
		return a
	}
	return b
}

// Resolved is a recipe with the call's options merged in: the call's skips first, the recipe's
// rules, then the base as a final "*" rule, each with its settings resolved. It is what a
// quantized file stores (ResolvedJSON) and what the planner walks.
type Resolved struct {
	Layers []string
	Rules  []ResolvedRule
	// Fold is the recipe's norms to fold (core/fold), as given.
	Fold []fold.Pair
}

// ResolvedRule is one rule with its pattern compiled and its settings resolved.
type ResolvedRule struct {
	Rule     Rule
	Pattern  Pattern
	Settings Settings // zero for skip rules
	// FromCall marks the rules that stand for the call's own options (skips and the base).
	FromCall bool
}

// Merge builds the resolved recipe of a call: skip patterns, an optional recipe and the call's
// options as the base rule; layers are the call's candidate layer types (nil: the recipe's).
func Merge(skip []string, rec *Recipe, base Rule, layers []string, calibrated bool) (*Resolved, error) {
	out := &Resolved{Layers: layers}
	if rec != nil {
		if err := rec.Validate(); err != nil {
			return nil, err
		}
		if out.Layers == nil {
			out.Layers = rec.Layers
		}
		out.Fold = slices.Clone(rec.Fold)
	}
	for _, p := range skip {
		cp, err := Compile(p)
		if err != nil {
			return nil, optErr("skip", "skip: %v", err)
		}
		out.Rules = append(out.Rules, ResolvedRule{Rule: Rule{Match: p, Skip: true}, Pattern: cp, FromCall: true})
	}
	if rec != nil {
		for i := range rec.Rules {
			r := rec.Rules[i]
			cp, _ := Compile(r.Match) // validated
			rr := ResolvedRule{Rule: r, Pattern: cp}
			if !r.Skip {
				s, err := Resolve(&r, &base, calibrated)
				if err != nil {
					return nil, fmt.Errorf("%w: %s: %v", ErrRecipe, RuleName(i, &r), err)
				}
				rr.Settings = s
			}
			out.Rules = append(out.Rules, rr)
		}
	}
	s, err := Resolve(&Rule{}, &base, calibrated)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		// Without a recipe, the call's options all apply to the call's own format: one that
		// cannot is a mistake to point out, not to ignore.
		switch {
		case base.GroupSize != 0 && s.Format != "int4":
			return nil, optErr("group_size", "group_size %d applies to INT4 (bits 4), not %s", base.GroupSize, s.Format)
		case base.GroupFallback != nil && s.Format != "int4":
			return nil, optErr("group_fallback", "group_fallback applies to INT4 (bits 4), not %s", s.Format)
		case base.Scheme != "" && !s.IsInteger():
			return nil, optErr("scheme", "scheme applies to the integer formats (int8, int4), not %s", s.Format)
		case base.Observer != "" && s.Activations != ActivationsStatic:
			return nil, optErr("observer", "observer %q applies to static activations (give calibration data), and these are %s", base.Observer, s.Activations)
		}
		if on, _ := outliersOf(&base); on != nil && *on && s.OutlierThreshold == 0 {
			return nil, optErr("outliers", "outliers apply to INT8 (bits 8) with dynamic or static activations (the float features of LLM.int8()), not %s with activations %s", s.Format, s.Activations)
		}
	}
	if rec != nil && len(rec.Rules) > 0 {
		if last := rec.Rules[len(rec.Rules)-1]; last.Match == "*" && !last.Skip && len(last.Layers) == 0 {
			// The recipe ends with a rule for everything (a stored, resolved recipe always
			// does): the base would never be reached, so it is not added, and the recipe
			// resolves to itself.
			return out, nil
		}
	}
	all, _ := Compile("*")
	out.Rules = append(out.Rules, ResolvedRule{Rule: Rule{Match: "*"}, Pattern: all, Settings: s, FromCall: true})
	return out, nil
}

// Recipe writes the resolved recipe back as a plain Recipe with every option filled in: fed to
// Merge again with no other options, it makes the same decisions.
func (r *Resolved) Recipe() *Recipe {
	out := &Recipe{Layers: slices.Clone(r.Layers), Fold: slices.Clone(r.Fold)}
	for _, rr := range r.Rules {
		if rr.Rule.Skip {
			out.Rules = append(out.Rules, Rule{Match: rr.Rule.Match, Layers: rr.Rule.Layers, Skip: true,
				PruneUnits: rr.Rule.PruneUnits, Into: rr.Rule.Into})
			continue
		}
		s := rr.Settings
		fb := s.GroupFallback
		w := Rule{Match: rr.Rule.Match, Layers: rr.Rule.Layers, DType: s.Format, Scheme: s.Scheme,
			Activations: s.Activations, Observer: s.Observer, Method: s.Method,
			Prune: s.Prune, Sparsity: s.Sparsity, PruneUnits: rr.Rule.PruneUnits, Into: rr.Rule.Into}
		if s.Format == "int4" {
			w.GroupSize, w.GroupFallback = s.GroupSize, &fb
		}
		if s.OutlierThreshold > 0 {
			t := s.OutlierThreshold
			w.OutlierThreshold = &t
		}
		out.Rules = append(out.Rules, w)
	}
	return out
}

// Defaults returns the built-in defaults as data, for callers that show them (Python's
// monoquant.defaults(), the C ABI's mq_defaults_json).
func Defaults() map[string]any {
	return map[string]any{
		"bits": DefaultBits, "group_size": DefaultGroupSize, "scheme": DefaultScheme,
		"observer": DefaultObserver, "method": DefaultMethod, "outlier_threshold": DefaultOutlierThreshold,
		"activations": map[string]string{
			"int8": DefaultActivations("int8", false), "int4": DefaultActivations("int4", false),
			"fp16": ActivationsNone, "bf16": ActivationsNone, "with_calibration_data": ActivationsStatic,
		},
		"methods": slices.Clone(Methods), "observers": slices.Clone(observerNames),
	}
}
