package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Golden files pin what users and scripts read: the inspect table, the quantize report and the
// --json documents. Paths are relative to this package (../../examples/...) and a test's temp
// folder is written as $TMP, so the files do not depend on the machine. Regenerate with
// `make golden-cli` (go test -run Golden -update) and review the diff.

// roundFloats rounds every number of a JSON document to 6 significant digits: energies are
// float64 sums whose last bits depend on how many cores split the work.
func roundFloats(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = roundFloats(e)
		}
	case []any:
		for i, e := range x {
			x[i] = roundFloats(e)
		}
	case float64:
		if math.Abs(x) < 1e-9 { // e.g. the SQNR deviation: summation-order noise around 0
			return 0.0
		}
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return x
		}
		f, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 6, 64), 64)
		return f
	}
	return v
}

func normalizeJSON(t *testing.T, s string) string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("not a JSON document: %v\n%s", err, s)
	}
	b, err := json.MarshalIndent(roundFloats(v), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `make golden-cli` to create it)", err)
	}
	if got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < max(len(gl), len(wl)); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("%s differs from the golden file at line %d:\n got: %q\nwant: %q\n(full output:\n%s)", path, i+1, g, w, got)
				return
			}
		}
	}
}

func TestGoldenInspect(t *testing.T) {
	tests := []struct {
		golden string
		args   []string
	}{
		{"inspect_digits_cnn_module.txt", []string{"inspect", "../../examples/digits_cnn_module.pt"}},
		{"inspect_tiny_transformer.txt", []string{"inspect", "../../examples/tiny_transformer.safetensors"}},
		{"inspect_torch_module.txt", []string{"inspect", "../../testdata/checkpoints/torch/module.pt"}},
		{"inspect_nothing_to_quantize.txt", []string{"inspect", "../../testdata/checkpoints/torch/nested.pt"}},
		{"inspect_sharded.json", []string{"inspect", "../../testdata/checkpoints/safetensors/sharded/model.safetensors.index.json", "--json"}},
		{"inspect_digits_cnn_module.json", []string{"inspect", "--json", "../../examples/digits_cnn_module.pt"}},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			r := runCLI(t, tc.args...)
			if r.code != 0 || r.stderr != "" {
				t.Fatalf("monoquant %s: exit %d, stderr %q", strings.Join(tc.args, " "), r.code, r.stderr)
			}
			out := r.stdout
			if strings.HasSuffix(tc.golden, ".json") {
				out = normalizeJSON(t, out)
			}
			checkGolden(t, tc.golden, out)
		})
	}
}

func TestGoldenQuantizeReport(t *testing.T) {
	dir := t.TempDir()
	tmp := func(s string) string { return strings.ReplaceAll(s, dir, "$TMP") }
	tests := []struct {
		golden string
		args   []string
	}{
		{"quantize_digits_cnn_int8.json", []string{"quantize", "--model", "../../examples/digits_cnn.pt", "--out", filepath.Join(dir, "d8.safetensors"), "--json"}},
		{"quantize_digits_cnn_module_int4.txt", []string{"quantize", "--model", "../../examples/digits_cnn_module.pt", "--bits", "4", "--group-size", "32", "--group-fallback", "--out", filepath.Join(dir, "d4.pt")}},
		{"quantize_tiny_transformer_asym.txt", []string{"quantize", "--model", "../../examples/tiny_transformer.safetensors", "--scheme", "asymmetric", "--skip", "lm_head", "--out", filepath.Join(dir, "t8.safetensors")}},
		{"inspect_quantized_int4.txt", []string{"inspect", filepath.Join(dir, "d4.pt")}},
		{"inspect_quantized_int8.json", []string{"inspect", filepath.Join(dir, "d8.safetensors"), "--json"}},
		{"compare_digits_cnn_int4.txt", []string{"compare", "../../examples/digits_cnn_module.pt", filepath.Join(dir, "d4.pt")}},
		{"dequantize_int4.json", []string{"dequantize", filepath.Join(dir, "d4.pt"), "--out", filepath.Join(dir, "back.safetensors"), "--json"}},
		{"version.txt", []string{"version", "--help"}},
	}
	for _, tc := range tests { // in order: later cases read the files earlier ones wrote
		r := runCLI(t, tc.args...)
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("monoquant %s: exit %d, stderr %q", strings.Join(tc.args, " "), r.code, r.stderr)
		}
		out := tmp(r.stdout)
		if strings.HasSuffix(tc.golden, ".json") {
			out = normalizeJSON(t, out)
		}
		checkGolden(t, tc.golden, out)
	}
}
