package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/names"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/tensor"
)

// ToolVersion is written into every quantized checkpoint's config.
const ToolVersion = "0.1.0"

// MetadataKey is the metadata key under which a quantized checkpoint stores its Config as JSON.
const MetadataKey = "monoquant"

// FormatVersion is the version of the quantized checkpoint format this package writes and reads
// (docs/FORMAT.md).
const FormatVersion = 1

// ErrFormat is wrapped by every error about a quantized checkpoint that does not match its config.
var ErrFormat = errors.New("invalid quantized checkpoint")

// Config is the quantization config stored in a quantized checkpoint (docs/FORMAT.md).
type Config struct {
	FormatVersion int    `json:"format_version"`
	Tool          string `json:"tool"`
	ToolVersion   string `json:"tool_version"`
	// Mode is the activation mode of every quantized layer ("none", "dynamic" or "static"),
	// "mixed" when they differ (each tensor's Activations then says); files of version 0.1
	// wrote "weight_only" or "static".
	Mode        string                      `json:"mode"`
	Tensors     map[string]*TensorConfig    `json:"tensors"`
	Activations map[string]ActivationParams `json:"activations,omitempty"`
	// Recipe is the resolved recipe of the run: feed it back (recipe=..., --recipe) to make the
	// same decisions again. TensorConfig.Rule indexes its rules.
	Recipe *recipe.Recipe `json:"recipe,omitempty"`
	// Aliases maps each tied tensor the file does not store to the stored tensor it shares
	// storage with (alias → stored name; absent when nothing was tied). Readers give the alias
	// the stored tensor's values (dequantized when it is quantized) and re-tie them. Added
	// after format 1's first files; readers that predate it ignore it.
	Aliases map[string]string `json:"aliases,omitempty"`
}

// TensorConfig records how one tensor was quantized.
type TensorConfig struct {
	Bits        int    `json:"bits"`
	Format      string `json:"format"`                // int8, int4, fp16, bf16
	Scheme      string `json:"scheme,omitempty"`      // symmetric, asymmetric (integer formats)
	Granularity string `json:"granularity,omitempty"` // per_tensor, per_channel, per_group
	Axis        int    `json:"axis"`                  // per_channel: the channel dimension
	GroupSize   int    `json:"group_size,omitempty"`  // per_group
	QDType      string `json:"qdtype,omitempty"`      // qint8, quint8, qint4, quint4
	ReduceRange bool   `json:"reduce_range,omitempty"`
	QuantMin    *int   `json:"quant_min,omitempty"` // a custom range, when one was used
	QuantMax    *int   `json:"quant_max,omitempty"`
	// Observer that produced the weight qparams: per-tensor or per-channel min/max, as torch's
	// MinMaxObserver / PerChannelMinMaxObserver ("none" for float casts).
	Observer   string `json:"observer"`
	DType      string `json:"dtype"`       // the original dtype
	Shape      []int  `json:"shape"`       // the original shape
	QuantShape []int  `json:"quant_shape"` // the shape the quantizer saw (per_group: [shape[0], rest])
	ZeroPoint  bool   `json:"zero_point"`  // whether <name>.zero_point is stored
	Layer      string `json:"layer"`
	LayerType  string `json:"layer_type"`
	// Activations is the layer's activation mode: "none", "dynamic" or "static" (absent in
	// files of version 0.1: "static" when Config.Activations has the layer, else weight-only).
	Activations string `json:"activations,omitempty"`
	// Method is how the weight became integers ("rtn"); Rule the index of the deciding rule in
	// Config.Recipe (absent in files of version 0.1).
	Method string `json:"method,omitempty"`
	Rule   *int   `json:"rule,omitempty"`
	// OutlierThreshold > 0: the layer runs LLM.int8() outlier handling with this threshold
	// (docs/methods.md). OutlierColumns is how many input features calibration found (static
	// layers); when it is > 0, <name>.outlier_columns (I64 [k], ascending) and
	// <name>.outlier_weight (the original dtype, [out, k]) hold them, and those columns of the
	// stored integers are 0. Dynamic layers find theirs per batch at run time (0 here). Both
	// absent in files written without outliers.
	OutlierThreshold float64 `json:"outlier_threshold,omitempty"`
	OutlierColumns   int     `json:"outlier_columns,omitempty"`
}

// ActivationParams are the input qparams of one layer in static mode.
type ActivationParams struct {
	Observer  string    `json:"observer"`
	QDType    string    `json:"qdtype"`
	Scheme    string    `json:"scheme"`
	Scale     []float32 `json:"scale"`
	ZeroPoint []int32   `json:"zero_point"`
	Min       float32   `json:"min"`
	Max       float32   `json:"max"`
	Batches   int       `json:"batches"`
	// OutlierThreshold > 0: the layer has LLM.int8() outliers on, and Outliers input
	// features reached it during calibration; the observer saw the input with them set to 0.
	OutlierThreshold float64 `json:"outlier_threshold,omitempty"`
	Outliers         int     `json:"outliers,omitempty"`
}

func tensorConfig(tp *plan.TensorPlan) *TensorConfig {
	s := tp.Spec
	tc := &TensorConfig{
		Bits: s.Format.Bits(), Format: s.Format.String(), DType: tp.DType.String(),
		Shape: append([]int{}, tp.Shape...), QuantShape: append([]int{}, tp.QuantShape...),
		Layer: tp.Layer, LayerType: string(tp.LayerType), Observer: "none",
		Activations: tp.Settings.Activations, Method: tp.Settings.Method,
		OutlierThreshold: tp.Settings.OutlierThreshold, OutlierColumns: len(tp.Outliers),
	}
	if tp.Rule >= 0 {
		r := tp.Rule
		tc.Rule = &r
	}
	if s.Format.IsInteger() {
		tc.Scheme, tc.Granularity, tc.QDType = s.Scheme.String(), s.Granularity.String(), s.QDType.String()
		tc.ReduceRange = s.ReduceRange
		if s.QuantRange != nil {
			lo, hi := s.QuantRange[0], s.QuantRange[1]
			tc.QuantMin, tc.QuantMax = &lo, &hi
		}
		tc.ZeroPoint = s.StoresZeroPoint()
		switch s.Granularity {
		case quant.PerTensor:
			tc.Observer = "minmax"
		case quant.PerChannel:
			tc.Observer, tc.Axis = "per_channel_minmax", s.Axis
		case quant.PerGroup:
			tc.Observer, tc.GroupSize = "per_group_minmax", s.GroupSize
		}
	}
	return tc
}

var (
	formats       = map[string]quant.Format{"int8": quant.Int8, "int4": quant.Int4, "fp16": quant.Float16, "bf16": quant.BFloat16}
	schemes       = map[string]quant.Scheme{"symmetric": quant.Symmetric, "asymmetric": quant.Asymmetric}
	granularities = map[string]quant.Granularity{"per_tensor": quant.PerTensor, "per_channel": quant.PerChannel, "per_group": quant.PerGroup}
	qdtypes       = map[string]quant.QDType{"qint8": quant.QInt8, "quint8": quant.QUInt8, "qint4": quant.QInt4, "quint4": quant.QUInt4}
)

// Spec rebuilds the normalized quant.Spec a tensor was quantized with.
func (tc *TensorConfig) Spec() (quant.Spec, error) {
	f, ok := formats[tc.Format]
	if !ok {
		return quant.Spec{}, fmt.Errorf("unknown format %q", tc.Format)
	}
	if tc.Bits != f.Bits() {
		return quant.Spec{}, fmt.Errorf("bits %d do not match format %s", tc.Bits, tc.Format)
	}
	s := quant.Spec{Format: f}
	if f.IsInteger() {
		if s.Scheme, ok = schemes[tc.Scheme]; !ok {
			return s, fmt.Errorf("unknown scheme %q", tc.Scheme)
		}
		if s.Granularity, ok = granularities[tc.Granularity]; !ok {
			return s, fmt.Errorf("unknown granularity %q", tc.Granularity)
		}
		if s.QDType, ok = qdtypes[tc.QDType]; !ok {
			return s, fmt.Errorf("unknown qdtype %q", tc.QDType)
		}
		s.Axis, s.GroupSize, s.ReduceRange = tc.Axis, tc.GroupSize, tc.ReduceRange
		if s.Granularity == quant.PerGroup && tc.GroupSize <= 0 {
			return s, fmt.Errorf("per_group needs a positive group_size, have %d", tc.GroupSize)
		}
		if (tc.QuantMin == nil) != (tc.QuantMax == nil) {
			return s, fmt.Errorf("quant_min and quant_max must be given together")
		}
		if tc.QuantMin != nil {
			s.QuantRange = &[2]int{*tc.QuantMin, *tc.QuantMax}
		}
	}
	if tensor.NumElements(tc.QuantShape) != tensor.NumElements(tc.Shape) || tensor.NumElements(tc.Shape) < 0 {
		return s, fmt.Errorf("quant_shape %v does not hold the elements of shape %v", tc.QuantShape, tc.Shape)
	}
	if _, err := s.Normalize(tc.QuantShape); err != nil {
		return s, err
	}
	if f.IsInteger() && tc.ZeroPoint != s.StoresZeroPoint() {
		return s, fmt.Errorf("zero_point is %v but scheme %s with %s needs %v", tc.ZeroPoint, tc.Scheme, tc.QDType, s.StoresZeroPoint())
	}
	return s, nil
}

// packedShape is the shape of a quantized tensor's stored values: the original shape for
// INT8, FP16 and BF16; for packed INT4 the original shape with the last dimension halved when
// it is even (every row starts on a byte), else one dimension of ceil(n/2) bytes.
func packedShape(f quant.Format, shape []int) []int {
	if f != quant.Int4 {
		return append([]int{}, shape...)
	}
	if len(shape) > 0 && shape[len(shape)-1]%2 == 0 {
		out := append([]int{}, shape...)
		out[len(out)-1] /= 2
		return out
	}
	return []int{(tensor.NumElements(shape) + 1) / 2}
}

// storedDType is the dtype of the stored values.
func storedDType(s *quant.Spec) tensor.DType {
	switch s.Format {
	case quant.Int8:
		if s.QDType == quant.QUInt8 {
			return tensor.U8
		}
		return tensor.I8
	case quant.Int4:
		return tensor.U8
	case quant.Float16:
		return tensor.F16
	}
	return tensor.BF16
}

// StoredLayout is how a tensor quantized with a spec is stored (docs/FORMAT.md).
type StoredLayout struct {
	Spec       quant.Spec // normalized
	DataDType  tensor.DType
	DataShape  []int
	ParamShape []int // nil for the float formats
	ZeroPoint  bool  // whether the zero points are stored
}

// Layout normalizes spec against shape and returns the stored layout: what every caller that
// allocates outputs itself (the C ABI, Python) asks instead of working it out again.
func Layout(spec quant.Spec, shape []int) (*StoredLayout, error) {
	if _, err := spec.Normalize(shape); err != nil {
		return nil, err
	}
	l := &StoredLayout{Spec: spec, DataDType: storedDType(&spec), DataShape: packedShape(spec.Format, shape)}
	if spec.Format.IsInteger() {
		l.ParamShape, l.ZeroPoint = spec.ParamShape(shape), spec.StoresZeroPoint()
	}
	return l, nil
}

// Entries returns the tensors a quantized tensor is stored as, in order: values, scale, and
// zero point when the scheme needs one.
func storedEntries(name string, s *quant.Spec, shape, qshape []int) []checkpoint.Entry {
	out := []checkpoint.Entry{{Name: name, DType: storedDType(s), Shape: packedShape(s.Format, shape)}}
	if s.Format.IsInteger() {
		ps := s.ParamShape(qshape)
		out = append(out, checkpoint.Entry{Name: name + names.ScaleSuffix, DType: tensor.F32, Shape: ps})
		if s.StoresZeroPoint() {
			out = append(out, checkpoint.Entry{Name: name + names.ZeroPointSuffix, DType: tensor.I32, Shape: append([]int{}, ps...)})
		}
	}
	return out
}

// outlierEntries are the tensors that hold a weight's calibrated outlier columns (none when k
// is 0): the column indices and the float weight slice [rows, k] in the original dtype dt.
func outlierEntries(name string, dt tensor.DType, shape []int, k int) []checkpoint.Entry {
	if k == 0 || len(shape) != 2 {
		return nil
	}
	return []checkpoint.Entry{{Name: name + names.OutlierColumnsSuffix, DType: tensor.I64, Shape: []int{k}},
		{Name: name + names.OutlierWeightSuffix, DType: dt, Shape: []int{shape[0], k}}}
}

// Marshal encodes the config as the JSON stored under MetadataKey.
func (c *Config) Marshal() (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encoding the quantization config: %w", err)
	}
	return string(b), nil
}

// IsQuantized reports whether checkpoint metadata carries a monoquant config.
func IsQuantized(metadata map[string]string) bool {
	_, ok := metadata[MetadataKey]
	return ok
}

// ReadConfig parses and validates the config of a quantized checkpoint against its entries:
// every configured tensor must be stored with the dtype and shape its config implies, with a
// scale tensor (and a zero point exactly when the scheme needs one). Errors wrap ErrFormat and
// name the tensor.
func ReadConfig(entries []checkpoint.Entry, metadata map[string]string) (*Config, error) {
	raw, ok := metadata[MetadataKey]
	if !ok {
		return nil, fmt.Errorf("%w: no %q metadata key; this is not a monoquant checkpoint", ErrFormat, MetadataKey)
	}
	var c Config
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return nil, fmt.Errorf("%w: the %q metadata is not valid JSON: %v", ErrFormat, MetadataKey, err)
	}
	if c.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("%w: format_version %d is not supported (this build reads version %d)", ErrFormat, c.FormatVersion, FormatVersion)
	}
	if len(c.Tensors) == 0 {
		return nil, fmt.Errorf("%w: the config lists no quantized tensors", ErrFormat)
	}
	byName := map[string]checkpoint.Entry{}
	for _, e := range entries {
		byName[e.Name] = e
	}
	for _, name := range slices.Sorted(maps.Keys(c.Tensors)) {
		tc := c.Tensors[name]
		if tc == nil {
			return nil, fmt.Errorf("%w: tensor %q: null config", ErrFormat, name)
		}
		s, err := tc.Spec()
		if err != nil {
			return nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
		}
		if tc.Method != "" {
			if _, err := method.Parse(tc.Method); err != nil {
				return nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
			}
		}
		if _, err := tensor.ParseDType(tc.DType); err != nil {
			return nil, fmt.Errorf("%w: tensor %q: original dtype: %v", ErrFormat, name, err)
		}
		if tc.OutlierThreshold < 0 || math.IsNaN(tc.OutlierThreshold) || math.IsInf(tc.OutlierThreshold, 0) || tc.OutlierColumns < 0 ||
			(tc.OutlierColumns > 0 && (tc.OutlierThreshold == 0 || s.Format != quant.Int8 || len(tc.Shape) != 2 || tc.OutlierColumns > tc.Shape[1])) {
			return nil, fmt.Errorf("%w: tensor %q: outlier_threshold %g with %d outlier_columns does not fit a %s tensor of shape %v (outliers are input columns of an INT8 [out, in] weight)",
				ErrFormat, name, tc.OutlierThreshold, tc.OutlierColumns, tc.Format, tc.Shape)
		}
		dt, _ := tensor.ParseDType(tc.DType)
		wants := append(storedEntries(name, &s, tc.Shape, tc.QuantShape), outlierEntries(name, dt, tc.Shape, tc.OutlierColumns)...)
		for _, want := range wants {
			got, ok := byName[want.Name]
			if !ok {
				return nil, fmt.Errorf("%w: tensor %q: the checkpoint has no tensor %q", ErrFormat, name, want.Name)
			}
			if got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) {
				return nil, fmt.Errorf("%w: tensor %q is %v %v, the config implies %v %v", ErrFormat, want.Name, got.DType, got.Shape, want.DType, want.Shape)
			}
		}
		if !s.StoresZeroPoint() {
			if _, ok := byName[name+names.ZeroPointSuffix]; ok && s.Format.IsInteger() {
				return nil, fmt.Errorf("%w: tensor %q has a zero_point tensor but its %s %s scheme stores none", ErrFormat, name, tc.Scheme, tc.QDType)
			}
		}
	}
	for alias, target := range c.Aliases {
		if _, stored := byName[alias]; stored {
			return nil, fmt.Errorf("%w: aliases: %q is stored in the file, so it cannot alias %q", ErrFormat, alias, target)
		}
		if _, ok := c.Tensors[alias]; ok {
			return nil, fmt.Errorf("%w: aliases: %q is a quantized tensor of the config, so it cannot alias %q", ErrFormat, alias, target)
		}
		if _, ok := byName[target]; !ok {
			return nil, fmt.Errorf("%w: aliases: %q aliases %q, which the file does not store", ErrFormat, alias, target)
		}
	}
	for layer, a := range c.Activations {
		if len(a.Scale) == 0 || len(a.Scale) != len(a.ZeroPoint) {
			return nil, fmt.Errorf("%w: activations of layer %q: %d scales and %d zero points", ErrFormat, layer, len(a.Scale), len(a.ZeroPoint))
		}
		qd, ok := qdtypes[a.QDType]
		if !ok {
			return nil, fmt.Errorf("%w: activations of layer %q: unknown qdtype %q", ErrFormat, layer, a.QDType)
		}
		if err := checkScales("activations of layer "+fmt.Sprintf("%q", layer), qd, a.Scale); err != nil {
			return nil, err
		}
		if err := checkZeroPoints("activations of layer "+fmt.Sprintf("%q", layer), qd, a.ZeroPoint); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// checkScales is the one rule for stored scales, of weights and activations alike: every
// scale positive, finite, and small enough that scale × (qmax − qmin) is a finite float32, so
// no dequantized value of qdtype qd can be Inf. A zero, negative, NaN, infinite or huge scale
// would make the values it covers NaN, Inf or meaningless; what names the tensor or layer.
func checkScales(what string, qd quant.QDType, scale []float32) error {
	lo, hi := qd.Limits()
	limit := math.MaxFloat32 / float64(hi-lo)
	for i, v := range scale {
		if !(v > 0) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: %s: scale %d is %v; scales must be positive and finite", ErrFormat, what, i, v)
		}
		if float64(v) > limit {
			return fmt.Errorf("%w: %s: scale %d is %v; above %.3g, %v values would dequantize to infinity", ErrFormat, what, i, v, limit, qd)
		}
	}
	return nil
}

// checkZeroPoints is the one rule for stored zero points: each within its qdtype's integer
// range.
func checkZeroPoints(what string, qd quant.QDType, zp []int32) error {
	lo, hi := qd.Limits()
	for i, v := range zp {
		if v < lo || v > hi {
			return fmt.Errorf("%w: %s: zero point %d is %d, outside %v [%d, %d]", ErrFormat, what, i, v, qd, lo, hi)
		}
	}
	return nil
}

// LoadConfig reads and validates the config of the quantized checkpoint r, as every reader of a
// quantized file must (the CLI, dequantize, mq_model_load and so Python's monoquant.load): the
// checks of ReadConfig, then every stored scale and zero point (see checkScales and
// checkZeroPoints). A tampered file is refused here, with the same error whichever entry
// point opened it.
func LoadConfig(r checkpoint.Reader) (*Config, error) {
	c, err := ReadConfig(r.Entries(), r.Metadata())
	if err != nil {
		return nil, err
	}
	for _, name := range slices.Sorted(maps.Keys(c.Tensors)) {
		if _, _, err := readQParams(r, name, c.Tensors[name]); err != nil {
			return nil, err
		}
		if _, _, err := readOutliers(r, name, c.Tensors[name]); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// readOutliers reads and checks a weight's calibrated outlier columns (both nil when it has
// none): the column indices, strictly ascending inside the weight's inputs, and the float
// weight slice [rows, k] as float32, every value finite.
func readOutliers(r checkpoint.Reader, name string, tc *TensorConfig) (cols []int, w []float32, err error) {
	k := tc.OutlierColumns
	if k == 0 || len(tc.Shape) != 2 {
		return nil, nil, nil
	}
	in := tc.Shape[1]
	ct, err := r.Tensor(name + names.OutlierColumnsSuffix)
	if err != nil {
		return nil, nil, fmt.Errorf("tensor %q: %w", name+names.OutlierColumnsSuffix, err)
	}
	if ct.DType != tensor.I64 || len(ct.Data) != 8*k {
		r.Release(name + names.OutlierColumnsSuffix)
		return nil, nil, fmt.Errorf("%w: tensor %q is %v with %d bytes, its config needs %d int64 indices", ErrFormat, name+names.OutlierColumnsSuffix, ct.DType, len(ct.Data), k)
	}
	cols = make([]int, k)
	for i, v := range tensor.View[int64](ct.Data) {
		if v < 0 || v >= int64(in) || (i > 0 && int(v) <= cols[i-1]) {
			r.Release(name + names.OutlierColumnsSuffix)
			return nil, nil, fmt.Errorf("%w: tensor %q: index %d is %d; outlier columns must be strictly ascending inside the %d inputs", ErrFormat, name+names.OutlierColumnsSuffix, i, v, in)
		}
		cols[i] = int(v)
	}
	r.Release(name + names.OutlierColumnsSuffix)
	wt, err := r.Tensor(name + names.OutlierWeightSuffix)
	if err != nil {
		return nil, nil, fmt.Errorf("tensor %q: %w", name+names.OutlierWeightSuffix, err)
	}
	defer r.Release(name + names.OutlierWeightSuffix)
	if !wt.DType.IsFloat() || wt.Len() != tc.Shape[0]*k {
		return nil, nil, fmt.Errorf("%w: tensor %q is %v %v, its config needs [%d, %d] floats", ErrFormat, name+names.OutlierWeightSuffix, wt.DType, wt.Shape, tc.Shape[0], k)
	}
	vals, err := wt.Float32s()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name+names.OutlierWeightSuffix, err)
	}
	w = slices.Clone(vals)
	for i, v := range w {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, nil, fmt.Errorf("%w: tensor %q: value %d is %v; outlier weights must be finite", ErrFormat, name+names.OutlierWeightSuffix, i, v)
		}
	}
	return cols, w, nil
}

// readQParams reads and checks a quantized tensor's scales and zero points (zero points are all
// 0 when the scheme stores none; both nil for float formats).
func readQParams(r checkpoint.Reader, name string, tc *TensorConfig) (scale []float32, zp []int32, err error) {
	s, err := tc.Spec()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: tensor %q: %v", ErrFormat, name, err)
	}
	if !s.Format.IsInteger() {
		return nil, nil, nil
	}
	np := s.NumParams(tc.QuantShape)
	st, err := r.Tensor(name + names.ScaleSuffix)
	if err != nil {
		return nil, nil, fmt.Errorf("tensor %q: %w", name+names.ScaleSuffix, err)
	}
	scale = append([]float32(nil), tensor.View[float32](st.Data)...)
	r.Release(name + names.ScaleSuffix)
	if len(scale) != np {
		return nil, nil, fmt.Errorf("%w: tensor %q has %d scales, its config needs %d", ErrFormat, name+names.ScaleSuffix, len(scale), np)
	}
	if err := checkScales(fmt.Sprintf("tensor %q", name+names.ScaleSuffix), s.QDType, scale); err != nil {
		return nil, nil, err
	}
	zp = make([]int32, np)
	if s.StoresZeroPoint() {
		zt, err := r.Tensor(name + names.ZeroPointSuffix)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %w", name+names.ZeroPointSuffix, err)
		}
		if len(zt.Data)/4 != np {
			return nil, nil, fmt.Errorf("%w: tensor %q has %d zero points, its config needs %d", ErrFormat, name+names.ZeroPointSuffix, len(zt.Data)/4, np)
		}
		copy(zp, tensor.View[int32](zt.Data))
		r.Release(name + names.ZeroPointSuffix)
		if err := checkZeroPoints(fmt.Sprintf("tensor %q", name+names.ZeroPointSuffix), s.QDType, zp); err != nil {
			return nil, nil, err
		}
	}
	return scale, zp, nil
}
