package plan

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/tensor"
	"github.com/monoquant/monoquant/core/warning"
)

func ent(name string, dt tensor.DType, shape ...int) checkpoint.Entry {
	return checkpoint.Entry{Name: name, DType: dt, Shape: shape}
}

// stateDict is a bare state_dict of a small model with one tensor of each kind.
var stateDict = []checkpoint.Entry{
	ent("embed_tokens.weight", tensor.F32, 100, 32),
	ent("transformer.wte.weight", tensor.F32, 100, 32),
	ent("conv1.weight", tensor.F32, 8, 3, 3, 3),
	ent("conv1.bias", tensor.F32, 8),
	ent("bn1.weight", tensor.F32, 8),
	ent("bn1.running_mean", tensor.F32, 8),
	ent("bn1.num_batches_tracked", tensor.I64),
	ent("tcn.weight", tensor.F32, 16, 8, 5),
	ent("lstm.weight_ih_l0", tensor.F32, 64, 32),
	ent("lstm.weight_hh_l0", tensor.F32, 64, 16),
	ent("lstm.bias_ih_l0", tensor.F32, 64),
	ent("lstm.weight_ih_l0_reverse", tensor.F32, 64, 32),
	ent("lstm.weight_hh_l0_reverse", tensor.F32, 64, 16),
	ent("gru.weight_ih_l0", tensor.F32, 48, 32),
	ent("gru.weight_hh_l0", tensor.F32, 48, 16),
	ent("rnn.weight_ih_l0", tensor.F32, 16, 32),
	ent("rnn.weight_hh_l0", tensor.F32, 16, 16),
	ent("plstm.weight_ih_l0", tensor.F32, 64, 32),
	ent("plstm.weight_hh_l0", tensor.F32, 64, 8),
	ent("plstm.weight_hr_l0", tensor.F32, 8, 16),
	ent("attn.in_proj_weight", tensor.F32, 96, 32),
	ent("layers.0.norm.weight", tensor.F32, 32),
	ent("layers.0.fc.weight", tensor.F32, 64, 32),
	ent("layers.0.fc.bias", tensor.F32, 64),
	ent("layers.0.fc_int.weight", tensor.I8, 64, 32),
	ent("head.weight", tensor.F16, 10, 64),
	ent("pos", tensor.F32, 1, 32),
}

func TestPlanStateDict(t *testing.T) {
	p, err := NewPlan(stateDict, nil, Options{LayerTypes: []LayerType{Linear, Conv1d, Conv2d, LSTM, GRU, RNN, Embedding}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		layer string
		lt    LayerType
		act   Action
	}{
		"embed_tokens.weight":       {"embed_tokens", Embedding, ActionQuantize},
		"transformer.wte.weight":    {"transformer.wte", Embedding, ActionQuantize},
		"conv1.weight":              {"conv1", Conv2d, ActionQuantize},
		"conv1.bias":                {"conv1", Conv2d, ActionKeep},
		"bn1.weight":                {"bn1", Norm, ActionKeep},
		"bn1.running_mean":          {"bn1", Norm, ActionKeep},
		"bn1.num_batches_tracked":   {"bn1", Norm, ActionKeep},
		"tcn.weight":                {"tcn", Conv1d, ActionQuantize},
		"lstm.weight_ih_l0":         {"lstm", LSTM, ActionQuantize},
		"lstm.weight_hh_l0":         {"lstm", LSTM, ActionQuantize},
		"lstm.bias_ih_l0":           {"lstm", LSTM, ActionKeep},
		"lstm.weight_ih_l0_reverse": {"lstm", LSTM, ActionQuantize},
		"gru.weight_ih_l0":          {"gru", GRU, ActionQuantize},
		"gru.weight_hh_l0":          {"gru", GRU, ActionQuantize},
		"rnn.weight_ih_l0":          {"rnn", RNN, ActionQuantize},
		"plstm.weight_ih_l0":        {"plstm", LSTM, ActionQuantize},
		"plstm.weight_hh_l0":        {"plstm", LSTM, ActionQuantize},
		"plstm.weight_hr_l0":        {"plstm", LSTM, ActionQuantize},
		"attn.in_proj_weight":       {"attn", Linear, ActionQuantize},
		"layers.0.norm.weight":      {"layers.0.norm", Norm, ActionKeep},
		"layers.0.fc.weight":        {"layers.0.fc", Linear, ActionQuantize},
		"layers.0.fc.bias":          {"layers.0.fc", Linear, ActionKeep},
		"layers.0.fc_int.weight":    {"layers.0.fc_int", Linear, ActionKeep},
		"head.weight":               {"head", Linear, ActionQuantize},
		"pos":                       {"", Other, ActionKeep},
	}
	for _, tp := range p.Tensors {
		w, ok := want[tp.Name]
		if !ok {
			continue
		}
		if tp.Layer != w.layer || tp.LayerType != w.lt || tp.Action != w.act {
			t.Errorf("plan(%q) = layer %q type %s action %s (%s), want %q %s %s", tp.Name, tp.Layer, tp.LayerType, tp.Action, tp.Reason, w.layer, w.lt, w.act)
		}
	}
}

func TestPlanDefaultSelection(t *testing.T) {
	p, err := NewPlan(stateDict, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, tp := range p.Quantized() {
		got[tp.Name] = true
	}
	for name, want := range map[string]bool{
		"embed_tokens.weight": false, "tcn.weight": false, "gru.weight_ih_l0": false, "rnn.weight_ih_l0": false,
		"conv1.weight": true, "lstm.weight_hh_l0": true, "layers.0.fc.weight": true, "head.weight": true,
	} {
		if got[name] != want {
			t.Errorf("default selection quantizes %q = %v, want %v", name, got[name], want)
		}
	}
}

func TestPlanModuleTypes(t *testing.T) {
	entries := []checkpoint.Entry{
		ent("features.0.weight", tensor.F32, 8, 3, 3, 3),
		ent("features.1.weight", tensor.F32, 8),
		ent("up.weight", tensor.F32, 8, 4, 2, 2),
		ent("emb.weight", tensor.F32, 50, 16),
		ent("table.weight", tensor.F32, 50, 16),
		ent("mine.weight", tensor.F32, 16, 16),
		ent("attn.in_proj_weight", tensor.F32, 48, 16),
		ent("attn.out_proj.weight", tensor.F32, 16, 16),
		ent("rec.weight_ih_l0", tensor.F32, 48, 16),
		ent("rec.weight_hh_l0", tensor.F32, 48, 16),
		ent("gpt.c_attn.weight", tensor.F32, 16, 48),
		ent("classifier.weight", tensor.F32, 10, 16),
	}
	mt := map[string]string{
		"":              "__main__.Net",
		"features":      "torch.nn.modules.container.Sequential",
		"features.0":    "torch.nn.modules.conv.Conv2d",
		"features.1":    "torch.nn.modules.batchnorm.BatchNorm2d",
		"up":            "torch.nn.modules.conv.ConvTranspose2d",
		"emb":           "torch.nn.modules.sparse.Embedding",
		"table":         "torch.nn.modules.linear.Linear", // the class beats the shape/name heuristics
		"mine":          "__main__.MyLinear",              // a subclass: typed by shape
		"attn":          "torch.nn.modules.activation.MultiheadAttention",
		"attn.out_proj": "torch.nn.modules.linear.NonDynamicallyQuantizableLinear",
		"rec":           "torch.nn.modules.rnn.GRU",
		"gpt.c_attn":    "transformers.pytorch_utils.Conv1D",
		"classifier":    "torch.nn.modules.linear.Linear",
	}
	p, err := NewPlan(entries, mt, Options{LayerTypes: []LayerType{Linear, Conv2d, GRU, Embedding}, Skip: []string{"classifier"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		lt   LayerType
		act  Action
		axis int
	}{
		"features.0.weight":    {Conv2d, ActionQuantize, 0},
		"features.1.weight":    {Norm, ActionKeep, 0},
		"up.weight":            {Conv2d, ActionQuantize, 1},
		"emb.weight":           {Embedding, ActionQuantize, 0},
		"table.weight":         {Linear, ActionQuantize, 0},
		"mine.weight":          {Linear, ActionQuantize, 0},
		"attn.in_proj_weight":  {Linear, ActionQuantize, 0},
		"attn.out_proj.weight": {Linear, ActionQuantize, 0},
		"rec.weight_ih_l0":     {GRU, ActionQuantize, 0},
		"rec.weight_hh_l0":     {GRU, ActionQuantize, 0},
		"gpt.c_attn.weight":    {Linear, ActionQuantize, 1},
		"classifier.weight":    {Linear, ActionKeep, 0},
	}
	for _, tp := range p.Tensors {
		w := want[tp.Name]
		if tp.LayerType != w.lt || tp.Action != w.act {
			t.Errorf("plan(%q) = %s %s (%s), want %s %s", tp.Name, tp.LayerType, tp.Action, tp.Reason, w.lt, w.act)
		}
		if tp.Action == ActionQuantize && tp.Spec.Axis != w.axis {
			t.Errorf("plan(%q) axis = %d, want %d", tp.Name, tp.Spec.Axis, w.axis)
		}
	}
}

func TestSkipPatterns(t *testing.T) {
	entries := []checkpoint.Entry{
		ent("encoder.layers.0.fc.weight", tensor.F32, 8, 8),
		ent("encoder.layers.1.fc.weight", tensor.F32, 8, 8),
		ent("decoder.fc.weight", tensor.F32, 8, 8),
		ent("classifier.0.weight", tensor.F32, 8, 8),
		ent("classifier.1.weight", tensor.F32, 8, 8),
		ent("model.lm_head.weight", tensor.F32, 8, 8),
		ent("lm_head.weight", tensor.F32, 8, 8),
		ent("encoderx.fc.weight", tensor.F32, 8, 8),
	}
	tests := []struct {
		skip []string
		kept []string
	}{
		{[]string{"decoder.fc"}, []string{"decoder.fc.weight"}},
		{[]string{"encoder"}, []string{"encoder.layers.0.fc.weight", "encoder.layers.1.fc.weight"}},
		{[]string{"encoder."}, []string{"encoder.layers.0.fc.weight", "encoder.layers.1.fc.weight"}},
		{[]string{"classifier.*"}, []string{"classifier.0.weight", "classifier.1.weight"}},
		{[]string{"*.lm_head"}, []string{"model.lm_head.weight"}}, // one syntax: "*." needs a parent (recipe.Match)
		{[]string{"lm_head", "*.lm_head"}, []string{"model.lm_head.weight", "lm_head.weight"}},
		{[]string{"encoder.layers.*.fc"}, []string{"encoder.layers.0.fc.weight", "encoder.layers.1.fc.weight"}},
		{[]string{"decoder.fc.weight"}, []string{"decoder.fc.weight"}},
		{[]string{"encoder.layers.1"}, []string{"encoder.layers.1.fc.weight"}},
	}
	for _, tt := range tests {
		p, err := NewPlan(entries, nil, Options{Skip: tt.skip})
		if err != nil {
			t.Fatalf("Skip %q: %v", tt.skip, err)
		}
		var kept []string
		for _, tp := range p.Tensors {
			if tp.Action == ActionKeep {
				kept = append(kept, tp.Name)
			}
		}
		if strings.Join(kept, ",") != strings.Join(tt.kept, ",") {
			t.Errorf("Skip %q kept %q, want %q", tt.skip, kept, tt.kept)
		}
	}
}

func TestGroupSizeFallback(t *testing.T) {
	tests := []struct {
		shape     []int
		gs        int
		wantGS    int
		wantInt8  bool
		wantWarns int
	}{
		{[]int{4, 256}, 128, 128, false, 0},
		{[]int{4, 96}, 128, 96, false, 1},
		{[]int{4, 200}, 128, 100, false, 1},
		{[]int{4, 131}, 128, 0, true, 1},
		{[]int{8, 4, 3, 3}, 32, 18, false, 1}, // conv viewed as [8, 36]: 36 % 32 ≠ 0 → 18
		{[]int{8, 16, 2, 2}, 64, 64, false, 0},
		{[]int{4, 24}, 32, 24, false, 1},
		{[]int{4, 34}, 32, 17, false, 1},
		{[]int{4, 30}, 32, 30, false, 1},
		{[]int{4, 15}, 32, 0, true, 1}, // shorter than the smallest fallback group
		// Groups below 16 (issue 12: a group of 8 used to become INT8 silently): one that
		// divides the row is used as is, without a warning; one that does not falls back only
		// to itself, so to INT8, with a warning.
		{[]int{4, 24}, 8, 8, false, 0},
		{[]int{4, 24}, 2, 2, false, 0},
		{[]int{4, 36}, 6, 6, false, 0},
		{[]int{4, 32}, 6, 0, true, 1},
	}
	for _, tt := range tests {
		entries := []checkpoint.Entry{ent("fc.weight", tensor.F32, tt.shape...)}
		lt := []LayerType{Linear, Conv2d}
		p, err := NewPlan(entries, nil, Options{Bits: 4, Spec: quant.Spec{GroupSize: tt.gs}, GroupFallback: &yes, LayerTypes: lt})
		if err != nil {
			t.Fatalf("shape %v gs %d: %v", tt.shape, tt.gs, err)
		}
		tp := p.Tensors[0]
		var warns int
		for _, w := range tp.Warnings {
			if w.Code == warning.GroupFallback {
				warns++
			}
		}
		if tt.wantInt8 {
			if tp.Spec.Format != quant.Int8 || tp.Spec.Granularity != quant.PerChannel {
				t.Errorf("shape %v gs %d: spec %v %v, want int8 per_channel", tt.shape, tt.gs, tp.Spec.Format, tp.Spec.Granularity)
			}
		} else if tp.Spec.Format != quant.Int4 || tp.Spec.GroupSize != tt.wantGS {
			t.Errorf("shape %v gs %d: %v group %d, want int4 group %d", tt.shape, tt.gs, tp.Spec.Format, tp.Spec.GroupSize, tt.wantGS)
		}
		if warns != tt.wantWarns {
			t.Errorf("shape %v gs %d: %d fallback warnings, want %d", tt.shape, tt.gs, warns, tt.wantWarns)
		}
	}
}

func TestPlanErrors(t *testing.T) {
	entries := []checkpoint.Entry{ent("fc.weight", tensor.F32, 8, 8), ent("fc.bias", tensor.F32, 8)}
	tests := []struct {
		name    string
		entries []checkpoint.Entry
		opts    Options
		is      error
		want    string
	}{
		{"bits", entries, Options{Bits: 3}, ErrOption, "bits"},
		{"layer type", entries, Options{LayerTypes: []LayerType{"attention"}}, ErrOption, "layers"},
		{"norm not quantizable", entries, Options{LayerTypes: []LayerType{Norm}}, ErrOption, "layers"},
		{"empty layer list", entries, Options{LayerTypes: []LayerType{}}, ErrOption, "layers"},
		{"bad glob", entries, Options{Skip: []string{"[a"}}, ErrOption, "skip"},
		{"empty pattern", entries, Options{Skip: []string{""}}, ErrOption, "skip"},
		{"negative group", entries, Options{Bits: 4, Spec: quant.Spec{GroupSize: -2}}, ErrOption, "group_size"},
		{"bad qdtype", entries, Options{Spec: quant.Spec{Format: quant.Int8, QDType: quant.QInt4}}, ErrOption, "spec"},
		{"observer", entries, Options{Mode: Static, Observer: "median"}, ErrOption, "observer"},
		{"per-channel observer", entries, Options{Mode: Static, Observer: "per_channel_minmax"}, ErrOption, "observer"},
		{"mode", entries, Options{Mode: 7}, ErrOption, "mode"},
		{"nothing selected", entries, Options{LayerTypes: []LayerType{Conv2d}}, ErrNothingToQuantize, "no tensor"},
		{"all skipped", entries, Options{Skip: []string{"fc"}}, ErrNothingToQuantize, "no tensor"},
		{"only biases", []checkpoint.Entry{ent("fc.bias", tensor.F32, 8)}, Options{}, ErrNothingToQuantize, "no tensor"},
		{"name clash", []checkpoint.Entry{ent("fc.weight", tensor.F32, 8, 8), ent("fc.weight.scale", tensor.F32, 8)}, Options{}, nil, "fc.weight.scale"},
		{"outlier name clash", []checkpoint.Entry{ent("fc.weight", tensor.F32, 8, 8), ent("fc.weight.outlier_weight", tensor.F32, 8, 1)},
			Options{Mode: Static, OutlierThreshold: 6}, nil, "fc.weight.outlier_weight"},
	}
	for _, tt := range tests {
		_, err := NewPlan(tt.entries, nil, tt.opts)
		if err == nil {
			t.Errorf("%s: NewPlan succeeded, want an error", tt.name)
			continue
		}
		if tt.is != nil && !errors.Is(err, tt.is) {
			t.Errorf("%s: error %q does not wrap %v", tt.name, err, tt.is)
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %q does not mention %q", tt.name, err, tt.want)
		}
	}
}

func TestFirstLastWarnings(t *testing.T) {
	entries := []checkpoint.Entry{
		ent("emb.weight", tensor.F32, 100, 8), // embeddings are not the "first layer" here
		ent("l0.weight", tensor.F32, 8, 8), ent("l1.weight", tensor.F32, 8, 8), ent("l2.weight", tensor.F32, 8, 8),
	}
	codes := func(opts Options) map[warning.Code]string {
		p, err := NewPlan(entries, nil, opts)
		if err != nil {
			t.Fatal(err)
		}
		out := map[warning.Code]string{}
		for _, w := range p.Warnings {
			out[w.Code] = w.Layer
		}
		return out
	}
	if got := codes(Options{}); got[warning.FirstLayer] != "l0" || got[warning.LastLayer] != "l2" {
		t.Errorf("all quantized: warnings %v, want first l0 and last l2", got)
	}
	got := codes(Options{Skip: []string{"l0", "l2"}})
	if _, ok := got[warning.FirstLayer]; ok {
		t.Errorf("first and last skipped: warnings %v, want none about them", got)
	}
	if _, ok := got[warning.LastLayer]; ok {
		t.Errorf("first and last skipped: warnings %v, want none about them", got)
	}
}

// TestLayerOrderFromSortedNames: a checkpoint whose tensors are sorted by name (as in every
// safetensors file) says nothing about the forward order, which is then inferred from the names;
// a checkpoint in registration order is taken as it is.
func TestLayerOrderFromSortedNames(t *testing.T) {
	var llama []string
	for i := 0; i < 12; i++ {
		for _, n := range []string{"mlp.down_proj", "mlp.gate_proj", "mlp.up_proj", "self_attn.k_proj", "self_attn.o_proj", "self_attn.q_proj", "self_attn.v_proj"} {
			llama = append(llama, fmt.Sprintf("model.layers.%d.%s", i, n))
		}
	}
	llama = append(llama, "lm_head")
	slices.Sort(llama)
	for _, c := range []struct {
		name        string
		layers      []string
		first, last string
		inferred    bool
	}{
		{"llama sorted", llama, "model.layers.0.self_attn.k_proj", "lm_head", true},
		{"torch encoder sorted", []string{"encoder.layers.0.linear1", "encoder.layers.0.linear2", "encoder.layers.0.self_attn", "encoder.layers.0.self_attn.out_proj", "encoder.layers.1.linear1", "encoder.layers.1.linear2", "encoder.layers.1.self_attn", "encoder.layers.1.self_attn.out_proj", "lm_head"},
			"encoder.layers.0.self_attn", "lm_head", true},
		{"cnn sorted", []string{"classifier.1", "classifier.3", "features.0", "features.3"}, "features.0", "classifier.3", true},
		{"sequential 0-9 already in order", []string{"0", "2", "4"}, "0", "4", false},
		{"registration order kept", []string{"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj", "lm_head"}, "model.layers.0.self_attn.q_proj", "lm_head", false},
		{"sequential 0-11 in registration order", []string{"0", "1", "2", "10", "11"}, "0", "11", false},
	} {
		got, inferred := layerOrder(c.layers)
		if got[0] != c.first || got[len(got)-1] != c.last || inferred != c.inferred {
			t.Errorf("%s: first %q last %q inferred %v, want %q %q %v", c.name, got[0], got[len(got)-1], inferred, c.first, c.last, c.inferred)
		}
	}
	// Block numbers compare as numbers: layer 11 comes after layer 2.
	got, _ := layerOrder([]string{"h.11.mlp", "h.2.attn", "h.2.mlp"})
	if !slices.Equal(got, []string{"h.2.attn", "h.2.mlp", "h.11.mlp"}) {
		t.Errorf("numeric blocks: %v, want h.2.attn h.2.mlp h.11.mlp", got)
	}
}

// yes is a *bool true for Options.GroupFallback.
var yes = true

// A group size the caller gives is used as is: a tensor it does not fit is an error naming the
// tensor and the rule, unless GroupFallback asks for the documented fallback; the default group
// size falls back with a warning.
func TestGroupSizeGivenDoesNotFit(t *testing.T) {
	entries := []checkpoint.Entry{ent("fc.weight", tensor.F32, 4, 96)}
	_, err := NewPlan(entries, nil, Options{Bits: 4, Spec: quant.Spec{GroupSize: 64}})
	if err == nil || !errors.Is(err, ErrOption) || !strings.Contains(err.Error(), `"fc.weight"`) || !strings.Contains(err.Error(), "group_size 64 does not divide the row length 96") {
		t.Errorf("explicit group 64 on rows of 96: %v", err)
	}
	p, err := NewPlan(entries, nil, Options{Bits: 4})
	if err != nil || p.Tensors[0].Spec.GroupSize != 96 || len(p.Warnings) == 0 || p.Warnings[0].Code != warning.GroupFallback {
		t.Errorf("default group on rows of 96: %v, %+v", err, p)
	}
	// Every even group size >= 2 that divides the row is accepted as given, with no warning
	// and no change of format (the old "no divisor in [16, 7]" fallback to INT8 is gone).
	for _, gs := range []int{2, 4, 6, 8, 12, 16, 24, 32, 48, 96} {
		p, err := NewPlan(entries, nil, Options{Bits: 4, Spec: quant.Spec{GroupSize: gs}})
		fellBack := err == nil && slices.ContainsFunc(p.Tensors[0].Warnings, func(w warning.Warning) bool { return w.Code == warning.GroupFallback })
		if err != nil || p.Tensors[0].Spec.Format != quant.Int4 || p.Tensors[0].Spec.GroupSize != gs || fellBack {
			t.Errorf("group %d on rows of 96: %v, spec %v group %d, warnings %v", gs, err, p.Tensors[0].Spec.Format, p.Tensors[0].Spec.GroupSize, p.Tensors[0].Warnings)
		}
	}
	// A size that does not divide is an error naming the fallback option, below 16 too.
	if _, err := NewPlan(entries, nil, Options{Bits: 4, Spec: quant.Spec{GroupSize: 10}}); !errors.Is(err, ErrOption) || !strings.Contains(err.Error(), "allow group_fallback") {
		t.Errorf("group 10 on rows of 96: %v, want an error naming group_fallback", err)
	}
}

func TestPlanRecipe(t *testing.T) {
	entries := []checkpoint.Entry{
		ent("embed.weight", tensor.F32, 100, 64),
		ent("blocks.0.fc1.weight", tensor.F32, 128, 64), ent("blocks.0.fc1.bias", tensor.F32, 128),
		ent("blocks.0.fc2.weight", tensor.F32, 64, 128),
		ent("blocks.1.fc1.weight", tensor.F32, 128, 64),
		ent("blocks.1.fc2.weight", tensor.F32, 64, 128),
		ent("head.weight", tensor.F32, 10, 64),
	}
	rec, err := recipe.Parse([]byte(`{"rules": [
		{"match": "blocks.*.fc2", "bits": 4, "group_size": 32},
		{"match": "head", "skip": true},
		{"match": "blocks.1", "dtype": "bf16"},
		{"match": "embed", "layers": ["embedding"], "bits": 8},
		{"match": "nothing.here", "bits": 4}]}`))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPlan(entries, nil, Options{Recipe: rec, Skip: []string{"blocks.0.fc1.bias"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		action Action
		format string
		rule   int
	}{
		"embed.weight":        {ActionQuantize, "int8", 4},
		"blocks.0.fc1.weight": {ActionQuantize, "int8", 6},
		"blocks.0.fc1.bias":   {ActionKeep, "", -1},
		"blocks.0.fc2.weight": {ActionQuantize, "int4", 1},
		"blocks.1.fc1.weight": {ActionQuantize, "bf16", 3},
		"blocks.1.fc2.weight": {ActionQuantize, "int4", 1},
		"head.weight":         {ActionKeep, "", 2},
	}
	for _, tp := range p.Tensors {
		w := want[tp.Name]
		got := ""
		if tp.Action == ActionQuantize {
			got = tp.Spec.Format.String()
		}
		if tp.Action != w.action || got != w.format || tp.Rule != w.rule {
			t.Errorf("%s: %s %s rule %d, want %s %s rule %d", tp.Name, tp.Action, got, tp.Rule, w.action, w.format, w.rule)
		}
	}
	if p.Tensors[3].Spec.GroupSize != 32 || p.Activations["blocks.1.fc1"] != "none" || p.Activations["blocks.0.fc1"] != "dynamic" {
		t.Errorf("group %d, activations %v", p.Tensors[3].Spec.GroupSize, p.Activations)
	}
	// The call's skip is rule 1 of the resolved recipe, the recipe's rules follow, the call's
	// options close it; rule 5 selects nothing and the skip of a bias (not a weight) neither.
	if len(p.Recipe.Rules) != 7 || !p.Recipe.Rules[0].Skip || p.Recipe.Rules[6].Match != "*" || p.Recipe.Rules[6].DType != "int8" {
		t.Errorf("resolved recipe %+v", p.Recipe.Rules)
	}
	var unused []string
	for _, w := range p.Warnings {
		if w.Code == warning.UnusedRule {
			unused = append(unused, w.Message)
		}
	}
	if len(unused) != 2 || !strings.Contains(unused[0], `"blocks.0.fc1.bias"`) || !strings.Contains(unused[1], `rule 6 ("nothing.here")`) {
		t.Errorf("unused-rule warnings %q", unused)
	}
	byName, modes := map[string]*TensorPlan{}, map[string]bool{}
	for _, tp := range p.Quantized() {
		byName[tp.Name], modes[tp.Settings.Activations] = tp, true
	}
	fc2, fc1 := byName["blocks.0.fc2.weight"], byName["blocks.1.fc1.weight"]
	if fc2 == nil || fc1 == nil || fc2.Rule != 1 || fc1.Settings.Activations != "none" || len(modes) < 2 || p.Recipe == nil {
		t.Errorf("activation modes %v; plan of blocks.0.fc2 %+v, blocks.1.fc1 %+v", modes, fc2, fc1)
	}
}

func TestPlanRecipeErrors(t *testing.T) {
	entries := []checkpoint.Entry{
		ent("lstm.weight_ih_l0", tensor.F32, 32, 8), ent("lstm.weight_hh_l0", tensor.F32, 32, 8),
		ent("fc.weight", tensor.F32, 4, 48), ent("conv.weight", tensor.F32, 4, 3, 3, 3),
	}
	mt := map[string]string{"lstm": "LSTM", "fc": "Linear", "conv": "Conv2d"}
	tests := []struct {
		recipe string
		opts   Options
		want   string
	}{
		{`[{"match": "fc", "bits": 4, "group_size": 32}]`, Options{}, `tensor "fc.weight" (rule 1 ("fc")): group_size 32 does not divide the row length 48`},
		{`[{"match": "lstm.weight_hh_l0", "activations": "none"}]`, Options{}, `layer "lstm": rule 2 ("*") gives it activations dynamic but rule 1 ("lstm.weight_hh_l0") gives its tensor`},
		{`[{"match": "conv", "bits": 8}]`, Options{Runnable: []LayerType{Linear, LSTM}}, `selects "conv", a conv2d layer`},
		{`[{"match": "fc", "layers": ["tree"]}]`, Options{}, `"tree" is not a quantizable layer type`},
		{`[{"match": "fc", "activations": "static"}]`, Options{}, `rule 1 ("fc"): activations static needs calibration data`},
	}
	for _, tt := range tests {
		rec, err := recipe.Parse([]byte(tt.recipe))
		if err != nil {
			t.Fatalf("%s: %v", tt.recipe, err)
		}
		tt.opts.Recipe = rec
		_, err = NewPlan(entries, mt, tt.opts)
		if err == nil || !errors.Is(err, ErrOption) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want ErrOption with %q", tt.recipe, err, tt.want)
		}
	}
}

// Callers holding live tensors name tied ones through the options ("tied"): each group is
// planned once, the alias stored under the quantized member's name.
func TestTiedOption(t *testing.T) {
	o, err := ParseOptions([]byte(`{"tied": {"head.weight": "emb.weight"}}`))
	if err != nil {
		t.Fatal(err)
	}
	entries := []checkpoint.Entry{ent("emb.weight", tensor.F32, 40, 16), ent("fc.weight", tensor.F32, 16, 16), ent("head.weight", tensor.F32, 40, 16)}
	p, err := NewPlan(entries, nil, o)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, tp := range p.Tensors {
		got[tp.Name] = string(tp.Action) + " " + tp.AliasOf
	}
	want := map[string]string{"emb.weight": "alias head.weight", "fc.weight": "quantize ", "head.weight": "quantize "}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plan %v, want %v", got, want)
	}
	if _, err := ParseOptions([]byte(`{"tied": ["x"]}`)); err == nil {
		t.Error(`"tied": ["x"] parsed`)
	}
}
