package plan

import (
	"fmt"
	"strings"

	"github.com/monoquant/monoquant/core/warning"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/names"
)

// conv1DModules are, for the Hugging Face model types whose linear layers are transformers'
// Conv1D (the weight stored [in, out], the output channel on axis 1), the last components of the
// names of those layers. A checkpoint file alone cannot say this (its tensors are a 2-D matrix
// like any Linear's), so it is read from the architecture that config.json names, never guessed.
var conv1DModules = map[string][]string{
	"gpt2":                 {"attn.c_attn", "attn.c_proj", "attn.q_attn", "crossattention.c_attn", "crossattention.c_proj", "crossattention.q_attn", "mlp.c_fc", "mlp.c_proj"},
	"openai-gpt":           {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"},
	"imagegpt":             {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"},
	"decision_transformer": {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"},
}

// Conv1DModelTypes lists the model types whose layers ArchitectureModuleTypes types as Conv1D.
func Conv1DModelTypes() []string {
	out := make([]string, 0, len(conv1DModules))
	for k := range conv1DModules {
		out = append(out, k)
	}
	return out
}

// ArchitectureModuleTypes returns the module classes a Hugging Face model type implies for a
// checkpoint's layers: "Conv1D" for the Conv1D layers of the GPT-2 family (so they are
// quantized per output channel, axis 1); nil for other model types.
func ArchitectureModuleTypes(modelType string, entries []checkpoint.Entry) map[string]string {
	suffixes := conv1DModules[strings.ToLower(modelType)]
	if suffixes == nil {
		return nil
	}
	out := map[string]string{}
	for _, e := range entries {
		mod, _ := names.Split(e.Name)
		for _, s := range suffixes {
			if mod == s || strings.HasSuffix(mod, "."+s) {
				out[mod] = "transformers.pytorch_utils.Conv1D"
			}
		}
	}
	return out
}

// looksConv1D reports layer names that GPT-2-family checkpoints use for their Conv1D layers,
// for a warning when no architecture says what they are.
func looksConv1D(layer string) bool {
	for _, s := range conv1DModules["gpt2"] {
		if strings.HasSuffix(layer, "."+s) {
			return true
		}
	}
	return false
}

// NoteTiedHead adds, for a Hugging Face model whose config.json says tie_word_embeddings, a
// warning on the input embedding that is also the output head (transformers stores it once,
// under the embedding's name, so the head's Linear is not in the file) when the plan keeps it
// float because embeddings are not selected: it is then the largest float tensor left, and
// selecting embeddings (or a recipe rule for it) quantizes it once for both uses. vocab is
// config.json's vocab_size: the embedding is the [vocab, hidden] one.
func (p *Plan) NoteTiedHead(vocab int) {
	if vocab <= 0 {
		return
	}
	for _, t := range p.Tensors {
		if t.Action == ActionKeep && t.LayerType == Embedding && len(t.Shape) == 2 && t.Shape[0] == vocab && t.Rule < 0 {
			p.Warnings = append(p.Warnings, warning.Warning{Code: warning.Tied, Tensor: t.Name, Layer: t.Layer,
				Message: fmt.Sprintf("%q is also the output head (config.json: tie_word_embeddings; the file stores it once) and stays float because embeddings are not selected; add embedding to the layer types (or a recipe rule for %q) to quantize it once for both", t.Name, t.Layer)})
			return
		}
	}
}
