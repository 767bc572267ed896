package convert

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/warning"
)

const tiedFixture = "../../testdata/checkpoints/torch/tied.pt"

// Tied parameters (issue 12): a torch state dict whose embedding and head share one storage,
// and two Linear layers sharing one weight. Each group is quantized once, stored once, named in
// the config's aliases and the report, and dequantized under every name again. Before, the
// shared tensor was stored twice (the tied model's file grew).
func TestTiedTensorsStoredOnce(t *testing.T) {
	ctx := context.Background()
	for _, ext := range []string{".safetensors", ".pt"} {
		dir := t.TempDir()
		out := filepath.Join(dir, "q"+ext)
		res, err := File(ctx, tiedFixture, out, plan.Options{}, Run{Validate: true})
		if err != nil {
			t.Fatal(err)
		}
		wantAliases := map[string]string{"emb.weight": "head.weight", "b.weight": "a.weight"}
		if !reflect.DeepEqual(res.Report.Aliases, wantAliases) {
			t.Errorf("%s: report aliases %v, want %v", ext, res.Report.Aliases, wantAliases)
		}
		if res.Validation.AliasesChecked != 2 {
			t.Errorf("%s: validation checked %d aliases, want 2", ext, res.Validation.AliasesChecked)
		}
		var tied []string
		for _, w := range res.Report.Warnings {
			if w.Code == warning.Tied {
				tied = append(tied, w.Message)
			}
		}
		if len(tied) != 2 || !strings.Contains(tied[0], `"emb.weight" and "head.weight" share one storage: stored once as "head.weight", quantized to int8`) ||
			!strings.Contains(tied[1], `"a.weight" and "b.weight" share one storage: stored once as "a.weight"`) {
			t.Errorf("%s: tied warnings %q", ext, tied)
		}
		r, err := checkpoint.Open(out)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range r.Entries() {
			names = append(names, e.Name)
		}
		cfg, err := model.LoadConfig(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []string{"emb.weight", "b.weight"} {
			if slices.Contains(names, n) {
				t.Errorf("%s: the output stores %q, which is tied to another tensor", ext, n)
			}
		}
		if !reflect.DeepEqual(cfg.Aliases, wantAliases) {
			t.Errorf("%s: config aliases %v, want %v", ext, cfg.Aliases, wantAliases)
		}
		if _, ok := cfg.Tensors["head.weight"]; !ok {
			t.Errorf("%s: head.weight (the Linear of the tied pair) is not quantized: %v", ext, slices.Sorted(maps.Keys(cfg.Tensors)))
		}

		// Every reader re-ties: the float file has each name, the tied ones with equal values.
		deq := filepath.Join(dir, "d"+ext)
		if err := Dequantize(ctx, out, deq, nil); err != nil {
			t.Fatal(err)
		}
		d, err := checkpoint.Open(deq)
		if err != nil {
			t.Fatal(err)
		}
		in, _ := checkpoint.Open(tiedFixture)
		var dn, inNames []string
		for _, e := range d.Entries() {
			dn = append(dn, e.Name)
		}
		for _, e := range in.Entries() {
			inNames = append(inNames, e.Name)
		}
		slices.Sort(dn)
		slices.Sort(inNames)
		if !slices.Equal(dn, inNames) {
			t.Errorf("%s: dequantized names %v, want the input's %v", ext, dn, inNames)
		}
		for alias, target := range wantAliases {
			a, err1 := d.Tensor(alias)
			b, err2 := d.Tensor(target)
			if err1 != nil || err2 != nil || !bytes.Equal(a.Data, b.Data) {
				t.Errorf("%s: dequantized %q and %q differ (%v, %v)", ext, alias, target, err1, err2)
			}
		}
		d.Close()
		in.Close()
	}
}

// A tied group no rule quantizes is still stored once, as it is.
func TestTiedTensorsKeptStoredOnce(t *testing.T) {
	out := filepath.Join(t.TempDir(), "q.safetensors")
	res, err := File(context.Background(), tiedFixture, out, plan.Options{Skip: []string{"head", "a"}}, Run{Validate: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"head.weight": "emb.weight", "b.weight": "a.weight"}
	if !reflect.DeepEqual(res.Report.Aliases, want) {
		t.Errorf("aliases %v, want %v (the first name of a kept group is stored)", res.Report.Aliases, want)
	}
	// b alone is selected; tied to the skipped a, the first member's decision (kept) stands.
	for _, tp := range res.Plan.Tensors {
		if tp.Name == "b.weight" && (tp.Action != plan.ActionAlias || tp.AliasOf != "a.weight") {
			t.Errorf("b.weight: %s of %q, want an alias of a.weight", tp.Action, tp.AliasOf)
		}
	}
}

// Options.Tied from a caller is checked: a target that is no tensor, or tied tensors of
// different shapes, is an error naming them.
func TestTiedOptionErrors(t *testing.T) {
	r, err := checkpoint.Open(tiedFixture)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, c := range []struct {
		tied map[string]string
		want string
	}{
		{map[string]string{"fc.weight": "nothing.weight"}, `"fc.weight" is tied to "nothing.weight", which is not a tensor`},
		{map[string]string{"fc.weight": "emb.weight"}, `cannot share storage`},
	} {
		_, err := plan.NewPlan(r.Entries(), nil, plan.Options{Tied: c.tied})
		if !errors.Is(err, plan.ErrOption) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Tied %v: %v, want ErrOption containing %q", c.tied, err, c.want)
		}
	}
}

// A config whose aliases contradict the file is refused by every reader.
func TestTiedAliasesTampered(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "q.safetensors")
	if _, err := File(context.Background(), tiedFixture, out, plan.Options{}, Run{}); err != nil {
		t.Fatal(err)
	}
	r, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	md := r.Metadata()
	for _, c := range []struct{ from, to, want string }{
		{`"emb.weight":"head.weight"`, `"emb.weight":"gone.weight"`, `"emb.weight" aliases "gone.weight", which the file does not store`},
		{`"emb.weight":"head.weight"`, `"fc.weight":"head.weight"`, `"fc.weight" is stored in the file`},
	} {
		raw := md[model.MetadataKey]
		if !strings.Contains(raw, c.from) {
			t.Fatalf("config lacks %s: %s", c.from, raw)
		}
		bad := maps.Clone(md)
		bad[model.MetadataKey] = strings.Replace(raw, c.from, c.to, 1)
		if _, err := model.ReadConfig(r.Entries(), bad); !errors.Is(err, model.ErrFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("aliases %s: %v, want ErrFormat containing %q", c.to, err, c.want)
		}
	}
	_ = os.Remove(out)
}

// A Hugging Face folder saved by transformers stores a tied embedding once (the head is
// dropped; config.json says tie_word_embeddings): left float because embeddings are not
// selected, it draws a warning that says how to quantize it; selected, it is quantized once.
func TestTiedWordEmbeddingsFolder(t *testing.T) {
	in := gpt2Folder(t, "gpt2")
	os.WriteFile(filepath.Join(in, "config.json"), []byte(`{"model_type": "gpt2", "tie_word_embeddings": true, "vocab_size": 64}`), 0o644)
	p, err := PlanFile(in, plan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(p.Warnings, func(w warning.Warning) bool { return w.Code == warning.Tied })
	if i < 0 || p.Warnings[i].Tensor != "transformer.wte.weight" || !strings.Contains(p.Warnings[i].Message, "add embedding to the layer types") {
		t.Fatalf("tied embedding left float: warnings %v", p.Warnings)
	}
	p, err = PlanFile(in, plan.Options{LayerTypes: []plan.LayerType{plan.Linear, plan.Embedding}})
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(p.Warnings, func(w warning.Warning) bool { return w.Code == warning.Tied }) {
		t.Errorf("embedding selected: warnings %v", p.Warnings)
	}
	os.WriteFile(filepath.Join(in, "config.json"), []byte(`{"model_type": "gpt2", "tie_word_embeddings": false, "vocab_size": 64}`), 0o644)
	if p, err = PlanFile(in, plan.Options{}); err != nil || slices.ContainsFunc(p.Warnings, func(w warning.Warning) bool { return w.Code == warning.Tied }) {
		t.Errorf("untied: %v, warnings %v", err, p.Warnings)
	}
}
