package runlog

import (
	"encoding/json"
	"maps"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Row is one line of a comparison: a key and its value in each run ("" where a run has none).
type Row struct {
	Key     string   `json:"key"`
	Values  []string `json:"values"`
	Differs bool     `json:"differs"` // not every run has the same value
}

// Comparison puts runs side by side.
type Comparison struct {
	Runs     []*Run  `json:"-"`
	IDs      []int64 `json:"ids"`
	Settings []Row   `json:"settings"`
	Results  []Row   `json:"results"`
	Layers   []Row   `json:"layers"` // SQNR (dB) per quantized tensor
	Metrics  []Row   `json:"metrics"`
	// Pareto[i] says run i is on the front: no other run is at least as good on every axis and
	// strictly better on one. The axes are size (min) and overall SQNR (max), or, when every run
	// is a trial of one search (the same Settings.Objectives), the search's objectives.
	Pareto []bool `json:"pareto"`
	// Front names the front's axes: "size (min), sqnr_db (max)" or the objectives.
	Front string `json:"front"`
}

// SizeQualityFront is Comparison.Front for the front of size against overall SQNR.
const SizeQualityFront = "size (min), sqnr_db (max)"

// Compare builds the side-by-side view of runs, in the order given.
func Compare(runs []*Run) *Comparison {
	c := &Comparison{Runs: runs}
	settings := make([]map[string]string, len(runs))
	results := make([]map[string]string, len(runs))
	layers := make([]map[string]string, len(runs))
	metrics := make([]map[string]string, len(runs))
	for i, r := range runs {
		c.IDs = append(c.IDs, r.ID)
		settings[i] = SettingsFields(r.Settings)
		settings[i]["input"] = r.Input.Path
		settings[i]["input_digest"] = shortID(r.Input)
		// Six significant digits and the digest's first 16: what tells runs apart on a screen.
		results[i] = map[string]string{"output_bytes": formatFloat(float64(r.Output.Bytes)), "output_digest": shortID(r.Output)}
		for k, v := range r.Results {
			results[i][k] = formatShort(v)
		}
		layers[i] = map[string]string{}
		for _, l := range r.Layers {
			layers[i][l.Name] = formatFloat(round3(l.SQNR)) + " (" + l.Kernel + ")"
		}
		metrics[i] = map[string]string{}
		for k, v := range r.Metrics {
			metrics[i][k] = formatFloat(v)
		}
	}
	c.Settings, c.Results, c.Layers, c.Metrics = rows(settings), rows(results), rows(layers), rows(metrics)
	c.Pareto, c.Front = Pareto(runs), SizeQualityFront
	if goals := sharedObjectives(runs); goals != nil {
		c.Pareto, c.Front = objectivePareto(runs, goals)
	}
	return c
}

// sharedObjectives returns the objectives every run was a trial on, when they are the same
// for all and each run has a metric for each (nil otherwise).
func sharedObjectives(runs []*Run) map[string]string {
	var goals map[string]string
	for i, r := range runs {
		var s struct {
			Objectives map[string]string `json:"objectives"`
		}
		if json.Unmarshal(r.Settings, &s) != nil || len(s.Objectives) == 0 {
			return nil
		}
		if i == 0 {
			goals = s.Objectives
		} else if !maps.Equal(goals, s.Objectives) {
			return nil
		}
		for k := range s.Objectives {
			if _, ok := r.Metrics[k]; !ok {
				return nil
			}
		}
	}
	return goals
}

// objectivePareto marks the non-dominated runs on the objectives' metrics (O(n² k): a
// comparison shows tens of runs, not millions).
func objectivePareto(runs []*Run, goals map[string]string) ([]bool, string) {
	names := sortedKeys(goals)
	pts := make([][]float64, len(runs)) // minimised
	for i, r := range runs {
		for _, k := range names {
			v := r.Metrics[k]
			if goals[k] == "max" {
				v = -v
			}
			pts[i] = append(pts[i], v)
		}
	}
	on := make([]bool, len(runs))
	for i := range runs {
		on[i] = true
		for j := range runs {
			if j != i && dominates(pts[j], pts[i]) {
				on[i] = false
				break
			}
		}
	}
	axes := make([]string, len(names))
	for i, k := range names {
		axes[i] = k + " (" + goals[k] + ")"
	}
	return on, strings.Join(axes, ", ")
}

func dominates(a, b []float64) bool {
	better := false
	for i := range a {
		if a[i] > b[i] {
			return false
		}
		if a[i] < b[i] {
			better = true
		}
	}
	return better
}

// shortID is a file's identity (FileRef.Identity) with the digest cut to 16 hex digits.
func shortID(f FileRef) string {
	alg, h, ok := strings.Cut(f.Identity(), " ")
	if !ok {
		return ""
	}
	return alg + " " + short(h)
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

func formatShort(v float64) string {
	if v >= math.MaxFloat64 {
		return "inf"
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

func round3(v float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return v
	}
	return math.Round(v*1000) / 1000
}

func rows(maps []map[string]string) []Row {
	keys := map[string]bool{}
	for _, m := range maps {
		for k := range m {
			keys[k] = true
		}
	}
	var out []Row
	for _, k := range sortedKeys(keys) {
		r := Row{Key: k, Values: make([]string, len(maps))}
		for i, m := range maps {
			r.Values[i] = m[k]
			if i > 0 && r.Values[i] != r.Values[0] {
				r.Differs = true
			}
		}
		out = append(out, r)
	}
	return out
}

// Pareto marks the runs on the size-versus-quality front (smaller Size, higher Quality). Runs
// without a quality are never on it. Sorting by size makes it O(n log n).
func Pareto(runs []*Run) []bool {
	on := make([]bool, len(runs))
	idx := make([]int, 0, len(runs))
	for i, r := range runs {
		if !math.IsNaN(r.Quality()) {
			idx = append(idx, i)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ra, rb := runs[idx[a]], runs[idx[b]]
		if ra.Size() != rb.Size() {
			return ra.Size() < rb.Size()
		}
		return ra.Quality() > rb.Quality()
	})
	best := math.Inf(-1)
	for j, i := range idx {
		q := runs[i].Quality()
		// Equal size and quality as the previous front member: both are on the front.
		if q > best || (j > 0 && on[idx[j-1]] && runs[idx[j-1]].Size() == runs[i].Size() && runs[idx[j-1]].Quality() == q) {
			on[i] = true
			best = math.Max(best, q)
		}
	}
	return on
}
