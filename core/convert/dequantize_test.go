package convert

import (
	"bytes"
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/checkpointtest"
	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/tensor"
)

// TestDequantizeFolderKeepsTheLayout: a quantized sharded folder dequantizes into a folder laid
// out as the float folder it came from: the same shard files, every tensor in its shard, in its
// dtype and shape, close to the float values, the other files copied, no monoquant config left.
func TestDequantizeFolderKeepsTheLayout(t *testing.T) {
	in := gpt2Folder(t, "gpt2")
	q := filepath.Join(t.TempDir(), "q")
	if _, err := File(context.Background(), in, q, plan.Options{}, Run{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "dq")
	var calls int
	if err := Dequantize(context.Background(), q, out, func(model.Progress) { calls++ }); err != nil {
		t.Fatal(err)
	}
	if calls == 0 {
		t.Error("no progress reported")
	}
	inMap, outMap := checkpointtest.IndexWeightMap(t, in), checkpointtest.IndexWeightMap(t, out)
	if len(inMap) != len(outMap) {
		t.Errorf("the output index lists %d tensors, the float folder's %d", len(outMap), len(inMap))
	}
	for name, shard := range inMap {
		if outMap[name] != shard {
			t.Errorf("%s is in shard %q, the float folder has it in %q", name, outMap[name], shard)
		}
	}
	for _, f := range []string{"config.json", "tokenizer.json"} {
		a, _ := os.ReadFile(filepath.Join(in, f))
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s not copied as it is (%v)", f, err)
		}
	}
	ents, _ := os.ReadDir(out)
	want, _ := os.ReadDir(in)
	if len(ents) != len(want) {
		t.Errorf("the output folder holds %d files, the float folder %d", len(ents), len(want))
	}
	fr, err := checkpoint.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	dr, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer dr.Close()
	if model.IsQuantized(dr.Metadata()) {
		t.Error("the dequantized folder still carries the monoquant config")
	}
	for _, e := range fr.Entries() {
		a, err := fr.Tensor(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		b, err := dr.Tensor(e.Name)
		if err != nil {
			t.Fatalf("the dequantized folder lacks %s: %v", e.Name, err)
		}
		if b.DType != tensor.F32 || !slices.Equal(a.Shape, b.Shape) {
			t.Errorf("%s: %v %v, want %v %v", e.Name, b.DType, b.Shape, a.DType, a.Shape)
			continue
		}
		x, err := a.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		y, err := b.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		var maxAbs, maxErr float64
		for i := range x {
			maxAbs = math.Max(maxAbs, math.Abs(float64(x[i])))
			maxErr = math.Max(maxErr, math.Abs(float64(x[i]-y[i])))
		}
		if maxErr > maxAbs/100 {
			t.Errorf("%s: dequantized values off by up to %g (values up to %g)", e.Name, maxErr, maxAbs)
		}
	}
}

// TestDequantizeFolderSingleFile: a folder whose weights are one model.safetensors gives a
// folder with one model.safetensors.
func TestDequantizeFolderSingleFile(t *testing.T) {
	in := t.TempDir()
	x := tensor.FromFloat32(ramp(64*32, 0.1), 64, 32)
	w, err := safetensors.Create(filepath.Join(in, "model.safetensors"), []tensor.Info{{Name: "fc.weight", DType: tensor.F32, Shape: []int{64, 32}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write("fc.weight", x.Data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(in, "config.json"), []byte(`{"model_type": "bert"}`), 0o644)
	q := filepath.Join(t.TempDir(), "q")
	if _, err := File(context.Background(), in, q, plan.Options{}, Run{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "dq")
	if err := Dequantize(context.Background(), q, out, nil); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(out)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 2 || names[0] != "config.json" || names[1] != "model.safetensors" {
		t.Errorf("output folder holds %v, want [config.json model.safetensors]", names)
	}
}

func TestDequantizeFolderErrors(t *testing.T) {
	in := gpt2Folder(t, "gpt2")
	q := filepath.Join(t.TempDir(), "q")
	if _, err := File(context.Background(), in, q, plan.Options{}, Run{}); err != nil {
		t.Fatal(err)
	}
	full := t.TempDir()
	os.WriteFile(filepath.Join(full, "x"), nil, 0o644)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name, in, out string
		ctx           context.Context
		want          error
		wantMsg       string
	}{
		{"the input folder", q, q, context.Background(), ErrOutput, "is the input folder"},
		{"a folder with files", q, full, context.Background(), ErrOutput, "is not empty"},
		{"a float folder", in, filepath.Join(t.TempDir(), "o"), context.Background(), model.ErrFormat, "not monoquant quantized"},
		{"canceled", q, filepath.Join(t.TempDir(), "o"), canceled, context.Canceled, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Dequantize(tc.ctx, tc.in, tc.out, nil)
			if !errors.Is(err, tc.want) || (tc.wantMsg != "" && !bytes.Contains([]byte(err.Error()), []byte(tc.wantMsg))) {
				t.Fatalf("Dequantize(%s) = %v, want %v (%q)", tc.name, err, tc.want, tc.wantMsg)
			}
			if tc.out != q && tc.out != full {
				if _, err := os.Stat(tc.out); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("a failed run left %s behind (%v)", tc.out, err)
				}
			}
		})
	}
	if ents, _ := os.ReadDir(full); len(ents) != 1 {
		t.Errorf("the non-empty output folder was changed: %d files", len(ents))
	}
}
