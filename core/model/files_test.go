package model

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// TestSaveLoadDequantize: in-memory quantize → Save (.safetensors and .pt) → load → the same
// stored tensors and metadata, and dequantizing the file (in memory and file to file) gives
// the SQNR the in-memory report measured.
func TestSaveLoadDequantize(t *testing.T) {
	m := testModel(t)
	for _, opts := range []Options{{Bits: 8, Spec: quant.Spec{Scheme: quant.Asymmetric}}, {Bits: 4, Spec: quant.Spec{GroupSize: 32}, GroupFallback: &yes}, {Bits: 16, BFloat16: true}} {
		res, err := m.Quantize(context.Background(), opts, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, suffix := range []string{".safetensors", ".pt"} {
			dir := t.TempDir()
			path := filepath.Join(dir, "q"+suffix)
			if err := res.Save(context.Background(), path); err != nil {
				t.Fatalf("Save(%s): %v", suffix, err)
			}
			back, err := LoadResult(path)
			if err != nil {
				t.Fatalf("LoadResult(%s): %v", suffix, err)
			}
			if len(back.Entries()) != len(res.Entries()) {
				t.Fatalf("%s: %d tensors back, saved %d", suffix, len(back.Entries()), len(res.Entries()))
			}
			for _, e := range res.Entries() {
				a, _ := res.Tensor(e.Name)
				b, err := back.Tensor(e.Name)
				if err != nil || b.DType != a.DType || !slices.Equal(a.Shape, b.Shape) || string(a.Data) != string(b.Data) {
					t.Errorf("%s: tensor %q did not survive save/load (err %v)", suffix, e.Name, err)
				}
			}
			if back.Metadata()[MetadataKey] != res.Metadata()[MetadataKey] {
				t.Errorf("%s: config changed on save/load", suffix)
			}
			deqPath := filepath.Join(dir, "deq"+suffix)
			if err := DequantizeFile(context.Background(), path, deqPath, nil); err != nil {
				t.Fatalf("DequantizeFile(%s): %v", suffix, err)
			}
			dq, err := LoadModel(deqPath)
			if err != nil {
				t.Fatal(err)
			}
			if IsQuantized(dq.Reader().Metadata()) {
				t.Errorf("%s: dequantized file still carries the config", suffix)
			}
			for _, tr := range res.Report.Tensors {
				x, _ := m.Tensor(tr.Name)
				y, err := dq.Tensor(tr.Name)
				if err != nil {
					t.Fatal(err)
				}
				xs, _ := x.Float32s()
				s, n := energyOf(xs, tensor.View[float32](y.Data))
				if got := OverallSQNR(s, n); math.Abs(got-float64(tr.SQNR)) > 1e-9 {
					t.Errorf("%s: %q SQNR from the dequantized file %v, in memory %v", suffix, tr.Name, got, float64(tr.SQNR))
				}
			}
		}
	}
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := QuantizeFile(ctx, filepath.Join(dir, "missing.safetensors"), filepath.Join(dir, "o.safetensors"), Options{}, FileRun{}); err == nil {
		t.Error("QuantizeFile of a missing file succeeded")
	}
	junk := filepath.Join(dir, "junk.safetensors")
	os.WriteFile(junk, []byte("not a checkpoint at all"), 0o644)
	if _, err := QuantizeFile(ctx, junk, filepath.Join(dir, "o.safetensors"), Options{}, FileRun{}); err == nil {
		t.Error("QuantizeFile of a junk file succeeded")
	}
	if err := DequantizeFile(ctx, "../../examples/digits_cnn.safetensors", filepath.Join(dir, "d.safetensors"), nil); !errors.Is(err, ErrFormat) {
		t.Errorf("DequantizeFile of a float checkpoint: %v, want ErrFormat", err)
	}
	out := filepath.Join(dir, "o.safetensors")
	if _, err := QuantizeFile(ctx, "../../examples/digits_cnn.safetensors", out, Options{Mode: Static}, FileRun{}); !errors.Is(err, ErrCalibration) {
		t.Errorf("static mode without a calibration file: %v, want ErrCalibration", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed run left %s behind", out)
	}
	if _, err := QuantizeFile(ctx, "../../examples/digits_cnn.safetensors", out, Options{Activations: "dynamic"}, FileRun{CalibrationFile: "x.pt"}); !errors.Is(err, ErrOption) {
		t.Errorf("calibration file with dynamic activations: %v, want ErrOption", err)
	}
	if _, err := QuantizeFile(ctx, "../../examples/digits_cnn.safetensors", "../../examples/digits_cnn.safetensors", Options{}, FileRun{}); !errors.Is(err, ErrOutput) {
		t.Errorf("output = input: %v, want ErrOutput", err)
	}
	// A NaN in the middle of a file: the error names the tensor and no output appears.
	m, err := LoadModel("../../examples/digits_cnn.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	w, _ := m.Tensor("classifier.1.weight")
	tensor.View[float32](w.Data)[100] = float32(math.Inf(1))
	bad := filepath.Join(dir, "bad.safetensors")
	if err := m.Save(ctx, bad); err != nil {
		t.Fatal(err)
	}
	_, err = QuantizeFile(ctx, bad, out, Options{}, FileRun{})
	if err == nil || !strings.Contains(err.Error(), `"classifier.1.weight"`) || !errors.Is(err, quant.ErrNonFinite) {
		t.Errorf("Inf weight: error %v, want ErrNonFinite naming classifier.1.weight", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed run left %s behind", out)
	}
}

// TestCalibrationFile: static mode from a file of recorded activations, end to end.
func TestCalibrationFile(t *testing.T) {
	dir := t.TempDir()
	cal := NewModel()
	xs := batches(11, 3, 8, 512)
	for i, x := range xs {
		cal.Add("classifier.1."+string(rune('0'+i)), x)
	}
	calPath := filepath.Join(dir, "cal.safetensors")
	if err := cal.Save(context.Background(), calPath); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "q.pt")
	rep, err := QuantizeFile(context.Background(), "../../examples/digits_cnn.safetensors", out, Options{Mode: Static, Observer: "minmax"}, FileRun{CalibrationFile: calPath})
	if err != nil {
		t.Fatal(err)
	}
	a, ok := rep.Activations["classifier.1"]
	if !ok || a.Batches != 3 {
		t.Fatalf("activations %+v, want classifier.1 after 3 batches", rep.Activations)
	}
	r, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg, err := ReadConfig(r.Entries(), r.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Activations["classifier.1"]; cfg.Mode != "static" || got.Scale[0] != a.Scale[0] || got.ZeroPoint[0] != a.ZeroPoint[0] {
		t.Errorf("stored activations %+v (mode %s), report %+v", got, cfg.Mode, a)
	}
}
