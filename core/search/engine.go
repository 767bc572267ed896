package search

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/monoquant/monoquant/core/prune"
	"github.com/monoquant/monoquant/core/recipe"
)

// gene is one layer's choice: indices into its formats and group sizes, the space's schemes
// and methods, and its unstructured (P) and structured (U) pruning choices. Fields a format does
// not use are 0, so equal recipes have equal genes.
type gene struct {
	F, G, S, M int
	P          int `json:",omitempty"`
	U          int `json:",omitempty"`
}

// Trial statuses.
const (
	StatusPending = "pending"
	StatusDone    = "done"
	StatusFailed  = "failed"
)

type trial struct {
	Genes      []gene    `json:"genes"`
	Status     string    `json:"status"`
	Objectives []float64 `json:"objectives,omitempty"`
	Error      string    `json:"error,omitempty"`
}

// Engine is one search: ask for candidates, tell their objectives. It is not safe for
// concurrent use; the caller serialises Ask/Tell (their order decides the next candidates).
type Engine struct {
	space   Space // defaults filled in
	choices []layerChoices
	pcg     *rand.PCG
	rng     *rand.Rand
	trials  []trial
	pop     []int     // the parents: indices of done trials
	rank    []int     // per pop entry
	crowd   []float64 // per pop entry
	fresh   []int     // done trials not yet through a selection
	queue   [][]gene  // first-generation candidates not yet asked
	seen    map[string]bool
}

// Candidate is what Ask returns: the trial's id and its recipe.
type Candidate struct {
	Trial  int            `json:"trial"`
	Recipe *recipe.Recipe `json:"recipe"`
}

// Result is one evaluated trial (Front, Trials).
type Result struct {
	Trial      int                `json:"trial"`
	Recipe     *recipe.Recipe     `json:"recipe"`
	Status     string             `json:"status"`
	Objectives map[string]float64 `json:"objectives,omitempty"`
	Error      string             `json:"error,omitempty"`
	// BitsPerWeight is the recipe's average storage width over the space's layers (weights
	// only, scales not counted), weighted by Params.
	BitsPerWeight float64 `json:"bits_per_weight"`
}

// New starts a search over space, deterministic for seed.
func New(space *Space, seed uint64) (*Engine, error) {
	ch, err := space.compile()
	if err != nil {
		return nil, err
	}
	e := &Engine{space: space.withDefaults(), choices: ch, seen: map[string]bool{}}
	e.pcg = rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)
	e.rng = rand.New(e.pcg)
	for _, g := range e.initial() {
		g = e.repair(g)
		if k := key(g); !e.seen[k] {
			e.seen[k] = true
			e.queue = append(e.queue, g)
		}
	}
	return e, nil
}

// Space returns the space with every default filled in.
func (e *Engine) Space() Space { return e.space }

// pick returns the index of the allowed format closest to bits from above (the widest if none is).
func (e *Engine) pick(l, bits int) int {
	best, bestBits := -1, 0
	for i, f := range e.choices[l].formats {
		b := FormatBits(f)
		if b >= bits && (best < 0 || bestBits < bits || b < bestBits) {
			best, bestBits = i, b
		} else if bestBits < bits && b > bestBits {
			best, bestBits = i, b
		}
	}
	return best
}

// narrowest is the index of the allowed format with the fewest bits.
func (e *Engine) narrowest(l int) int {
	fs := e.choices[l].formats
	best := 0
	for i, f := range fs {
		if FormatBits(f) < FormatBits(fs[best]) {
			best = i
		}
	}
	return best
}

func (e *Engine) uniform(bits int) []gene {
	g := make([]gene, len(e.choices))
	for l := range g {
		g[l] = e.canon(l, gene{F: e.pick(l, bits), G: len(e.choices[l].groupSizes) / 2})
	}
	return g
}

// smallest is the anchor of the smallest file: every layer at its narrowest format, INT4 in
// the largest group size it allows, with the space's first scheme (symmetric by default: no
// zero points to store).
func (e *Engine) smallest() []gene {
	g := make([]gene, len(e.choices))
	for l, c := range e.choices {
		x := gene{F: e.narrowest(l)}
		for gi, gs := range c.groupSizes {
			if gs > c.groupSizes[x.G] {
				x.G = gi
			}
		}
		g[l] = e.canon(l, x)
	}
	return g
}

// initial is the first generation: anchors (uniform INT8, uniform FP16, the smallest), sensitivity
// seeds, size seeds, structured-pruning seeds, then random genomes.
func (e *Engine) initial() [][]gene {
	gen := [][]gene{e.uniform(8), e.uniform(16), e.smallest()}
	var sens []int
	for i, l := range e.space.Layers {
		if l.Sensitivity != nil {
			sens = append(sens, i)
		}
	}
	if len(sens) > 0 {
		// Most sensitive first; ties by position so the order is deterministic.
		slices.SortStableFunc(sens, func(a, b int) int {
			return cmp.Compare(*e.space.Layers[b].Sensitivity, *e.space.Layers[a].Sensitivity)
		})
		for _, hi := range []struct {
			frac float64
			bits int
		}{{0.1, 8}, {0.25, 8}, {0.5, 8}, {0.1, 16}, {0, 8}} {
			g := make([]gene, len(e.choices))
			for l := range g {
				g[l] = e.canon(l, gene{F: e.narrowest(l), G: len(e.choices[l].groupSizes) / 2})
			}
			top := int(math.Ceil(hi.frac * float64(len(sens))))
			for _, l := range sens[:top] {
				g[l] = e.canon(l, gene{F: e.pick(l, hi.bits)})
			}
			gen = append(gen, g)
		}
	}
	// Size seeds: the largest layers (together at least half the weights) at their narrowest
	// format, with each group size, the rest at INT8: where most of the size is won.
	bySize := make([]int, len(e.choices))
	var total float64
	for i := range bySize {
		bySize[i] = i
		total += float64(max(e.space.Layers[i].Params, 1))
	}
	slices.SortStableFunc(bySize, func(a, b int) int {
		return cmp.Compare(e.space.Layers[b].Params, e.space.Layers[a].Params)
	})
	var big []int
	for acc := 0.0; acc < total/2; {
		l := bySize[len(big)]
		big = append(big, l)
		acc += float64(max(e.space.Layers[l].Params, 1))
	}
	// INT4 takes the engine's INT4 scheme where the space offers it (recipe.DefaultInt4Scheme).
	s4 := max(0, slices.Index(e.space.Schemes, recipe.DefaultInt4Scheme))
	for gi := range e.space.GroupSizes {
		g := e.uniform(8)
		for _, l := range big {
			x := gene{F: e.narrowest(l)}
			if e.choices[l].formats[x.F] == FormatINT4 {
				x.S = s4
			}
			if n := len(e.choices[l].groupSizes); n > 0 {
				// The gi-th group size of the space, or the nearest this layer allows.
				x.G = slices.Index(e.choices[l].groupSizes, e.space.GroupSizes[gi])
				if x.G < 0 {
					x.G = min(gi, n-1)
				}
			}
			g[l] = e.canon(l, x)
		}
		gen = append(gen, g)
	}
	// Structured-pruning seeds: the last size seed with the largest layer that can lose hidden
	// units losing the smallest fraction, then the next one (where the most size is won; a
	// small layer, such as a first convolution, is often the most sensitive to it).
	if cl := e.largestCoupled(); cl >= 0 {
		base := gen[len(gen)-1]
		for u := 1; u < min(3, len(e.choices[cl].units)); u++ {
			g := slices.Clone(base)
			g[cl].U = u
			gen = append(gen, g)
		}
	}
	for len(gen) < e.space.Population {
		gen = append(gen, e.random())
	}
	return gen
}

// largestCoupled is the layer with a structured-pruning choice and the most weights, -1 if none.
func (e *Engine) largestCoupled() int {
	best := -1
	for l, c := range e.choices {
		if len(c.units) > 1 && (best < 0 || e.space.Layers[l].Params > e.space.Layers[best].Params) {
			best = l
		}
	}
	return best
}

func (e *Engine) random() []gene {
	g := make([]gene, len(e.choices))
	for l := range g {
		g[l] = e.randomGene(l)
	}
	return g
}

func (e *Engine) randomGene(l int) gene {
	c := e.choices[l]
	g := gene{F: e.rng.IntN(len(c.formats))}
	if len(c.groupSizes) > 0 {
		g.G = e.rng.IntN(len(c.groupSizes))
	}
	g.S = e.rng.IntN(len(e.space.Schemes))
	g.M = e.rng.IntN(len(e.space.Methods))
	// (drawn only when there is a choice, so a space without pruning draws as before)
	if len(c.prunes) > 1 {
		g.P = e.rng.IntN(len(c.prunes))
	}
	if len(c.units) > 1 {
		g.U = e.rng.IntN(len(c.units))
	}
	return e.canon(l, g)
}

// repair gives an all-skip genome (nothing to quantize: no engine call would accept it) one
// quantized layer, drawn at random among those that allow one.
func (e *Engine) repair(g []gene) []gene {
	e.fitCoupled(g)
	var can []int
	for l, x := range g {
		if e.choices[l].formats[x.F] != FormatSkip {
			return g
		}
		if len(e.choices[l].formats) > 1 {
			can = append(can, l)
		}
	}
	l := can[e.rng.IntN(len(can))]
	for {
		x := e.randomGene(l)
		if e.choices[l].formats[x.F] != FormatSkip {
			g[l] = x
			return g
		}
	}
}

// fitCoupled keeps a genome valid where a layer loses hidden units: the rows of the layer it
// feeds (Into) shrink with them, so that layer's INT4 group size must divide the new row (the
// largest that does is taken) and its 2:4 pruning needs rows of 4s (else none); when nothing
// fits, the units stay. Deterministic: no draw.
func (e *Engine) fitCoupled(g []gene) {
	for l, x := range g {
		fr, lay := e.choices[l].units[x.U], e.space.Layers[l]
		if fr == 0 || lay.Units == 0 {
			continue
		}
		j := slices.IndexFunc(e.space.Layers, func(y Layer) bool { return y.Name == lay.Into })
		if j < 0 || e.space.Layers[j].Row == 0 || e.space.Layers[j].Row%lay.Units != 0 {
			continue
		}
		row := prune.KeptUnits(lay.Units, fr) * (e.space.Layers[j].Row / lay.Units)
		cj := e.choices[j]
		ok := true
		if cj.formats[g[j].F] == FormatINT4 {
			best := -1
			for gi, gs := range cj.groupSizes {
				if row%gs == 0 && (best < 0 || gs > cj.groupSizes[best]) {
					best = gi
				}
			}
			if best < 0 {
				ok = false
			} else {
				g[j].G = best
			}
		}
		if cj.prunes[g[j].P] == prune.TwoFour && row%4 != 0 {
			if k := slices.Index(cj.prunes, PruneNone); k >= 0 {
				g[j].P = k
			} else {
				ok = false
			}
		}
		if !ok {
			g[l].U = 0
		}
	}
}

// canon zeroes the fields the gene's format does not use.
func (e *Engine) canon(l int, g gene) gene {
	f := e.choices[l].formats[g.F]
	if f != FormatINT4 {
		g.G = 0
	}
	if f != FormatINT4 && f != FormatINT8 {
		g.S, g.M = 0, 0
	}
	if f == FormatSkip {
		g.P = 0 // a float layer is not pruned weight by weight (its units may still go)
	}
	return g
}

func key(g []gene) string {
	var b strings.Builder
	for _, x := range g {
		b.WriteString(strconv.Itoa(x.F))
		b.WriteByte(',')
		b.WriteString(strconv.Itoa(x.G))
		b.WriteByte(',')
		b.WriteString(strconv.Itoa(x.S))
		b.WriteByte(',')
		b.WriteString(strconv.Itoa(x.M))
		if x.P != 0 || x.U != 0 {
			b.WriteByte(',')
			b.WriteString(strconv.Itoa(x.P))
			b.WriteByte(',')
			b.WriteString(strconv.Itoa(x.U))
		}
		b.WriteByte(';')
	}
	return b.String()
}

// Ask returns the next candidate. Several may be asked before any is told (to run them in
// parallel); each is a new trial, pending until Tell or Fail.
func (e *Engine) Ask() Candidate {
	var g []gene
	if len(e.queue) > 0 {
		g, e.queue = e.queue[0], e.queue[1:]
	} else {
		// (offspring are repaired below, so that every candidate quantizes at least one layer)
		// Breed; retry a bounded number of times for a recipe not tried yet (a small space can
		// be exhausted, then a repeat is returned).
		for try := 0; try < 32; try++ {
			g = e.repair(e.offspring())
			if !e.seen[key(g)] {
				break
			}
		}
		e.seen[key(g)] = true
	}
	e.trials = append(e.trials, trial{Genes: g, Status: StatusPending})
	id := len(e.trials) - 1
	return Candidate{Trial: id, Recipe: e.recipe(g)}
}

// offspring: two binary tournaments, uniform crossover, mutation.
func (e *Engine) offspring() []gene {
	if len(e.pop) < 2 {
		// No parents yet (the first generation is still out, or failed): mutate a random one.
		return e.random()
	}
	a, b := e.trials[e.pop[e.tournament()]].Genes, e.trials[e.pop[e.tournament()]].Genes
	n := len(e.choices)
	child := slices.Clone(a)
	if e.rng.Float64() < 0.9 {
		for l := range child {
			if e.rng.IntN(2) == 1 {
				child[l] = b[l]
			}
		}
	}
	pm := 1 / float64(n)
	mutated := false
	for l := range child {
		if e.rng.Float64() < pm {
			child[l] = e.mutate(l, child[l])
			mutated = true
		}
	}
	if !mutated || slices.Equal(child, a) || slices.Equal(child, b) {
		l := e.rng.IntN(n)
		child[l] = e.mutate(l, child[l])
	}
	return child
}

// mutate redraws one field of a gene (the format most often).
func (e *Engine) mutate(l int, g gene) gene {
	c := e.choices[l]
	if np, nu := len(c.prunes), len(c.units); np > 1 || nu > 1 {
		// A quarter of the mutations of a layer with pruning choices redraw one of them.
		if e.rng.Float64() < 0.25 {
			if nu > 1 && (np == 1 || e.rng.IntN(2) == 0) {
				g.U = e.rng.IntN(nu)
			} else {
				g.P = e.rng.IntN(np)
			}
			return e.canon(l, g)
		}
	}
	switch r := e.rng.Float64(); {
	case r < 0.6 || len(c.formats) == 1:
		if len(c.formats) > 1 {
			g.F = e.rng.IntN(len(c.formats))
		}
	case r < 0.75 && len(c.groupSizes) > 0:
		g.G = e.rng.IntN(len(c.groupSizes))
	case r < 0.9:
		g.S = e.rng.IntN(len(e.space.Schemes))
	default:
		g.M = e.rng.IntN(len(e.space.Methods))
	}
	return e.canon(l, g)
}

// tournament returns the better of two random parents (lower rank, then larger crowding).
func (e *Engine) tournament() int {
	i, j := e.rng.IntN(len(e.pop)), e.rng.IntN(len(e.pop))
	if e.rank[j] < e.rank[i] || (e.rank[j] == e.rank[i] && e.crowd[j] > e.crowd[i]) {
		return j
	}
	return i
}

// recipe writes a genome as a recipe: one exact rule per layer, every option set, then "*": skip.
func (e *Engine) recipe(g []gene) *recipe.Recipe {
	r := &recipe.Recipe{Rules: make([]recipe.Rule, 0, len(g)+1)}
	for l, x := range g {
		name := e.space.Layers[l].Name
		f := e.choices[l].formats[x.F]
		rule := recipe.Rule{Match: name}
		if fr := e.choices[l].units[x.U]; fr > 0 {
			rule.PruneUnits, rule.Into = fr, e.space.Layers[l].Into
		}
		if f != FormatSkip {
			rule.Prune, rule.Sparsity, _ = parsePrune(e.choices[l].prunes[x.P]) // checked by compile
		}
		switch f {
		case FormatSkip:
			rule.Skip = true
		case FormatFP16, FormatBF16:
			rule.Bits, rule.DType = 16, f
		case FormatINT8, FormatINT4:
			rule.Bits, rule.DType = FormatBits(f), f
			rule.Scheme = e.space.Schemes[x.S]
			rule.Method = e.space.Methods[x.M]
			if rule.Method == "hqq" {
				rule.Scheme = "asymmetric" // hqq optimises the zero point: it needs one
			}
			if f == FormatINT4 {
				rule.GroupSize = e.choices[l].groupSizes[x.G]
				no := false
				rule.GroupFallback = &no
			}
		}
		r.Rules = append(r.Rules, rule)
	}
	r.Rules = append(r.Rules, recipe.Rule{Match: "*", Skip: true})
	return r
}

// bitsPerWeight is the genome's average storage width per weight of the float layers, weighted
// by the layers' Params: removed hidden units store nothing, so structured pruning lowers it
// (the layer and its Into layer keep KeptUnits/Units of their weights); zeros of unstructured
// pruning are stored like any weight.
func (e *Engine) bitsPerWeight(g []gene) float64 {
	kept := make([]float64, len(g))
	for l := range kept {
		kept[l] = 1
	}
	for l, x := range g {
		fr := e.choices[l].units[x.U]
		if fr == 0 {
			continue
		}
		k := 1 - fr
		if u := e.space.Layers[l].Units; u > 0 {
			k = float64(prune.KeptUnits(u, fr)) / float64(u)
		}
		kept[l] *= k
		if j := slices.IndexFunc(e.space.Layers, func(y Layer) bool { return y.Name == e.space.Layers[l].Into }); j >= 0 {
			kept[j] *= k
		}
	}
	var bits, n float64
	for l, x := range g {
		p := float64(max(e.space.Layers[l].Params, 1))
		bits += p * kept[l] * float64(FormatBits(e.choices[l].formats[x.F]))
		n += p
	}
	return bits / n
}

// Tell records trial id's objectives by name and advances the search. A NaN, an infinity
// (ErrNonFinite), a missing or an unknown objective is an error naming it; the trial stays
// pending (tell it again, or Fail it).
func (e *Engine) Tell(id int, objectives map[string]float64) error {
	vals := make([]float64, len(e.space.Objectives))
	for i, o := range e.space.Objectives {
		v, ok := objectives[o.Name]
		if !ok {
			return fmt.Errorf("%w: trial %d: objective %q is missing", ErrTrial, id, o.Name)
		}
		vals[i] = v
	}
	for name := range objectives {
		if !slices.ContainsFunc(e.space.Objectives, func(o Objective) bool { return o.Name == name }) {
			return fmt.Errorf("%w: trial %d: objective %q is not one of the space's (%s)", ErrTrial, id, name, e.objectiveNames())
		}
	}
	return e.TellValues(id, vals)
}

func (e *Engine) objectiveNames() string {
	names := make([]string, len(e.space.Objectives))
	for i, o := range e.space.Objectives {
		names[i] = o.Name
	}
	return strings.Join(names, ", ")
}

// TellValues is Tell with the objectives in the space's order.
func (e *Engine) TellValues(id int, values []float64) error {
	t, err := e.pending(id)
	if err != nil {
		return err
	}
	if len(values) != len(e.space.Objectives) {
		return fmt.Errorf("%w: trial %d: %d objective values for %d objectives (%s)", ErrTrial, id, len(values), len(e.space.Objectives), e.objectiveNames())
	}
	for i, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: trial %d: objective %q is %v, not a finite number", ErrNonFinite, id, e.space.Objectives[i].Name, v)
		}
	}
	t.Status, t.Objectives = StatusDone, slices.Clone(values)
	e.fresh = append(e.fresh, id)
	if len(e.fresh) >= e.space.Population {
		e.selectSurvivors()
	}
	return nil
}

// Fail records that trial id could not be evaluated (reason is kept in its result).
func (e *Engine) Fail(id int, reason string) error {
	t, err := e.pending(id)
	if err != nil {
		return err
	}
	t.Status, t.Error = StatusFailed, reason
	return nil
}

func (e *Engine) pending(id int) (*trial, error) {
	if id < 0 || id >= len(e.trials) {
		return nil, fmt.Errorf("%w: no trial %d (asked: %d)", ErrTrial, id, len(e.trials))
	}
	t := &e.trials[id]
	if t.Status != StatusPending {
		return nil, fmt.Errorf("%w: trial %d is already %s", ErrTrial, id, t.Status)
	}
	return t, nil
}

// minimised returns trial i's objectives turned so that smaller is better.
func (e *Engine) minimised(i int) []float64 {
	v := slices.Clone(e.trials[i].Objectives)
	for k, o := range e.space.Objectives {
		if o.Goal == "max" {
			v[k] = -v[k]
		}
	}
	return v
}

// selectSurvivors keeps the best Population of parents and fresh trials (NSGA-II).
func (e *Engine) selectSurvivors() {
	pool := append(slices.Clone(e.pop), e.fresh...)
	e.fresh = nil
	pts := make([][]float64, len(pool))
	for i, t := range pool {
		pts[i] = e.minimised(t)
	}
	fronts := NonDominatedSort(pts)
	var pop []int
	for _, f := range fronts {
		idx := make([]int, len(f))
		for i := range idx {
			idx[i] = i
		}
		if len(pop)+len(f) > e.space.Population {
			cd := Crowding(pts, f)
			slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(cd[b], cd[a]) })
			idx = idx[:e.space.Population-len(pop)]
		}
		for _, i := range idx {
			pop = append(pop, pool[f[i]])
		}
		if len(pop) == e.space.Population {
			break
		}
	}
	e.pop = pop
	e.rerank()
}

// rerank computes the parents' rank and crowding among themselves (for the tournaments).
func (e *Engine) rerank() {
	pts := make([][]float64, len(e.pop))
	for i, t := range e.pop {
		pts[i] = e.minimised(t)
	}
	e.rank = make([]int, len(e.pop))
	e.crowd = make([]float64, len(e.pop))
	for r, f := range NonDominatedSort(pts) {
		cd := Crowding(pts, f)
		for k, i := range f {
			e.rank[i], e.crowd[i] = r, cd[k]
		}
	}
}

// Dominates reports whether a is no worse than b everywhere and better somewhere (minimising).
func Dominates(a, b []float64) bool {
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

// NonDominatedSort splits points (minimised) into fronts of indices: front 0 is non-dominated,
// front 1 is non-dominated once front 0 is removed, and so on (Deb's fast sort, O(M·N²)).
func NonDominatedSort(pts [][]float64) [][]int {
	n := len(pts)
	dominated := make([][]int, n)
	count := make([]int, n)
	var fronts [][]int
	var cur []int
	for p := 0; p < n; p++ {
		for q := 0; q < n; q++ {
			if p == q {
				continue
			}
			if Dominates(pts[p], pts[q]) {
				dominated[p] = append(dominated[p], q)
			} else if Dominates(pts[q], pts[p]) {
				count[p]++
			}
		}
		if count[p] == 0 {
			cur = append(cur, p)
		}
	}
	for len(cur) > 0 {
		fronts = append(fronts, cur)
		var next []int
		for _, p := range cur {
			for _, q := range dominated[p] {
				count[q]--
				if count[q] == 0 {
					next = append(next, q)
				}
			}
		}
		slices.Sort(next)
		cur = next
	}
	return fronts
}

// Crowding returns the crowding distance of each point of one front (by position in front):
// the boundary points of every objective get +Inf.
func Crowding(pts [][]float64, front []int) []float64 {
	d := make([]float64, len(front))
	if len(front) == 0 {
		return d
	}
	idx := make([]int, len(front))
	for m := range pts[front[0]] {
		for i := range idx {
			idx[i] = i
		}
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(pts[front[a]][m], pts[front[b]][m]) })
		lo, hi := pts[front[idx[0]]][m], pts[front[idx[len(idx)-1]]][m]
		d[idx[0]], d[idx[len(idx)-1]] = math.Inf(1), math.Inf(1)
		if hi == lo {
			continue
		}
		for k := 1; k < len(idx)-1; k++ {
			d[idx[k]] += (pts[front[idx[k+1]]][m] - pts[front[idx[k-1]]][m]) / (hi - lo)
		}
	}
	return d
}

func (e *Engine) result(i int) Result {
	t := e.trials[i]
	r := Result{Trial: i, Recipe: e.recipe(t.Genes), Status: t.Status, Error: t.Error, BitsPerWeight: e.bitsPerWeight(t.Genes)}
	if t.Status == StatusDone {
		r.Objectives = make(map[string]float64, len(t.Objectives))
		for k, o := range e.space.Objectives {
			r.Objectives[o.Name] = t.Objectives[k]
		}
	}
	return r
}

// Trials returns every trial asked so far, in order.
func (e *Engine) Trials() []Result {
	out := make([]Result, len(e.trials))
	for i := range e.trials {
		out[i] = e.result(i)
	}
	return out
}

// Front returns the non-dominated done trials, in trial order (trials with equal objectives
// are all kept).
func (e *Engine) Front() []Result {
	var done []int
	var pts [][]float64
	for i, t := range e.trials {
		if t.Status == StatusDone {
			done = append(done, i)
			pts = append(pts, e.minimised(i))
		}
	}
	if len(done) == 0 {
		return nil
	}
	f := NonDominatedSort(pts)[0]
	slices.Sort(f)
	out := make([]Result, len(f))
	for k, i := range f {
		out[k] = e.result(done[i])
	}
	return out
}

// Hypervolume is the area dominated by the front of two objectives a and b (named), bounded by
// the reference point ref (in the objectives' own units: the worst values that still count).
func (e *Engine) Hypervolume(a, b string, refA, refB float64) (float64, error) {
	ia := slices.IndexFunc(e.space.Objectives, func(o Objective) bool { return o.Name == a })
	ib := slices.IndexFunc(e.space.Objectives, func(o Objective) bool { return o.Name == b })
	if ia < 0 || ib < 0 || ia == ib {
		return 0, fmt.Errorf("%w: hypervolume needs two different objectives of the space, not %q and %q", ErrTrial, a, b)
	}
	sign := func(k int) float64 {
		if e.space.Objectives[k].Goal == "max" {
			return -1
		}
		return 1
	}
	var pts [][2]float64
	for _, t := range e.trials {
		if t.Status == StatusDone {
			pts = append(pts, [2]float64{sign(ia) * t.Objectives[ia], sign(ib) * t.Objectives[ib]})
		}
	}
	return Hypervolume2D(pts, [2]float64{sign(ia) * refA, sign(ib) * refB}), nil
}

// Hypervolume2D is the area dominated by points (both coordinates minimised) and bounded by ref;
// points that do not dominate ref add nothing. O(N log N).
func Hypervolume2D(pts [][2]float64, ref [2]float64) float64 {
	var in [][2]float64
	for _, p := range pts {
		if p[0] < ref[0] && p[1] < ref[1] {
			in = append(in, p)
		}
	}
	slices.SortFunc(in, func(a, b [2]float64) int {
		if c := cmp.Compare(a[0], b[0]); c != 0 {
			return c
		}
		return cmp.Compare(a[1], b[1])
	})
	hv, bestY := 0.0, ref[1]
	for _, p := range in {
		if p[1] >= bestY {
			continue // dominated by an earlier point
		}
		// p is on the front: it adds the band between its y and the previous front point's.
		hv += (ref[0] - p[0]) * (bestY - p[1])
		bestY = p[1]
	}
	return hv
}

// state is what Save writes.
type state struct {
	Version int      `json:"version"`
	Space   Space    `json:"space"`
	RNG     []byte   `json:"rng"`
	Trials  []trial  `json:"trials"`
	Pop     []int    `json:"population"`
	Fresh   []int    `json:"fresh"`
	Queue   [][]gene `json:"queue"`
}

// Save returns the engine's whole state as JSON; Load continues from it exactly.
func (e *Engine) Save() ([]byte, error) {
	rng, err := e.pcg.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return json.Marshal(state{Version: 1, Space: e.space, RNG: rng, Trials: e.trials, Pop: e.pop, Fresh: e.fresh, Queue: e.queue})
}

// Load resumes a search saved by Save. Pending trials stay pending.
func Load(data []byte) (*Engine, error) {
	if len(data) > 16*maxSpaceBytes {
		return nil, fmt.Errorf("%w: saved state of %d bytes is too large", ErrSpace, len(data))
	}
	var s state
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%w: saved state: %s", ErrSpace, strings.TrimPrefix(err.Error(), "json: "))
	}
	if s.Version != 1 {
		return nil, fmt.Errorf("%w: saved state version %d is not 1", ErrSpace, s.Version)
	}
	ch, err := s.Space.compile()
	if err != nil {
		return nil, err
	}
	e := &Engine{space: s.Space.withDefaults(), choices: ch, trials: s.Trials, fresh: s.Fresh, queue: s.Queue, seen: map[string]bool{}}
	e.pcg = &rand.PCG{}
	if err := e.pcg.UnmarshalBinary(s.RNG); err != nil {
		return nil, fmt.Errorf("%w: saved state: rng: %v", ErrSpace, err)
	}
	e.rng = rand.New(e.pcg)
	check := func(g []gene) error {
		if len(g) != len(ch) {
			return fmt.Errorf("%w: saved state: a genome of %d layers for a space of %d", ErrSpace, len(g), len(ch))
		}
		for l, x := range g {
			if x.F < 0 || x.F >= len(ch[l].formats) || x.G < 0 || (x.G > 0 && x.G >= len(ch[l].groupSizes)) ||
				x.S < 0 || x.S >= len(e.space.Schemes) || x.M < 0 || x.M >= len(e.space.Methods) ||
				x.P < 0 || x.P >= len(ch[l].prunes) || x.U < 0 || x.U >= len(ch[l].units) {
				return fmt.Errorf("%w: saved state: gene of layer %q out of range", ErrSpace, e.space.Layers[l].Name)
			}
		}
		return nil
	}
	for i, t := range e.trials {
		if err := check(t.Genes); err != nil {
			return nil, err
		}
		if t.Status == StatusDone && len(t.Objectives) != len(e.space.Objectives) {
			return nil, fmt.Errorf("%w: saved state: trial %d has %d objectives", ErrSpace, i, len(t.Objectives))
		}
		if t.Status != StatusDone && t.Status != StatusFailed && t.Status != StatusPending {
			return nil, fmt.Errorf("%w: saved state: trial %d has status %q", ErrSpace, i, t.Status)
		}
		e.seen[key(t.Genes)] = true
	}
	for _, g := range e.queue {
		if err := check(g); err != nil {
			return nil, err
		}
		e.seen[key(g)] = true
	}
	for _, i := range append(slices.Clone(s.Pop), s.Fresh...) {
		if i < 0 || i >= len(e.trials) || e.trials[i].Status != StatusDone {
			return nil, fmt.Errorf("%w: saved state: population names trial %d, which is not done", ErrSpace, i)
		}
	}
	// Re-rank the parents (rank and crowding follow from their objectives).
	e.pop = s.Pop
	e.rerank()
	return e, nil
}
