package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// A Hugging Face model folder holds config.json, the weights — one file or shards behind an
// index — and tokenizer and other files. Open and the file-to-file pipeline take such a folder
// wherever they take a file; transformers itself is never needed.

// weightFiles are the names transformers gives the weights, in the order it prefers them.
var weightFiles = []string{
	"model.safetensors.index.json", "model.safetensors",
	"pytorch_model.bin.index.json", "pytorch_model.bin",
}

// maxConfigBytes bounds config.json, read whole; real ones are a few KB.
const maxConfigBytes = 4 << 20

// ErrNoWeights is wrapped when a folder holds no checkpoint monoquant can find.
var ErrNoWeights = errors.New("no weights")

// FindWeights returns the checkpoint of a model folder: the first of model.safetensors.index.json,
// model.safetensors, pytorch_model.bin.index.json and pytorch_model.bin that is there, else the
// folder's one *.safetensors (or *.index.json) file. A folder with none, or with several
// candidates and none of the standard names, is an error that lists what it found.
func FindWeights(dir string) (string, error) {
	for _, n := range weightFiles {
		p := filepath.Join(dir, n)
		if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("model folder %s: %w", dir, err)
	}
	var idx, st []string
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		switch n := e.Name(); {
		case strings.HasSuffix(n, ".index.json"):
			idx = append(idx, n)
		case strings.HasSuffix(n, ".safetensors"):
			st = append(st, n)
		}
	}
	switch {
	case len(idx) == 1:
		return filepath.Join(dir, idx[0]), nil
	case len(idx) == 0 && len(st) == 1:
		return filepath.Join(dir, st[0]), nil
	case len(idx)+len(st) == 0:
		return "", fmt.Errorf("%w: model folder %s has none of %s, and no *.safetensors file", ErrNoWeights, dir, strings.Join(weightFiles, ", "))
	}
	found := append(slices.Clone(idx), st...)
	if len(found) > 8 {
		found = append(found[:8], fmt.Sprintf("… (%d in all)", len(found)))
	}
	return "", fmt.Errorf("%w: model folder %s has several candidate checkpoints (%s) and none of the standard names; give the file", ErrNoWeights, dir, strings.Join(found, ", "))
}

// ModelType reads config.json's "model_type" (and "architectures") of a model folder: "" with
// no error when there is no config.json.
func ModelType(dir string) (modelType string, architectures []string, err error) {
	c, err := ReadModelConfig(dir)
	return c.ModelType, c.Architectures, err
}

// ModelConfig is what monoquant reads from a Hugging Face config.json.
type ModelConfig struct {
	ModelType     string   `json:"model_type"`
	Architectures []string `json:"architectures"`
	// TieWordEmbeddings: the output head is the input embedding (transformers then stores the
	// embedding only); nil when config.json does not say.
	TieWordEmbeddings *bool `json:"tie_word_embeddings"`
	VocabSize         int   `json:"vocab_size"`
}

// ReadModelConfig reads config.json of a model folder: the zero ModelConfig and no error when
// there is none; an error for one that is not a regular file, too large or not JSON.
func ReadModelConfig(dir string) (ModelConfig, error) {
	var c ModelConfig
	p := filepath.Join(dir, "config.json")
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("%s: %w", p, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return c, fmt.Errorf("%s: not a regular file", p)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return c, fmt.Errorf("%s: %w", p, err)
	}
	if len(raw) > maxConfigBytes {
		return c, fmt.Errorf("%s: more than %d bytes is not a model config", p, maxConfigBytes)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return ModelConfig{}, fmt.Errorf("%s: not a model config: %v", p, err)
	}
	return c, nil
}

// IsDir reports whether path names a folder.
func IsDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}
