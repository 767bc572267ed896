package runlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/monoquant/monoquant/core/observer"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/recipe"
)

// Settings is everything a run was asked to do, enough to run it again.
type Settings struct {
	Options      plan.Options `json:"options"`
	OutputFormat string       `json:"output_format,omitempty"` // "safetensors" or "pt"
	Calibration  string       `json:"calibration,omitempty"`   // calibration file, static mode
	// Recipe is the resolved recipe the run applied (every default filled in, as the output
	// file stores it), so that a later change of defaults shows in a comparison.
	Recipe *recipe.Recipe `json:"recipe,omitempty"`
	// Objectives are a search trial's objectives and their goals ("max" or "min"): the run's
	// metrics of those names are what `runs compare` finds the Pareto front on (RecordTrial).
	Objectives map[string]string `json:"objectives,omitempty"`
}

// EncodeSettings is the one place that turns a run's settings into the JSON the log stores.
// plan.Options round-trips through encoding/json exactly (plain fields, enums as numbers);
// when per-layer recipes replace Options, this function (and DecodeSettings) change alone.
func EncodeSettings(s Settings) (json.RawMessage, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding run settings: %w", err)
	}
	return b, nil
}

// ErrSettings is wrapped by DecodeSettings' errors: stored settings this monoquant cannot read.
var ErrSettings = errors.New("run settings")

// DecodeSettings reads what EncodeSettings wrote. Unknown fields are an error: a run recorded
// by a newer monoquant must not be reproduced with part of its settings silently dropped.
func DecodeSettings(raw json.RawMessage) (Settings, error) {
	var s Settings
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("%w: %v", ErrSettings, err)
	}
	return s, nil
}

// Fields flattens a run into key → text, the keys `runs list --filter` and `runs compare`
// use: id, entry_point, host, input, input_xxh3, input_sha256, output, output_xxh3, output_sha256,
// versions.*, the
// settings ("options.bits", "options.spec.format", …, enums by name), results.* and metrics.*.
func Fields(r *Run) map[string]string {
	f := map[string]string{
		"id": strconv.FormatInt(r.ID, 10), "uuid": r.UUID, "entry_point": r.EntryPoint, "host": r.Host,
		"started": r.Started.UTC().Format("2006-01-02T15:04:05Z"),
		"input":   r.Input.Path, "input_sha256": r.Input.SHA256, "output": r.Output.Path, "output_sha256": r.Output.SHA256,
		"input_xxh3": r.Input.XXH3, "output_xxh3": r.Output.XXH3,
	}
	for k, v := range r.Versions {
		f["versions."+k] = v
	}
	for k, v := range SettingsFields(r.Settings) {
		f[k] = v
	}
	for k, v := range r.Results {
		f["results."+k] = formatFloat(v)
	}
	for k, v := range r.Metrics {
		f["metrics."+k] = formatFloat(v)
	}
	return f
}

// SettingsFields flattens stored settings for display, with the enums by name.
func SettingsFields(raw json.RawMessage) map[string]string {
	out := map[string]string{}
	var generic map[string]any
	if json.Unmarshal(raw, &generic) != nil {
		return out
	}
	rules, _ := generic["recipe"].(map[string]any)
	delete(generic, "recipe")
	flatten("", generic, out)
	if rules != nil {
		// One key per rule and option: recipe.rule_1.dtype = int8, ...
		if rs, ok := rules["rules"].([]any); ok {
			for i, r := range rs {
				flatten(fmt.Sprintf("recipe.rule_%d", i+1), r, out)
			}
		}
		if l, ok := rules["layers"]; ok {
			flatten("recipe.layers", l, out)
		}
	}
	// Enums are numbers in the JSON; show the names users know.
	named := map[string]func(int) string{
		"options.spec.format":               func(i int) string { return quant.Format(i).String() },
		"options.spec.scheme":               func(i int) string { return quant.Scheme(i).String() },
		"options.spec.granularity":          func(i int) string { return quant.Granularity(i).String() },
		"options.spec.qdtype":               func(i int) string { return quant.QDType(i).String() },
		"options.mode":                      func(i int) string { return plan.Mode(i).String() },
		"options.activationobserver.kind":   func(i int) string { return observer.Kind(i).String() },
		"options.activationobserver.dtype":  func(i int) string { return quant.QDType(i).String() },
		"options.activationobserver.scheme": func(i int) string { return quant.Scheme(i).String() },
	}
	for k, name := range named {
		if v, ok := out[k]; ok {
			if i, err := strconv.Atoi(v); err == nil {
				// The zero value means "the default" (Options' own convention).
				if out[k] = name(i); i == 0 && strings.HasSuffix(out[k], "(0)") {
					out[k] = "default"
				}
			}
		}
	}
	return out
}

func flatten(prefix string, v any, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			key := strings.ToLower(k)
			if prefix != "" {
				key = prefix + "." + key
			}
			flatten(key, e, out)
		}
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = fmt.Sprint(e)
		}
		out[prefix] = strings.Join(parts, ",")
	case nil:
		out[prefix] = ""
	case float64:
		out[prefix] = formatFloat(x)
	default:
		out[prefix] = fmt.Sprint(x)
	}
}

func formatFloat(v float64) string {
	if v >= math.MaxFloat64 {
		return "inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
