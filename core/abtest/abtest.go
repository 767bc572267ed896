// Package abtest decides A/B/n comparisons: given repeated measurements of each candidate (a
// latency per run, a metric per sample, an output SQNR per random input), it estimates each
// candidate's statistic with a bootstrap confidence interval and names a winner only when the
// difference between the best candidate and every other one is significant — the 95% bootstrap
// interval of the difference excludes 0. Otherwise the verdict is "no significant difference".
//
// It is the one rule behind Python's monoquant.benchmark (through the C ABI's mq_abtest_json)
// and the CLI's `monoquant bench`: the callers measure, this package decides.
//
//	d, err := abtest.Compare(abtest.Request{
//		Objective: "latency", Stat: abtest.Median, Goal: abtest.Min,
//		Samples: []abtest.Sample{{Name: "int8", Values: t8}, {Name: "int4", Values: t4}},
//	})
//	fmt.Println(d.Verdict) // "winner: int4 (latency; ...)" or "no significant difference in latency between ..."
//
// The resampling draws from one PCG source seeded by the request, so the same request gives the
// same intervals and the same verdict.
package abtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// Stat is the statistic estimated from a candidate's values.
type Stat string

// Goal says which way is better.
type Goal string

const (
	Median Stat = "median" // robust to outliers: latencies
	Mean   Stat = "mean"   // per-sample scores, SQNRs

	Min Goal = "min" // lower is better (latency, size)
	Max Goal = "max" // higher is better (accuracy, SQNR)
)

// Limits on a request, so that the work (boot × values, sorted for medians) is bounded by the
// input: a caller cannot make a call run for hours or allocate without bound.
const (
	MaxCandidates = 1024
	MaxValues     = 1 << 20 // per candidate
	MaxBoot       = 100000
	MaxWork       = 1 << 30 // boot × total values
	DefaultBoot   = 2000
	DefaultAlpha  = 0.05
)

// Sample is one candidate's measurements, in the order measured.
type Sample struct {
	Name   string    `json:"name"`
	Values []float64 `json:"values"`
}

// Request is a comparison to decide. Stat, Goal, Boot and Alpha have defaults (median, min,
// 2000, 0.05).
type Request struct {
	Objective string   `json:"objective"` // what the values measure, for the verdict ("latency")
	Stat      Stat     `json:"stat"`
	Goal      Goal     `json:"goal"`
	Samples   []Sample `json:"samples"`
	Seed      uint64   `json:"seed"`
	Boot      int      `json:"boot"`  // bootstrap resamples
	Alpha     float64  `json:"alpha"` // 1 - confidence (0.05: 95% intervals)
	// Paired: value i of every candidate was measured on the same input i (per-sample scores on
	// one test set, output SQNRs on the same random inputs): the resamples draw the same indices
	// for every candidate, so the differences keep what the inputs share. The candidates must
	// then have the same number of values. Unpaired candidates are resampled independently.
	Paired bool `json:"paired"`
}

// Estimate is one candidate's statistic with its bootstrap interval, and its 90th percentile.
type Estimate struct {
	Name  string  `json:"name"`
	N     int     `json:"n"`
	Value float64 `json:"value"` // the statistic of the values
	Low   float64 `json:"ci_low"`
	High  float64 `json:"ci_high"`
	P90   float64 `json:"p90"` // the value at rank floor(0.9·n) of the sorted values
}

// Difference is the bootstrap interval of stat(best) − stat(other).
type Difference struct {
	Other       string  `json:"other"`
	Value       float64 `json:"value"`
	Low         float64 `json:"ci_low"`
	High        float64 `json:"ci_high"`
	Significant bool    `json:"significant"` // the interval lies wholly on the better side of 0
}

// Decision is the outcome: every candidate's estimate, the best by the point estimate, its
// differences with the others, and the winner — Best when every difference is significant,
// "" otherwise.
type Decision struct {
	Objective   string       `json:"objective"`
	Stat        Stat         `json:"stat"`
	Goal        Goal         `json:"goal"`
	Confidence  float64      `json:"confidence"` // 1 - alpha
	Paired      bool         `json:"paired"`
	Estimates   []Estimate   `json:"estimates"`
	Best        string       `json:"best"`
	Differences []Difference `json:"differences"`
	Winner      string       `json:"winner"`
	Verdict     string       `json:"verdict"`
}

// ErrInvalid marks a request that cannot be decided (the message says why).
var ErrInvalid = errors.New("invalid comparison")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ParseRequest reads a Request from JSON, refusing unknown keys.
func ParseRequest(js []byte) (Request, error) {
	var r Request
	dec := json.NewDecoder(strings.NewReader(string(js)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, invalid("request: %v", err)
	}
	return r, nil
}

func (r *Request) normalize() error {
	if r.Stat == "" {
		r.Stat = Median
	}
	if r.Goal == "" {
		r.Goal = Min
	}
	if r.Boot == 0 {
		r.Boot = DefaultBoot
	}
	if r.Alpha == 0 {
		r.Alpha = DefaultAlpha
	}
	if r.Objective == "" {
		r.Objective = "the objective"
	}
	switch {
	case r.Stat != Median && r.Stat != Mean:
		return invalid("stat %q is not median or mean", r.Stat)
	case r.Goal != Min && r.Goal != Max:
		return invalid("goal %q is not min or max", r.Goal)
	case r.Boot < 100 || r.Boot > MaxBoot:
		return invalid("boot %d is not in [100, %d]", r.Boot, MaxBoot)
	case !(r.Alpha > 0 && r.Alpha < 0.5):
		return invalid("alpha %g is not in (0, 0.5)", r.Alpha)
	case len(r.Samples) < 2:
		return invalid("want at least two candidates, got %d", len(r.Samples))
	case len(r.Samples) > MaxCandidates:
		return invalid("%d candidates, at most %d", len(r.Samples), MaxCandidates)
	}
	seen := map[string]bool{}
	total := 0
	for _, s := range r.Samples {
		if s.Name == "" {
			return invalid("a candidate has no name")
		}
		if seen[s.Name] {
			return invalid("candidate %q is given twice", s.Name)
		}
		seen[s.Name] = true
		if len(s.Values) < 2 {
			return invalid("candidate %q has %d values, want at least 2", s.Name, len(s.Values))
		}
		if len(s.Values) > MaxValues {
			return invalid("candidate %q has %d values, at most %d", s.Name, len(s.Values), MaxValues)
		}
		for i, v := range s.Values {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return invalid("candidate %q: value %d is %v", s.Name, i, v)
			}
		}
		if r.Paired && len(s.Values) != len(r.Samples[0].Values) {
			return invalid("paired: candidate %q has %d values, %q has %d", s.Name, len(s.Values), r.Samples[0].Name, len(r.Samples[0].Values))
		}
		total += len(s.Values)
	}
	if float64(r.Boot)*float64(total) > MaxWork {
		return invalid("boot %d × %d values is more than %d resampled values", r.Boot, total, MaxWork)
	}
	return nil
}

// stat computes the request's statistic of xs; it may reorder xs.
func (r *Request) stat(xs []float64) float64 {
	if r.Stat == Mean {
		var s float64
		for _, x := range xs {
			s += x
		}
		return s / float64(len(xs))
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// resample returns, for each candidate, the statistic of r.Boot resamples of its values (each
// drawn with replacement); paired requests draw one set of indices per resample for all.
func (r *Request) resample(rng *rand.Rand) [][]float64 {
	maxN := 0
	for _, s := range r.Samples {
		maxN = max(maxN, len(s.Values))
	}
	buf := make([]float64, maxN)
	idx := make([]int, maxN)
	out := make([][]float64, len(r.Samples))
	for i := range out {
		out[i] = make([]float64, r.Boot)
	}
	for b := 0; b < r.Boot; b++ {
		if r.Paired {
			for j := range idx {
				idx[j] = rng.IntN(maxN)
			}
		}
		for i, s := range r.Samples {
			xs := buf[:len(s.Values)]
			for j := range xs {
				k := 0
				if r.Paired {
					k = idx[j]
				} else {
					k = rng.IntN(len(xs))
				}
				xs[j] = s.Values[k]
			}
			out[i][b] = r.stat(xs)
		}
	}
	return out
}

// interval is the percentile interval [alpha/2, 1-alpha/2] of sorted bootstrap values.
func (r *Request) interval(sorted []float64) (float64, float64) {
	n := len(sorted)
	lo := int(r.Alpha / 2 * float64(n))
	hi := min(n-1, int((1-r.Alpha/2)*float64(n)))
	return sorted[lo], sorted[hi]
}

// Compare decides the request. Errors wrap ErrInvalid and name the problem.
func Compare(r Request) (*Decision, error) {
	if err := r.normalize(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(r.Seed, 0x61622d74657374)) // "ab-test"
	boots := r.resample(rng)
	d := &Decision{Objective: r.Objective, Stat: r.Stat, Goal: r.Goal, Confidence: 1 - r.Alpha, Paired: r.Paired, Differences: []Difference{}}
	best := 0
	for i, s := range r.Samples {
		xs := append([]float64(nil), s.Values...)
		v := r.stat(xs)
		slices.Sort(xs)
		e := Estimate{Name: s.Name, N: len(xs), Value: v, P90: xs[min(len(xs)-1, int(0.9*float64(len(xs))))]}
		// One set of resamples per candidate serves both its own interval and, draw by draw
		// against the best's, the intervals of the differences.
		sorted := slices.Clone(boots[i])
		slices.Sort(sorted)
		e.Low, e.High = r.interval(sorted)
		d.Estimates = append(d.Estimates, e)
		if r.better(v, d.Estimates[best].Value) {
			best = i
		}
	}
	d.Best = d.Estimates[best].Name
	significant := true
	var ties []string
	for i, e := range d.Estimates {
		if i == best {
			continue
		}
		diffs := make([]float64, r.Boot)
		for b := range diffs {
			diffs[b] = boots[best][b] - boots[i][b]
		}
		slices.Sort(diffs)
		lo, hi := r.interval(diffs)
		ok := hi < 0
		if r.Goal == Max {
			ok = lo > 0
		}
		d.Differences = append(d.Differences, Difference{Other: e.Name, Value: d.Estimates[best].Value - e.Value, Low: lo, High: hi, Significant: ok})
		if !ok {
			significant = false
			ties = append(ties, e.Name)
		}
	}
	pct := fmt.Sprintf("%g%%", 100*(1-r.Alpha))
	if significant {
		d.Winner = d.Best
		d.Verdict = fmt.Sprintf("winner: %s (%s; the %s bootstrap CI of its difference with every other candidate excludes 0)", d.Best, r.Objective, pct)
	} else {
		d.Verdict = fmt.Sprintf("no significant difference in %s between %s and %s (%s bootstrap CIs of the difference include 0)", r.Objective, d.Best, strings.Join(ties, ", "), pct)
	}
	return d, nil
}

// better reports whether a is strictly better than b by the goal (the first of equals stays best).
func (r *Request) better(a, b float64) bool {
	if r.Goal == Max {
		return a > b
	}
	return a < b
}
