package model

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/names"
	"github.com/monoquant/monoquant/core/observer"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/tensor"
	"github.com/monoquant/monoquant/core/warning"
)

// ErrCalibration is wrapped by errors about calibration data.
var ErrCalibration = errors.New("calibration")

// Calibration holds one activation observer per quantized layer (static mode). It is safe for
// concurrent use.
type Calibration struct {
	mu      sync.Mutex
	opts    map[string]observer.Options
	layers  []string // static layers, file order
	allowed map[string]bool
	obs     map[string]observer.Observer
	batches map[string]int
	spiky   map[string]float32 // layers whose input had heavy outliers: max |x| / 99.9th percentile
	// LLM.int8() outliers: the threshold of each static layer that has them on, and the input
	// features (the last dimension of its input) found so far with some |x| >= threshold.
	thresh  map[string]float64
	outlier map[string][]bool
	// params memoises Params (the histogram observer's range search is not free) until the
	// next accepted batch.
	params *calParams
}

type calParams struct {
	acts  map[string]ActivationParams
	warns []warning.Warning
}

// NewCalibration prepares observers for the quantized layers of a static-mode plan.
func NewCalibration(p *plan.Plan) (*Calibration, error) {
	if !p.Valid() {
		return nil, fmt.Errorf("%w: nil plan", ErrCalibration)
	}
	layers := p.StaticLayers()
	if len(layers) == 0 {
		return nil, plan.OptionErr("activations", "calibration needs layers with static activations, and this plan has none (give calibration data, or activations static)")
	}
	for _, l := range layers {
		if _, err := observer.New(p.Observers[l]); err != nil {
			return nil, plan.OptionErr("observer", "layer %q: %v", l, err)
		}
	}
	c := &Calibration{opts: p.Observers, layers: layers, allowed: map[string]bool{},
		obs: map[string]observer.Observer{}, batches: map[string]int{}, spiky: map[string]float32{},
		thresh: map[string]float64{}, outlier: map[string][]bool{}}
	for _, l := range c.layers {
		c.allowed[l] = true
	}
	for _, t := range p.Quantized() {
		if t.Settings.OutlierThreshold > 0 && t.Settings.Activations == recipe.ActivationsStatic {
			c.thresh[t.Layer] = t.Settings.OutlierThreshold
		}
	}
	return c, nil
}

// Calibrate feeds one batch of a layer's input activations to the layer's observer.
func (c *Calibration) Calibrate(layer string, x *tensor.Tensor) error {
	if c == nil {
		return fmt.Errorf("%w: nil calibration", ErrCalibration)
	}
	if !c.allowed[layer] {
		return fmt.Errorf("%w: layer %q has no static activations in this plan (static layers: %s)", ErrCalibration, layer, names.List(c.layers, 8))
	}
	if x == nil {
		return fmt.Errorf("%w: layer %q: nil activation", ErrCalibration, layer)
	}
	if err := x.Validate(); err != nil {
		return fmt.Errorf("%w: layer %q: activation: %v", ErrCalibration, layer, err)
	}
	if !x.DType.IsFloat() {
		return fmt.Errorf("%w: layer %q: activation dtype %v is not a floating-point type", ErrCalibration, layer, x.DType)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var found []bool
	if t, ok := c.thresh[layer]; ok {
		masked, f, err := c.maskOutliers(layer, x, t)
		if err != nil {
			return err
		}
		x, found = masked, f
	}
	o, ok := c.obs[layer]
	if !ok {
		var err error
		if o, err = observer.New(c.opts[layer]); err != nil {
			return fmt.Errorf("%w: layer %q: %w", ErrCalibration, layer, err)
		}
	}
	// A refused batch (NaN) leaves the observer as it was; a layer counts as calibrated only
	// once a batch has been accepted.
	if err := o.Observe(x); err != nil {
		return fmt.Errorf("%w: layer %q: %w", ErrCalibration, layer, err)
	}
	c.obs[layer] = o
	c.batches[layer]++
	c.params = nil
	if found != nil {
		c.outlier[layer] = found
	}
	if _, seen := c.spiky[layer]; !seen {
		if r := outlierRatio(x); r > OutlierRatio {
			c.spiky[layer] = r
		}
	}
	return nil
}

// maskOutliers adds the input features of batch x (its last dimension) that have some
// |value| >= t to the layer's LLM.int8() outliers, and returns x with every outlier feature
// found so far set to 0: what the layer's INT8 matmul will see once those features go
// through it in float, and so what its activation observer must see. A feature that becomes
// an outlier only in a later batch was observed before with values below t, which stay
// inside the range the observer needs anyway (|x| < t). x itself is never written.
//
// It returns the masked batch and the layer's outlier features with this batch's added, which
// Calibrate keeps once the observer has accepted the batch (a refused batch changes nothing).
func (c *Calibration) maskOutliers(layer string, x *tensor.Tensor, t float64) (*tensor.Tensor, []bool, error) {
	if len(x.Shape) == 0 {
		return nil, nil, fmt.Errorf("%w: layer %q: a 0-d activation has no input features to find outliers in", ErrCalibration, layer)
	}
	k := x.Shape[len(x.Shape)-1]
	seen, ok := c.outlier[layer]
	if !ok {
		seen = make([]bool, k)
	} else if len(seen) != k {
		return nil, nil, fmt.Errorf("%w: layer %q: this batch has %d input features, an earlier one %d", ErrCalibration, layer, k, len(seen))
	}
	v, err := x.Float32s()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: layer %q: activation: %v", ErrCalibration, layer, err)
	}
	found := slices.Clone(seen)
	th := float32(t)
	anyFound := false
	for i := 0; i+k <= len(v); i += k {
		for j, a := range v[i : i+k] {
			if a >= th || a <= -th {
				found[j] = true
			}
		}
	}
	for _, f := range found {
		anyFound = anyFound || f
	}
	if !anyFound {
		return x, found, nil
	}
	out := make([]float32, len(v))
	copy(out, v)
	for i := 0; i+k <= len(out); i += k {
		for j, f := range found {
			if f {
				out[i+j] = 0
			}
		}
	}
	return tensor.FromFloat32(out, x.Shape...), found, nil
}

// OutlierColumns returns the LLM.int8() outlier input features calibration found for a
// layer, ascending (nil when it has outliers off, saw no batch or found none).
func (c *Calibration) OutlierColumns(layer string) []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for j, f := range c.outlier[layer] {
		if f {
			out = append(out, j)
		}
	}
	return out
}

// OutlierRatio is the activation outlier threshold: a layer whose input has max |x| above this
// many times the 99.9th percentile of |x| gets a warning.ActivationOutliers warning, since one
// per-tensor INT8 scale must then stretch over values the rest of the data never reaches.
const OutlierRatio = 16

// outlierSample is how many values of a batch the outlier check looks at, at most: an evenly
// strided sample, as in x.reshape(-1)[::n // outlierSample].
const outlierSample = 65536

// outlierRatio returns max |x| / q999(|x|) over an evenly strided sample of x, q999 the 99.9th
// percentile with linear interpolation (torch.quantile's default), or 0 when the batch is too
// small (fewer than 64 values) to say, the percentile is 0, or a value is not finite.
func outlierRatio(x *tensor.Tensor) float32 {
	n := x.Len()
	if n < 64 {
		return 0
	}
	step := 1
	if n > outlierSample {
		step = n / outlierSample
	}
	m := (n + step - 1) / step
	// The percentile needs the two order statistics at floor(0.999·(m−1)) and the one above:
	// they are among the top `keep` values, kept sorted ascending in top.
	pos := 0.999 * float64(m-1)
	lo := int(pos)
	keep := m - lo
	top := make([]float32, 0, keep)
	es := x.DType.Size()
	var one [1]float32
	for i := 0; i < n; i += step {
		tensor.ConvertToFloat32(one[:], x.DType, x.Data[i*es:(i+1)*es])
		v := float32(math.Abs(float64(one[0])))
		if v != v || math.IsInf(float64(v), 0) {
			return 0
		}
		if len(top) == keep && v <= top[0] {
			continue
		}
		j, _ := slices.BinarySearch(top, v)
		if len(top) == keep {
			copy(top[:j-1], top[1:j]) // drop the smallest, insert v in order
			top[j-1] = v
		} else {
			top = slices.Insert(top, j, v)
		}
	}
	a := float64(top[0])
	q := a
	if len(top) > 1 {
		q = a + (float64(top[1])-a)*(pos-float64(lo))
	}
	if !(q > 0) {
		return 0
	}
	return float32(float64(top[len(top)-1]) / q)
}

// CalibrateReader feeds recorded activations from a checkpoint (the CLI's --calibration file):
// a tensor named after a layer is one batch of its input; "<layer>.<i>" (a list in a .pt, or
// numbered keys in a safetensors file) are batches fed in ascending i.
func (c *Calibration) CalibrateReader(r checkpoint.Reader) error {
	type batch struct {
		name  string
		layer string
		index int
	}
	var all []batch
	for _, e := range r.Entries() {
		if c.allowed[e.Name] {
			all = append(all, batch{e.Name, e.Name, -1})
			continue
		}
		layer, idx := names.Split(e.Name)
		if i, err := strconv.Atoi(idx); err == nil && i >= 0 && c.allowed[layer] {
			all = append(all, batch{e.Name, layer, i})
			continue
		}
		return fmt.Errorf("%w: calibration tensor %q names no quantized layer (want <layer> or <layer>.<batch>; quantized layers: %s)", ErrCalibration, e.Name, names.List(c.layers, 8))
	}
	if len(all) == 0 {
		return fmt.Errorf("%w: the calibration file holds no tensors", ErrCalibration)
	}
	// Group batches by layer (in order of first appearance), then by batch index: safetensors
	// files list keys sorted as strings, where "x.10" comes before "x.2".
	order := map[string]int{}
	for _, b := range all {
		if _, ok := order[b.layer]; !ok {
			order[b.layer] = len(order)
		}
	}
	sort.SliceStable(all, func(i, j int) bool {
		if oi, oj := order[all[i].layer], order[all[j].layer]; oi != oj {
			return oi < oj
		}
		return all[i].index < all[j].index
	})
	for _, b := range all {
		t, err := r.Tensor(b.name)
		if err != nil {
			return fmt.Errorf("%w: calibration tensor %q: %v", ErrCalibration, b.name, err)
		}
		err = c.Calibrate(b.layer, t)
		r.Release(b.name)
		if err != nil {
			return err
		}
	}
	return nil
}

// Params returns the activation qparams of every layer that saw data, and a warning for each
// quantized layer that saw none. No data at all is an error: static mode without calibration
// has nothing to store.
func (c *Calibration) Params() (map[string]ActivationParams, []warning.Warning, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.params != nil {
		return maps.Clone(c.params.acts), slices.Clone(c.params.warns), nil
	}
	if len(c.obs) == 0 {
		return nil, nil, fmt.Errorf("%w: static mode needs calibration data, and no layer has seen any (quantized layers: %s)", ErrCalibration, names.List(c.layers, 8))
	}
	out := map[string]ActivationParams{}
	var warns []warning.Warning
	for _, l := range c.layers {
		o, ok := c.obs[l]
		if !ok {
			warns = append(warns, warning.Warning{Code: warning.NoCalibration, Layer: l,
				Message: fmt.Sprintf("layer %q saw no calibration data; its activations stay float", l)})
			continue
		}
		s, z, err := o.QParams()
		if err != nil {
			return nil, nil, fmt.Errorf("%w: layer %q: %v", ErrCalibration, l, err)
		}
		mn, mx := o.Range()
		a := ActivationParams{Observer: c.opts[l].Kind.String(), QDType: o.Options().DType.String(), Scheme: o.Options().Scheme.String(),
			Scale: s, ZeroPoint: z, Batches: c.batches[l]}
		if len(mn) > 0 && len(mx) > 0 && !math.IsInf(float64(mn[0]), 0) && !math.IsInf(float64(mx[0]), 0) {
			a.Min, a.Max = mn[0], mx[0]
		}
		if t, ok := c.thresh[l]; ok {
			a.OutlierThreshold = t
			for _, f := range c.outlier[l] {
				if f {
					a.Outliers++
				}
			}
		}
		out[l] = a
		if r, ok := c.spiky[l]; ok {
			warns = append(warns, warning.Warning{Code: warning.ActivationOutliers, Layer: l,
				Message: fmt.Sprintf("the input of layer %q has heavy outliers (max |x| is %.0f× its 99.9th percentile, above %d×); one per-tensor INT8 activation scale loses precision there: consider skipping the layer or the histogram observer", l, r, OutlierRatio)})
		}
	}
	c.params = &calParams{acts: out, warns: warns}
	return maps.Clone(out), slices.Clone(warns), nil
}
