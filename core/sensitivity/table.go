package sensitivity

import (
	"encoding/json"
	"math"
	"sort"

	"github.com/monoquant/monoquant/core/model"
)

// Table is the measured table: the layers ranked most sensitive first, each with one result
// per format. It is plain data (JSON as it is): RecipeFor takes it back, and core/search's
// space takes Sensitivity().
type Table struct {
	// Metric is what Score and Sensitivity come from: MetricOutputSQNR, MetricWeightSQNR or
	// MetricUser.
	Metric string `json:"metric"`
	// Baseline is the user metric of the float model (MetricUser only).
	Baseline *float64 `json:"baseline,omitempty"`
	Formats  []Format `json:"formats"`
	// OtherBytes is what the tensors of no table layer take (kept as they are).
	OtherBytes int64      `json:"other_bytes"`
	Layers     []LayerRow `json:"layers"`
}

// LayerRow is one layer of the table.
type LayerRow struct {
	Layer
	// Index is the layer's position in the model (0 first); Rank is 1 for the most
	// sensitive layer.
	Index int `json:"index"`
	Rank  int `json:"rank"`
	// Sensitivity is the layer's score in its smallest format (ties: the first such format).
	Sensitivity float64 `json:"sensitivity"`
	// Results holds one entry per format, in the table's order of formats.
	Results []Result `json:"results"`
}

// Result is one (layer, format) of the table.
type Result struct {
	Format        string  `json:"format"`
	BytesAfter    int64   `json:"bytes_after"`
	BitsPerWeight float64 `json:"bits_per_weight"`
	// WeightSQNR is the SQNR of the layer's weights (when Quantize ran), OutputSQNR that of
	// the model's outputs (when outputs were added), Metric the user metric (when set).
	WeightSQNR *model.Decibels `json:"weight_sqnr_db,omitempty"`
	OutputSQNR *model.Decibels `json:"output_sqnr_db,omitempty"`
	Metric     *float64        `json:"metric,omitempty"`
	// Score is the damage, larger is worse: 10^(−SQNR/10) for the SQNR metrics, baseline −
	// metric for the user's. Null when the candidate was not measured.
	Score *float64 `json:"score"`
}

func db(signal, noise float64) model.Decibels {
	switch {
	case noise == 0 && signal == 0:
		return model.Decibels(math.NaN())
	case noise == 0:
		return model.Decibels(math.Inf(1))
	}
	return model.Decibels(10 * math.Log10(signal/noise))
}

// nsr is the noise-to-signal ratio, 0 for an exact result; an all-zero signal scores 0 when
// exact and 1 (total loss) otherwise.
func nsr(signal, noise float64) float64 {
	switch {
	case noise == 0:
		return 0
	case signal == 0:
		return 1
	}
	return noise / signal
}

// Table computes the table from what was measured. The metric is the user's when any
// SetMetric was made (SetBaseline is then required), else the output SQNR when any output was
// added, else the weight SQNR.
func (s *Session) Table() (*Table, error) {
	t := &Table{Formats: s.formats, OtherBytes: s.otherBytes, Metric: MetricWeightSQNR}
	for li := range s.cells {
		for fi := range s.cells[li] {
			c := &s.cells[li][fi]
			switch {
			case c.hasMetric:
				t.Metric = MetricUser
			case c.outputs > 0 && t.Metric != MetricUser:
				t.Metric = MetricOutputSQNR
			}
		}
	}
	if t.Metric == MetricUser {
		if !s.hasBaseline {
			return nil, errf("a user metric needs the float model's value too (SetBaseline / mq_sensitivity_set_metric with layer NULL)")
		}
		b := s.baseline
		t.Baseline = &b
	}
	for li, l := range s.layers {
		row := LayerRow{Layer: l, Index: li}
		for fi, f := range s.formats {
			c := &s.cells[li][fi]
			r := Result{Format: f.Name, BytesAfter: c.bytesAfter}
			if l.Params > 0 {
				r.BitsPerWeight = 8 * float64(c.bytesAfter) / float64(l.Params)
			}
			if c.weighed {
				d := db(c.wSignal, c.wNoise)
				r.WeightSQNR = &d
			}
			if c.outputs > 0 {
				d := db(c.oSignal, c.oNoise)
				r.OutputSQNR = &d
			}
			if c.hasMetric {
				v := c.metric
				r.Metric = &v
			}
			var score float64
			ok := true
			switch {
			case t.Metric == MetricUser && c.hasMetric:
				score = s.baseline - c.metric
			case t.Metric == MetricOutputSQNR && c.outputs > 0:
				score = nsr(c.oSignal, c.oNoise)
			case t.Metric == MetricWeightSQNR && c.weighed:
				score = nsr(c.wSignal, c.wNoise)
			default:
				ok = false
			}
			if ok {
				r.Score = &score
			}
			row.Results = append(row.Results, r)
		}
		row.Sensitivity = sensitivityOf(row.Results)
		t.Layers = append(t.Layers, row)
	}
	sort.SliceStable(t.Layers, func(a, b int) bool { return t.Layers[a].Sensitivity > t.Layers[b].Sensitivity })
	for i := range t.Layers {
		t.Layers[i].Rank = i + 1
	}
	return t, nil
}

// sensitivityOf is the score in the smallest measured format (first on ties), 0 when none was
// measured.
func sensitivityOf(rs []Result) float64 {
	best := -1
	for i, r := range rs {
		if r.Score == nil {
			continue
		}
		if best < 0 || r.BytesAfter < rs[best].BytesAfter {
			best = i
		}
	}
	if best < 0 {
		return 0
	}
	return *rs[best].Score
}

// Sensitivity maps each layer to its sensitivity (higher: more sensitive), the form
// core/search's space takes ({"layers": [{"name", ..., "sensitivity"}]}).
func (t *Table) Sensitivity() map[string]float64 {
	out := make(map[string]float64, len(t.Layers))
	for _, l := range t.Layers {
		out[l.Name] = l.Sensitivity
	}
	return out
}

// ParseTable reads a table written as JSON (Table's own form).
func ParseTable(js []byte) (*Table, error) {
	var t Table
	if err := json.Unmarshal(js, &t); err != nil {
		return nil, errf("table: %v", err)
	}
	if len(t.Layers) == 0 {
		return nil, errf("table: no layers")
	}
	names := map[string]bool{}
	for _, f := range t.Formats {
		names[f.Name] = true
	}
	for _, l := range t.Layers {
		if l.Name == "" {
			return nil, errf("table: a layer has no name")
		}
		if len(l.Results) == 0 {
			return nil, errf("table: layer %q has no results", l.Name)
		}
		for _, r := range l.Results {
			if !names[r.Format] {
				return nil, errf("table: layer %q has a result for format %q, which is not among the table's formats", l.Name, r.Format)
			}
			if r.BytesAfter < 0 {
				return nil, errf("table: layer %q as %s has negative bytes", l.Name, r.Format)
			}
		}
	}
	return &t, nil
}
