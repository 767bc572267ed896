package names

// The entries a quantized tensor <name> is stored as, after its name (docs/FORMAT.md): the
// values under <name> itself, then its scales, its zero points (asymmetric schemes only), and,
// for a layer with calibrated LLM.int8() outliers, the outlier columns' indices and their float
// weights. Every reader and writer, in Go and (through mq_defaults_json) in Python, uses these.
const (
	ScaleSuffix          = ".scale"
	ZeroPointSuffix      = ".zero_point"
	OutlierColumnsSuffix = ".outlier_columns"
	OutlierWeightSuffix  = ".outlier_weight"
)

// StoredSuffixes returns the suffixes above by role ("scale", "zero_point", "outlier_columns",
// "outlier_weight"), as the engine's defaults publish them.
func StoredSuffixes() map[string]string {
	return map[string]string{
		"scale":           ScaleSuffix,
		"zero_point":      ZeroPointSuffix,
		"outlier_columns": OutlierColumnsSuffix,
		"outlier_weight":  OutlierWeightSuffix,
	}
}
