package sensitivity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strconv"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/tensor"
)

// ErrSensitivity is wrapped by every error about the arguments of a sensitivity run (formats,
// layers, outputs, budgets).
var ErrSensitivity = errors.New("invalid sensitivity request")

// ErrNonFinite is wrapped too when an output or a metric holds NaN or Inf.
var ErrNonFinite = errors.New("non-finite value")

func errf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrSensitivity, fmt.Sprintf(format, a...))
}

type nonFinite struct{ error }

func (nonFinite) Is(target error) bool { return target == ErrNonFinite }

func errNonFinite(format string, a ...any) error { return nonFinite{errf(format, a...)} }

func (e nonFinite) Unwrap() error { return e.error }

// DefaultFormats are the formats measured when none are given.
var DefaultFormats = []string{"int8", "int4"}

// Metric names what a table measured.
const (
	MetricOutputSQNR = "output_sqnr" // SQNR of the model's outputs (AddOutput)
	MetricWeightSQNR = "weight_sqnr" // SQNR of the layer's weights (Quantize; the CLI's)
	MetricUser       = "user"        // the caller's metric, higher is better (SetMetric)
)

// Format is one candidate format: a name and the options of a recipe rule (bits, dtype,
// group_size, scheme, method, ...; no match, skip or layers).
type Format struct {
	Name string      `json:"name"`
	Rule recipe.Rule `json:"rule"`
}

// ParseFormats reads a JSON list of formats: names of a format ("int8", "int4", "fp16",
// "bf16") or objects of recipe rule options with an optional "name" ({"bits": 4, "group_size":
// 32, "method": "hqq"}; named "int4-g32-hqq" when "name" is absent). Empty or null input gives
// DefaultFormats. Names must be unique.
func ParseFormats(js []byte) ([]Format, error) {
	js = bytes.TrimSpace(js)
	if len(js) == 0 || string(js) == "null" {
		js, _ = json.Marshal(DefaultFormats)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(js, &items); err != nil {
		return nil, errf("formats: want a JSON list of format names or rule objects: %v", err)
	}
	if len(items) == 0 {
		return nil, errf("formats: the list is empty (give at least one, e.g. [\"int8\", \"int4\"])")
	}
	var out []Format
	seen := map[string]bool{}
	for i, raw := range items {
		var f Format
		var name string
		if err := json.Unmarshal(raw, &name); err == nil {
			f.Rule.DType = name
		} else {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(raw, &obj); err != nil {
				return nil, errf("formats[%d]: want a format name or an object of rule options, got %s", i, raw)
			}
			if n, ok := obj["name"]; ok {
				if err := json.Unmarshal(n, &f.Name); err != nil || f.Name == "" {
					return nil, errf("formats[%d]: name must be a non-empty string", i)
				}
				delete(obj, "name")
			}
			for _, k := range []string{"match", "skip", "layers"} {
				if _, ok := obj[k]; ok {
					return nil, errf("formats[%d]: %q is not a format option (a format says what a layer becomes: bits, dtype, group_size, scheme, method, ...)", i, k)
				}
			}
			b, _ := json.Marshal(obj)
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&f.Rule); err != nil {
				return nil, errf("formats[%d]: %v", i, err)
			}
		}
		// The engine's own check of the options: a one-rule recipe that must parse.
		r := f.Rule
		r.Match = "*"
		rec := &recipe.Recipe{Rules: []recipe.Rule{r}}
		if err := rec.Validate(); err != nil {
			return nil, fmt.Errorf("formats[%d]: %w", i, err)
		}
		if f.Name == "" {
			f.Name = autoName(f.Rule)
		}
		if seen[f.Name] {
			return nil, errf("formats[%d]: the name %q is taken by an earlier format (give each a distinct \"name\")", i, f.Name)
		}
		seen[f.Name] = true
		out = append(out, f)
	}
	return out, nil
}

func autoName(r recipe.Rule) string {
	var parts []string
	switch {
	case r.DType != "":
		parts = append(parts, strings.ToLower(r.DType))
	case r.Bits == 16:
		parts = append(parts, "fp16")
	case r.Bits != 0:
		parts = append(parts, "int"+strconv.Itoa(r.Bits))
	default:
		parts = append(parts, "default")
	}
	if r.GroupSize != 0 {
		parts = append(parts, "g"+strconv.Itoa(r.GroupSize))
	}
	if r.Scheme != "" {
		parts = append(parts, strings.ToLower(r.Scheme))
	}
	if r.Method != "" {
		parts = append(parts, strings.ToLower(r.Method))
	}
	if r.Activations != "" {
		parts = append(parts, strings.ToLower(r.Activations))
	}
	return strings.Join(parts, "-")
}

// Layer is one layer of the table: the base options quantize it.
type Layer struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Params is the number of weights of its quantized tensors; Bytes what they take as they
	// are (float).
	Params int64 `json:"params"`
	Bytes  int64 `json:"bytes"`
	// Tensors are its quantized tensors.
	Tensors []string `json:"tensors"`
}

// Candidate is one (layer, format) to measure, with the recipe that quantizes that layer alone.
type Candidate struct {
	Layer  string         `json:"layer"`
	Format string         `json:"format"`
	Recipe *recipe.Recipe `json:"recipe"`
	// BytesAfter is what the layer's tensors take stored in this format.
	BytesAfter int64 `json:"bytes_after"`
}

type cell struct {
	bytesAfter      int64
	wSignal, wNoise float64
	weighed         bool
	oSignal, oNoise float64
	outputs         int
	metric          float64
	hasMetric       bool
	cfg             map[string][]byte // planned tensor configs (JSON), to check Quantize
}

// Session measures a table. It is not safe for concurrent use.
type Session struct {
	base        plan.Options
	moduleTypes map[string]string
	layers      []Layer
	byLayer     map[string]int
	formats     []Format
	byFormat    map[string]int
	cells       [][]cell // [layer][format]
	otherBytes  int64
	baseline    float64
	hasBaseline bool
}

// New plans the table: the layers the base options quantize in r (weights are not read), each
// with every format applied to it alone. The base's own recipe chooses the layers; the
// formats then replace what it does with them.
func New(r checkpoint.Reader, base plan.Options, formats []Format) (*Session, error) {
	if len(formats) == 0 {
		var err error
		if formats, err = ParseFormats(nil); err != nil {
			return nil, err
		}
	}
	p, err := plan.PlanReader(r, base)
	if err != nil {
		return nil, err
	}
	s := &Session{base: base, moduleTypes: maps.Clone(r.ModuleTypes()), byLayer: map[string]int{}, formats: formats, byFormat: map[string]int{}}
	for i, f := range formats {
		s.byFormat[f.Name] = i
	}
	for _, name := range p.LayerNames() {
		l := Layer{Name: name, Type: string(p.Layers[name])}
		for _, t := range p.Quantized() {
			if t.Layer == name {
				l.Tensors = append(l.Tensors, t.Name)
				l.Params += int64(tensor.NumElements(t.Shape))
				l.Bytes += int64(tensor.NumElements(t.Shape)) * int64(t.DType.Size())
			}
		}
		s.byLayer[name] = len(s.layers)
		s.layers = append(s.layers, l)
	}
	s.cells = make([][]cell, len(s.layers))
	inLayer := map[string]bool{}
	for _, l := range s.layers {
		for _, t := range l.Tensors {
			inLayer[t] = true
		}
	}
	for _, e := range r.Entries() {
		if !inLayer[e.Name] {
			s.otherBytes += int64(tensor.NumElements(e.Shape)) * int64(e.DType.Size())
		}
	}
	for li, l := range s.layers {
		s.cells[li] = make([]cell, len(formats))
		for fi, f := range formats {
			o := s.optionsFor(l, f)
			cp, err := plan.PlanReader(r, o)
			if err != nil {
				return nil, fmt.Errorf("layer %q as %s: %w", l.Name, f.Name, err)
			}
			d := model.Describe(cp)
			c := &s.cells[li][fi]
			c.cfg = map[string][]byte{}
			for _, td := range d.Tensors {
				if td.Layer != l.Name || td.Action != plan.ActionQuantize {
					continue
				}
				c.bytesAfter += td.After
				c.cfg[td.Name], _ = json.Marshal(td.Config)
			}
			if len(c.cfg) != len(l.Tensors) {
				return nil, errf("layer %q as %s quantizes %d of its %d tensors; a format applies to a whole layer", l.Name, f.Name, len(c.cfg), len(l.Tensors))
			}
		}
	}
	if len(s.layers) == 0 {
		return nil, fmt.Errorf("%w: the options select no layer to measure", plan.ErrNothingToQuantize)
	}
	return s, nil
}

// RecipeFor returns the recipe that quantizes layer alone, as format f: one rule for the layer
// (its type listed, so it is selected whatever the call's layer types) and a final skip of
// everything else.
func candidateRecipe(l Layer, f Format) *recipe.Recipe {
	r := f.Rule
	r.Match = l.Name
	r.Layers = []string{l.Type}
	return &recipe.Recipe{Rules: []recipe.Rule{r, {Match: "*", Skip: true}}}
}

func (s *Session) optionsFor(l Layer, f Format) plan.Options {
	o := s.base
	o.Recipe = candidateRecipe(l, f)
	o.Skip = nil
	return o
}

// Layers lists the table's layers in model order.
func (s *Session) Layers() []Layer { return s.layers }

// Formats lists the formats.
func (s *Session) Formats() []Format { return s.formats }

// Candidates lists every (layer, format) in model order, formats in the order given.
func (s *Session) Candidates() []Candidate {
	var out []Candidate
	for li, l := range s.layers {
		for fi, f := range s.formats {
			out = append(out, Candidate{Layer: l.Name, Format: f.Name, Recipe: candidateRecipe(l, f), BytesAfter: s.cells[li][fi].bytesAfter})
		}
	}
	return out
}

func (s *Session) cell(layer, format string) (*cell, error) {
	li, ok := s.byLayer[layer]
	if !ok {
		names := make([]string, 0, min(len(s.layers), 8))
		for _, l := range s.layers[:min(len(s.layers), 8)] {
			names = append(names, l.Name)
		}
		return nil, errf("layer %q is not in the table (its layers: %s%s)", layer, strings.Join(names, ", "), map[bool]string{true: ", ...", false: ""}[len(s.layers) > 8])
	}
	fi, ok := s.byFormat[format]
	if !ok {
		names := make([]string, len(s.formats))
		for i, f := range s.formats {
			names[i] = f.Name
		}
		return nil, errf("format %q is not in the table (its formats: %s)", format, strings.Join(names, ", "))
	}
	return &s.cells[li][fi], nil
}

// Quantize quantizes layer alone as format from r (the reader the session was planned from,
// or one with the same tensors): the stored tensors of that layer only (docs/FORMAT.md), with
// config and report, as model.Model.Quantize gives them. It records the layer's weight SQNR.
func (s *Session) Quantize(ctx context.Context, r checkpoint.Reader, layer, format string) (*model.Result, error) {
	c, err := s.cell(layer, format)
	if err != nil {
		return nil, err
	}
	l := s.layers[s.byLayer[layer]]
	f := s.formats[s.byFormat[format]]
	sub := model.NewModel()
	for _, name := range l.Tensors {
		defer r.Release(name) // a mapped file's pages: one layer resident at a time
		t, err := r.Tensor(name)
		if err != nil {
			return nil, fmt.Errorf("layer %q: %w", layer, err)
		}
		if err := sub.Add(name, t); err != nil {
			return nil, err
		}
	}
	if cls, ok := s.moduleTypes[layer]; ok {
		if err := sub.SetModuleType(layer, cls); err != nil {
			return nil, err
		}
	}
	res, err := sub.Quantize(ctx, s.optionsFor(l, f), nil)
	if err != nil {
		return nil, fmt.Errorf("layer %q as %s: %w", layer, format, err)
	}
	// The layer on its own must be quantized exactly as it would be in the whole model.
	for name, want := range c.cfg {
		got, _ := json.Marshal(res.Config.Tensors[name])
		if !bytes.Equal(got, want) {
			return nil, fmt.Errorf("internal: layer %q as %s: tensor %q quantized on its own as %s, in the model as %s", layer, format, name, got, want)
		}
	}
	c.wSignal, c.wNoise = 0, 0
	for _, tr := range res.Report.Tensors {
		c.wSignal += tr.SignalEnergy
		c.wNoise += tr.NoiseEnergy
	}
	c.weighed = true
	return res, nil
}

// AddOutput adds one batch of outputs: ref of the float model, out of the model with layer
// quantized as format, on the same input (same shape, float). Several outputs of one batch
// (a tuple's tensors) are added one by one.
func (s *Session) AddOutput(layer, format string, ref, out *tensor.Tensor) error {
	c, err := s.cell(layer, format)
	if err != nil {
		return err
	}
	if ref == nil || out == nil {
		return errf("AddOutput: nil tensor")
	}
	if !ref.DType.IsFloat() || !out.DType.IsFloat() {
		return errf("outputs of layer %q as %s: float tensors only, got %v and %v", layer, format, ref.DType, out.DType)
	}
	if !sameShape(ref.Shape, out.Shape) {
		return errf("outputs of layer %q as %s: the reference is %v and the output %v; they must have the same shape", layer, format, ref.Shape, out.Shape)
	}
	a, err := ref.Float32s()
	if err != nil {
		return err
	}
	b, err := out.Float32s()
	if err != nil {
		return err
	}
	var sig, noise float64
	for i, x := range a {
		d := float64(x) - float64(b[i])
		sig += float64(x) * float64(x)
		noise += d * d
	}
	if math.IsNaN(sig+noise) || math.IsInf(sig+noise, 0) {
		return errNonFinite("outputs of layer %q as %s hold NaN or Inf", layer, format)
	}
	c.oSignal += sig
	c.oNoise += noise
	c.outputs++
	return nil
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// SetBaseline sets the user metric of the float model (higher is better).
func (s *Session) SetBaseline(v float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return errNonFinite("the float model's metric is %v; it must be a finite number", v)
	}
	s.baseline, s.hasBaseline = v, true
	return nil
}

// SetMetric sets the user metric (higher is better) of the model with layer quantized as
// format.
func (s *Session) SetMetric(layer, format string, v float64) error {
	c, err := s.cell(layer, format)
	if err != nil {
		return err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return errNonFinite("the metric of layer %q as %s is %v; it must be a finite number", layer, format, v)
	}
	c.metric, c.hasMetric = v, true
	return nil
}
