package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/model"
)

func fileHash(t testing.TB, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// sqnrOf is an independent SQNR (10·log10 of float64 energies) for checking the report.
func sqnrOf(x, y []float32) float64 {
	var s, n float64
	for i := range x {
		d := float64(x[i]) - float64(y[i])
		s += float64(x[i]) * float64(x[i])
		n += d * d
	}
	return 10 * math.Log10(s/n)
}

// checkQuantizedFile reopens a quantize output with core/checkpoint and checks it against the
// input and the JSON report: the config lists exactly the reported tensors, every quantized
// tensor dequantizes to the reported SQNR (recomputed here) above a floor, and every other
// tensor is byte-identical to the input's.
func checkQuantizedFile(t *testing.T, in, out string, res *quantizeResult, floorDB float64) {
	t.Helper()
	ri, err := checkpoint.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer ri.Close()
	ro, err := checkpoint.Open(out)
	if err != nil {
		t.Fatalf("reopening %s: %v", out, err)
	}
	defer ro.Close()
	cfg, err := model.ReadConfig(ro.Entries(), ro.Metadata())
	if err != nil {
		t.Fatalf("%s: config: %v", out, err)
	}
	if cfg.ToolVersion != model.ToolVersion || cfg.FormatVersion != model.FormatVersion {
		t.Errorf("%s: config tool %s format %d, want %s and %d", out, cfg.ToolVersion, cfg.FormatVersion, model.ToolVersion, model.FormatVersion)
	}
	var gotNames, wantNames []string
	for n := range cfg.Tensors {
		gotNames = append(gotNames, n)
	}
	reported := map[string]model.TensorReport{}
	for _, tr := range res.Report.Tensors {
		wantNames = append(wantNames, tr.Name)
		reported[tr.Name] = tr
	}
	sort.Strings(gotNames)
	sort.Strings(wantNames)
	if strings.Join(gotNames, ",") != strings.Join(wantNames, ",") {
		t.Errorf("%s: config lists %v, report %v", out, gotNames, wantNames)
	}
	outNames := map[string]bool{}
	for _, e := range ro.Entries() {
		outNames[e.Name] = true
	}
	for _, e := range ri.Entries() {
		src, err := ri.Tensor(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := cfg.Tensors[e.Name]; !ok {
			got, err := ro.Tensor(e.Name)
			if err != nil {
				t.Errorf("%s: kept tensor %q: %v", out, e.Name, err)
				continue
			}
			if got.DType != src.DType || !bytes.Equal(got.Data, src.Data) {
				t.Errorf("%s: kept tensor %q differs from the input (%v vs %v)", out, e.Name, got.DType, src.DType)
			}
			continue
		}
		deq, err := model.DequantizeTensor(ro, cfg, e.Name)
		if err != nil {
			t.Errorf("%s: dequantizing %q: %v", out, e.Name, err)
			continue
		}
		x, _ := src.Float32s()
		y, _ := deq.Float32s()
		got := sqnrOf(x, y)
		want := float64(reported[e.Name].SQNR)
		if math.Abs(got-want) > 1e-6 {
			t.Errorf("%s: tensor %q SQNR recomputed %.9f dB, report says %.9f", out, e.Name, got, want)
		}
		if got < floorDB {
			t.Errorf("%s: tensor %q SQNR %.2f dB, below the floor %.0f dB", out, e.Name, got, floorDB)
		}
	}
	if res.Validation == nil || res.Validation.TensorsChecked != len(ri.Entries()) || res.Validation.SQNRConfirmed != len(cfg.Tensors) {
		t.Errorf("%s: validation %+v, want %d tensors checked and %d SQNRs confirmed", out, res.Validation, len(ri.Entries()), len(cfg.Tensors))
	}
}

func TestQuantizeEndToEnd(t *testing.T) {
	root := repoRoot(t)
	inputs := []string{
		"examples/digits_cnn.pt",
		"examples/digits_cnn_module.pt",
		"examples/digits_cnn.safetensors",
		"examples/tiny_transformer.safetensors",
		"examples/tiny_transformer_module.pt",
		"testdata/checkpoints/torch/model_state.pt",
		"testdata/checkpoints/torch/module.pt",
		"testdata/checkpoints/safetensors/all_dtypes.safetensors",
		"testdata/checkpoints/safetensors/sharded/model.safetensors.index.json",
	}
	variants := []struct {
		args  []string
		ext   string
		floor float64
	}{
		{[]string{"--bits", "8"}, ".safetensors", 25},
		{[]string{"--bits", "8", "--scheme", "asymmetric"}, ".pt", 25},
		{[]string{"--bits", "4", "--group-size", "32", "--group-fallback"}, ".pt", 5},
		{[]string{"--bits", "16", "--dtype", "bf16"}, ".safetensors", 40},
		{[]string{"--bits", "16"}, ".pt", 60},
	}
	for _, in := range inputs {
		src := filepath.Join(root, in)
		if _, err := os.Stat(src); err != nil {
			t.Errorf("fixture %s: %v", in, err)
			continue
		}
		before := fileHash(t, src)
		for _, v := range variants {
			name := filepath.Base(in) + "/" + strings.Join(v.args, "_")
			t.Run(name, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "q"+v.ext)
				args := append([]string{"quantize", "--model", src, "--out", out, "--json", "--quiet"}, v.args...)
				r := runCLI(t, args...)
				if r.code != 0 {
					t.Fatalf("monoquant %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
				}
				if r.stderr != "" {
					t.Errorf("monoquant %s: stderr %q, want nothing with --quiet", strings.Join(args, " "), r.stderr)
				}
				var res quantizeResult
				if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
					t.Fatalf("--json output is not one JSON document: %v\n%s", err, r.stdout)
				}
				if res.Output != out || res.OutputFormat != strings.TrimPrefix(v.ext, ".") {
					t.Errorf("report says output %s (%s), want %s", res.Output, res.OutputFormat, out)
				}
				checkQuantizedFile(t, src, out, &res, v.floor)
			})
		}
		if fileHash(t, src) != before {
			t.Errorf("quantizing %s changed the input file", in)
		}
	}
}

func TestDefaultOutputNames(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	pt := copyFile(t, filepath.Join(root, "examples", "digits_cnn.pt"), dir)
	st := copyFile(t, filepath.Join(root, "examples", "digits_cnn.safetensors"), dir)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"quantize", "--model", pt, "--quiet"}, "digits_cnn.int8.safetensors"},
		{[]string{"quantize", "--model", pt, "--format", "pt", "--quiet"}, "digits_cnn.int8.pt"},
		{[]string{"quantize", "--model", pt, "--bits", "4", "--format", "safetensors", "--quiet"}, "digits_cnn.int4.safetensors"},
		{[]string{"quantize", st, "--bits", "16", "--dtype", "bf16", "--quiet"}, "digits_cnn.bf16.safetensors"},
		{[]string{"quantize", "--model", st, "--bits", "16", "--quiet"}, "digits_cnn.fp16.safetensors"},
		{[]string{"dequantize", filepath.Join(dir, "digits_cnn.int8.pt"), "--quiet"}, "digits_cnn.dequantized.pt"},
		{[]string{"dequantize", filepath.Join(dir, "digits_cnn.int4.safetensors"), "--format", "pt", "--quiet"}, "digits_cnn.dequantized.pt"},
	}
	for _, tc := range tests {
		r := runCLI(t, tc.args...)
		if r.code != 0 {
			t.Fatalf("monoquant %s: exit %d: %s", strings.Join(tc.args, " "), r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, tc.want)); err != nil {
			t.Errorf("monoquant %s: no %s next to the input (folder: %v)", strings.Join(tc.args, " "), tc.want, listDir(t, dir))
		}
	}
	for _, f := range listDir(t, dir) {
		if strings.Contains(f, ".tmp") {
			t.Errorf("temporary file %s left behind", f)
		}
	}
}

func TestDequantizeAndCompare(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	in := filepath.Join(root, "examples", "tiny_transformer.safetensors")
	q := filepath.Join(dir, "q.pt")
	if r := runCLI(t, "quantize", "--model", in, "--bits", "4", "--out", q, "--quiet"); r.code != 0 {
		t.Fatalf("quantize: exit %d: %s", r.code, r.stderr)
	}
	d := filepath.Join(dir, "d.safetensors")
	r := runCLI(t, "dequantize", q, "--out", d, "--json")
	if r.code != 0 {
		t.Fatalf("dequantize: exit %d: %s", r.code, r.stderr)
	}
	var dr dequantizeResult
	if err := json.Unmarshal([]byte(r.stdout), &dr); err != nil {
		t.Fatalf("dequantize --json: %v\n%s", err, r.stdout)
	}
	ri, _ := checkpoint.Open(in)
	defer ri.Close()
	rd, err := checkpoint.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if len(rd.Entries()) != len(ri.Entries()) || dr.TensorsOut != len(ri.Entries()) || dr.TensorsRestored != 9 {
		t.Errorf("dequantized file has %d tensors (report %d written, %d dequantized), input %d; want equal and 9 dequantized",
			len(rd.Entries()), dr.TensorsOut, dr.TensorsRestored, len(ri.Entries()))
	}
	if model.IsQuantized(rd.Metadata()) {
		t.Errorf("dequantized file still carries the %q metadata", model.MetadataKey)
	}

	// compare A=input with the quantized file and with its dequantized form: the same numbers,
	// and both agree with the quantize report's overall SQNR.
	var c1, c2 compareResult
	for _, x := range []struct {
		b   string
		res *compareResult
	}{{q, &c1}, {d, &c2}} {
		r := runCLI(t, "compare", in, x.b, "--json")
		if r.code != 0 {
			t.Fatalf("compare %s: exit %d: %s", x.b, r.code, r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), x.res); err != nil {
			t.Fatalf("compare --json: %v\n%s", err, r.stdout)
		}
	}
	if c1.Compared != len(ri.Entries()) || c1.OnlyInA+c1.OnlyInB+c1.Mismatched != 0 || !c1.QuantizedB {
		t.Errorf("compare input vs quantized: %d compared, %d/%d/%d differences, quantized B %v; want %d, none, true",
			c1.Compared, c1.OnlyInA, c1.OnlyInB, c1.Mismatched, c1.QuantizedB, len(ri.Entries()))
	}
	if c1.SQNR != c2.SQNR || c1.MaxError != c2.MaxError {
		t.Errorf("compare vs quantized gives SQNR %v max %v; vs dequantized %v max %v; want equal", c1.SQNR, c1.MaxError, c2.SQNR, c2.MaxError)
	}
	if !(c1.SQNR > 15 && c1.SQNR < 40) || !(c1.MaxError > 0) {
		t.Errorf("INT4 compare: overall SQNR %v dB, max error %v; want 15..40 dB and > 0", c1.SQNR, c1.MaxError)
	}
	same := runCLI(t, "compare", in, in)
	if same.code != 0 || !strings.Contains(same.stdout, "exact") {
		t.Errorf("compare X X: exit %d, want exact matches:\n%s", same.code, same.stdout)
	}
	other := runCLI(t, "compare", in, filepath.Join(root, "examples", "digits_cnn.pt"), "--json")
	var c3 compareResult
	json.Unmarshal([]byte(other.stdout), &c3)
	if other.code != 0 || c3.Compared != 0 || c3.OnlyInA != len(ri.Entries()) || c3.OnlyInB != 8 {
		t.Errorf("compare of unrelated models: exit %d, %d compared, %d only in A, %d only in B; want 0, %d, 8", other.code, c3.Compared, c3.OnlyInA, c3.OnlyInB, len(ri.Entries()))
	}
}

func TestStaticCalibration(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "mlp.safetensors")
	tensors := map[string]*tensorT{
		"fc1.weight": tf(ramp(16*8, 0.3), 16, 8),
		"fc1.bias":   tf(ramp(16, 0.1), 16),
		"fc2.weight": tf(ramp(4*16, 0.2), 4, 16),
	}
	writeSafetensors(t, in, tensors, "fc1.weight", "fc1.bias", "fc2.weight")
	cal := filepath.Join(dir, "acts.safetensors")
	writeSafetensors(t, cal, map[string]*tensorT{
		"fc1.0": tf(ramp(2*8, 2), 2, 8),
		"fc1.1": tf(ramp(2*8, 3), 2, 8),
		"fc2":   tf(ramp(3*16, 1), 3, 16),
	}, "fc1.0", "fc1.1", "fc2")
	out := filepath.Join(dir, "q.safetensors")
	r := runCLI(t, "quantize", "--model", in, "--calibration", cal, "--observer", "minmax", "--out", out, "--json")
	if r.code != 0 {
		t.Fatalf("static quantize: exit %d: %s", r.code, r.stderr)
	}
	var res quantizeResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatal(err)
	}
	a := res.Report.Activations
	if res.Mode != "static" || res.Note != "" || len(a) != 2 || a["fc1"].Batches != 2 || a["fc2"].Batches != 1 || a["fc1"].Observer != "minmax" {
		t.Errorf("static run: mode %q note %q activations %+v; want static, no note, fc1 with 2 batches and fc2 with 1, minmax", res.Mode, res.Note, a)
	}
	// minmax over the two fc1 batches: the range is the second batch's (3× the first).
	if got := a["fc1"].Max; math.Abs(float64(got)-float64(maxOf(ramp(16, 3)))) > 1e-6 {
		t.Errorf("fc1 activation max %v, want %v", got, maxOf(ramp(16, 3)))
	}
	insp := runCLI(t, "inspect", out)
	if insp.code != 0 || !strings.Contains(insp.stdout, "Activation qparams (static mode)") {
		t.Errorf("inspect of a static file: exit %d, no activation table:\n%s", insp.code, insp.stdout)
	}
	// Calibration data for a layer the plan does not quantize is refused with its name.
	bad := filepath.Join(dir, "bad.safetensors")
	writeSafetensors(t, bad, map[string]*tensorT{"decoder": tf(ramp(8, 1), 1, 8)}, "decoder")
	args := []string{"quantize", "--model", in, "--calibration", bad, "--out", filepath.Join(dir, "q2.safetensors")}
	assertOneLineError(t, args, runCLI(t, args...), exitData, `"decoder"`)
	args = []string{"quantize", "--model", in, "--calibration", filepath.Join(dir, "none.pt")}
	assertOneLineError(t, args, runCLI(t, args...), exitInput, "calibration file")
}

func maxOf(v []float32) float32 {
	m := v[0]
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// TestReadmeFlow runs the README's CLI quick start as written (in a copy of examples/).
func TestReadmeFlow(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	ex := filepath.Join(dir, "examples")
	os.Mkdir(ex, 0o755)
	for _, f := range []string{"digits_cnn_module.pt", "tiny_transformer.safetensors", "digits_cnn.safetensors"} {
		copyFile(t, filepath.Join(root, "examples", f), ex)
	}
	float := filepath.Join(dir, "float.safetensors")
	for _, args := range [][]string{
		{"quantize", "--model", filepath.Join(ex, "digits_cnn_module.pt"), "--bits", "8"},
		{"quantize", "--model", filepath.Join(ex, "tiny_transformer.safetensors"), "--bits", "4", "--group-size", "64", "--skip", "lm_head"},
		{"inspect", filepath.Join(ex, "digits_cnn_module.int8.safetensors")},
		{"dequantize", filepath.Join(ex, "digits_cnn_module.int8.safetensors"), "--out", float},
		{"compare", filepath.Join(ex, "digits_cnn.safetensors"), float},
	} {
		if r := runCLI(t, args...); r.code != 0 {
			t.Errorf("monoquant %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}
