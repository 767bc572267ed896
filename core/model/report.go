package model

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/warning"
)

// LowSQNR is the SQNR (dB) under which a quantized tensor draws a warning.LowSQNR warning, by
// format. INT8 per-channel of trained weights lands near 40 dB; under 20 dB the noise is a tenth
// of the signal's amplitude. INT4 g128 lands near 20 dB, so its floor is 10 dB. The float formats
// keep 8 (BF16) or 11 (FP16) significant bits and should reach about 45 and 65 dB.
var LowSQNR = map[quant.Format]float64{quant.Int8: 20, quant.Int4: 10, quant.BFloat16: 35, quant.Float16: 50}

// Decibels is an SQNR. It marshals +Inf (an exact round trip) as the JSON string "inf" and NaN
// (an all-zero tensor) as null, since JSON has no numbers for them.
type Decibels float64

func (d Decibels) MarshalJSON() ([]byte, error) {
	f := float64(d)
	switch {
	case math.IsNaN(f):
		return []byte("null"), nil
	case math.IsInf(f, 1):
		return []byte(`"inf"`), nil
	case math.IsInf(f, -1):
		return []byte(`"-inf"`), nil
	}
	return strconv.AppendFloat(nil, f, 'g', -1, 64), nil
}

func (d *Decibels) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "null":
		*d = Decibels(math.NaN())
		return nil
	case `"inf"`:
		*d = Decibels(math.Inf(1))
		return nil
	case `"-inf"`:
		*d = Decibels(math.Inf(-1))
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("SQNR: %w", err)
	}
	*d = Decibels(f)
	return nil
}

// TensorReport describes one quantized tensor.
type TensorReport struct {
	Name          string   `json:"name"`
	Layer         string   `json:"layer"`
	LayerType     string   `json:"layer_type"`
	DType         string   `json:"dtype"`
	Shape         []int    `json:"shape"`
	Format        string   `json:"format"`
	Scheme        string   `json:"scheme,omitempty"`
	Granularity   string   `json:"granularity,omitempty"`
	GroupSize     int      `json:"group_size,omitempty"`
	BytesBefore   int64    `json:"bytes_before"`
	BytesAfter    int64    `json:"bytes_after"` // values + scales + zero points
	BitsPerWeight float64  `json:"bits_per_weight"`
	SQNR          Decibels `json:"sqnr_db"`
	// SignalEnergy Σx² and NoiseEnergy Σ(x−x̂)², float64, over the tensor's finite elements (NaN/Inf
	// inputs, which only the ClampNonFinite option lets through, are left out: see NonFinite).
	SignalEnergy float64 `json:"signal_energy"`
	NoiseEnergy  float64 `json:"noise_energy"`
	Overflow     int     `json:"fp16_overflow,omitempty"`
	NonFinite    int     `json:"non_finite_clamped,omitempty"`
	// Activations is the layer's activation mode, Method the weight method and Rule the rule
	// of the resolved recipe that decided the tensor, in words.
	Activations string `json:"activations,omitempty"`
	Method      string `json:"method,omitempty"`
	Rule        string `json:"rule,omitempty"`
}

// Report is what a quantization did, for people (the CLI's table) and scripts (--json).
type Report struct {
	// TotalBytesBefore/After: every tensor's payload, quantized or not (headers excluded).
	TotalBytesBefore int64 `json:"total_bytes_before"`
	TotalBytesAfter  int64 `json:"total_bytes_after"`
	// QuantizedBytesBefore/After: the quantized tensors only (after = values + scales + zero points).
	QuantizedBytesBefore int64 `json:"quantized_bytes_before"`
	QuantizedBytesAfter  int64 `json:"quantized_bytes_after"`
	// FileBytesBefore/After: the files on disk, when the input and output are files (0 otherwise).
	FileBytesBefore int64 `json:"file_bytes_before,omitempty"`
	FileBytesAfter  int64 `json:"file_bytes_after,omitempty"`
	// BitsPerWeight = 8·QuantizedBytesAfter / QuantizedElements.
	BitsPerWeight     float64 `json:"bits_per_weight"`
	QuantizedElements int64   `json:"quantized_elements"`
	TensorsQuantized  int     `json:"tensors_quantized"`
	TensorsKept       int     `json:"tensors_kept"`
	// SQNR is the overall SQNR: 10·log10(ΣSignalEnergy / ΣNoiseEnergy) over all quantized
	// tensors — the SQNR of the model's quantized weights seen as one long vector, so a big
	// tensor weighs more than a small one.
	SQNR Decibels `json:"sqnr_db"`
	// Tensors, worst SQNR first.
	Tensors  []TensorReport    `json:"tensors"`
	Warnings []warning.Warning `json:"warnings"`
	// Activations holds the activation qparams per layer in static mode.
	Activations map[string]ActivationParams `json:"activations,omitempty"`
	// Aliases names the tensors that shared storage with another (tied parameters): alias →
	// the name stored once in the output (Config.Aliases).
	Aliases map[string]string `json:"aliases,omitempty"`
}

// Ratio is the size after over the size before, for all tensors.
func (r *Report) Ratio() float64 {
	if r.TotalBytesBefore == 0 {
		return 0
	}
	return float64(r.TotalBytesAfter) / float64(r.TotalBytesBefore)
}

// OverallSQNR is 10·log10(signal/noise) in dB: +Inf when the noise is zero, NaN when both are.
func OverallSQNR(signal, noise float64) float64 {
	return 10 * math.Log10(signal/noise)
}

// finish computes totals and the overall SQNR and sorts tensors worst first.
func (r *Report) finish() {
	var sig, noise float64
	var el int64
	r.QuantizedBytesBefore, r.QuantizedBytesAfter = 0, 0
	for _, t := range r.Tensors {
		sig += t.SignalEnergy
		noise += t.NoiseEnergy
		r.QuantizedBytesBefore += t.BytesBefore
		r.QuantizedBytesAfter += t.BytesAfter
		el += elements(t.Shape)
	}
	r.QuantizedElements = el
	r.TensorsQuantized = len(r.Tensors)
	if el > 0 {
		r.BitsPerWeight = float64(8*r.QuantizedBytesAfter) / float64(el)
	}
	r.SQNR = Decibels(OverallSQNR(sig, noise))
	sort.SliceStable(r.Tensors, func(i, j int) bool { return worse(r.Tensors[i].SQNR, r.Tensors[j].SQNR) })
	if r.Warnings == nil {
		r.Warnings = []warning.Warning{}
	}
}

// worse orders NaN (all-zero tensors, nothing to measure) last, then by ascending SQNR.
func worse(a, b Decibels) bool {
	an, bn := math.IsNaN(float64(a)), math.IsNaN(float64(b))
	if an || bn {
		return !an && bn
	}
	return a < b
}

func elements(shape []int) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= int64(d)
	}
	return n
}
