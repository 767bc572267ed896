package sensitivity

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/monoquant/monoquant/core/recipe"
)

// Budget bounds RecipeFor's choice: exactly one of the two.
type Budget struct {
	// MaxBitsPerWeight bounds 8 · Σ stored bytes / Σ weights over the table's layers (scales
	// and zero points count: INT4 g128 asymmetric is 4.5).
	MaxBitsPerWeight float64 `json:"max_bits_per_weight,omitempty"`
	// MaxSize bounds the whole checkpoint's tensor bytes: the table's OtherBytes plus the
	// layers' stored bytes.
	MaxSize int64 `json:"max_size,omitempty"`
}

// ParseBudget reads {"max_bits_per_weight": 5} or {"max_size": 123456}.
func ParseBudget(js []byte) (Budget, error) {
	var b Budget
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, errf("budget: want {\"max_bits_per_weight\": x} or {\"max_size\": bytes}: %v", err)
	}
	return b, b.check()
}

func (b Budget) check() error {
	switch {
	case b.MaxBitsPerWeight != 0 && b.MaxSize != 0:
		return errf("budget: give max_bits_per_weight or max_size, not both")
	case b.MaxBitsPerWeight == 0 && b.MaxSize == 0:
		return errf("budget: give max_bits_per_weight (e.g. 5) or max_size (bytes)")
	case math.IsNaN(b.MaxBitsPerWeight) || math.IsInf(b.MaxBitsPerWeight, 0) || b.MaxBitsPerWeight < 0:
		return errf("budget: max_bits_per_weight %v must be a positive number", b.MaxBitsPerWeight)
	case b.MaxSize < 0:
		return errf("budget: max_size %d must be positive", b.MaxSize)
	}
	return nil
}

// Choice is RecipeFor's answer.
type Choice struct {
	// Recipe has one rule per table layer with its format, then {"match": "*", "skip": true}.
	Recipe *recipe.Recipe `json:"recipe"`
	// Layers says what each layer got, in model order.
	Layers []Chosen `json:"layers"`
	// Bytes is the whole checkpoint's projected tensor bytes (OtherBytes included),
	// LayerBytes the table's layers only; BitsPerWeight is over the table's layers.
	Bytes         int64   `json:"bytes"`
	LayerBytes    int64   `json:"layer_bytes"`
	BitsPerWeight float64 `json:"bits_per_weight"`
	// Score is the sum of the chosen scores (the table's metric: summed noise-to-signal
	// ratios, or summed metric drops).
	Score  float64 `json:"score"`
	Budget Budget  `json:"budget"`
}

// Chosen is one layer's format.
type Chosen struct {
	Layer      string  `json:"layer"`
	Format     string  `json:"format"`
	BytesAfter int64   `json:"bytes_after"`
	Score      float64 `json:"score"`
}

type option struct {
	fi    int
	bytes int64
	score float64
}

type step struct {
	layer, to int // hull index to
	dBytes    int64
	eff       float64
}

// RecipeFor chooses a format per layer of the table under the budget by the greedy of the
// package comment, and writes it as a recipe.
func RecipeFor(t *Table, b Budget) (*Choice, error) {
	if t == nil || len(t.Layers) == 0 {
		return nil, errf("RecipeFor: the table has no layers")
	}
	if err := b.check(); err != nil {
		return nil, err
	}
	formats := map[string]int{}
	for i, f := range t.Formats {
		formats[f.Name] = i
	}
	// Layers in model order.
	rows := make([]*LayerRow, len(t.Layers))
	for i := range t.Layers {
		rows[i] = &t.Layers[i]
	}
	sort.SliceStable(rows, func(a, c int) bool { return rows[a].Index < rows[c].Index })
	hulls := make([][]option, len(rows))
	var params int64
	for li, l := range rows {
		params += l.Params
		var opts []option
		for _, r := range l.Results {
			fi, ok := formats[r.Format]
			if !ok {
				return nil, errf("table: layer %q has a result for format %q, which is not among the table's formats", l.Name, r.Format)
			}
			if r.Score == nil {
				continue
			}
			if math.IsNaN(*r.Score) || math.IsInf(*r.Score, 0) {
				return nil, errf("table: layer %q as %s has score %v", l.Name, r.Format, *r.Score)
			}
			opts = append(opts, option{fi: fi, bytes: r.BytesAfter, score: *r.Score})
		}
		if len(opts) == 0 {
			return nil, errf("table: layer %q has no measured format (measure every layer before choosing)", l.Name)
		}
		hulls[li] = lowerHull(opts)
	}
	var used int64
	for _, h := range hulls {
		used += h[0].bytes
	}
	var limit int64
	if b.MaxSize != 0 {
		limit = b.MaxSize - t.OtherBytes
		if used > limit {
			return nil, errf("budget: max_size %d bytes cannot be met: the smallest choice (every layer in its smallest format) takes %d bytes (%d of them outside the table's layers)", b.MaxSize, used+t.OtherBytes, t.OtherBytes)
		}
	} else {
		if params == 0 {
			return nil, errf("table: its layers have no weights")
		}
		limit = int64(math.Floor(b.MaxBitsPerWeight*float64(params)/8 + 1e-9))
		if used > limit {
			return nil, errf("budget: max_bits_per_weight %g cannot be met: the smallest choice (every layer in its smallest format) takes %.4g bits per weight", b.MaxBitsPerWeight, 8*float64(used)/float64(params))
		}
	}
	var steps []step
	for li, h := range hulls {
		for k := 1; k < len(h); k++ {
			db := h[k].bytes - h[k-1].bytes
			steps = append(steps, step{layer: li, to: k, dBytes: db, eff: (h[k-1].score - h[k].score) / float64(db)})
		}
	}
	sort.SliceStable(steps, func(a, c int) bool {
		if steps[a].eff != steps[c].eff {
			return steps[a].eff > steps[c].eff
		}
		if steps[a].layer != steps[c].layer {
			return steps[a].layer < steps[c].layer
		}
		return steps[a].to < steps[c].to
	})
	cur := make([]int, len(hulls))
	frozen := make([]bool, len(hulls))
	for _, st := range steps {
		if frozen[st.layer] || cur[st.layer] != st.to-1 {
			continue
		}
		if used+st.dBytes > limit {
			frozen[st.layer] = true
			continue
		}
		used += st.dBytes
		cur[st.layer] = st.to
	}
	ch := &Choice{Budget: b, Recipe: &recipe.Recipe{}}
	for li, l := range rows {
		o := hulls[li][cur[li]]
		f := t.Formats[o.fi]
		ch.Layers = append(ch.Layers, Chosen{Layer: l.Name, Format: f.Name, BytesAfter: o.bytes, Score: o.score})
		r := f.Rule
		r.Match = l.Name
		if l.Type != "" {
			r.Layers = []string{l.Type}
		}
		ch.Recipe.Rules = append(ch.Recipe.Rules, r)
		ch.LayerBytes += o.bytes
		ch.Score += o.score
	}
	orderDescendantsFirst(ch.Recipe.Rules)
	ch.Recipe.Rules = append(ch.Recipe.Rules, recipe.Rule{Match: "*", Skip: true})
	ch.Bytes = ch.LayerBytes + t.OtherBytes
	if params > 0 {
		ch.BitsPerWeight = 8 * float64(ch.LayerBytes) / float64(params)
	}
	if err := ch.Recipe.Validate(); err != nil {
		return nil, fmt.Errorf("internal: the chosen recipe does not validate: %w", err)
	}
	return ch, nil
}

// lowerHull keeps, of a layer's options, those on the lower convex hull of (bytes, score) with
// the score falling as the bytes grow: sorted by bytes (then score), an option that does not
// lower the score is dropped, and so is one whose score drop per byte is not more than the
// next one's.
func lowerHull(opts []option) []option {
	sort.SliceStable(opts, func(a, b int) bool {
		if opts[a].bytes != opts[b].bytes {
			return opts[a].bytes < opts[b].bytes
		}
		return opts[a].score < opts[b].score
	})
	var h []option
	for _, o := range opts {
		if len(h) > 0 && o.score >= h[len(h)-1].score {
			continue
		}
		for len(h) >= 2 {
			a, b := h[len(h)-2], h[len(h)-1]
			effAB := (a.score - b.score) / float64(b.bytes-a.bytes)
			effBO := (b.score - o.score) / float64(o.bytes-b.bytes)
			if effAB > effBO {
				break
			}
			h = h[:len(h)-1]
		}
		h = append(h, o)
	}
	return h
}

// orderDescendantsFirst puts a rule for "a.b" before one for its ancestor "a", which would
// otherwise select a.b's tensors too (first match wins); other rules keep their order.
func orderDescendantsFirst(rules []recipe.Rule) {
	conflict := false
	for i := range rules {
		for j := range rules {
			if i != j && strings.HasPrefix(rules[j].Match, rules[i].Match+".") {
				conflict = true
			}
		}
	}
	if !conflict {
		return
	}
	sort.SliceStable(rules, func(a, b int) bool {
		return strings.Count(rules[a].Match, ".") > strings.Count(rules[b].Match, ".")
	})
}
