// Package fold folds BatchNorm into the Conv2d or Linear layer before it (ADV-04), the way
// torch.ao.quantization.fuse_modules does for a model in eval mode: with the norm's running
// statistics, y = γ·(conv(x) − μ)/√(σ² + ε) + β is one convolution with
//
//	W' = W · γ/√(σ² + ε)           (each output channel scaled)
//	b' = (b − μ) · γ/√(σ² + ε) + β  (b = 0 when the layer has no bias)
//
// so the quantizer sees the weights the model really multiplies by, and the norm disappears.
// A fused ReLU after the norm has no tensors; it matters only to the runtime (Python's
// QuantizedConv2d runs it inside the int8 convolution).
//
// Which pairs to fold comes from the recipe ("fold", see core/recipe) or from the caller (Python
// finds them in the live module tree); Reader applies them to any checkpoint.Reader, so the
// file pipeline, the CLI, the C ABI and Python's in-memory models fold with the same numbers.
//
//	r, err := fold.NewReader(src, []fold.Pair{{Layer: "features.0", Norm: "features.1"}})
//	// r lists features.0.weight and features.0.bias folded, and no features.1.* tensors.
package fold

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/tensor"
)

// DefaultEps is BatchNorm's ε when a pair does not give one (torch's default, 1e-5). A state
// dict does not hold ε; a model built with another value must say so in the pair.
const DefaultEps = 1e-5

// ErrFold is wrapped by every error about a pair to fold.
var ErrFold = errors.New("cannot fold")

// Pair names a layer (Conv2d or Linear) and the BatchNorm directly after it; ReLU names an
// optional ReLU directly after the norm (fused by runtimes that can; no tensors).
type Pair struct {
	Layer string  `json:"layer"`
	Norm  string  `json:"norm"`
	ReLU  string  `json:"relu,omitempty"`
	Eps   float64 `json:"eps,omitempty"`
}

// EpsOrDefault is the pair's ε, DefaultEps when unset.
func (p Pair) EpsOrDefault() float64 {
	if p.Eps == 0 {
		return DefaultEps
	}
	return p.Eps
}

// Validate checks a list of pairs on its own: names set and distinct, ε positive and finite,
// no module in two pairs.
func Validate(pairs []Pair) error {
	seen := map[string]string{}
	for i, p := range pairs {
		what := fmt.Sprintf("fold %d (%q, %q)", i+1, p.Layer, p.Norm)
		if p.Layer == "" || p.Norm == "" {
			return fmt.Errorf("%w: %s: a pair names a layer and the norm after it", ErrFold, what)
		}
		if p.Eps < 0 || math.IsNaN(p.Eps) || math.IsInf(p.Eps, 0) {
			return fmt.Errorf("%w: %s: eps %v is not a positive number", ErrFold, what, p.Eps)
		}
		for _, n := range []string{p.Layer, p.Norm, p.ReLU} {
			if n == "" {
				continue
			}
			if prev, ok := seen[n]; ok {
				return fmt.Errorf("%w: %s: module %q is already in %s", ErrFold, what, n, prev)
			}
			seen[n] = what
		}
	}
	return nil
}

// CheckOrder refuses a pair whose norm is, by its name, not the module right after its layer:
// both numbered children of one container (an nn.Sequential: "features.3", "features.4"),
// with the norm's index one past the layer's (or two, with the ReLU in between named).
// Names of other shapes cannot be ordered from a checkpoint and pass; a caller holding the
// live module checks the real order.
func CheckOrder(p Pair) error {
	lp, li, ok1 := splitIndex(p.Layer)
	np, ni, ok2 := splitIndex(p.Norm)
	if !ok1 || !ok2 || lp != np {
		return nil
	}
	if ni != li+1 {
		return fmt.Errorf("%w %q into %q: the norm %q is not directly after the layer %q (module %d of %q, the layer is module %d)",
			ErrFold, p.Norm, p.Layer, p.Norm, p.Layer, ni, lp, li)
	}
	if p.ReLU != "" {
		rp, ri, ok := splitIndex(p.ReLU)
		if ok && (rp != lp || ri != ni+1) {
			return fmt.Errorf("%w %q into %q: the ReLU %q is not directly after the norm %q", ErrFold, p.Norm, p.Layer, p.ReLU, p.Norm)
		}
	}
	return nil
}

func splitIndex(name string) (string, int, bool) {
	i := strings.LastIndexByte(name, '.')
	parent, last := "", name
	if i >= 0 {
		parent, last = name[:i], name[i+1:]
	}
	n, err := strconv.Atoi(last)
	if err != nil || n < 0 {
		return "", 0, false
	}
	return parent, n, true
}

// Weights folds one norm into a layer's weight (out channels first: [O, ...], flattened to O
// rows) and bias (nil: none), in float32 as torch does (torch.nn.utils.fusion
// .fuse_conv_bn_weights, in its order of operations): r = rsqrt(σ² + ε), W' = W·(γ·r) per row,
// b' = (b − μ)·r·γ + β.
func Weights(w []float32, b, gamma, beta, mean, variance []float32, eps float64) (wf, bf []float32, err error) {
	o := len(gamma)
	if o == 0 || len(beta) != o || len(mean) != o || len(variance) != o || (b != nil && len(b) != o) {
		return nil, nil, fmt.Errorf("%w: the norm's weight, bias, running_mean and running_var (and the layer's bias) must all have one value per output channel", ErrFold)
	}
	if len(w)%o != 0 {
		return nil, nil, fmt.Errorf("%w: a weight of %d values does not split into %d output channels", ErrFold, len(w), o)
	}
	per := len(w) / o
	wf = make([]float32, len(w))
	bf = make([]float32, o)
	e := float32(eps)
	for c := 0; c < o; c++ {
		v := variance[c] + e
		if !(v > 0) || math.IsInf(float64(v), 0) {
			return nil, nil, fmt.Errorf("%w: running_var[%d] + eps = %v is not a positive finite number", ErrFold, c, v)
		}
		rs := 1 / float32(math.Sqrt(float64(v))) // torch.rsqrt in float32
		s := gamma[c] * rs
		row := w[c*per : (c+1)*per]
		dst := wf[c*per : (c+1)*per]
		for j, x := range row {
			dst[j] = x * s
		}
		bc := float32(0)
		if b != nil {
			bc = b[c]
		}
		bf[c] = (bc-mean[c])*rs*gamma[c] + beta[c]
	}
	return wf, bf, nil
}

// Reader is a checkpoint.Reader with pairs folded: each pair's layer weight and bias are the
// folded float32 values (a bias is added when the layer had none), and the norm's tensors
// (weight, bias, running_mean, running_var, num_batches_tracked) are gone. Everything else
// passes through.
type Reader struct {
	checkpoint.Reader
	entries []checkpoint.Entry
	byName  map[string]int // folded tensor name → pair index
	pairs   []Pair
	mu      sync.Mutex
	cache   map[int][2][]float32
}

var normParams = []string{"weight", "bias", "running_mean", "running_var"}

// NewReader checks the pairs against the checkpoint's tensors (every tensor present, float,
// one value per output channel; the order by name, as CheckOrder) and returns the folded view.
func NewReader(r checkpoint.Reader, pairs []Pair) (*Reader, error) {
	if err := Validate(pairs); err != nil {
		return nil, err
	}
	idx := map[string]checkpoint.Entry{}
	for _, e := range r.Entries() {
		idx[e.Name] = e
	}
	fr := &Reader{Reader: r, byName: map[string]int{}, pairs: pairs, cache: map[int][2][]float32{}}
	drop := map[string]bool{}
	addBias := map[string]checkpoint.Entry{} // layer weight name → the bias entry to add after it
	for i, p := range pairs {
		if err := CheckOrder(p); err != nil {
			return nil, err
		}
		w, ok := idx[p.Layer+".weight"]
		if !ok {
			return nil, fmt.Errorf("%w %q into %q: the checkpoint has no tensor %q", ErrFold, p.Norm, p.Layer, p.Layer+".weight")
		}
		if !w.DType.IsFloat() || len(w.Shape) < 2 {
			return nil, fmt.Errorf("%w %q into %q: %s is %v %v, not a float Conv/Linear weight", ErrFold, p.Norm, p.Layer, w.Name, w.DType, w.Shape)
		}
		o := w.Shape[0]
		for _, param := range normParams {
			n := p.Norm + "." + param
			e, ok := idx[n]
			if !ok {
				return nil, fmt.Errorf("%w %q into %q: the checkpoint has no tensor %q (is %q a BatchNorm with affine=True and running stats?)", ErrFold, p.Norm, p.Layer, n, p.Norm)
			}
			if !e.DType.IsFloat() || len(e.Shape) != 1 || e.Shape[0] != o {
				return nil, fmt.Errorf("%w %q into %q: %s is %v %v, want %d float values (one per output channel of %s)", ErrFold, p.Norm, p.Layer, n, e.DType, e.Shape, o, w.Name)
			}
			drop[n] = true
		}
		drop[p.Norm+".num_batches_tracked"] = true
		if b, ok := idx[p.Layer+".bias"]; ok {
			if !b.DType.IsFloat() || len(b.Shape) != 1 || b.Shape[0] != o {
				return nil, fmt.Errorf("%w %q into %q: %s is %v %v, want %d float values", ErrFold, p.Norm, p.Layer, b.Name, b.DType, b.Shape, o)
			}
		} else {
			addBias[w.Name] = checkpoint.Entry{Name: p.Layer + ".bias", DType: tensor.F32, Shape: []int{o}}
		}
		fr.byName[p.Layer+".weight"] = i
		fr.byName[p.Layer+".bias"] = i
	}
	for _, e := range r.Entries() {
		if drop[e.Name] {
			continue
		}
		if _, ok := fr.byName[e.Name]; ok {
			e = checkpoint.Entry{Name: e.Name, DType: tensor.F32, Shape: slices.Clone(e.Shape)}
		}
		fr.entries = append(fr.entries, e)
		if b, ok := addBias[e.Name]; ok {
			fr.entries = append(fr.entries, b)
		}
	}
	return fr, nil
}

// Pairs are the folded pairs.
func (r *Reader) Pairs() []Pair { return slices.Clone(r.pairs) }

// Entries lists the tensors after folding.
func (r *Reader) Entries() []checkpoint.Entry { return r.entries }

// Tensor gives a folded weight or bias (computed once per pair, kept until both are released),
// or the underlying tensor.
func (r *Reader) Tensor(name string) (*tensor.Tensor, error) {
	i, ok := r.byName[name]
	if !ok {
		return r.Reader.Tensor(name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	wb, ok := r.cache[i]
	if !ok {
		var err error
		if wb, err = r.fold(r.pairs[i]); err != nil {
			return nil, err
		}
		r.cache[i] = wb
	}
	p := r.pairs[i]
	for _, e := range r.entries {
		if e.Name == name {
			if name == p.Layer+".weight" {
				return tensor.FromFloat32(wb[0], e.Shape...), nil
			}
			return tensor.FromFloat32(wb[1], e.Shape...), nil
		}
	}
	return nil, fmt.Errorf("internal: folded tensor %q not listed", name)
}

// Release drops a folded pair's values once asked for (the underlying tensors were released
// when folded).
func (r *Reader) Release(name string) {
	if i, ok := r.byName[name]; ok {
		r.mu.Lock()
		delete(r.cache, i)
		r.mu.Unlock()
		return
	}
	r.Reader.Release(name)
}

func (r *Reader) floats(name string) ([]float32, error) {
	t, err := r.Reader.Tensor(name)
	if err != nil {
		return nil, err
	}
	defer r.Reader.Release(name)
	v, err := t.Float32s()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return slices.Clone(v), nil
}

func (r *Reader) fold(p Pair) ([2][]float32, error) {
	var out [2][]float32
	vals := map[string][]float32{}
	names := []string{p.Layer + ".weight"}
	for _, param := range normParams {
		names = append(names, p.Norm+"."+param)
	}
	for _, e := range r.Reader.Entries() {
		if e.Name == p.Layer+".bias" {
			names = append(names, e.Name)
		}
	}
	for _, n := range names {
		v, err := r.floats(n)
		if err != nil {
			return out, fmt.Errorf("%w %q into %q: %v", ErrFold, p.Norm, p.Layer, err)
		}
		vals[n] = v
	}
	wf, bf, err := Weights(vals[p.Layer+".weight"], vals[p.Layer+".bias"], vals[p.Norm+".weight"], vals[p.Norm+".bias"],
		vals[p.Norm+".running_mean"], vals[p.Norm+".running_var"], p.EpsOrDefault())
	if err != nil {
		return out, fmt.Errorf("%q into %q: %w", p.Norm, p.Layer, err)
	}
	out[0], out[1] = wf, bf
	return out, nil
}

// UnmarshalJSON reads a pair as a recipe writes it: a list of names, ["features.0",
// "features.1"] or ["features.0", "features.1", "features.2"] (layer, norm, ReLU), or an object
// {"layer": ..., "norm": ..., "relu": ..., "eps": ...}. Unknown keys are errors.
func (p *Pair) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '[' {
		var names []string
		if err := json.Unmarshal(data, &names); err != nil {
			return fmt.Errorf("a fold entry is a list of module names: %v", err)
		}
		if len(names) < 2 || len(names) > 3 {
			return fmt.Errorf("a fold entry lists 2 or 3 modules (layer, norm[, relu]), got %d", len(names))
		}
		*p = Pair{Layer: names[0], Norm: names[1]}
		if len(names) == 3 {
			p.ReLU = names[2]
		}
		return nil
	}
	type plain Pair
	var q plain
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&q); err != nil {
		return fmt.Errorf("a fold entry is [layer, norm(, relu)] or {\"layer\", \"norm\", \"relu\", \"eps\"}: %v", err)
	}
	*p = Pair(q)
	return nil
}
