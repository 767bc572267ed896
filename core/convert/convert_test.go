package convert

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// quantizeFile is File returning the report.
func quantizeFile(ctx context.Context, in, out string, opts plan.Options, run Run) (*model.Report, error) {
	res, err := File(ctx, in, out, opts, run)
	if err != nil {
		return nil, err
	}
	return res.Report, nil
}

// batches makes n activation batches of the given shape, of growing range.
func batches(seed uint64, n int, shape ...int) []*tensor.Tensor {
	rng := rand.New(rand.NewPCG(seed, 7))
	var out []*tensor.Tensor
	for i := 0; i < n; i++ {
		t := tensor.New(tensor.F32, shape...)
		v := tensor.View[float32](t.Data)
		for j := range v {
			v[j] = float32(rng.NormFloat64())*float32(i+1)*20 + 0.3
		}
		out = append(out, t)
	}
	return out
}

func TestFileErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := quantizeFile(ctx, filepath.Join(dir, "missing.safetensors"), filepath.Join(dir, "o.safetensors"), plan.Options{}, Run{}); err == nil {
		t.Error("File of a missing file succeeded")
	}
	junk := filepath.Join(dir, "junk.safetensors")
	os.WriteFile(junk, []byte("not a checkpoint at all"), 0o644)
	if _, err := quantizeFile(ctx, junk, filepath.Join(dir, "o.safetensors"), plan.Options{}, Run{}); err == nil {
		t.Error("File of a junk file succeeded")
	}
	if err := Dequantize(ctx, "../../examples/digits_cnn.safetensors", filepath.Join(dir, "d.safetensors"), nil); !errors.Is(err, model.ErrFormat) {
		t.Errorf("Dequantize of a float checkpoint: %v, want model.ErrFormat", err)
	}
	out := filepath.Join(dir, "o.safetensors")
	if _, err := quantizeFile(ctx, "../../examples/digits_cnn.safetensors", out, plan.Options{Mode: plan.Static}, Run{}); !errors.Is(err, model.ErrCalibration) {
		t.Errorf("static mode without a calibration file: %v, want model.ErrCalibration", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed run left %s behind", out)
	}
	if _, err := quantizeFile(ctx, "../../examples/digits_cnn.safetensors", out, plan.Options{Activations: "dynamic"}, Run{CalibrationFile: "x.pt"}); !errors.Is(err, plan.ErrOption) {
		t.Errorf("calibration file with dynamic activations: %v, want ErrOption", err)
	}
	if _, err := quantizeFile(ctx, "../../examples/digits_cnn.safetensors", "../../examples/digits_cnn.safetensors", plan.Options{}, Run{}); !errors.Is(err, ErrOutput) {
		t.Errorf("output = input: %v, want ErrOutput", err)
	}
	// A NaN in the middle of a file: the error names the tensor and no output appears.
	m, err := model.LoadModel("../../examples/digits_cnn.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	w, _ := m.Tensor("classifier.1.weight")
	tensor.View[float32](w.Data)[100] = float32(math.Inf(1))
	bad := filepath.Join(dir, "bad.safetensors")
	if err := m.Save(ctx, bad); err != nil {
		t.Fatal(err)
	}
	_, err = quantizeFile(ctx, bad, out, plan.Options{}, Run{})
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
	cal := model.NewModel()
	xs := batches(11, 3, 8, 512)
	for i, x := range xs {
		cal.Add("classifier.1."+string(rune('0'+i)), x)
	}
	calPath := filepath.Join(dir, "cal.safetensors")
	if err := cal.Save(context.Background(), calPath); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "q.pt")
	rep, err := quantizeFile(context.Background(), "../../examples/digits_cnn.safetensors", out, plan.Options{Mode: plan.Static, Observer: "minmax"}, Run{CalibrationFile: calPath})
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
	cfg, err := model.ReadConfig(r.Entries(), r.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Activations["classifier.1"]; cfg.Mode != "static" || got.Scale[0] != a.Scale[0] || got.ZeroPoint[0] != a.ZeroPoint[0] {
		t.Errorf("stored activations %+v (mode %s), report %+v", got, cfg.Mode, a)
	}
}

// File measures both files and, asked to, checks what it wrote.
func TestFileReportsSizesAndValidates(t *testing.T) {
	out := filepath.Join(t.TempDir(), "q.safetensors")
	res, err := File(context.Background(), "../../examples/digits_cnn.pt", out, plan.Options{Bits: 4}, Run{Validate: true})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(out)
	in, _ := os.Stat("../../examples/digits_cnn.pt")
	if res.Report.FileBytesAfter != st.Size() || res.Report.FileBytesBefore != in.Size() {
		t.Errorf("file sizes %d → %d, want %d → %d", res.Report.FileBytesBefore, res.Report.FileBytesAfter, in.Size(), st.Size())
	}
	if v := res.Validation; v == nil || !v.ConfigChecked || v.SQNRConfirmed != len(res.Plan.Quantized()) || len(v.LayerOutputs) == 0 {
		t.Errorf("validation %+v", v)
	}
}

func quantGroup(n int) quant.Spec { return quant.Spec{GroupSize: n} }
