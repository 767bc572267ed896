package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/tensor"
)

// TestOutliersFlags: --outliers with --calibration stores the outlier features the recorded
// activations show, the report and inspect count them, dequantize puts them back; a threshold
// <= 0 is a usage error in the flag's words.
func TestOutliersFlags(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "mlp.safetensors")
	w := ramp(16*8, 0.3)
	writeSafetensors(t, in, map[string]*tensorT{
		"fc1.weight": tf(w, 16, 8),
		"fc1.bias":   tf(ramp(16, 0.1), 16),
		"fc2.weight": tf(ramp(4*16, 0.2), 4, 16),
	}, "fc1.weight", "fc1.bias", "fc2.weight")
	x := ramp(4*8, 1)
	for r := 0; r < 4; r++ {
		x[r*8+2] = 40 // input feature 2 of fc1: a planted outlier
	}
	cal := filepath.Join(dir, "acts.safetensors")
	writeSafetensors(t, cal, map[string]*tensorT{"fc1": tf(x, 4, 8), "fc2": tf(ramp(3*16, 1), 3, 16)}, "fc1", "fc2")
	out := filepath.Join(dir, "q.safetensors")
	r := runCLI(t, "quantize", "--model", in, "--calibration", cal, "--outliers", "--out", out, "--json")
	if r.code != 0 {
		t.Fatalf("quantize --outliers: exit %d: %s", r.code, r.stderr)
	}
	var res quantizeResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	for _, tr := range res.Report.Tensors {
		want := map[string]int{"fc1.weight": 1, "fc2.weight": 0}[tr.Name]
		if tr.OutlierThreshold != 6 || tr.OutlierColumns == nil || *tr.OutlierColumns != want {
			t.Errorf("%s: outliers %v at threshold %v, want %d at 6", tr.Name, tr.OutlierColumns, tr.OutlierThreshold, want)
		}
	}
	if a := res.Report.Activations["fc1"]; a.Outliers != 1 || a.Max > 1.01 {
		t.Errorf("fc1 activations %+v: want 1 outlier and a range without it (max <= 1)", a)
	}
	text := runCLI(t, "quantize", "--model", in, "--calibration", cal, "--outlier-threshold", "50", "--out", filepath.Join(dir, "q50.safetensors"))
	if text.code != 0 || !strings.Contains(text.stdout, "LLM.int8() outliers") {
		t.Errorf("quantize --outlier-threshold 50: exit %d, no outlier table:\n%s%s", text.code, text.stdout, text.stderr)
	}
	insp := runCLI(t, "inspect", out)
	if insp.code != 0 || !strings.Contains(insp.stdout, "outlier_weight of fc1.weight") || !strings.Contains(insp.stdout, "LLM.int8() outliers") {
		t.Errorf("inspect: exit %d, no outlier tensors or table:\n%s", insp.code, insp.stdout)
	}
	deq := filepath.Join(dir, "deq.safetensors")
	if d := runCLI(t, "dequantize", out, "--out", deq); d.code != 0 {
		t.Fatalf("dequantize: exit %d: %s", d.code, d.stderr)
	}
	rd, err := checkpoint.Open(deq)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if len(rd.Entries()) != 3 {
		t.Errorf("dequantized file has %d tensors, want the input's 3", len(rd.Entries()))
	}
	dt, err := rd.Tensor("fc1.weight")
	if err != nil {
		t.Fatal(err)
	}
	got := tensor.View[float32](dt.Data)
	for r := 0; r < 16; r++ {
		if got[r*8+2] != w[r*8+2] {
			t.Fatalf("dequantized fc1.weight[%d, 2] = %v, want the float weight %v", r, got[r*8+2], w[r*8+2])
		}
	}
	args := []string{"quantize", "--model", in, "--outlier-threshold", "0"}
	assertOneLineError(t, args, runCLI(t, args...), exitUsage, "--outlier-threshold 0 must be a finite number > 0")
	args = []string{"quantize", "--model", in, "--bits", "4", "--outliers"}
	assertOneLineError(t, args, runCLI(t, args...), exitUsage, "outliers apply to INT8")
}
