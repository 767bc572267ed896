package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const benchRef = "../../examples/digits_cnn.safetensors"

// benchFiles quantizes the digits CNN to INT8 twice (the same bytes) and INT4, and writes an
// INT4 recipe, in dir.
func benchFiles(t *testing.T, dir string) (q8, q8b, q4, recipe4 string) {
	t.Helper()
	q8, q8b, q4 = filepath.Join(dir, "q8.safetensors"), filepath.Join(dir, "q8b.safetensors"), filepath.Join(dir, "q4.safetensors")
	for _, args := range [][]string{
		{"quantize", "-m", benchRef, "-b", "8", "-o", q8, "-q", "--json"},
		{"quantize", "-m", benchRef, "-b", "8", "-o", q8b, "-q", "--json"},
		{"quantize", "-m", benchRef, "-b", "4", "-g", "32", "--group-fallback", "-o", q4, "-q", "--json"},
	} {
		if r := runCLI(t, args...); r.code != 0 {
			t.Fatalf("monoquant %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	recipe4 = filepath.Join(dir, "int4.json")
	if err := os.WriteFile(recipe4, []byte(`{"rules": [{"match": "*", "bits": 4, "group_size": 32, "group_fallback": true}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return
}

type benchJSON struct {
	Winner     string `json:"winner"`
	Verdict    string `json:"verdict"`
	LayersRun  int    `json:"layers_run"`
	Candidates []struct {
		Name        string    `json:"name"`
		Path        string    `json:"path"`
		TensorBytes int64     `json:"tensor_bytes"`
		OutputSQNR  float64   `json:"output_sqnr_db"`
		Samples     []float64 `json:"output_sqnr_samples_db"`
		LoadSeconds []float64 `json:"load_seconds"`
	} `json:"candidates"`
	Load struct {
		Winner  string `json:"winner"`
		Verdict string `json:"verdict"`
	} `json:"load_seconds"`
}

func TestBenchCommand(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MONOQUANT_HOME", dir)
	t.Setenv("MONOQUANT_LOG", "1") // the quantizations are runs 1 to 3
	q8, q8b, q4, recipe4 := benchFiles(t, dir)

	// A quantized file, a recipe applied to the reference and a logged run (the INT8 run, id 1).
	r := runCLI(t, "bench", "--reference", benchRef, q8, "r4="+recipe4, "run:3", "--repeats", "4", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var res benchJSON
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if len(res.Candidates) != 3 || res.Candidates[0].Name != "q8" || res.Candidates[1].Name != "r4" || res.Candidates[2].Name != "run:3" {
		t.Fatalf("candidates %+v", res.Candidates)
	}
	if res.Candidates[1].Path != recipe4 || res.Candidates[2].Path != q4 {
		t.Errorf("paths %q, %q; want the recipe and run 3's output %q", res.Candidates[1].Path, res.Candidates[2].Path, q4)
	}
	// The recipe and run 3 are the same INT4 quantization: the same figures, and INT8 wins.
	if res.Candidates[1].OutputSQNR != res.Candidates[2].OutputSQNR || res.Candidates[1].TensorBytes != res.Candidates[2].TensorBytes {
		t.Errorf("recipe %+v and run 3 %+v differ", res.Candidates[1], res.Candidates[2])
	}
	if res.Winner != "q8" || !strings.HasPrefix(res.Verdict, "winner: q8 (output SQNR") || res.LayersRun != 4 {
		t.Errorf("winner %q, verdict %q, layers %d", res.Winner, res.Verdict, res.LayersRun)
	}
	for _, c := range res.Candidates {
		if len(c.Samples) != 16 || len(c.LoadSeconds) != 4 {
			t.Errorf("%s: %d samples, %d load times", c.Name, len(c.Samples), len(c.LoadSeconds))
		}
	}

	// The same file twice: no significant difference, said as much.
	r = runCLI(t, "bench", "--reference", benchRef, q8, q8b, "--repeats", "3")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"no significant difference in output SQNR between q8 and q8b", "Winner       none: no significant difference in output SQNR", "classifier.1  linear  q8"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	// By load time: a decision (whichever it is) on the load times.
	r = runCLI(t, "bench", "--reference", benchRef, q8, q4, "--repeats", "3", "--objective", "load-time", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || r.code != 0 {
		t.Fatalf("exit %d, %v: %s", r.code, err, r.stderr)
	}
	if res.Verdict != res.Load.Verdict || !strings.Contains(res.Verdict, "load time") {
		t.Errorf("verdict %q, load verdict %q", res.Verdict, res.Load.Verdict)
	}
}

func TestBenchCommandErrors(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MONOQUANT_HOME", dir)
	q8, _, q4, _ := benchFiles(t, dir)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"rules": [{"match": "*", "bits": 5}]}`), 0o644)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench", q8, q4}, exitUsage, "--reference is required"},
		{[]string{"bench", "--reference", benchRef, q8}, exitUsage, "at least two candidates, got 1"},
		{[]string{"bench", "--reference", benchRef, q8, q4, "--objective", "speed"}, exitUsage, `--objective "speed"`},
		{[]string{"bench", "--reference", benchRef, q8, q4, "--repeats", "1"}, exitUsage, "repeats 1"},
		{[]string{"bench", "--reference", q8, q8, q4}, exitFormat, "is a quantized checkpoint: give the float checkpoint"},
		{[]string{"bench", "--reference", benchRef, q8, benchRef}, exitFormat, "is not a quantized checkpoint"},
		{[]string{"bench", "--reference", benchRef, q8, filepath.Join(dir, "none.safetensors")}, exitInput, "no such file"},
		{[]string{"bench", "--reference", benchRef, q8, "run:x"}, exitUsage, "run:x is not a run id"},
		{[]string{"bench", "--reference", benchRef, q8, "run:99"}, exitInput, "run:99"},
		{[]string{"bench", "--reference", benchRef, q8, bad}, exitUsage, "candidate bad"},
		{[]string{"bench", "--reference", "../../examples/tiny_transformer.safetensors", q8, q4}, exitFormat, "is not in the reference"},
	}
	for _, tc := range tests {
		r := runCLI(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("monoquant %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.want)
		}
	}
}

// TestGoldenBench pins the JSON document of bench (the load times, which vary from run to run,
// left out) for two INT8 files and an INT4 one on random inputs.
func TestGoldenBench(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("MONOQUANT_HOME", dir)
	q8, q8b, q4, _ := benchFiles(t, dir)
	r := runCLI(t, "bench", "--reference", benchRef, q8, q8b, q4, "--repeats", "3", "--samples", "8", "--json")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(strings.ReplaceAll(r.stdout, dir, "$TMP")), &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "load_seconds")
	for _, c := range doc["candidates"].([]any) {
		delete(c.(map[string]any), "load_seconds")
	}
	b, _ := json.Marshal(doc)
	checkGolden(t, "bench_digits_cnn.json", normalizeJSON(t, string(b)))
}
