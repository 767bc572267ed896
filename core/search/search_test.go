package search

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/recipe"
)

// synthetic is a quantization problem with a known structure: every layer has a weight count
// and a sensitivity; the metric loses sensitivity × (error of the format) per layer.
type synthetic struct {
	params []int64
	sens   []float64
}

func newSynthetic(n int, seed uint64) synthetic {
	r := rand.New(rand.NewPCG(seed, 7))
	s := synthetic{}
	for i := 0; i < n; i++ {
		s.params = append(s.params, int64(1000+r.IntN(100000)))
		s.sens = append(s.sens, math.Pow(10, -2+3*r.Float64()))
	}
	return s
}

func (s synthetic) space(pop int, withSens bool) *Space {
	sp := &Space{
		Objectives: []Objective{{"metric", "max"}, {"size", "min"}},
		Population: pop,
	}
	for i := range s.params {
		l := Layer{Name: fmt.Sprintf("blocks.%d.fc", i), Params: s.params[i], Row: 256}
		if withSens {
			v := s.sens[i]
			l.Sensitivity = &v
		}
		sp.Layers = append(sp.Layers, l)
	}
	return sp
}

// evaluate scores a recipe from its rules (so it checks Ask's output, not the genes).
func (s synthetic) evaluate(t *testing.T, r *recipe.Recipe) map[string]float64 {
	t.Helper()
	loss, size := 0.0, 0.0
	for i := range s.params {
		rule := r.Rules[i]
		var e, bits float64
		switch {
		case rule.Skip:
			e, bits = 0, 32
		case rule.Bits == 16:
			e, bits = 0.001, 16
		case rule.Bits == 8:
			e, bits = 0.05, 8
		case rule.Bits == 4:
			e, bits = 1+float64(rule.GroupSize)/64, 4+32/float64(rule.GroupSize)
		default:
			t.Fatalf("rule %d: %+v", i, rule)
		}
		if rule.Scheme == "asymmetric" {
			e *= 0.7
			bits += 16 / float64(max(rule.GroupSize, 256))
		}
		loss += s.sens[i] * e
		size += float64(s.params[i]) * bits / 8
	}
	return map[string]float64{"metric": 100 - loss, "size": size}
}

func run(t *testing.T, e *Engine, s synthetic, trials int) {
	t.Helper()
	for i := 0; i < trials; i++ {
		c := e.Ask()
		if err := e.Tell(c.Trial, s.evaluate(t, c.Recipe)); err != nil {
			t.Fatal(err)
		}
	}
}

func recipes(e *Engine) string {
	b, _ := json.Marshal(e.Trials())
	return string(b)
}

func TestDeterministic(t *testing.T) {
	s := newSynthetic(10, 1)
	a, _ := New(s.space(8, true), 42)
	b, _ := New(s.space(8, true), 42)
	c, _ := New(s.space(8, true), 43)
	run(t, a, s, 60)
	run(t, b, s, 60)
	run(t, c, s, 60)
	if recipes(a) != recipes(b) {
		t.Fatal("same seed, different trials")
	}
	if recipes(a) == recipes(c) {
		t.Fatal("different seeds, same trials")
	}
}

func TestSaveResume(t *testing.T) {
	s := newSynthetic(10, 2)
	whole, _ := New(s.space(8, true), 5)
	run(t, whole, s, 50)

	part, _ := New(s.space(8, true), 5)
	run(t, part, s, 21)
	pending := part.Ask() // asked before the save, told after the resume
	data, err := part.Save()
	if err != nil {
		t.Fatal(err)
	}
	resumed, err := Load(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := resumed.Tell(pending.Trial, s.evaluate(t, pending.Recipe)); err != nil {
		t.Fatal(err)
	}
	run(t, resumed, s, 28)
	if recipes(resumed) != recipes(whole) {
		t.Fatal("a resumed search differs from the uninterrupted one")
	}
	if _, err := Load([]byte(`{"version": 2}`)); !errors.Is(err, ErrSpace) {
		t.Fatalf("bad version: %v", err)
	}
	bad := strings.Replace(string(data), `"population":[`, `"population":[99999,`, 1)
	if _, err := Load([]byte(bad)); err == nil || !strings.Contains(err.Error(), "99999") {
		t.Fatalf("bad population index: %v", err)
	}
}

func TestCandidatesAreValidRecipes(t *testing.T) {
	s := newSynthetic(6, 3)
	sp := s.space(6, false)
	sp.Layers = append(sp.Layers, Layer{Name: "head", Params: 5000, Row: 100}) // no group size divides 100
	sp.Limits = []Limit{{Match: "head", MinBits: 8}, {Match: "blocks.0.fc", Formats: []string{"int4"}}}
	sp.Formats = []string{"skip", "fp16", "bf16", "int8", "int4"}
	e, err := New(sp, 1)
	if err != nil {
		t.Fatal(err)
	}
	sawBF16 := false
	for i := 0; i < 80; i++ {
		c := e.Ask()
		data, err := json.Marshal(c.Recipe)
		if err != nil {
			t.Fatal(err)
		}
		r, err := recipe.Parse(data)
		if err != nil {
			t.Fatalf("trial %d: %v\n%s", i, err, data)
		}
		if len(r.Rules) != len(sp.Layers)+1 || r.Rules[len(r.Rules)-1].Match != "*" || !r.Rules[len(r.Rules)-1].Skip {
			t.Fatalf("trial %d: rules %s", i, data)
		}
		for k, l := range sp.Layers {
			rule := r.Rules[k]
			if rule.Match != l.Name {
				t.Fatalf("rule %d matches %q, want %q", k, rule.Match, l.Name)
			}
			if !rule.Skip && (rule.DType == "" || rule.Bits == 0) {
				t.Fatalf("rule %d does not set its format: %+v", k, rule)
			}
			if (rule.Bits == 8 || rule.Bits == 4) && (rule.Scheme == "" || rule.Method == "") {
				t.Fatalf("integer rule %d leaves options to defaults: %+v", k, rule)
			}
			if rule.Bits == 4 && (rule.GroupSize == 0 || 256%rule.GroupSize != 0) {
				t.Fatalf("rule %d: group size %d", k, rule.GroupSize)
			}
			sawBF16 = sawBF16 || rule.DType == "bf16"
		}
		head := r.Rules[len(sp.Layers)-1]
		if head.Bits == 4 {
			t.Fatalf("trial %d: head below INT8: %+v", i, head)
		}
		if r.Rules[0].Bits != 4 {
			t.Fatalf("trial %d: blocks.0.fc not INT4: %+v", i, r.Rules[0])
		}
		if !slices.ContainsFunc(r.Rules, func(rl recipe.Rule) bool { return !rl.Skip }) {
			t.Fatalf("trial %d quantizes nothing: %s", i, data)
		}
		obj := s.evaluate(t, &recipe.Recipe{Rules: r.Rules[:len(s.params)]})
		if err := e.Tell(c.Trial, obj); err != nil {
			t.Fatal(err)
		}
	}
	if !sawBF16 {
		t.Fatal("bf16 never proposed")
	}
}

func TestNonDominatedSortKnownFronts(t *testing.T) {
	pts := [][]float64{
		{1, 5}, {2, 3}, {4, 1}, // front 0
		{2, 5}, {3, 3}, {5, 1}, // front 1
		{6, 6}, // front 2
		{1, 5}, // a duplicate of a front-0 point: not dominated
	}
	got := NonDominatedSort(pts)
	want := [][]int{{0, 1, 2, 7}, {3, 4, 5}, {6}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("fronts %v, want %v", got, want)
	}
	cd := Crowding(pts, []int{0, 1, 2})
	if !math.IsInf(cd[0], 1) || !math.IsInf(cd[2], 1) || math.Abs(cd[1]-(3.0/3+4.0/4)) > 1e-12 {
		t.Fatalf("crowding %v", cd)
	}
}

func TestFrontIsNonDominated(t *testing.T) {
	s := newSynthetic(8, 4)
	e, _ := New(s.space(8, true), 9)
	run(t, e, s, 64)
	all, front := e.Trials(), e.Front()
	if len(front) == 0 {
		t.Fatal("empty front")
	}
	minim := func(r Result) []float64 { return []float64{-r.Objectives["metric"], r.Objectives["size"]} }
	inFront := map[int]bool{}
	for _, f := range front {
		inFront[f.Trial] = true
		for _, o := range all {
			if Dominates(minim(o), minim(f)) {
				t.Fatalf("trial %d on the front is dominated by trial %d", f.Trial, o.Trial)
			}
		}
	}
	for _, o := range all {
		if inFront[o.Trial] {
			continue
		}
		if !slices.ContainsFunc(front, func(f Result) bool { return Dominates(minim(f), minim(o)) }) {
			t.Fatalf("trial %d is left off the front but nothing on it dominates it", o.Trial)
		}
	}
}

func TestHypervolume2D(t *testing.T) {
	ref := [2]float64{10, 10}
	cases := []struct {
		pts  [][2]float64
		want float64
	}{
		{nil, 0},
		{[][2]float64{{2, 2}}, 64},
		{[][2]float64{{2, 6}, {6, 2}}, 8*4 + 4*8 - 4*4},
		{[][2]float64{{6, 2}, {2, 6}, {7, 7}, {11, 1}}, 48}, // dominated and out-of-box points add nothing
		{[][2]float64{{1, 9}, {5, 5}, {9, 1}}, 9*1 + 5*4 + 1*4},
	}
	for _, c := range cases {
		if got := Hypervolume2D(c.pts, ref); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%v: %v, want %v", c.pts, got, c.want)
		}
	}
	e, _ := New(&Space{Layers: []Layer{{Name: "a"}}, Objectives: []Objective{{"acc", "max"}, {"size", "min"}}}, 0)
	c := e.Ask()
	if err := e.Tell(c.Trial, map[string]float64{"acc": 0.9, "size": 4}); err != nil {
		t.Fatal(err)
	}
	hv, err := e.Hypervolume("acc", "size", 0.5, 10)
	if err != nil || math.Abs(hv-0.4*6) > 1e-12 {
		t.Fatalf("engine hypervolume %v %v", hv, err)
	}
	if _, err := e.Hypervolume("acc", "latency", 0, 0); err == nil {
		t.Fatal("unknown objective accepted")
	}
}

// TestBeatsRandomSearch: at an equal budget, the median hypervolume over 5 seeds of the engine's
// front is larger than random search's (uniform random genomes from the same space).
func TestBeatsRandomSearch(t *testing.T) {
	const budget, pop = 120, 12
	s := newSynthetic(16, 11)
	worst := s.evaluate(t, allRules(len(s.params), recipe.Rule{Bits: 4, GroupSize: 128}))
	float := s.evaluate(t, allRules(len(s.params), recipe.Rule{Skip: true}))
	ref := [2]float64{-(worst["metric"] - 1), float["size"] * 1.01}
	var ours, random []float64
	for seed := uint64(0); seed < 5; seed++ {
		e, _ := New(s.space(pop, true), seed)
		run(t, e, s, budget)
		var pts [][2]float64
		for _, r := range e.Trials() {
			pts = append(pts, [2]float64{-r.Objectives["metric"], r.Objectives["size"]})
		}
		ours = append(ours, Hypervolume2D(pts, ref))

		rs, _ := New(s.space(pop, false), seed+100)
		pts = nil
		for i := 0; i < budget; i++ {
			o := s.evaluate(t, rs.recipe(rs.random()))
			pts = append(pts, [2]float64{-o["metric"], o["size"]})
		}
		random = append(random, Hypervolume2D(pts, ref))
	}
	slices.Sort(ours)
	slices.Sort(random)
	t.Logf("median hypervolume: engine %.6g, random %.6g", ours[2], random[2])
	if ours[2] <= random[2] {
		t.Fatalf("median hypervolume %v is not above random search's %v", ours[2], random[2])
	}
}

func allRules(n int, r recipe.Rule) *recipe.Recipe {
	out := &recipe.Recipe{}
	for i := 0; i < n; i++ {
		out.Rules = append(out.Rules, r)
	}
	return out
}

func TestTellErrors(t *testing.T) {
	e, _ := New(&Space{Layers: []Layer{{Name: "a"}}, Objectives: []Objective{{"metric", "max"}, {"size", "min"}}}, 0)
	c := e.Ask()
	for _, tc := range []struct {
		obj  map[string]float64
		want string
	}{
		{map[string]float64{"metric": math.NaN(), "size": 1}, `objective "metric" is NaN`},
		{map[string]float64{"metric": 1, "size": math.Inf(1)}, `objective "size" is +Inf`},
		{map[string]float64{"metric": 1}, `objective "size" is missing`},
		{map[string]float64{"metric": 1, "size": 1, "speed": 2}, `objective "speed" is not one of`},
	} {
		if err := e.Tell(c.Trial, tc.obj); !errors.Is(err, ErrTrial) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.obj, err, tc.want)
		}
	}
	if err := e.Tell(7, map[string]float64{"metric": 1, "size": 1}); err == nil || !strings.Contains(err.Error(), "no trial 7") {
		t.Errorf("unknown trial: %v", err)
	}
	if err := e.Fail(c.Trial, "evaluate raised ValueError"); err != nil {
		t.Fatal(err)
	}
	if err := e.Tell(c.Trial, map[string]float64{"metric": 1, "size": 1}); err == nil || !strings.Contains(err.Error(), "already failed") {
		t.Errorf("told after failing: %v", err)
	}
	if tr := e.Trials()[0]; tr.Status != StatusFailed || tr.Error != "evaluate raised ValueError" {
		t.Errorf("failed trial: %+v", tr)
	}
	if len(e.Front()) != 0 {
		t.Error("a failed trial is on the front")
	}
}

func TestSpaceErrors(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"layers": [{"name": "fc"}], "objectives": [{"name": "m", "goal": "max"}], "bogus": 1}`, `unknown field "bogus"`},
		{`{"layers": [], "objectives": [{"name": "m", "goal": "max"}]}`, "no layers"},
		{`{"layers": [{"name": "fc"}]}`, "no objectives"},
		{`{"layers": [{"name": "fc"}], "objectives": [{"name": "m", "goal": "up"}]}`, `goal "up" is not min or max`},
		{`{"layers": [{"name": "fc"}, {"name": "fc"}], "objectives": [{"name": "m", "goal": "max"}]}`, `layer "fc" is listed twice`},
		{`{"layers": [{"name": "fc.*"}], "objectives": [{"name": "m", "goal": "max"}]}`, `wildcard`},
		{`{"layers": [{"name": "fc"}], "objectives": [{"name": "m", "goal": "max"}], "formats": ["int3"]}`, `format "int3"`},
		{`{"layers": [{"name": "fc"}], "objectives": [{"name": "m", "goal": "max"}], "group_sizes": [3]}`, `group_size 3`},
		{`{"layers": [{"name": "fc"}], "objectives": [{"name": "m", "goal": "max"}], "methods": ["gptq9"]}`, `method "gptq9"`},
		{`{"layers": [{"name": "fc"}], "objectives": [{"name": "m", "goal": "max"}], "population": 2}`, `population 2`},
		{`{"layers": [{"name": "head"}], "objectives": [{"name": "m", "goal": "max"}], "formats": ["int4"], "limits": [{"match": "head", "min_bits": 8}]}`,
			`no valid recipe: layer "head" has no format left`},
		{`{"layers": [{"name": "fc", "row": 10}], "objectives": [{"name": "m", "goal": "max"}], "formats": ["int4"]}`,
			`no valid recipe: layer "fc"`},
		{`{"layers": [{"name": "fc"}], "objectives": [{"name": "m", "goal": "max"}], "limits": [{"match": "[a", "min_bits": 8}]}`, `limit 1 ("[a")`},
		{`{"layers": [{"name": "fc"}], "objectives": [{"name": "m", "goal": "max"}], "formats": ["skip"]}`, `every layer is limited to skip`},
	} {
		_, err := ParseSpace([]byte(tc.json))
		if !errors.Is(err, ErrSpace) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.json, err, tc.want)
		}
	}
}

func TestSeededFirstGeneration(t *testing.T) {
	s := newSynthetic(10, 5)
	e, _ := New(s.space(8, true), 0)
	first := e.Ask().Recipe
	second := e.Ask().Recipe
	for i := range s.params {
		if first.Rules[i].DType != "int8" || second.Rules[i].DType != "fp16" {
			t.Fatalf("anchors: rule %d is %q then %q, want int8 then fp16", i, first.Rules[i].DType, second.Rules[i].DType)
		}
	}
	// The third is the smallest anchor: every layer INT4 in its largest group, symmetric.
	smallest := e.Ask().Recipe
	for i := range s.params {
		if r := smallest.Rules[i]; r.Bits != 4 || r.GroupSize != 128 || r.Scheme != "symmetric" {
			t.Fatalf("smallest anchor: rule %d is %+v, want INT4 g128 symmetric", i, r)
		}
	}
	// The fourth keeps the most sensitive tenth at INT8 and puts the rest in INT4.
	third := e.Ask().Recipe
	most := 0
	for i, v := range s.sens {
		if v > s.sens[most] {
			most = i
		}
	}
	for i := range s.params {
		want := 4
		if i == most {
			want = 8
		}
		if third.Rules[i].Bits != want {
			t.Fatalf("sensitivity seed: layer %d (sensitivity %.3g) has %d bits, want %d", i, s.sens[i], third.Rules[i].Bits, want)
		}
	}
}

// TestEveryCandidateQuantizesSomething: in a space where all-skip genomes are likely, none is asked.
func TestEveryCandidateQuantizesSomething(t *testing.T) {
	e, err := New(&Space{Layers: []Layer{{Name: "a"}, {Name: "b"}}, Formats: []string{"skip", "int8"},
		Objectives: []Objective{{"m", "max"}}, Population: 4}, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 40; i++ {
		c := e.Ask()
		if c.Recipe.Rules[0].Skip && c.Recipe.Rules[1].Skip {
			t.Fatalf("trial %d quantizes nothing", i)
		}
		if err := e.Tell(c.Trial, map[string]float64{"m": float64(i % 3)}); err != nil {
			t.Fatal(err)
		}
	}
}
