package search

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/recipe"
)

// pruneSpace: an FFN pair (fc1 → fc2, 64 hidden units) and a convolution with rows of 9 values.
func pruneSpace() *Space {
	return &Space{
		Layers: []Layer{
			{Name: "conv", Params: 144, Row: 9},
			{Name: "fc1", Params: 32768, Row: 512, Into: "fc2", Units: 64},
			{Name: "fc2", Params: 640, Row: 64},
		},
		Objectives: []Objective{{"metric", "max"}, {"size", "min"}},
		Prunes:     []string{"none", "2:4", "magnitude:0.5"},
		Population: 8,
	}
}

func TestPruningGenes(t *testing.T) {
	e, err := New(pruneSpace(), 3)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := 0; i < 80; i++ {
		c := e.Ask()
		js, _ := json.Marshal(c.Recipe)
		if _, err := recipe.Parse(js); err != nil {
			t.Fatalf("trial %d: the candidate is not a valid recipe: %v\n%s", i, err, js)
		}
		size := 0.0
		for _, r := range c.Recipe.Rules {
			if r.Match == "conv" && r.Prune == "2:4" {
				t.Errorf("trial %d: 2:4 offered to conv, whose rows of 9 values are not groups of 4", i)
			}
			if r.PruneUnits != 0 {
				if r.Match != "fc1" || r.Into != "fc2" {
					t.Errorf("trial %d: prune_units on %q into %q", i, r.Match, r.Into)
				}
				seen["units"] = true
				size -= r.PruneUnits
			}
			if r.Prune != "" {
				seen[r.Prune] = true
			}
		}
		if err := e.Tell(c.Trial, map[string]float64{"metric": float64(i % 7), "size": 1 + size + float64(i%5)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"units", "2:4", "magnitude"} {
		if !seen[k] {
			t.Errorf("80 trials proposed no %s pruning", k)
		}
	}
	// A saved search with pruning genes resumes exactly.
	st, _ := e.Save()
	e2, err := Load(st)
	if err != nil {
		t.Fatal(err)
	}
	a, b := e.Ask(), e2.Ask()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Errorf("resumed search asks %s, the original %s", jb, ja)
	}
}

func TestStructuredPruningLowersBitsPerWeight(t *testing.T) {
	e, err := New(pruneSpace(), 0)
	if err != nil {
		t.Fatal(err)
	}
	ch := e.choices
	g := e.uniform(8) // every layer INT8
	full := e.bitsPerWeight(g)
	u := 2 // fraction 0.25 of the default unit fractions 0, 0.125, 0.25, 0.5
	if ch[1].units[u] != 0.25 {
		t.Fatalf("unit fractions %v", ch[1].units)
	}
	g[1].U = u
	// fc1 and fc2 keep 48 of 64 units: (144 + 0.75·(32768 + 640))·8 / 33552 bits per weight.
	want := (144 + 0.75*(32768+640)) * 8 / 33552
	if got := e.bitsPerWeight(g); math.Abs(got-want) > 1e-9 || got >= full {
		t.Errorf("bits per weight with a quarter of fc1's units removed = %v, want %v (unpruned %v)", got, want, full)
	}
	r := e.recipe(g)
	if r.Rules[1].PruneUnits != 0.25 || r.Rules[1].Into != "fc2" {
		t.Errorf("recipe rule for fc1 = %+v, want prune_units 0.25 into fc2", r.Rules[1])
	}
}

func TestPruningSpaceErrors(t *testing.T) {
	for _, c := range []struct {
		edit func(*Space)
		want string
	}{
		{func(s *Space) { s.Prunes = []string{"3:4"} }, `prune "3:4" is not none, 2:4 or magnitude`},
		{func(s *Space) { s.Prunes = []string{"magnitude:1.5"} }, "magnitude:<sparsity between 0 and 1>"},
		{func(s *Space) { s.UnitFractions = []float64{0.25, 0.5} }, "0 (no structured pruning) must be among them"},
		{func(s *Space) { s.UnitFractions = []float64{0, 1} }, "1 is not at least 0 and below 1"},
		{func(s *Space) { s.Layers[1].Into = "fc1" }, `into "fc1" must name another layer`},
	} {
		s := pruneSpace()
		c.edit(s)
		_, err := New(s, 0)
		if err == nil || !errors.Is(err, ErrSpace) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("space error %v, want one containing %q", err, c.want)
		}
	}
}

// A layer that loses units shrinks the rows of the layer it feeds: that layer's INT4 group size
// is refitted to the new row (or the units stay), so every candidate plans on the shrunk model.
func TestCoupledGroupSizesFitTheShrunkRows(t *testing.T) {
	s := pruneSpace()
	s.GroupSizes = []int{16, 32, 64}
	s.Prunes = []string{"2:4", "none"}
	e, err := New(s, 5)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		c := e.Ask()
		var fr float64
		for _, r := range c.Recipe.Rules {
			if r.Match == "fc1" {
				fr = r.PruneUnits
			}
		}
		for _, r := range c.Recipe.Rules {
			if r.Match != "fc2" {
				continue
			}
			row := 64
			if fr > 0 {
				row = 64 - int(math.Round(fr*64))
			}
			if r.GroupSize != 0 && row%r.GroupSize != 0 {
				t.Fatalf("trial %d: fc1 loses %v of its units (fc2 rows of %d) and fc2 has groups of %d", i, fr, row, r.GroupSize)
			}
			if r.Prune == "2:4" && row%4 != 0 {
				t.Fatalf("trial %d: fc2 rows of %d with 2:4", i, row)
			}
		}
		e.Fail(c.Trial, "not evaluated")
	}
}
