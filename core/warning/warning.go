// Package warning holds the warnings core gives about a plan or a quantization as data: a Code
// that callers can test (the Python package raises MonoquantWarning for each, the CLI prints
// them, the C ABI returns them in JSON) and a message in the user's words.
package warning

// Code names a kind of warning.
type Code string

const (
	FirstLayer    Code = "first_layer_quantized"
	LastLayer     Code = "last_layer_quantized"
	LowSQNR       Code = "low_sqnr"
	Int4Small     Code = "int4_small_layer"
	FP16Overflow  Code = "fp16_overflow"
	GroupFallback Code = "group_size_fallback"
	// HessianDamped: gptq met a singular Hessian (inputs that never fired, or fewer
	// independent samples than inputs) and quantized against the damped one.
	HessianDamped  Code = "hessian_damped"
	NoCalibration  Code = "no_calibration_data"
	NonFiniteClamp Code = "non_finite_clamped"
	// ActivationOutliers: a layer's calibration input has heavy outliers (see
	// model.OutlierRatio).
	ActivationOutliers Code = "activation_outliers"
	// UnusedRule: a recipe rule or skip pattern selects no layer (likely a typo).
	UnusedRule Code = "unused_rule"
	// Architecture: layers look like another architecture's than the one they are typed as.
	Architecture Code = "architecture_unknown"
	// Tied: tensors share one storage (tied parameters); the file stores them once.
	Tied Code = "tied_tensors"
	// ManyOutliers: calibration found more than model.MaxOutlierFraction of a layer's input
	// features at or above its LLM.int8() outlier threshold: the layer runs mostly in float.
	ManyOutliers Code = "many_outlier_features"
	// LeftInFloat: a layer the options select is left in float because the caller cannot run
	// its quantized form (plan.Options.RuntimeClasses); one per layer, naming its class.
	LeftInFloat Code = "left_in_float"
)

// Warning is a fact about a likely accuracy loss, or a choice the user should know of, as data.
type Warning struct {
	Code    Code   `json:"code"`
	Tensor  string `json:"tensor,omitempty"`
	Layer   string `json:"layer,omitempty"`
	Message string `json:"message"`
}

func (w Warning) String() string { return string(w.Code) + ": " + w.Message }
