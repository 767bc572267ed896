package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint/checkpointtest"
	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/tensor"
)

// writeSafetensors makes a small checkpoint for a test from float32 tensors.
var writeSafetensors = checkpointtest.WriteSafetensors

// writeSafetensorsMeta writes one tensor with the given metadata.
func writeSafetensorsMeta(t testing.TB, path string, md map[string]string, name string, x *tensor.Tensor) {
	t.Helper()
	w, err := safetensors.Create(path, []tensor.Info{{Name: name, DType: x.DType, Shape: x.Shape}}, md)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(name, x.Data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

type tensorT = tensor.Tensor

func tf(v []float32, shape ...int) *tensor.Tensor { return tensor.FromFloat32(v, shape...) }

func ramp(n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = scale * float32(math.Sin(float64(i)*0.7))
	}
	return v
}

func TestUsageErrors(t *testing.T) {
	root := repoRoot(t)
	model := filepath.Join(root, "examples", "digits_cnn.safetensors")
	tests := []struct {
		args []string
		want string
	}{
		{nil, "no command given"},
		{[]string{"quantise"}, `unknown command "quantise"`},
		{[]string{"--bits", "8"}, "flag --bits must come after a command"},
		{[]string{"quantize"}, "--model is required"},
		{[]string{"quantize", "--model", model, "--bits", "7"}, `invalid value "7" for --bits: want 8, 4 or 16`},
		{[]string{"quantize", "--model", model, "--bits"}, "flag needs an argument: --bits"},
		{[]string{"quantize", "--model", model, "--scheme", "skew"}, `invalid value "skew" for --scheme`},
		{[]string{"quantize", "--model", model, "--format", "onnx"}, `invalid value "onnx" for --format: want pt or safetensors`},
		{[]string{"quantize", "--model", model, "--observer", "kmeans"}, `invalid value "kmeans" for --observer`},
		{[]string{"quantize", "--model", model, "--layers", "linear,attention"}, `"attention" is not one of`},
		{[]string{"quantize", "--model", model, "--layers", "linear,,conv2d"}, "empty item"},
		{[]string{"quantize", "--model", model, "--group-size", "64"}, "--group-size 64 applies to INT4 (--bits 4), not int8"},
		{[]string{"quantize", "--model", model, "--bits", "4", "--group-size", "0"}, "--group-size 0 must be an even number >= 2"},
		{[]string{"quantize", "--model", model, "--bits", "4", "--group-size", "64"}, `tensor "features.0.weight": --group-size 64 does not divide the row length 9`},
		{[]string{"quantize", "--model", model, "--recipe", "testdata/recipes/bad_bits.json"}, `rule 2 ("classifier.*"): bits 3 is not supported`},
		{[]string{"quantize", "--model", model, "--recipe", "testdata/recipes/unknown_key.json"}, `rule 1: unknown key "bitz"`},
		{[]string{"quantize", "--model", model, "--recipe", "testdata/recipes/group_misfit.json"}, `tensor "classifier.1.weight" (rule 1 ("classifier.1")): group_size 48 does not divide the row length 512`},
		{[]string{"quantize", "--model", model, "--bits", "4", "--group-size", "x"}, `invalid value "x" for --group-size`},
		{[]string{"quantize", "--model", model, "--bits", "8", "--dtype", "bf16"}, `--bits 8 and --dtype "bf16" disagree`},
		{[]string{"quantize", "--model", model, "--bits", "16", "--scheme", "asymmetric"}, "--scheme applies to the integer formats"},
		{[]string{"quantize", "--model", model, "--observer", "minmax"}, `--observer "minmax" applies to static --activations`},
		{[]string{"quantize", "--model", model, "--activations", "static"}, `--activations static needs calibration data`},
		{[]string{"quantize", "--model", model, "--nonfinite", "ignore"}, `invalid value "ignore" for --nonfinite`},
		{[]string{"quantize", "--model", model, "--frobnicate"}, "unknown flag --frobnicate"},
		{[]string{"quantize", "--model", model, "--method", "awq"}, `invalid value "awq" for --method`},
		{[]string{"quantize", "--model", model, "--bits", "4", "--method", "gptq"}, "--method gptq needs each layer's input Hessian XᵀX from calibration data"},
		{[]string{"quantize", "--model", model, "extra.pt"}, `unexpected argument "extra.pt"`},
		{[]string{"quantize", "--model", model, "--out", "q.onnx"}, "--out q.onnx: unknown extension"},
		{[]string{"quantize", "--model", model, "--out", "q.pt", "--format", "safetensors"}, "--out q.pt is a pt file but --format is safetensors"},
		{[]string{"inspect"}, "inspect: want exactly one FILE, got 0 arguments"},
		{[]string{"inspect", "a", "b"}, "inspect: want exactly one FILE, got 2 arguments"},
		{[]string{"compare", model}, "compare: want two files A and B, got 1 arguments"},
		{[]string{"dequantize"}, "dequantize: want exactly one input file"},
		{[]string{"version", "now"}, `version: takes no arguments, got "now"`},
		{[]string{"help", "frob"}, `unknown command "frob"`},
	}
	for _, tc := range tests {
		r := runCLI(t, tc.args...)
		assertOneLineError(t, tc.args, r, exitUsage, tc.want)
		if r.stdout != "" {
			t.Errorf("monoquant %s: stdout %q, want nothing", strings.Join(tc.args, " "), r.stdout)
		}
	}
}

func TestHelpEveryCommand(t *testing.T) {
	for _, name := range []string{"quantize", "inspect", "dequantize", "compare", "version"} {
		for _, args := range [][]string{{name, "--help"}, {name, "-h"}, {"help", name}} {
			r := runCLI(t, args...)
			if r.code != exitOK || r.stderr != "" {
				t.Errorf("monoquant %s: exit %d, stderr %q; want 0 and nothing", strings.Join(args, " "), r.code, r.stderr)
			}
			for _, want := range []string{"Usage: monoquant " + name, "Examples:", "Exit codes:", "  130  interrupted", "--help"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("monoquant %s: help lacks %q:\n%s", strings.Join(args, " "), want, r.stdout)
				}
			}
		}
	}
	r := runCLI(t, "--help")
	for _, want := range []string{"quantize ", "inspect ", "dequantize ", "compare ", "version ", "Exit codes:"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("monoquant --help: exit %d, output lacks %q:\n%s", r.code, want, r.stdout)
		}
	}
	// Every flag of quantize the issue names is there.
	q := runCLI(t, "quantize", "--help").stdout
	for _, f := range []string{"--model", "--bits", "--out", "--format", "--scheme", "--group-size", "--layers", "--skip", "--observer", "--calibration", "--dtype", "--json", "--quiet"} {
		if !strings.Contains(q, "  "+f+" ") && !strings.Contains(q, ", "+f+" ") {
			t.Errorf("quantize --help does not list %s", f)
		}
	}
}

func TestExitCodesDocumented(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []int{exitOK, exitInternal, exitUsage, exitInput, exitFormat, exitOutput, exitNothing, exitData, exitValidation, exitNotRepro, exitInterrupted} {
		line := "\t" + strconv.Itoa(code) + " "
		if !strings.Contains(string(doc), "//"+line) {
			t.Errorf("doc.go does not document exit code %d", code)
		}
		if !strings.Contains(exitCodesHelp, "  "+strconv.Itoa(code)+" ") {
			t.Errorf("--help does not document exit code %d", code)
		}
	}
}

func TestInputErrors(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	garbage := filepath.Join(dir, "notes.safetensors")
	os.WriteFile(garbage, []byte("these are not tensors, just some text that is long enough"), 0o644)
	text := filepath.Join(dir, "notes.pt")
	os.WriteFile(text, []byte("plain text, neither zip nor pickle"), 0o644)
	// Quantized files whose config lies about their tensors.
	badJSON := filepath.Join(dir, "badjson.safetensors")
	writeSafetensorsMeta(t, badJSON, map[string]string{"monoquant": "{not json"}, "fc.weight", tf(ramp(8, 1), 2, 4))
	badShape := filepath.Join(dir, "badshape.safetensors")
	writeSafetensorsMeta(t, badShape, map[string]string{"monoquant": `{"format_version":1,"tool":"monoquant","mode":"weight_only","tensors":{"fc.weight":` +
		`{"bits":8,"format":"int8","scheme":"symmetric","granularity":"per_channel","axis":0,"qdtype":"qint8","observer":"per_channel_minmax",` +
		`"dtype":"F32","shape":[4,4],"quant_shape":[4,4],"zero_point":false,"layer":"fc","layer_type":"linear"}}}`}, "fc.weight", tf(ramp(8, 1), 2, 4))
	tests := []struct {
		name, path string
		code       int
		want       string
	}{
		{"quantized config not JSON", badJSON, exitFormat, "not valid JSON"},
		{"quantized config lies about a shape", badShape, exitFormat, `"fc.weight"`},
		{"missing", filepath.Join(dir, "nope.pt"), exitInput, "no such file"},
		{"folder", dir, exitInput, "has several candidate checkpoints"},
		{"garbage safetensors", garbage, exitFormat, "notes.safetensors"},
		{"text as .pt", text, exitFormat, "notes.pt"},
	}
	bad, _ := filepath.Glob(filepath.Join(root, "testdata", "checkpoints", "safetensors", "bad", "*.safetensors"))
	for _, b := range bad {
		tests = append(tests, struct {
			name, path string
			code       int
			want       string
		}{"bad/" + filepath.Base(b), b, exitFormat, ""})
	}
	// The malicious fixtures come with a manifest of what each must be refused for.
	var manifest map[string]struct{ Refused, Error string }
	if b, err := os.ReadFile(filepath.Join(root, "testdata", "malicious", "manifest.json")); err == nil {
		if err := json.Unmarshal(b, &manifest); err != nil {
			t.Fatalf("testdata/malicious/manifest.json: %v", err)
		}
	} else {
		t.Log("no testdata/malicious fixtures yet")
	}
	for _, name := range sortedKeys(manifest) {
		m := manifest[name]
		want := m.Error
		if m.Refused != "" {
			want = "refusing to unpickle " + m.Refused
		}
		tests = append(tests, struct {
			name, path string
			code       int
			want       string
		}{"malicious/" + name, filepath.Join(root, "testdata", "malicious", name), exitFormat, want})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			for _, args := range [][]string{
				{"quantize", "--model", tc.path, "--out", filepath.Join(out, "q.safetensors")},
				{"inspect", tc.path},
				{"dequantize", tc.path, "--out", filepath.Join(out, "d.safetensors")},
				{"compare", tc.path, tc.path},
			} {
				r := runCLI(t, args...)
				want := tc.want
				if args[0] == "quantize" && strings.HasPrefix(tc.name, "quantized config") {
					want = "already quantized" // refused before the config is read
				}
				assertOneLineError(t, args, r, tc.code, want)
				if got := listDir(t, out); len(got) != 0 {
					t.Errorf("monoquant %s left %v behind", strings.Join(args, " "), got)
				}
			}
		})
	}
}

func TestOutputErrors(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	in := copyFile(t, filepath.Join(root, "examples", "digits_cnn.safetensors"), dir)
	file := filepath.Join(dir, "plainfile")
	os.WriteFile(file, []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub.safetensors"), 0o755)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing folder", []string{"--out", filepath.Join(dir, "no", "such", "q.safetensors")}, "output folder " + filepath.Join(dir, "no", "such") + " does not exist"},
		{"folder is a file", []string{"--out", filepath.Join(file, "q.safetensors")}, "is not a folder"},
		{"read-only folder", []string{"--out", "/proc/q.safetensors"}, "/proc"},
		{"out is the input", []string{"--out", in}, "is the input"},
		{"out is the input by another path", []string{"--out", filepath.Join(dir, ".", "digits_cnn.safetensors")}, "is the input"},
		{"out is a folder", []string{"--out", filepath.Join(dir, "sub.safetensors")}, "is a folder"},
	}
	// A shard of a sharded input is an input too.
	shards := t.TempDir()
	for _, f := range []string{"model.safetensors.index.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors"} {
		copyFile(t, filepath.Join(root, "testdata", "checkpoints", "safetensors", "sharded", f), shards)
	}
	shard := filepath.Join(shards, "model-00002-of-00003.safetensors")
	shardHash := fileHash(t, shard)
	args := []string{"quantize", "--model", filepath.Join(shards, "model.safetensors.index.json"), "--out", shard}
	assertOneLineError(t, args, runCLI(t, args...), exitOutput, "is one of the input files")
	if fileHash(t, shard) != shardHash {
		t.Errorf("quantize --out <a shard of the input> changed the shard")
	}
	before := listDir(t, dir)
	for _, tc := range tests {
		args := append([]string{"quantize", "--model", in}, tc.args...)
		r := runCLI(t, args...)
		assertOneLineError(t, args, r, exitOutput, tc.want)
		if got := listDir(t, dir); !slices.Equal(got, before) {
			t.Errorf("%s: folder holds %v after the failure, want %v", tc.name, got, before)
		}
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(dir, "ro")
		os.Mkdir(ro, 0o555)
		args := []string{"quantize", "--model", in, "--out", filepath.Join(ro, "q.safetensors")}
		assertOneLineError(t, args, runCLI(t, args...), exitOutput, "not writable")
	}
}

func TestNothingToQuantize(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	norms := filepath.Join(dir, "norms.safetensors")
	writeSafetensors(t, norms, map[string]*tensor.Tensor{
		"ln.weight": tensor.FromFloat32(ramp(8, 1), 8),
		"ln.bias":   tensor.FromFloat32(ramp(8, 1), 8),
	}, "ln.weight", "ln.bias")
	cnn := copyFile(t, filepath.Join(root, "examples", "digits_cnn.safetensors"), dir)
	tests := [][]string{
		{"quantize", "--model", norms},
		{"quantize", "--model", cnn, "--layers", "embedding"},
		{"quantize", "--model", cnn, "--skip", "features", "--skip", "classifier.*"},
		{"quantize", "--model", cnn, "--layers", "lstm", "--json"},
	}
	before := listDir(t, dir)
	for _, args := range tests {
		r := runCLI(t, args...)
		assertOneLineError(t, args, r, exitNothing, "nothing to quantize")
		if got := listDir(t, dir); !slices.Equal(got, before) {
			t.Errorf("monoquant %s: folder holds %v, want %v", strings.Join(args, " "), got, before)
		}
	}
}

func TestNonFiniteWeights(t *testing.T) {
	dir := t.TempDir()
	w := ramp(64*32, 0.1)
	w[77] = float32(math.NaN())
	w[100] = float32(math.Inf(1))
	in := filepath.Join(dir, "nan.safetensors")
	writeSafetensors(t, in, map[string]*tensor.Tensor{
		"fc.weight": tensor.FromFloat32(w, 64, 32),
		"fc.bias":   tensor.FromFloat32(ramp(64, 1), 64),
	}, "fc.bias", "fc.weight")
	args := []string{"quantize", "--model", in}
	// The error names the flag that clamps (it used to name an option no caller had).
	r0 := runCLI(t, args...)
	assertOneLineError(t, args, r0, exitData, `"fc.weight"`)
	assertOneLineError(t, args, r0, exitData, "pass --nonfinite clamp to quantize anyway")
	if got := listDir(t, dir); !slices.Equal(got, []string{"nan.safetensors"}) {
		t.Errorf("after a refused NaN tensor the folder holds %v", got)
	}
	r := runCLI(t, "quantize", "--model", in, "--nonfinite", "clamp")
	if r.code != 0 || !strings.Contains(r.stdout, "non_finite_clamped") {
		t.Errorf("--nonfinite clamp: exit %d, stdout lacks the non_finite_clamped warning:\n%s%s", r.code, r.stdout, r.stderr)
	}
}

func TestAlreadyQuantizedAndNotQuantized(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	in := copyFile(t, filepath.Join(root, "examples", "digits_cnn.safetensors"), dir)
	if r := runCLI(t, "quantize", "--model", in, "--quiet"); r.code != 0 {
		t.Fatalf("quantize: exit %d: %s", r.code, r.stderr)
	}
	q := filepath.Join(dir, "digits_cnn.int8.safetensors")
	args := []string{"quantize", "--model", q, "--out", filepath.Join(dir, "again.safetensors")}
	assertOneLineError(t, args, runCLI(t, args...), exitFormat, "already quantized")
	args = []string{"dequantize", in}
	assertOneLineError(t, args, runCLI(t, args...), exitFormat, "not a monoquant quantized checkpoint")
}

func TestInterruptedLeavesNothing(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	in := copyFile(t, filepath.Join(root, "examples", "tiny_transformer.safetensors"), dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	args := []string{"quantize", "--model", in}
	r := runCLIctx(t, ctx, false, args...)
	assertOneLineError(t, args, r, exitInterrupted, "interrupted")
	if got := listDir(t, dir); !slices.Equal(got, []string{"tiny_transformer.safetensors"}) {
		t.Errorf("after an interrupted run the folder holds %v", got)
	}
}

func TestPanicIsOneLine(t *testing.T) {
	register(&command{name: "test-panic", summary: "test only", setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		return func(context.Context, *env, []string) error { panic("boom\nsecond line") }
	}})
	defer delete(commands, "test-panic")
	args := []string{"test-panic"}
	assertOneLineError(t, args, runCLI(t, args...), exitInternal, "internal error: boom; second line")
}

// GNU-style short forms: -m is --model, -o --out, -b --bits, -q --quiet (also with =VALUE); an
// unknown short flag is named as the user wrote it.
func TestShortFlags(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "q.safetensors")
	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr}
	if code := run(context.Background(), e, []string{"quantize", "-m", "../../examples/digits_cnn.pt", "-b=4", "-o", out, "-q"}); code != 0 {
		t.Fatalf("short flags: exit %d: %s", code, stderr.String())
	}
	if _, err := os.Stat(out); err != nil {
		t.Errorf("-o %s: %v", out, err)
	}
	stderr.Reset()
	if code := run(context.Background(), e, []string{"quantize", "-m", "../../examples/digits_cnn.pt", "-x"}); code != exitUsage || !strings.Contains(stderr.String(), "unknown flag -x") {
		t.Errorf("-x: exit %d, %q", code, stderr.String())
	}
	// Bundled switches (-qj), attached values (-b4, -oFILE), and the same letters on every
	// command that has the long flag; unknown words are named as typed (issue 12: "-m" gave
	// "unknown flag --m").
	out2 := filepath.Join(dir, "q2.safetensors")
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), e, []string{"quantize", "-m", "../../examples/digits_cnn.pt", "-b4", "-o" + out2, "-qj", "--no-log"}); code != 0 || !json.Valid(stdout.Bytes()) {
		t.Fatalf("-b4 -oFILE -qj: exit %d, stdout is JSON %v: %s", code, json.Valid(stdout.Bytes()), stderr.String())
	}
	if !strings.Contains(stdout.String(), `"format": "int4"`) || stderr.Len() != 0 {
		t.Errorf("-b4 -qj: want an int4 JSON report and a quiet stderr, got %.200s / %q", stdout.String(), stderr.String())
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"inspect", "-j", out2}, 0, `"quantized": true`},
		{[]string{"dequantize", out2, "-o", filepath.Join(dir, "d.pt"), "-q"}, 0, "Dequantized"},
		{[]string{"plan", "-m", "../../examples/digits_cnn.pt", "-b", "8", "-j"}, 0, `"tensors"`},
		{[]string{"quantize", "-m", "../../examples/digits_cnn.pt", "-qz"}, exitUsage, "unknown flag -qz"},
		{[]string{"quantize", "-m", "../../examples/digits_cnn.pt", "--frobnicate"}, exitUsage, "unknown flag --frobnicate"},
		{[]string{"inspect", "-m", out2}, exitUsage, "unknown flag -m"}, // inspect has no --model
	} {
		stdout.Reset()
		stderr.Reset()
		code := run(context.Background(), e, c.args)
		if code != c.code || !strings.Contains(stdout.String()+stderr.String(), c.want) {
			t.Errorf("monoquant %s: exit %d, want %d and %q in %.300s%s", strings.Join(c.args, " "), code, c.code, c.want, stdout.String(), stderr.String())
		}
	}
}

// TestOutcomeClaimedOnce: the command's report and the stop timer claim the end of a run; only
// the first claim wins, however many goroutines race for it (no outcome: every claim wins).
func TestOutcomeClaimedOnce(t *testing.T) {
	var o outcome
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if o.claim() {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d claims won, want 1", wins.Load())
	}
	var none *outcome
	if !none.claim() || !none.claim() {
		t.Error("without an outcome to share, a claim must always win")
	}
	if got := interruptedMessage(0); got != "interrupted; no output was written" {
		t.Errorf("interruptedMessage(0) = %q", got)
	}
	if got := interruptedMessage(2); !strings.Contains(got, "2 output file(s) had already been written") {
		t.Errorf("interruptedMessage(2) = %q", got)
	}
}
