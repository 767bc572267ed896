package convert

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/checkpointtest"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/tensor"
	"github.com/monoquant/monoquant/core/warning"
)

// gpt2Folder writes a Hugging Face folder of a GPT-2-shaped model: config.json naming the
// architecture, two safetensors shards behind an index, and a tokenizer file.
func gpt2Folder(t *testing.T, modelType string) string {
	t.Helper()
	dir := t.TempDir()
	var infos []tensor.Info
	data := map[string][]byte{}
	add := func(name string, shape ...int) {
		x := tensor.FromFloat32(ramp(tensor.NumElements(shape), 0.1), shape...)
		infos = append(infos, tensor.Info{Name: name, DType: tensor.F32, Shape: shape})
		data[name] = x.Data
	}
	add("transformer.wte.weight", 64, 32)
	for _, l := range []string{"0", "1"} {
		add("transformer.h."+l+".attn.c_attn.weight", 32, 96) // Conv1D: [in, out]
		add("transformer.h."+l+".attn.c_attn.bias", 96)
		add("transformer.h."+l+".mlp.c_fc.weight", 32, 128)
		add("transformer.h."+l+".mlp.c_proj.weight", 128, 32)
	}
	checkpointtest.WriteShardedFolder(t, dir, infos, data, `{"model_type": "`+modelType+`", "architectures": ["GPT2LMHeadModel"]}`)
	return dir
}

func TestFolderInFolderOut(t *testing.T) {
	in := gpt2Folder(t, "gpt2")
	out := filepath.Join(t.TempDir(), "q")
	res, err := File(context.Background(), in, out, plan.Options{Bits: 4, Spec: quantGroup(32)}, Run{Validate: true})
	if err != nil {
		t.Fatal(err)
	}
	names := func(dir string) []string {
		ents, _ := os.ReadDir(dir)
		var out []string
		for _, e := range ents {
			out = append(out, e.Name())
		}
		return out
	}
	if got, want := names(out), names(in); !slices.Equal(got, want) {
		t.Errorf("output folder %v, want the input's layout %v", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "tokenizer.json")); string(b) != `{"version": "1.0"}` {
		t.Errorf("tokenizer.json not copied: %q", b)
	}
	if res.Validation == nil || res.Validation.SQNRConfirmed != 6 {
		t.Errorf("validation %+v", res.Validation)
	}
	// GPT-2's Conv1D layers, named by config.json, are quantized per output channel: axis 1.
	r, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg, err := model.ReadConfig(r.Entries(), r.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range cfg.Tensors {
		if tc.LayerType != "linear" || tc.Format != "int4" {
			t.Errorf("%s: %s %s", name, tc.LayerType, tc.Format)
		}
	}
	p, err := PlanFile(in, plan.Options{Bits: 8})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range p.Quantized() {
		if tp.Spec.Axis != 1 {
			t.Errorf("%s: axis %d, want 1 (Conv1D stores [in, out])", tp.Name, tp.Spec.Axis)
		}
	}
	// Without the architecture, the names draw a warning instead of a silent guess.
	plain := gpt2Folder(t, "bert")
	p, err = PlanFile(plain, plan.Options{Bits: 8})
	if err != nil {
		t.Fatal(err)
	}
	if p.Quantized()[0].Spec.Axis != 0 || !slices.ContainsFunc(p.Warnings, func(w warning.Warning) bool { return w.Code == warning.Architecture }) {
		t.Errorf("unknown architecture: axis %d, warnings %v", p.Quantized()[0].Spec.Axis, p.Warnings)
	}
}

func TestFolderErrors(t *testing.T) {
	in := gpt2Folder(t, "gpt2")
	ctx := context.Background()
	if _, err := File(ctx, in, in, plan.Options{}, Run{}); !errors.Is(err, ErrOutput) {
		t.Errorf("output = input folder: %v", err)
	}
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "mine.txt"), []byte("x"), 0o644)
	if _, err := File(ctx, in, full, plan.Options{}, Run{}); !errors.Is(err, ErrOutput) || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty output folder: %v", err)
	}
	// A failed run leaves no folder behind.
	out := filepath.Join(t.TempDir(), "q")
	if _, err := File(ctx, in, out, plan.Options{Bits: 4, Spec: quantGroup(48)}, Run{}); err == nil {
		t.Fatal("group 48 on rows of 32 succeeded")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed folder conversion left %s", out)
	}
	empty := t.TempDir()
	if _, err := File(ctx, empty, filepath.Join(t.TempDir(), "q"), plan.Options{}, Run{}); !errors.Is(err, checkpoint.ErrNoWeights) {
		t.Errorf("folder without weights: %v", err)
	}
}

// A lone GPT-2 checkpoint (no folder) takes its architecture from a config.json beside it, so
// the Conv1D layers are quantized on axis 1 there too; without one, the plan warns and says how
// to name it (issue 12: the CLI used to quantize GPT-2's file along the input axis silently).
func TestLoneGPT2File(t *testing.T) {
	folder := gpt2Folder(t, "gpt2")
	idx, err := checkpoint.FindWeights(folder)
	if err != nil {
		t.Fatal(err)
	}
	p, err := PlanFile(idx, plan.Options{Bits: 8})
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range p.Quantized() {
		if tp.Layer != "transformer.wte" && tp.Spec.Axis != 1 {
			t.Errorf("%s beside config.json: axis %d, want 1", tp.Name, tp.Spec.Axis)
		}
	}
	os.Remove(filepath.Join(folder, "config.json"))
	p, err = PlanFile(idx, plan.Options{Bits: 8})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(p.Warnings, func(w warning.Warning) bool { return w.Code == warning.Architecture })
	if i < 0 {
		t.Fatalf("no config.json: warnings %v, want %s", p.Warnings, warning.Architecture)
	}
	msg := p.Warnings[i].Message
	for _, want := range []string{"(6 in all) are named like GPT-2's Conv1D", "axis 0", `put its config.json ("model_type": "gpt2") beside the checkpoint`} {
		if !strings.Contains(msg, want) {
			t.Errorf("warning %q lacks %q", msg, want)
		}
	}
	if strings.Count(msg, "in all") != 1 {
		t.Errorf("warning %q counts the layers twice", msg)
	}
}

// The output folder keeps the input's shard layout: each stored tensor (and its scale) in the
// shard its input tensor was in, one index over them; copied files keep their permissions.
func TestFolderShardLayoutAndCopies(t *testing.T) {
	in := gpt2Folder(t, "gpt2")
	os.Chmod(filepath.Join(in, "tokenizer.json"), 0o640)
	out := filepath.Join(t.TempDir(), "q")
	if _, err := File(context.Background(), in, out, plan.Options{}, Run{Validate: true}); err != nil {
		t.Fatal(err)
	}
	inMap, outMap := checkpointtest.IndexWeightMap(t, in), checkpointtest.IndexWeightMap(t, out)
	for name, shard := range outMap {
		owner := strings.TrimSuffix(strings.TrimSuffix(name, ".scale"), ".zero_point")
		if _, ok := inMap[owner]; !ok {
			owner = name
		}
		if inMap[owner] != shard {
			t.Errorf("%s is in %s, its input tensor %s was in %s", name, shard, owner, inMap[owner])
		}
	}
	for name := range inMap {
		if _, ok := outMap[name]; !ok {
			t.Errorf("the output index lacks %s", name)
		}
	}
	for _, f := range []string{"tokenizer.json", "config.json"} {
		a, _ := os.Stat(filepath.Join(in, f))
		b, err := os.Stat(filepath.Join(out, f))
		if err != nil || a.Mode().Perm() != b.Mode().Perm() {
			t.Errorf("%s copied with mode %v, the input's is %v (%v)", f, b.Mode().Perm(), a.Mode().Perm(), err)
		}
	}
}
