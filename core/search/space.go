// Package search proposes per-layer recipes and evolves them toward the Pareto front of the
// caller's objectives (accuracy, size, latency, ...): an ask/tell NSGA-II engine.
//
// The caller describes the search space (the layers, with their parameter counts, row lengths
// and sensitivities, and what each may become) and the objectives (named, each minimised or
// maximised). Ask returns a candidate as a recipe.Recipe — one exact-match rule per layer with
// every option set, ending with a "*" skip rule, so any caller (Go, C, Python, the CLI) can
// quantize it; the caller measures it and calls Tell with the objectives, or Fail. Front returns
// the non-dominated trials so far.
//
// The algorithm is NSGA-II (Deb et al. 2002): non-dominated sorting, crowding distance, binary
// tournament selection, uniform crossover over whole layer genes and per-layer mutation. The
// first generation holds the uniform INT8 and FP16 anchors, recipes seeded from the sensitivity
// table when one is given (the most sensitive layers kept at higher precision), size seeds (the
// largest layers, half the weights together, at their narrowest format with each group size, the
// rest INT8) and random ones.
// Everything is drawn from one PCG source seeded by the caller, so the same seed and the same
// sequence of Ask/Tell calls give the same candidates; Save and Load keep that across processes.
//
// A layer's gene is its format (skip, fp16, bf16, int8, int4), INT4 group size, scheme and
// method, and its pruning: unstructured (Space.Prunes: none, 2:4, magnitude:<sparsity>) and, for
// a layer with Into, the fraction of its hidden units removed together with Into's inputs
// (Space.UnitFractions; the recipe's prune_units, core/prune). The space is limited per layer by Limits: {"match": "head", "min_bits": 8} keeps the
// head at INT8 or above, {"match": "*.conv*", "formats": ["int8", "fp16"]} names the formats.
package search

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/prune"

	"github.com/monoquant/monoquant/core/recipe"
)

// ErrSpace is wrapped by every error about a space description.
var ErrSpace = errors.New("invalid search space")

// ErrTrial is wrapped by every error about a Tell or Fail call (unknown trial, bad objectives).
var ErrTrial = errors.New("invalid trial")

// ErrNonFinite (which matches ErrTrial too) is a NaN or infinite objective.
var ErrNonFinite = fmt.Errorf("%w: objective not finite", ErrTrial)

// The formats a layer gene can take, from the most to the least precise.
const (
	FormatSkip = "skip" // left in float
	FormatFP16 = "fp16"
	FormatBF16 = "bf16"
	FormatINT8 = "int8"
	FormatINT4 = "int4"
)

var allFormats = []string{FormatSkip, FormatFP16, FormatBF16, FormatINT8, FormatINT4}

// FormatBits is the storage width of a format (32 for a skipped float layer).
func FormatBits(f string) int {
	switch f {
	case FormatSkip:
		return 32
	case FormatFP16, FormatBF16:
		return 16
	case FormatINT8:
		return 8
	case FormatINT4:
		return 4
	}
	return 0
}

// Bounds keep a hostile space description from making the engine slow or large.
const (
	maxSpaceBytes = 8 << 20
	maxLayers     = 1 << 14
	maxPopulation = 1024
	maxObjectives = 8
	maxChoices    = 64
	// DefaultPopulation is the population size when the space gives none.
	DefaultPopulation = 16
)

// Layer is one quantizable layer of the space.
type Layer struct {
	// Name is the module name; the candidate's rule for it matches exactly this name.
	Name string `json:"name"`
	// Params is the layer's weight count (for the bits-per-weight estimate; 0: counts as 1).
	Params int64 `json:"params,omitempty"`
	// Row is the length of a weight row (in_features); INT4 group sizes that do not divide it are
	// not offered. 0: every group size is offered.
	Row int `json:"row,omitempty"`
	// Sensitivity is how much the metric suffers when this layer alone is quantized coarsely
	// (higher: more sensitive); seeds the first generation when given.
	Sensitivity *float64 `json:"sensitivity,omitempty"`
	// Into names the layer that takes this layer's outputs as its inputs (an FFN's fc1 → fc2):
	// the layer then has a structured-pruning gene, the fraction of its hidden units removed
	// from both (the recipe's prune_units; the space's UnitFractions). Units is the number of
	// hidden units (for the size estimate; 0: the fraction is taken as is).
	Into  string `json:"into,omitempty"`
	Units int    `json:"units,omitempty"`
}

// Limit restricts the layers a pattern (recipe.Match syntax) selects; the first limit that
// selects a layer applies.
type Limit struct {
	Match string `json:"match"`
	// MinBits: no format narrower than this (8: INT8, FP16 or skip).
	MinBits int `json:"min_bits,omitempty"`
	// Formats: only these formats (among the space's).
	Formats []string `json:"formats,omitempty"`
}

// Objective is one measured value of a trial.
type Objective struct {
	Name string `json:"name"`
	// Goal "min" or "max".
	Goal string `json:"goal"`
}

// Space describes what the search may propose.
type Space struct {
	Layers     []Layer     `json:"layers"`
	Objectives []Objective `json:"objectives"`
	// Formats the genes may take (default: skip, fp16, int8, int4).
	Formats []string `json:"formats,omitempty"`
	// GroupSizes for INT4 (default 32, 64, 128).
	GroupSizes []int `json:"group_sizes,omitempty"`
	// Schemes for the integer formats (default symmetric, asymmetric).
	Schemes []string `json:"schemes,omitempty"`
	// Methods (default: every method this build knows that needs no calibration data).
	Methods []string `json:"methods,omitempty"`
	Limits  []Limit  `json:"limits,omitempty"`
	// Prunes are the unstructured pruning choices of every quantized layer: "none", "2:4" (only
	// offered where Row is a multiple of 4) and "magnitude:<sparsity>" (default: none only, as
	// zeros stored in a dense format make no file smaller).
	Prunes []string `json:"prunes,omitempty"`
	// UnitFractions are the structured-pruning choices of a layer with Into (default 0, 0.125,
	// 0.25, 0.5; 0 must be among them: no pruning).
	UnitFractions []float64 `json:"unit_fractions,omitempty"`
	// Population size (default DefaultPopulation).
	Population int `json:"population,omitempty"`
}

// layerChoices is what one layer's gene may take after defaults and limits.
type layerChoices struct {
	formats    []string
	groupSizes []int
	prunes     []string  // unstructured pruning: "none", "2:4", "magnitude:<s>"
	units      []float64 // structured: fractions of hidden units removed ([0] without Into)
}

// PruneNone is the prune choice that prunes nothing.
const PruneNone = "none"

// parsePrune reads a prune choice: the recipe's prune kind and sparsity ("" for none).
func parsePrune(p string) (kind string, sparsity float64, err error) {
	switch {
	case p == PruneNone:
		return "", 0, nil
	case p == prune.TwoFour:
		return prune.TwoFour, 0, nil
	case strings.HasPrefix(p, prune.Magnitude+":"):
		s, err := strconv.ParseFloat(strings.TrimPrefix(p, prune.Magnitude+":"), 64)
		if err == nil {
			err = prune.CheckSparsity(s)
		}
		if err != nil {
			return "", 0, fmt.Errorf("prune %q: want magnitude:<sparsity between 0 and 1>", p)
		}
		return prune.Magnitude, s, nil
	}
	return "", 0, fmt.Errorf("prune %q is not none, 2:4 or magnitude:<sparsity>", p)
}

// ParseSpace reads and checks a space description (JSON, unknown keys are errors).
func ParseSpace(data []byte) (*Space, error) {
	if len(data) > maxSpaceBytes {
		return nil, fmt.Errorf("%w: %d bytes is more than the %d a space may hold", ErrSpace, len(data), maxSpaceBytes)
	}
	var s Space
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %s (a space is {\"layers\": [...], \"objectives\": [...], ...})", ErrSpace, strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: text after the space object", ErrSpace)
	}
	if _, err := s.compile(); err != nil {
		return nil, err
	}
	return &s, nil
}

func spaceErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrSpace, fmt.Sprintf(format, a...))
}

// withDefaults returns a copy of the space with every default filled in.
func (s *Space) withDefaults() Space {
	c := *s
	if len(c.Formats) == 0 {
		c.Formats = []string{FormatSkip, FormatFP16, FormatINT8, FormatINT4}
	}
	if len(c.GroupSizes) == 0 {
		c.GroupSizes = []int{32, 64, 128}
	}
	if len(c.Schemes) == 0 {
		c.Schemes = []string{"symmetric", "asymmetric"}
	}
	if len(c.Methods) == 0 {
		// every method this build knows that needs no data (gptq needs each layer's Hessian),
		// the default first: seeds take the first choice of every gene
		c.Methods = []string{recipe.DefaultMethod}
		for _, name := range recipe.Methods {
			if m, err := method.Parse(name); err == nil && !m.NeedsHessian() && name != recipe.DefaultMethod {
				c.Methods = append(c.Methods, name)
			}
		}
	}
	if len(c.Prunes) == 0 {
		c.Prunes = []string{PruneNone}
	}
	if len(c.UnitFractions) == 0 && slices.ContainsFunc(c.Layers, func(l Layer) bool { return l.Into != "" }) {
		c.UnitFractions = []float64{0, 0.125, 0.25, 0.5}
	}
	if c.Population == 0 {
		c.Population = DefaultPopulation
	}
	return c
}

// compile checks the space and works out each layer's choices.
func (s *Space) compile() ([]layerChoices, error) {
	d := s.withDefaults()
	if len(d.Layers) == 0 {
		return nil, spaceErr("no layers")
	}
	if len(d.Layers) > maxLayers {
		return nil, spaceErr("%d layers is more than %d", len(d.Layers), maxLayers)
	}
	if len(d.Objectives) == 0 {
		return nil, spaceErr("no objectives (want e.g. [{\"name\": \"metric\", \"goal\": \"max\"}, {\"name\": \"size\", \"goal\": \"min\"}])")
	}
	if len(d.Objectives) > maxObjectives {
		return nil, spaceErr("%d objectives is more than %d", len(d.Objectives), maxObjectives)
	}
	seenObj := map[string]bool{}
	for i, o := range d.Objectives {
		if strings.TrimSpace(o.Name) == "" {
			return nil, spaceErr("objective %d has no name", i+1)
		}
		if seenObj[o.Name] {
			return nil, spaceErr("objective %q is named twice", o.Name)
		}
		seenObj[o.Name] = true
		if o.Goal != "min" && o.Goal != "max" {
			return nil, spaceErr("objective %q: goal %q is not min or max", o.Name, o.Goal)
		}
	}
	if d.Population < 4 || d.Population > maxPopulation {
		return nil, spaceErr("population %d is not between 4 and %d", d.Population, maxPopulation)
	}
	if len(d.Formats) > maxChoices || len(d.GroupSizes) > maxChoices || len(d.Schemes) > maxChoices || len(d.Methods) > maxChoices {
		return nil, spaceErr("more than %d choices for one gene", maxChoices)
	}
	for _, f := range d.Formats {
		if !slices.Contains(allFormats, f) {
			return nil, spaceErr("format %q is not one of %s", f, strings.Join(allFormats, ", "))
		}
	}
	for _, g := range d.GroupSizes {
		if err := recipe.CheckGroupSize(g); err != nil {
			return nil, spaceErr("group_sizes: %v", err)
		}
	}
	for _, sc := range d.Schemes {
		if sc != "symmetric" && sc != "asymmetric" {
			return nil, spaceErr("scheme %q is not symmetric or asymmetric", sc)
		}
	}
	for _, m := range d.Methods {
		if !slices.Contains(recipe.Methods, m) {
			return nil, spaceErr("method %q is not one of %s", m, strings.Join(recipe.Methods, ", "))
		}
	}
	if len(d.Prunes) > maxChoices || len(d.UnitFractions) > maxChoices {
		return nil, spaceErr("more than %d choices for one gene", maxChoices)
	}
	for _, p := range d.Prunes {
		if _, _, err := parsePrune(p); err != nil {
			return nil, spaceErr("prunes: %v", err)
		}
	}
	for _, f := range d.UnitFractions {
		if !(f >= 0 && f < 1) {
			return nil, spaceErr("unit_fractions: %v is not at least 0 and below 1", f)
		}
	}
	if len(d.UnitFractions) > 0 && !slices.Contains(d.UnitFractions, 0) {
		return nil, spaceErr("unit_fractions %v: 0 (no structured pruning) must be among them", d.UnitFractions)
	}
	pats := make([]recipe.Pattern, len(d.Limits))
	for i, l := range d.Limits {
		p, err := recipe.Compile(l.Match)
		if err != nil {
			return nil, spaceErr("limit %d (%q): %v", i+1, l.Match, err)
		}
		pats[i] = p
		if l.MinBits != 0 && l.MinBits != 4 && l.MinBits != 8 && l.MinBits != 16 && l.MinBits != 32 {
			return nil, spaceErr("limit %d (%q): min_bits %d is not 4, 8, 16 or 32", i+1, l.Match, l.MinBits)
		}
		for _, f := range l.Formats {
			if !slices.Contains(allFormats, f) {
				return nil, spaceErr("limit %d (%q): format %q is not one of %s", i+1, l.Match, f, strings.Join(allFormats, ", "))
			}
		}
	}
	out := make([]layerChoices, len(d.Layers))
	seen := make(map[string]bool, len(d.Layers))
	for i, l := range d.Layers {
		if strings.TrimSpace(l.Name) == "" || strings.ContainsAny(l.Name, "*?[") {
			return nil, spaceErr("layer %d: name %q is empty or holds a wildcard", i+1, l.Name)
		}
		if seen[l.Name] {
			return nil, spaceErr("layer %q is listed twice", l.Name)
		}
		seen[l.Name] = true
		if l.Params < 0 || l.Row < 0 || l.Units < 0 {
			return nil, spaceErr("layer %q: negative params, row or units", l.Name)
		}
		if l.Into != "" && (l.Into == l.Name || strings.ContainsAny(l.Into, "*?[")) {
			return nil, spaceErr("layer %q: into %q must name another layer, without wildcards", l.Name, l.Into)
		}
		formats := slices.Clone(d.Formats)
		for j, lim := range d.Limits {
			if !pats[j].Match(l.Name) {
				continue
			}
			formats = slices.DeleteFunc(formats, func(f string) bool {
				return FormatBits(f) < lim.MinBits || (len(lim.Formats) > 0 && !slices.Contains(lim.Formats, f))
			})
			break
		}
		var gs []int
		for _, g := range d.GroupSizes {
			if l.Row == 0 || l.Row%g == 0 {
				gs = append(gs, g)
			}
		}
		if len(gs) == 0 {
			formats = slices.DeleteFunc(formats, func(f string) bool { return f == FormatINT4 })
		}
		if len(formats) == 0 {
			return nil, spaceErr("no valid recipe: layer %q has no format left (formats %s, its limits and its row of %d values allow none)",
				l.Name, strings.Join(d.Formats, ", "), l.Row)
		}
		prunes := slices.DeleteFunc(slices.Clone(d.Prunes), func(p string) bool {
			return p == prune.TwoFour && l.Row%4 != 0 // rows of 0 (unknown) allow it
		})
		if len(prunes) == 0 {
			prunes = []string{PruneNone}
		}
		units := []float64{0}
		if l.Into != "" {
			units = d.UnitFractions
		}
		out[i] = layerChoices{formats: formats, groupSizes: gs, prunes: prunes, units: units}
	}
	if !slices.ContainsFunc(out, func(c layerChoices) bool { return len(c.formats) > 1 || c.formats[0] != FormatSkip }) {
		return nil, spaceErr("no valid recipe: every layer is limited to skip, so no candidate would quantize anything")
	}
	return out, nil
}
