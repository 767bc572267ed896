package model

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// TestSaveLoadDequantize: in-memory quantize → Save (.safetensors and .pt) → load → the same
// stored tensors and metadata, and dequantizing the file (in memory and file to file) gives
// the SQNR the in-memory report measured.
func TestSaveLoadDequantize(t *testing.T) {
	m := testModel(t)
	for _, opts := range []plan.Options{{Bits: 8, Spec: quant.Spec{Scheme: quant.Asymmetric}}, {Bits: 4, Spec: quant.Spec{GroupSize: 32}, GroupFallback: &yes}, {Bits: 16, BFloat16: true}} {
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
			rd, err := checkpoint.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			err = Dequantize(context.Background(), rd, CreateFile(deqPath), nil)
			rd.Close()
			if err != nil {
				t.Fatalf("Dequantize(%s): %v", suffix, err)
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
