package model

import (
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/tensor"
)

// A tied embedding and head (GPT-2's wte and lm_head): the head is quantized by default, the
// embedding is not selected; Tied makes the embedding take the head's decision.
func TestPlanTied(t *testing.T) {
	entries := []checkpoint.Entry{
		ent("wte.weight", tensor.F32, 512, 64),
		ent("h.0.fc.weight", tensor.F32, 64, 64),
		ent("lm_head.weight", tensor.F32, 512, 64),
	}
	types := map[string]string{"wte": "Embedding", "h.0.fc": "Linear", "lm_head": "Linear"}
	for _, tc := range []struct {
		name  string
		tied  [][]string
		want  map[string]Action
		warns int
	}{
		{"untied", nil, map[string]Action{"wte.weight": ActionKeep, "lm_head.weight": ActionQuantize}, 0},
		{"tied", [][]string{{"lm_head.weight", "wte.weight"}}, map[string]Action{"wte.weight": ActionQuantize, "lm_head.weight": ActionQuantize}, 1},
	} {
		p, err := NewPlan(entries, types, Options{Tied: tc.tied})
		if err != nil {
			t.Fatalf("%s: NewPlan: %v", tc.name, err)
		}
		var tied int
		for _, w := range p.Warnings {
			if w.Code == WarnTied {
				tied++
			}
		}
		if tied != tc.warns {
			t.Errorf("%s: %d tied warnings, want %d (%v)", tc.name, tied, tc.warns, p.Warnings)
		}
		byName := map[string]TensorPlan{}
		for _, tp := range p.Tensors {
			byName[tp.Name] = tp
		}
		for name, want := range tc.want {
			if got := byName[name].Action; got != want {
				t.Errorf("%s: %s action %s, want %s", tc.name, name, got, want)
			}
		}
		if tc.tied != nil {
			w, h := byName["wte.weight"], byName["lm_head.weight"]
			if w.Spec != h.Spec || w.LayerType != Embedding || p.Layers["wte"] != Embedding {
				t.Errorf("tied: wte spec %+v type %s, lm_head spec %+v", w.Spec, w.LayerType, h.Spec)
			}
		}
	}
	for _, bad := range [][][]string{{{"lm_head.weight", "nope.weight"}}, {{"lm_head.weight", "wte.weight"}, {"wte.weight", "h.0.fc.weight"}}, {{"h.0.fc.weight", "wte.weight"}}} {
		if _, err := NewPlan(entries, types, Options{Tied: bad}); err == nil {
			t.Errorf("NewPlan(Tied: %v) = nil error, want one", bad)
		}
	}
}
