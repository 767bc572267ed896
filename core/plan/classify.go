package plan

import "github.com/monoquant/monoquant/core/checkpoint"

// TensorClass is what a tensor is, independent of any selection: its layer (module path) and
// that layer's type.
type TensorClass struct {
	Name      string
	Layer     string
	LayerType LayerType
}

// Classify names the layer and layer type of every tensor, by the same rules as NewPlan but
// without options and without failing when nothing is quantizable, for tools that only look at
// a checkpoint (the CLI's inspect).
func Classify(entries []checkpoint.Entry, moduleTypes map[string]string) []TensorClass {
	c := newClassifier(entries, moduleTypes)
	out := make([]TensorClass, len(entries))
	for i, e := range entries {
		layer, lt, _ := c.classify(e)
		out[i] = TensorClass{Name: e.Name, Layer: layer, LayerType: lt}
	}
	return out
}
