package recipe

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"fc", "fc", true},
		{"fc", "fc.weight", true},
		{"fc", "fc1", false},
		{"fc", "model.fc", false},
		{"encoder", "encoder.layers.0.linear1", true},
		{"encoder.", "encoder.layers.0.linear1.weight", true},
		{"encoder.", "encoderx.a", false},
		{"*.lm_head", "model.lm_head", true},
		{"*.lm_head", "lm_head", false},
		{"*.lm_head", "model.lm_head.weight", true},
		{"lm_head", "lm_head.weight", true},
		{"blocks.*.fc2", "blocks.3.fc2", true},
		{"blocks.*.fc2", "blocks.3.fc2.weight", true},
		{"blocks.*.fc2", "blocks.3.fc1", false},
		{"blocks.*.fc2", "blocks.1.sub.fc2", true}, // "*" crosses dots, as in fnmatch
		{"blocks.?.fc2", "blocks.10.fc2", false},
		{"blocks.[0-2].fc2", "blocks.2.fc2", true},
		{"blocks.[0-2].fc2", "blocks.3.fc2", false},
		{"blocks.[!0-2].fc2", "blocks.3.fc2", true},
		{"layers.[]]", "layers.]", true},
		{"*", "", true},
		{"*", "anything.at.all", true},
		{"classifier.*", "classifier.1", true},
		{"classifier.*", "classifier", false},
		{"a*b*c*d*e*f", strings.Repeat("a", 200), false},
	}
	for _, tt := range tests {
		if got := Match(tt.pattern, tt.name); got != tt.want {
			t.Errorf("Match(%#q, %#q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	for _, p := range []string{"", ".", "[", "a[b", "x[!", "a\x00b", "a\x1b[31m"} {
		if _, err := Compile(p); err == nil {
			t.Errorf("Compile(%#q) = nil error, want one", p)
		}
	}
}

func TestParse(t *testing.T) {
	r, err := Parse([]byte(`{"rules": [{"match": "blocks.*.fc2", "bits": 4, "group_size": 32}, {"match": "head", "skip": true}, {"match": "*", "bits": 8}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rules) != 3 || r.Rules[0].GroupSize != 32 || !r.Rules[1].Skip || r.Rules[2].Bits != 8 {
		t.Fatalf("Parse = %+v", r)
	}
	if r, err := Parse([]byte(`[{"match": "x", "dtype": "bf16"}]`)); err != nil || r.Rules[0].DType != "bf16" {
		t.Fatalf("Parse(list) = %+v, %v", r, err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, "empty recipe"},
		{`{"rules": [{"match": "a", "bitz": 4}]}`, `rule 1: unknown key "bitz"`},
		{`{"rule": []}`, `unknown key "rule"`},
		{`{"rules": [{"match": "a"}, {"match": "b", "bits": 3}]}`, `rule 2 ("b"): bits 3 is not supported`},
		{`{"rules": [{"match": "a", "bits": 8, "dtype": "int4"}]}`, `bits 8 and dtype "int4" disagree`},
		{`{"rules": [{"match": "a", "group_size": 7}]}`, `group_size 7 must be an even number`},
		{`{"rules": [{"match": "a", "skip": true, "bits": 4}]}`, `a skip rule takes no other option`},
		{`{"rules": [{"bits": 4}]}`, `match: empty pattern`},
		{`{"rules": [{"match": "a[", "bits": 4}]}`, `unclosed '['`},
		{`{"rules": [{"match": "a", "scheme": "diagonal"}]}`, `scheme "diagonal"`},
		{`{"rules": [{"match": "a", "activations": "sometimes"}]}`, `activations "sometimes"`},
		{`{"rules": [{"match": "a", "method": "magic"}]}`, `method "magic"`},
		{`{"rules": [{"match": "a", "bits": "8"}]}`, `rule 1: key "bits": string is not a int`},
		{`{"rules": {}}`, `rules`},
		{`{"rules": []} x`, `after the recipe`},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(tt.in))
		if err == nil || !errors.Is(err, ErrRecipe) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%#q) error = %v, want one containing %q", tt.in, err, tt.want)
		}
	}
}

func TestResolve(t *testing.T) {
	tr := true
	tests := []struct {
		name       string
		rule, base Rule
		calibrated bool
		want       Settings
		err        string
	}{
		{name: "defaults", want: Settings{Format: "int8", Scheme: "symmetric", Activations: "dynamic", Method: "rtn"}},
		{name: "int4 default group", base: Rule{Bits: 4},
			want: Settings{Format: "int4", GroupSize: 128, GroupFallback: true, Scheme: "asymmetric", Activations: "none", Method: "rtn"}},
		{name: "int4 given group", rule: Rule{Bits: 4, GroupSize: 32},
			want: Settings{Format: "int4", GroupSize: 32, Scheme: "asymmetric", Activations: "none", Method: "rtn"}},
		{name: "given group with fallback", rule: Rule{Bits: 4, GroupSize: 32, GroupFallback: &tr, Scheme: "sym"},
			want: Settings{Format: "int4", GroupSize: 32, GroupFallback: true, Scheme: "symmetric", Activations: "none", Method: "rtn"}},
		{name: "hqq", rule: Rule{Bits: 8, Method: "hqq"},
			want: Settings{Format: "int8", Scheme: "asymmetric", Activations: "dynamic", Method: "hqq"}},
		{name: "hqq symmetric", rule: Rule{Bits: 4, Method: "hqq", Scheme: "symmetric"}, err: "needs the asymmetric scheme"},
		{name: "method on fp16", rule: Rule{Bits: 16, Method: "mse"}, err: "method mse applies to the integer formats"},
		{name: "base group follows to int4 rule", rule: Rule{Bits: 4}, base: Rule{GroupSize: 64, Scheme: "asym"},
			want: Settings{Format: "int4", GroupSize: 64, Scheme: "asymmetric", Activations: "none", Method: "rtn"}},
		{name: "bf16", rule: Rule{DType: "bfloat16"}, base: Rule{Scheme: "asymmetric"},
			want: Settings{Format: "bf16", Activations: "none", Method: "rtn"}},
		{name: "calibrated", base: Rule{Bits: 8}, calibrated: true,
			want: Settings{Format: "int8", Scheme: "symmetric", Activations: "static", Observer: "histogram", Method: "rtn"}},
		{name: "alias weight_only", rule: Rule{Activations: "weight_only"},
			want: Settings{Format: "int8", Scheme: "symmetric", Activations: "none", Method: "rtn"}},
		{name: "group on int8", rule: Rule{Bits: 8, GroupSize: 32}, err: "group_size 32 applies to INT4"},
		{name: "scheme on fp16", rule: Rule{Bits: 16, Scheme: "asymmetric"}, err: "scheme applies to the integer formats"},
		{name: "static without data", rule: Rule{Activations: "static"}, err: "needs calibration data"},
		{name: "observer without static", rule: Rule{Observer: "minmax"}, err: "applies to static activations"},
		{name: "dynamic fp16", rule: Rule{Bits: 16, Activations: "dynamic"}, err: "apply to the integer formats"},
	}
	for _, tt := range tests {
		got, err := Resolve(&tt.rule, &tt.base, tt.calibrated)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: Resolve error = %v, want %q", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: Resolve = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}

// The resolved recipe, fed back alone, resolves to the same rules: what a file stores
// reproduces the run whatever the defaults are then.
func TestResolvedRecipeRoundTrip(t *testing.T) {
	rec, err := Parse([]byte(`{"rules": [{"match": "blocks.*.fc2", "bits": 4, "group_size": 32}, {"match": "head", "skip": true}, {"match": "emb", "dtype": "bf16"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Merge([]string{"classifier"}, rec, Rule{Bits: 8, Scheme: "asymmetric"}, []string{"linear"}, false)
	if err != nil {
		t.Fatal(err)
	}
	stored := res.Recipe()
	js, _ := json.Marshal(stored)
	back, err := Parse(js)
	if err != nil {
		t.Fatalf("Parse(%s): %v", js, err)
	}
	again, err := Merge(nil, back, Rule{Bits: 16}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	// The stored rules end with the stored "*" rule, so the new base, never reached, is not added.
	if len(again.Rules) != len(res.Rules) {
		t.Fatalf("%d rules, want %d", len(again.Rules), len(res.Rules))
	}
	for i, rr := range res.Rules {
		if again.Rules[i].Settings != rr.Settings || again.Rules[i].Rule.Skip != rr.Rule.Skip || again.Rules[i].Pattern != rr.Pattern {
			t.Errorf("rule %d: %+v, want %+v", i, again.Rules[i], rr)
		}
	}
	if len(again.Layers) != 1 || again.Layers[0] != "linear" {
		t.Errorf("layers %v", again.Layers)
	}
}

func TestMergeErrors(t *testing.T) {
	if _, err := Merge(nil, nil, Rule{Bits: 8, GroupSize: 64}, nil, false); err == nil || !strings.Contains(err.Error(), "group_size 64 applies to INT4") {
		t.Errorf("group size with bits 8: %v", err)
	}
	if _, err := Merge([]string{"["}, nil, Rule{}, nil, false); err == nil || !strings.Contains(err.Error(), "skip") {
		t.Errorf("bad skip: %v", err)
	}
	rec := &Recipe{Rules: []Rule{{Match: "a", Activations: "static"}}}
	if _, err := Merge(nil, rec, Rule{}, nil, false); err == nil || !strings.Contains(err.Error(), `rule 1 ("a")`) {
		t.Errorf("static rule without data: %v", err)
	}
}

// TestSpellingsAreWhatRulesTake: every spelling Spellings lists is a value a rule accepts (the
// CLI's flags take exactly these), aliases included, and a value outside the list is refused.
func TestSpellingsAreWhatRulesTake(t *testing.T) {
	for _, opt := range []string{"dtype", "scheme", "activations", "observer", "method"} {
		sp := Spellings(opt)
		if len(sp) == 0 || !slices.IsSorted(sp) {
			t.Fatalf("Spellings(%q) = %v, want a sorted, non-empty list", opt, sp)
		}
		for _, v := range append(sp, "no-such-value") {
			rule := fmt.Sprintf(`[{"match": "x", %q: %q}]`, opt, v)
			r, err := Parse([]byte(rule))
			if err == nil {
				err = r.Validate()
			}
			if v == "no-such-value" {
				if err == nil {
					t.Errorf("%s accepted %q", opt, v)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s %q is listed by Spellings but refused: %v", opt, v, err)
			}
		}
	}
	if !slices.Contains(Spellings("scheme"), "affine") || Spellings("bits") != nil {
		t.Errorf("Spellings: scheme %v, bits %v", Spellings("scheme"), Spellings("bits"))
	}
}
