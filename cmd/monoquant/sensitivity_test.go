package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/sensitivity"
)

func TestSensitivityRanksAndChoosesARecipe(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(repoRoot(t), "examples", "tiny_transformer.safetensors")
	tableFile, recipeFile := filepath.Join(dir, "t.json"), filepath.Join(dir, "r.json")
	args := []string{"sensitivity", src, "--max-bits-per-weight", "6", "--recipe-out", recipeFile, "--out", tableFile}
	r := runCLI(t, args...)
	if r.code != 0 {
		t.Fatalf("monoquant %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	for _, want := range []string{"rank  layer", "encoder.layers.0.linear1", "int4", "Weight SQNR of each layer", "Chosen for at most 6 bits per weight"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	js, err := os.ReadFile(tableFile)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := sensitivity.ParseTable(js)
	if err != nil {
		t.Fatal(err)
	}
	if tab.Metric != sensitivity.MetricWeightSQNR || len(tab.Layers) != 9 || tab.Layers[0].Rank != 1 {
		t.Fatalf("table: %s", js)
	}
	for i := 1; i < len(tab.Layers); i++ {
		if tab.Layers[i].Sensitivity > tab.Layers[i-1].Sensitivity {
			t.Errorf("rank %d is more sensitive than rank %d", i+1, i)
		}
	}
	// the recipe quantizes the file to what was chosen
	out := filepath.Join(dir, "q.safetensors")
	q := runCLI(t, "quantize", "--model", src, "--recipe", recipeFile, "--out", out, "--json")
	if q.code != 0 {
		t.Fatalf("quantize --recipe: %s", q.stderr)
	}
	var doc struct{ Report model.Report }
	if err := json.Unmarshal([]byte(q.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	rep := doc.Report
	if rep.BitsPerWeight > 6 || rep.BitsPerWeight < 5 || rep.TensorsQuantized != 9 {
		t.Errorf("quantized with the recipe: %.3f bits per weight, %d tensors", rep.BitsPerWeight, rep.TensorsQuantized)
	}
	// a saved table gives the same recipe without measuring again
	again := filepath.Join(dir, "r2.json")
	if r := runCLI(t, "sensitivity", "--table", tableFile, "--max-bits-per-weight", "6", "--recipe-out", again); r.code != 0 {
		t.Fatalf("--table: %s", r.stderr)
	}
	a, _ := os.ReadFile(recipeFile)
	b, _ := os.ReadFile(again)
	if string(a) != string(b) {
		t.Errorf("--table gave another recipe:\n%s\n%s", a, b)
	}
	// --json
	j := runCLI(t, "sensitivity", src, "--formats", `["int8", {"bits": 4, "group_size": 32, "name": "g32"}]`, "--json")
	var tj sensitivity.Table
	if j.code != 0 || json.Unmarshal([]byte(j.stdout), &tj) != nil || tj.Formats[1].Name != "g32" {
		t.Errorf("--json: %d %s %s", j.code, j.stdout, j.stderr)
	}
}

func TestSensitivityBadInput(t *testing.T) {
	src := filepath.Join(repoRoot(t), "examples", "tiny_transformer.safetensors")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"sensitivity", src, "--recipe-out", "x.json"}, exitUsage, "--recipe-out needs a budget"},
		{[]string{"sensitivity", src, "--max-bits-per-weight", "2"}, exitUsage, "cannot be met"},
		{[]string{"sensitivity", src, "--formats", "int3"}, exitUsage, "int3"},
		{[]string{"sensitivity", "--table", "/nonexistent/t.json", "--max-size", "1"}, exitInput, "no such file"},
	} {
		r := runCLI(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("monoquant %s: exit %d, stderr %q; want %d and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.msg)
		}
	}
}
