package abtest

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func normal(rng *rand.Rand, n int, mean, sd float64) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = mean + sd*rng.NormFloat64()
	}
	return xs
}

func TestWinnerOnlyWhenSignificant(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name   string
		req    Request
		winner string
		best   string
	}{
		{"clear latency gap", Request{Objective: "latency", Samples: []Sample{
			{"slow", normal(rng, 30, 10, 1)}, {"fast", normal(rng, 30, 5, 1)}, {"mid", normal(rng, 30, 8, 1)}}}, "fast", "fast"},
		{"same distribution", Request{Objective: "latency", Samples: []Sample{
			{"A", normal(rng, 30, 10, 1)}, {"B", normal(rng, 30, 10, 1)}}}, "", ""},
		{"higher mean wins", Request{Objective: "metric", Stat: Mean, Goal: Max, Samples: []Sample{
			{"lo", normal(rng, 50, 0.5, 0.1)}, {"hi", normal(rng, 50, 0.9, 0.1)}}}, "hi", "hi"},
		{"one of three tied with the best", Request{Objective: "latency", Samples: []Sample{
			{"A", normal(rng, 30, 5, 1)}, {"B", normal(rng, 30, 5.01, 1)}, {"C", normal(rng, 30, 20, 1)}}}, "", ""},
	}
	for _, tc := range tests {
		d, err := Compare(tc.req)
		if err != nil {
			t.Fatalf("%s: Compare: %v", tc.name, err)
		}
		if d.Winner != tc.winner {
			t.Errorf("%s: winner %q, want %q (verdict %q)", tc.name, d.Winner, tc.winner, d.Verdict)
		}
		if tc.best != "" && d.Best != tc.best {
			t.Errorf("%s: best %q, want %q", tc.name, d.Best, tc.best)
		}
		if tc.winner == "" && !strings.HasPrefix(d.Verdict, "no significant difference in "+tc.req.Objective) {
			t.Errorf("%s: verdict %q, want no significant difference", tc.name, d.Verdict)
		}
		if tc.winner != "" && !strings.HasPrefix(d.Verdict, "winner: "+tc.winner) {
			t.Errorf("%s: verdict %q", tc.name, d.Verdict)
		}
		for _, e := range d.Estimates {
			if !(e.Low <= e.Value && e.Value <= e.High) {
				t.Errorf("%s: %s estimate %g outside its CI [%g, %g]", tc.name, e.Name, e.Value, e.Low, e.High)
			}
		}
	}
}

// Per-sample scores on one test set: B is A plus a small constant gain on every sample, far
// below the spread between samples. Only the paired bootstrap sees it.
func TestPairedSeesWhatIndependentCannot(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	a := normal(rng, 40, 20, 5)
	b := make([]float64, len(a))
	for i := range a {
		b[i] = a[i] + 0.5 + 0.05*rng.NormFloat64()
	}
	req := Request{Objective: "output SQNR", Stat: Mean, Goal: Max, Samples: []Sample{{"A", a}, {"B", b}}}
	d, err := Compare(req)
	if err != nil {
		t.Fatal(err)
	}
	if d.Winner != "" {
		t.Errorf("independent resampling: winner %q, want none (the gain is lost in the spread)", d.Winner)
	}
	req.Paired = true
	d, err = Compare(req)
	if err != nil {
		t.Fatal(err)
	}
	if d.Winner != "B" || !d.Differences[0].Significant || d.Differences[0].Low <= 0 {
		t.Errorf("paired: winner %q, difference %+v; want B significantly better", d.Winner, d.Differences)
	}
}

func TestEstimates(t *testing.T) {
	d, err := Compare(Request{Samples: []Sample{{"A", []float64{5, 1, 4, 2, 3}}, {"B", []float64{10, 20, 30, 40}}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Estimates[0]; got.Value != 3 || got.P90 != 5 || got.N != 5 {
		t.Errorf("A = %+v, want median 3, p90 5, n 5", got)
	}
	if got := d.Estimates[1]; got.Value != 25 || got.P90 != 40 {
		t.Errorf("B = %+v, want median 25, p90 40", got)
	}
	if d.Best != "A" || d.Differences[0].Value != -22 {
		t.Errorf("best %q, differences %+v; want A, -22", d.Best, d.Differences)
	}
}

func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	req := Request{Samples: []Sample{{"A", normal(rng, 20, 1, 1)}, {"B", normal(rng, 20, 1.5, 1)}}, Seed: 7}
	d1, _ := Compare(req)
	d2, _ := Compare(req)
	if !reflect.DeepEqual(d1, d2) {
		t.Errorf("same request, different decisions:\n%+v\n%+v", d1, d2)
	}
	req.Seed = 8
	d3, _ := Compare(req)
	if reflect.DeepEqual(d1.Estimates, d3.Estimates) {
		t.Errorf("another seed gave the same intervals: the seed is not used")
	}
}

func TestInvalid(t *testing.T) {
	two := []Sample{{"A", []float64{1, 2}}, {"B", []float64{1, 2}}}
	tests := []struct {
		req  Request
		want string
	}{
		{Request{Samples: two[:1]}, "at least two candidates"},
		{Request{Samples: []Sample{{"A", []float64{1, 2}}, {"A", []float64{1, 2}}}}, `"A" is given twice`},
		{Request{Samples: []Sample{{"A", []float64{1}}, {"B", []float64{1, 2}}}}, `"A" has 1 values`},
		{Request{Samples: []Sample{{"A", []float64{1, math.NaN()}}, {"B", []float64{1, 2}}}}, `"A": value 1 is NaN`},
		{Request{Samples: []Sample{{"", []float64{1, 2}}, {"B", []float64{1, 2}}}}, "no name"},
		{Request{Samples: two, Stat: "mode"}, `stat "mode"`},
		{Request{Samples: two, Goal: "up"}, `goal "up"`},
		{Request{Samples: two, Boot: 10}, "boot 10"},
		{Request{Samples: two, Alpha: 0.7}, "alpha 0.7"},
		{Request{Samples: []Sample{{"A", []float64{1, 2}}, {"B", []float64{1, 2, 3}}}, Paired: true}, `paired: candidate "B" has 3 values`},
		{Request{Samples: []Sample{{"A", make([]float64, 600000)}, {"B", make([]float64, 600000)}}, Boot: 1000}, "resampled values"},
	}
	for _, tc := range tests {
		_, err := Compare(tc.req)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compare(%.60v) = %v, want an ErrInvalid containing %q", tc.req, err, tc.want)
		}
	}
	if _, err := ParseRequest([]byte(`{"samples": [], "bogus": 1}`)); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("ParseRequest with an unknown key: %v", err)
	}
}
