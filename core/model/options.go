package model

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/monoquant/monoquant/core/method"
	"github.com/monoquant/monoquant/core/observer"
	"github.com/monoquant/monoquant/core/quant"
)

// ToolVersion is written into every quantized checkpoint's config.
const ToolVersion = "0.1.0"

// ErrOption is wrapped by every error about invalid Options; the message names the option.
var ErrOption = errors.New("invalid option")

// ErrNothingToQuantize is returned when the selection leaves no tensor to quantize.
var ErrNothingToQuantize = errors.New("nothing to quantize")

func optErr(option, format string, a ...any) error {
	return fmt.Errorf("%w %s: %s", ErrOption, option, fmt.Sprintf(format, a...))
}

// Mode says whether activations are quantized too.
type Mode int

const (
	// WeightOnly quantizes weights; activations stay float (the default; torch's "dynamic"
	// quantization stores the same weights).
	WeightOnly Mode = iota
	// Static also records activation qparams per layer from calibration data.
	Static
)

func (m Mode) String() string {
	if m == Static {
		return "static"
	}
	return "weight_only"
}

// Options choose what is quantized and how. The zero value plus Bits is a valid configuration:
// linear, conv2d and LSTM weights, INT8 per-channel, weight only.
type Options struct {
	// Bits picks the Spec template when Spec.Format is unset: 8 → INT8 per-channel symmetric
	// (axis 0), 4 → INT4 group-wise asymmetric (group size 128), 16 → FP16 (BF16 when BFloat16).
	Bits     int
	BFloat16 bool
	// Spec is the template every quantized tensor starts from; Format set means "use as is"
	// (Bits is then ignored). Axis is chosen per layer (0, or 1 for transposed weights);
	// the group size falls back per tensor when it does not divide a row (see Plan).
	Spec quant.Spec
	// LayerTypes to quantize; nil means linear, conv2d and lstm. Embedding is opt-in.
	LayerTypes []LayerType
	// Skip holds module or tensor names to leave alone: exact names ("fc"), prefixes
	// ("encoder." or "encoder" matches everything below it) and path.Match globs
	// ("classifier.*", "*.lm_head"). A pattern matches a layer by its module name or any
	// of its tensors by their own name.
	Skip []string
	// Mode and the activation observer used in Static mode.
	Mode Mode
	// Observer names the activation observer: "minmax", "moving_average" or "histogram"
	// (the default; quint8, affine, full range — torch's x86 qconfig adds reduce_range, which
	// ActivationObserver can ask for). ActivationObserver overrides every field when its
	// Kind is set.
	Observer           string
	ActivationObserver observer.Options
	// Method says how weights become integers (core/method): "rtn" (the default, ""),
	// "mse", "hqq" or "gptq". hqq needs the asymmetric scheme and picks it when Spec.Scheme
	// is unset; gptq needs each layer's input Hessian in Run.Hessians. MethodOptions tunes
	// the methods (its Hessian field is ignored: Hessians come per layer through Run).
	Method        string
	MethodOptions method.Options
}

// normalized is Options after defaults and validation.
type normalized struct {
	spec   quant.Spec
	types  map[LayerType]bool
	skip   []string
	mode   Mode
	actObs observer.Options
	method method.Method
	mopts  method.Options
}

// SpecForBits returns the spec template for a bit width: 8 → INT8 per-channel symmetric, 4 →
// INT4 group-wise asymmetric with group size 128, 16 → FP16 or BF16.
func SpecForBits(bits int, bf16 bool) (quant.Spec, error) {
	switch bits {
	case 8:
		return quant.Spec{Format: quant.Int8, Scheme: quant.Symmetric, Granularity: quant.PerChannel}, nil
	case 4:
		// Asymmetric: on all-MiniLM-L6-v2's 37 Linear weights (INT4 g128) it gains 1.02 dB of
		// mean weight SQNR over symmetric (19.45 against 18.43 dB) at round-to-nearest speed;
		// method mse gains 1.48 dB but runs far below 1 GB/s (docs/methods.md).
		return quant.Spec{Format: quant.Int4, Scheme: quant.Asymmetric, Granularity: quant.PerGroup, GroupSize: 128}, nil
	case 16:
		if bf16 {
			return quant.Spec{Format: quant.BFloat16}, nil
		}
		return quant.Spec{Format: quant.Float16}, nil
	}
	return quant.Spec{}, optErr("bits", "%d is not supported (want 8, 4 or 16)", bits)
}

func (o *Options) normalize() (*normalized, error) {
	n := &normalized{mode: o.Mode}
	if o.Spec.Format != 0 {
		n.spec = o.Spec
	} else {
		bits := o.Bits
		if bits == 0 {
			bits = 8
		}
		s, err := SpecForBits(bits, o.BFloat16)
		if err != nil {
			return nil, err
		}
		s.NonFinite = o.Spec.NonFinite
		s.SaturateFloat16 = o.Spec.SaturateFloat16
		if o.Spec.Scheme != 0 {
			s.Scheme = o.Spec.Scheme
		} else if o.Method == string(method.HQQ) && s.Format.IsInteger() {
			s.Scheme = quant.Asymmetric // hqq moves the zero point: the scheme that stores one
		}
		if o.Spec.GroupSize != 0 {
			s.GroupSize = o.Spec.GroupSize
		}
		if o.Spec.QDType != 0 {
			s.QDType = o.Spec.QDType
		}
		n.spec = s
	}
	if n.spec.Format.IsInteger() && n.spec.Granularity == quant.PerGroup && n.spec.GroupSize < 0 {
		return nil, optErr("group_size", "%d must be positive", n.spec.GroupSize)
	}
	// Check the template against a shape every granularity accepts, so that a bad scheme or
	// qdtype is reported as an option error before any tensor is read.
	if n.spec.Format == quant.Int4 && n.spec.Granularity == 0 {
		n.spec.Granularity = quant.PerGroup
	}
	probe := n.spec
	probe.Axis = 0
	probeShape := []int{2, 1}
	if probe.Granularity == quant.PerGroup {
		if probe.GroupSize == 0 {
			probe.GroupSize = 128
		}
		probeShape = []int{2, probe.GroupSize}
	}
	if _, err := probe.Normalize(probeShape); err != nil {
		return nil, optErr("spec", "%v", err)
	}
	probe.Axis = 0
	n.spec = probe
	m, err := method.Parse(o.Method)
	if err != nil {
		return nil, optErr("method", "%v", err)
	}
	if err := m.Check(n.spec); err != nil {
		return nil, optErr("method", "%v", err)
	}
	n.method, n.mopts = m, o.MethodOptions
	n.mopts.Hessian = nil
	types := o.LayerTypes
	if types == nil {
		types = DefaultLayerTypes
	}
	if len(types) == 0 {
		return nil, optErr("layers", "no layer types selected")
	}
	n.types = map[LayerType]bool{}
	for _, t := range types {
		if !t.Quantizable() {
			return nil, optErr("layers", "%q is not a quantizable layer type (want one of %s)", t, strings.Join(quantizableNames(), ", "))
		}
		n.types[t] = true
	}
	for _, p := range o.Skip {
		if p == "" {
			return nil, optErr("skip", "empty pattern")
		}
		if _, err := path.Match(p, ""); err != nil {
			return nil, optErr("skip", "bad pattern %q: %v", p, err)
		}
		n.skip = append(n.skip, p)
	}
	switch o.Mode {
	case WeightOnly:
	case Static:
		a, err := activationOptions(o.Observer, o.ActivationObserver)
		if err != nil {
			return nil, err
		}
		n.actObs = a
	default:
		return nil, optErr("mode", "unknown mode %d", int(o.Mode))
	}
	return n, nil
}

// activationOptions resolves the activation observer: quint8 affine, torch's defaults for
// activations, with the kind chosen by name.
func activationOptions(name string, tmpl observer.Options) (observer.Options, error) {
	if tmpl.Kind != 0 {
		if tmpl.Kind.PerChannel() {
			return tmpl, optErr("observer", "%v keeps one range per channel; activations need a per-tensor observer", tmpl.Kind)
		}
		// Refuse what torch's constructor would refuse now, not at the first calibration batch.
		if _, err := observer.New(tmpl); err != nil {
			return tmpl, optErr("observer", "%v", err)
		}
		return tmpl, nil
	}
	if name == "" {
		name = "histogram"
	}
	k, err := observer.ParseKind(name)
	if err != nil {
		return tmpl, optErr("observer", "%v", err)
	}
	if k.PerChannel() {
		return tmpl, optErr("observer", "%q keeps one range per channel; activations need minmax, moving_average or histogram", name)
	}
	tmpl.Kind = k
	if tmpl.DType == 0 {
		tmpl.DType = quant.QUInt8
	}
	if tmpl.Scheme == 0 {
		tmpl.Scheme = quant.Asymmetric
	}
	return tmpl, nil
}

// skipped reports whether a pattern names the layer or the tensor, and which pattern did.
func (n *normalized) skipped(layer, name string) (string, bool) {
	for _, p := range n.skip {
		for _, s := range []string{layer, name} {
			if s == "" {
				continue
			}
			if s == p || strings.HasPrefix(s, strings.TrimSuffix(p, ".")+".") {
				return p, true
			}
			if ok, _ := path.Match(p, s); ok {
				return p, true
			}
			// "*.lm_head" also matches a root-level "lm_head".
			if strings.HasPrefix(p, "*.") {
				if ok, _ := path.Match(p[2:], s); ok {
					return p, true
				}
			}
		}
	}
	return "", false
}

func quantizableNames() []string {
	var out []string
	for _, t := range allLayerTypes {
		if t.Quantizable() {
			out = append(out, string(t))
		}
	}
	sort.Strings(out)
	return out
}
