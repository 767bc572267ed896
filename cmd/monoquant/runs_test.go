package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/runlog"
	"github.com/monoquant/monoquant/core/tensor"
)

// logOn turns the run log on for one test, in the test's own folder, and returns the log file.
func logOn(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	t.Setenv("MONOQUANT_HOME", home)
	t.Setenv("MONOQUANT_LOG", "1")
	return filepath.Join(home, runlog.FileName)
}

func mustCLI(t *testing.T, args ...string) result {
	t.Helper()
	r := runCLI(t, args...)
	if r.code != exitOK {
		t.Fatalf("monoquant %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// The list → compare → reproduce workflow of docs/RUNLOG.md, on the bundled example.
func TestRunsWorkflow(t *testing.T) {
	logPath := logOn(t)
	dir := t.TempDir()
	in := copyFile(t, filepath.Join(repoRoot(t), "examples", "digits_cnn.pt"), dir)
	r8 := mustCLI(t, "quantize", "--model", in, "--quiet")
	if !strings.Contains(r8.stdout, "Recorded as run 1 in "+logPath) {
		t.Errorf("quantize stdout does not name run 1 in %s:\n%s", logPath, r8.stdout)
	}
	var q4 quantizeResult
	r4 := mustCLI(t, "quantize", "--model", in, "--bits", "4", "--group-size", "32", "--group-fallback", "--quiet", "--json")
	if err := json.Unmarshal([]byte(r4.stdout), &q4); err != nil || q4.RunID != 2 || q4.RunLog != logPath {
		t.Fatalf("quantize --json run_id %d run_log %q (%v), want 2 and %s", q4.RunID, q4.RunLog, err, logPath)
	}
	mustCLI(t, "quantize", "--model", in, "--bits", "16", "--quiet", "--no-log")

	// list: the two logged runs, not the --no-log one.
	var listed []runlog.Run
	if err := json.Unmarshal([]byte(mustCLI(t, "runs", "list", "--json").stdout), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 || listed[0].EntryPoint != "cli" || listed[1].Output.Path != q4.Output {
		t.Fatalf("runs list --json = %+v, want runs 1 and 2 from the cli", listed)
	}
	sum, err := runlog.HashFile(in)
	if err != nil {
		t.Fatal(err)
	}
	out4, _ := runlog.HashFile(q4.Output)
	if listed[1].Input.XXH3 != sum.XXH3 || listed[1].Output.XXH3 != out4.XXH3 || listed[1].Input.Path != in ||
		listed[1].Input.SHA256 != "" || listed[1].Output.SHA256 != "" || sum.XXH3 == "" {
		t.Errorf("run 2 input %+v output %+v; want the files' xxh3 %s and %s, no sha256", listed[1].Input, listed[1].Output, sum.XXH3, out4.XXH3)
	}
	if len(listed[1].Layers) != len(q4.Report.Tensors) || listed[1].PeakRSS <= 0 || listed[1].Results["sqnr_db"] != float64(q4.Report.SQNR) {
		t.Errorf("run 2 layers %d (want %d), peak RSS %d, sqnr %v (want %v)", len(listed[1].Layers), len(q4.Report.Tensors),
			listed[1].PeakRSS, listed[1].Results["sqnr_db"], q4.Report.SQNR)
	}
	if l := mustCLI(t, "runs", "list", "--filter", "options.bits=4").stdout; !strings.Contains(l, "int4 g32") || strings.Contains(l, " int8 ") || !strings.Contains(l, "1 run in") {
		t.Errorf("runs list --filter options.bits=4:\n%s", l)
	}

	// metric, show, compare.
	mustCLI(t, "runs", "metric", "2", "accuracy", "0.91")
	show := mustCLI(t, "runs", "show", "2").stdout
	for _, want := range []string{"Run 2 ", "accuracy", "0.91", "xxh3 " + sum.XXH3, "sha256 on request", "int4/per_group/asymmetric/g32", "options.bits"} {
		if !strings.Contains(show, want) {
			t.Errorf("runs show 2 lacks %q:\n%s", want, show)
		}
	}
	// --sha256 adds the files' sha256 to the record, as sha256sum computes it
	inSHA, outSHA := fileSHA256(t, in), fileSHA256(t, q4.Output)
	if show := mustCLI(t, "runs", "show", "2", "--sha256").stdout; !strings.Contains(show, "sha256 "+inSHA) || !strings.Contains(show, "sha256 "+outSHA) {
		t.Errorf("runs show 2 --sha256 lacks the input's %s or the output's %s:\n%s", inSHA, outSHA, show)
	}
	var shown runlog.Run
	if err := json.Unmarshal([]byte(mustCLI(t, "runs", "show", "2", "--json").stdout), &shown); err != nil ||
		shown.Input.SHA256 != inSHA || shown.Output.SHA256 != outSHA || shown.Output.XXH3 != out4.XXH3 {
		t.Errorf("after --sha256 the record holds %+v %+v (%v); want sha256 %s and %s", shown.Input, shown.Output, err, inSHA, outSHA)
	}
	html := filepath.Join(dir, "cmp.html")
	cmp := mustCLI(t, "runs", "compare", "1", "2", "--html", html).stdout
	for _, want := range []string{"* options.bits", "* classifier.1.weight", "* accuracy", "Pareto front (smallest output for its SQNR): run 1 run 2"} {
		if !strings.Contains(cmp, want) {
			t.Errorf("runs compare 1 2 lacks %q:\n%s", want, cmp)
		}
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	p := string(page)
	if !strings.Contains(p, "<svg") || strings.Count(p, `<circle class="front"`) != 2 || !strings.Contains(p, `class="pareto"`) ||
		!strings.Contains(p, `<tr class="diff"><td>options.bits</td>`) || strings.Contains(p, "<script") || strings.Contains(p, "src=") {
		t.Errorf("compare HTML lacks the scatter, the front or the highlighted rows, or loads something:\n%s", p)
	}

	// reproduce: identical, and recorded as a new run.
	rep := mustCLI(t, "runs", "reproduce", "2", "--quiet").stdout
	if !strings.HasPrefix(rep, "identical: run 2 reproduced (recorded as run 3); output xxh3 "+out4.XXH3) {
		t.Errorf("runs reproduce 2 = %q", rep)
	}
	keep := filepath.Join(dir, "again.safetensors")
	mustCLI(t, "runs", "reproduce", "1", "--output", keep, "--quiet")
	if h, _ := runlog.HashFile(keep); h.XXH3 != listed[0].Output.XXH3 {
		t.Errorf("reproduce --output wrote xxh3 %s, want %s", h.XXH3, listed[0].Output.XXH3)
	}

	// A changed input is refused before anything runs.
	b, _ := os.ReadFile(in)
	os.WriteFile(in, append(b, 0), 0o644)
	args := []string{"runs", "reproduce", "1", "--quiet"}
	assertOneLineError(t, args, runCLI(t, args...), exitInput, "changed since the run")
}

func TestRunsBrokenLogKeepsTheQuantization(t *testing.T) {
	logPath := logOn(t)
	os.WriteFile(logPath, []byte(strings.Repeat("garbage ", 1000)), 0o644)
	dir := t.TempDir()
	in := copyFile(t, filepath.Join(repoRoot(t), "examples", "digits_cnn.pt"), dir)
	r := runCLI(t, "quantize", "--model", in, "--quiet")
	if r.code != exitOK {
		t.Fatalf("quantize with a corrupt run log: exit %d, stderr %q", r.code, r.stderr)
	}
	if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "monoquant: warning: run not recorded: ") {
		t.Errorf("stderr = %q, want one warning line", r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "digits_cnn.int8.safetensors")); err != nil {
		t.Errorf("the output was not written: %v", err)
	}
	if strings.Contains(r.stdout, "Recorded as run") {
		t.Errorf("stdout claims a recorded run:\n%s", r.stdout)
	}
}

func TestRunsErrors(t *testing.T) {
	logOn(t)
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"runs"}, exitUsage, "want list, show"},
		{[]string{"runs", "frobnicate"}, exitUsage, `unknown subcommand "frobnicate"`},
		{[]string{"runs", "list"}, exitInput, "no run log at"},
		{[]string{"runs", "metric", "7", "acc", "1"}, exitInput, "run 7: no such run"}, // creates the log
		{[]string{"runs", "show", "x"}, exitUsage, `"x" is not a run id`},
		{[]string{"runs", "metric", "1", "acc", "nan"}, exitUsage, "value NaN is not a finite number"},
		{[]string{"runs", "show", "7"}, exitInput, "run 7: no such run"},
		{[]string{"runs", "compare", "1"}, exitUsage, "two or more run ids"},
		{[]string{"runs", "list", "--filter", "bits"}, exitUsage, "want key=value"},
		{[]string{"runs", "export", "out"}, exitUsage, "--format is required"},
		{[]string{"runs", "export", "--format", "xml", "out"}, exitUsage, "--format"},
	} {
		assertOneLineError(t, tc.args, runCLI(t, tc.args...), tc.code, tc.msg)
	}
}

func TestRunsExport(t *testing.T) {
	logOn(t)
	dir := t.TempDir()
	in := copyFile(t, filepath.Join(repoRoot(t), "examples", "digits_cnn.pt"), dir)
	mustCLI(t, "quantize", "--model", in, "--quiet")
	mustCLI(t, "quantize", "--model", in, "--bits", "4", "--quiet")
	mustCLI(t, "runs", "export", "--format", "csv", filepath.Join(dir, "csv"))
	csv, _ := os.ReadFile(filepath.Join(dir, "csv", "runs.csv"))
	if lines := strings.Split(strings.TrimSpace(string(csv)), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "id,") || !strings.HasPrefix(lines[2], "2,") {
		t.Errorf("runs.csv =\n%s", csv)
	}
	mustCLI(t, "runs", "export", "--format", "jsonl", filepath.Join(dir, "j"))
	jl, _ := os.ReadFile(filepath.Join(dir, "j", "runs.jsonl"))
	var n int
	for _, line := range strings.Split(strings.TrimSpace(string(jl)), "\n") {
		var r runlog.Run
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.ID == 0 {
			t.Errorf("runs.jsonl line %q: %v", line, err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("runs.jsonl has %d runs, want 2", n)
	}
	ml := filepath.Join(dir, "ml")
	mustCLI(t, "runs", "export", "--format", "mlflow", ml)
	if _, err := os.Stat(filepath.Join(ml, "0", "meta.yaml")); err != nil {
		t.Error(err)
	}
	args := []string{"runs", "export", "--format", "mlflow", ml}
	assertOneLineError(t, args, runCLI(t, args...), exitOutput, "is not empty")
}

// A run whose record no longer matches what its settings produce is reported, with what differs.
func TestRunsReproduceDifferent(t *testing.T) {
	logPath := logOn(t)
	dir := t.TempDir()
	in := copyFile(t, filepath.Join(repoRoot(t), "examples", "digits_cnn.pt"), dir)
	mustCLI(t, "quantize", "--model", in, "--bits", "4", "--quiet")
	// As if an older monoquant had resolved another group size and written other bytes.
	db, err := sql.Open("sqlite", logPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE runs SET output_xxh3 = 'abc', config = replace(config, '"group_size":128', '"group_size":16')`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE layers SET sqnr_db = 99 WHERE name = 'classifier.1.weight'`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	r := runCLI(t, "runs", "reproduce", "1", "--quiet")
	if r.code != exitNotRepro || !strings.Contains(r.stderr, "run 1 did not reproduce byte for byte") {
		t.Errorf("exit %d stderr %q, want %d and 'did not reproduce'", r.code, r.stderr, exitNotRepro)
	}
	for _, want := range []string{"different: run 1 reproduced (recorded as run 2)", "recorded xxh3 abc",
		`resolved config {"bits":4`, `"group_size":16`, "tensor classifier.1.weight: SQNR", "99.000 dB recorded"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("runs reproduce stdout lacks %q:\n%s", want, r.stdout)
		}
	}
}

// Runs the other entry points record without files — an in-memory quantization, a search
// trial — are listed and shown for what they are, and reproduce refuses them in one line.
func TestRunsInMemoryAndTrials(t *testing.T) {
	logPath := logOn(t)
	ctx := context.Background()
	m := model.NewModel()
	w := make([]byte, 16*32*4)
	for i := 0; i < 16*32; i++ {
		binary.LittleEndian.PutUint32(w[4*i:], math.Float32bits(float32(math.Sin(float64(i)))))
	}
	m.Add("fc.weight", &tensor.Tensor{DType: tensor.F32, Shape: []int{16, 32}, Data: w})
	m.SetModuleType("fc", "Linear")
	rec := runlog.StartModel("python.quantize", logPath, m)
	res, err := m.Quantize(ctx, plan.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id, _, warn := rec.Finish(ctx, plan.Options{}, res, nil); id != 1 {
		t.Fatalf("in-memory run not recorded: %q", warn)
	}
	if id, warn := runlog.RecordTrial(ctx, logPath, runlog.Trial{EntryPoint: "search", Recipe: res.Plan.Recipe,
		Objectives: map[string]float64{"size": 500}, Goals: map[string]string{"size": "min"}}); id != 2 {
		t.Fatalf("trial not recorded: %q", warn)
	}
	list := mustCLI(t, "runs", "list").stdout
	if !strings.Contains(list, "python.quantize  (in memory)") || !strings.Contains(list, "search           -            recipe") {
		t.Errorf("runs list:\n%s", list)
	}
	if show := mustCLI(t, "runs", "show", "1").stdout; !strings.Contains(show, "Input     in memory (2.05 kB, state-dict fingerprint ") {
		t.Errorf("runs show 1:\n%s", show)
	}
	for _, id := range []string{"1", "2"} {
		args := []string{"runs", "reproduce", id, "--quiet"}
		assertOneLineError(t, args, runCLI(t, args...), exitInput, "cannot be reproduced from a file")
	}
}

// fileSHA256 is the hex sha256 of a file, as sha256sum prints it.
func fileSHA256(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
