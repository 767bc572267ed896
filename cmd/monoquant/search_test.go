package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

type searchJSON struct {
	Objective string `json:"objective"`
	Trials    int    `json:"trials"`
	Front     []struct {
		Trial      int                `json:"trial"`
		Status     string             `json:"status"`
		Objectives map[string]float64 `json:"objectives"`
		Recipe     json.RawMessage    `json:"recipe"`
	} `json:"front"`
	All     []json.RawMessage `json:"trials_all"`
	Recipes []string          `json:"recipe_files"`
}

func runSearchJSON(t *testing.T, args ...string) searchJSON {
	t.Helper()
	r := runCLI(t, append([]string{"search", "--reference", benchRef, "--json"}, args...)...)
	if r.code != 0 {
		t.Fatalf("monoquant search %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	var out searchJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	return out
}

func TestSearchCommand(t *testing.T) {
	dir := t.TempDir()
	front := filepath.Join(dir, "front")
	res := runSearchJSON(t, "--trials", "24", "--recipes-out", front)
	if res.Objective != "output_sqnr" || res.Trials != 24 || len(res.All) != 24 || len(res.Front) < 3 {
		t.Fatalf("objective %q, %d trials (%d listed), front of %d", res.Objective, res.Trials, len(res.All), len(res.Front))
	}
	// Non-dominated: no front member at most as big and at least as good as another, with one strict.
	for i, a := range res.Front {
		for j, b := range res.Front {
			sa, sb, qa, qb := a.Objectives["size"], b.Objectives["size"], a.Objectives["output_sqnr"], b.Objectives["output_sqnr"]
			if i != j && sa <= sb && qa >= qb && (sa < sb || qa > qb) {
				t.Errorf("trial %d (%v) dominates trial %d (%v) on the front", a.Trial, a.Objectives, b.Trial, b.Objectives)
			}
		}
	}
	// Each front recipe file quantizes to the size and SQNR the search measured.
	if len(res.Recipes) != len(res.Front) {
		t.Fatalf("%d recipe files for a front of %d", len(res.Recipes), len(res.Front))
	}
	k := len(res.Front) / 2
	q := filepath.Join(dir, "q.safetensors")
	r := runCLI(t, "quantize", "-m", benchRef, "--recipe", res.Recipes[k], "-o", q, "-q", "--json")
	if r.code != 0 {
		t.Fatalf("quantize --recipe %s: exit %d: %s", res.Recipes[k], r.code, r.stderr)
	}
	var rep struct {
		Report struct {
			TotalBytesAfter float64 `json:"total_bytes_after"`
		} `json:"report"`
		TotalBytesAfter float64 `json:"total_bytes_after"`
	}
	json.Unmarshal([]byte(r.stdout), &rep)
	got := rep.TotalBytesAfter + rep.Report.TotalBytesAfter
	if got != res.Front[k].Objectives["size"] {
		t.Errorf("recipe %s quantizes to %v bytes, the search measured %v", res.Recipes[k], got, res.Front[k].Objectives["size"])
	}

	// The same seed gives the same front; a stopped search resumed from its state gives the
	// front of the uninterrupted one.
	again := runSearchJSON(t, "--trials", "24")
	if !reflect.DeepEqual(again.Front, res.Front) {
		t.Errorf("the same seed gave another front")
	}
	state := filepath.Join(dir, "state.json")
	runSearchJSON(t, "--trials", "10", "--state", state)
	resumed := runSearchJSON(t, "--trials", "24", "--resume", state)
	if !reflect.DeepEqual(resumed.Front, res.Front) || resumed.Trials != 24 {
		t.Errorf("resumed after 10 trials: front of %d (%d trials), want the uninterrupted front of %d", len(resumed.Front), resumed.Trials, len(res.Front))
	}

	// weight-sqnr, and the human table.
	w := runSearchJSON(t, "--trials", "8", "--objective", "weight-sqnr", "--formats", "int8,int4")
	if w.Objective != "weight_sqnr" || len(w.Front) == 0 {
		t.Errorf("weight-sqnr: %+v", w)
	}
	r = runCLI(t, "search", "--reference", benchRef, "--trials", "8")
	if r.code != 0 || !strings.Contains(r.stdout, "output SQNR (max) against size (min)") || !strings.Contains(r.stdout, "The front: ") {
		t.Errorf("exit %d, stdout:\n%s\nstderr %s", r.code, r.stdout, r.stderr)
	}
}

func TestSearchCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad-state.json")
	os.WriteFile(bad, []byte(`{"version": 7}`), 0o644)
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"search"}, exitUsage, "--reference is required"},
		{[]string{"search", "--reference", benchRef, "--objective", "accuracy"}, exitUsage, `--objective "accuracy"`},
		{[]string{"search", "--reference", benchRef, "--trials", "0"}, exitUsage, "--trials 0"},
		{[]string{"search", "--reference", benchRef, "--limits", "{"}, exitUsage, "--limits is not a JSON list"},
		{[]string{"search", "--reference", benchRef, "--formats", "int4"}, exitUsage, `layer "features.0" has no format left`},
		{[]string{"search", "--reference", benchRef, "--formats", "int3"}, exitUsage, "int3"},
		{[]string{"search", "--reference", benchRef, "--resume", bad}, exitFormat, "version 7"},
		{[]string{"search", "--reference", filepath.Join(dir, "none.safetensors")}, exitInput, "no such file"},
		{[]string{"search", "--reference", benchRef, "extra"}, exitUsage, `unexpected argument "extra"`},
	}
	for _, tc := range tests {
		r := runCLI(t, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("monoquant %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tc.args, " "), r.code, r.stderr, tc.code, tc.want)
		}
	}
}

// TestGoldenSearch pins the JSON front of 12 trials on the digits CNN (seed 0).
func TestGoldenSearch(t *testing.T) {
	r := runCLI(t, "search", "--reference", benchRef, "--trials", "12", "--json")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "trials_all") // every trial: the front is what users read
	b, _ := json.Marshal(doc)
	checkGolden(t, "search_digits_cnn.json", normalizeJSON(t, string(b)))
}
