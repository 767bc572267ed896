package convert

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/blocks"
	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/checkpointtest"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// TestValidationInBlocks: validating in blocks of a couple of rows, releasing the input's
// pages every few blocks, gives the figures of validating each tensor in one block (which, for
// these small tensors, is what the default block size does, and what the whole-tensor check
// did): the weight and layer output SQNRs up to float64 summation order.
func TestValidationInBlocks(t *testing.T) {
	dir := t.TempDir()
	lstm := ramp(36*48, 0.2)
	lstm[7*48+5] = float32(math.NaN()) // clamped: left out of the SQNR sums, in a middle block
	lstm[30*48] = float32(math.Inf(-1))
	in := filepath.Join(dir, "m.safetensors")
	writeSafetensors(t, in, map[string]*tensor.Tensor{
		"fc.weight":         tf(ramp(67*48, 0.1), 67, 48),
		"fc.bias":           tf(ramp(67, 0.5), 67),
		"conv.weight":       tf(ramp(10*3*4*4, 0.3), 10, 3, 4, 4),
		"conv.bias":         tf(ramp(10, 0.2), 10),
		"lstm.weight_ih_l0": tf(lstm, 36, 48),
		"lstm.weight_hh_l0": tf(ramp(36*9, 0.2), 36, 9),
		"head.weight":       tf(ramp(5*48, 0.05), 5, 48), // no bias
	}, "conv.weight", "conv.bias", "fc.weight", "fc.bias", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "head.weight")
	validate := func(block, release int, opts plan.Options) *Validation {
		t.Helper()
		defer func(b, r int) { validateBlock, blocks.ReleaseEvery = b, r }(validateBlock, blocks.ReleaseEvery)
		validateBlock, blocks.ReleaseEvery = block, release
		out := filepath.Join(t.TempDir(), "q.safetensors")
		opts.Spec.NonFinite = quant.ClampNonFinite
		res, err := File(context.Background(), in, out, opts, Run{Validate: true})
		if err != nil {
			t.Fatalf("%+v: %v", opts, err)
		}
		return res.Validation
	}
	close := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) || math.Abs(a-b) <= 1e-9 }
	fb := true
	for _, opts := range []plan.Options{{Bits: 8}, {Bits: 8, Scheme: "asymmetric"}, {Bits: 4, Spec: quant.Spec{GroupSize: 16}, GroupFallback: &fb}, {Bits: 16}} {
		name := fmt.Sprintf("%+v", opts)
		whole, inBlocks := validate(validateBlock, blocks.ReleaseEvery, opts), validate(100, 1000, opts)
		if whole.SQNRConfirmed != 5 || inBlocks.SQNRConfirmed != 5 || len(whole.LayerOutputs) != 3 || len(inBlocks.LayerOutputs) != 3 {
			t.Fatalf("%s: validation %+v in one block, %+v in blocks; want 5 SQNRs confirmed and 3 layers run", name, whole, inBlocks)
		}
		if math.Abs(inBlocks.MaxSQNRDeviation-whole.MaxSQNRDeviation) > 1e-9 {
			t.Errorf("%s: SQNR deviation %v in blocks, %v in one block", name, inBlocks.MaxSQNRDeviation, whole.MaxSQNRDeviation)
		}
		for i, w := range whole.LayerOutputs {
			b := inBlocks.LayerOutputs[i]
			if b.Tensor != w.Tensor || !close(float64(b.WeightSQNR), float64(w.WeightSQNR)) || math.Abs(float64(b.OutputSQNR-w.OutputSQNR)) > 1e-9 {
				t.Errorf("%s: layer check %+v in blocks, %+v in one block", name, b, w)
			}
		}
	}
}

// TestSameBytesReleasesAsItGoes: a kept tensor is compared window by window, its pages released
// and its view fetched again after each window (a copying reader is fetched once more, then
// kept), and a difference in the last window is still found.
func TestSameBytesReleasesAsItGoes(t *testing.T) {
	defer func(n int) { blocks.ReleaseEvery = n }(blocks.ReleaseEvery)
	blocks.ReleaseEvery = 512
	dir := t.TempDir()
	w := ramp(1000, 1) // 4000 bytes: 8 windows
	open := func(file string, v []float32) checkpoint.Reader {
		t.Helper()
		path := filepath.Join(dir, file)
		writeSafetensors(t, path, map[string]*tensor.Tensor{"emb.weight": tf(v, 1000)}, "emb.weight")
		r, err := checkpoint.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		return r
	}
	a, b := open("a.safetensors", w), open("b.safetensors", w)
	w2 := append([]float32(nil), w...)
	w2[980]++ // byte 3920, in the last window
	c := open("c.safetensors", w2)
	emb := tensor.Info{Name: "emb.weight", DType: tensor.F32, Shape: []int{1000}}
	// The files themselves read ranges into a buffer: equal and different bytes are both seen.
	if err := sameBytes(a, b, emb); err != nil {
		t.Fatalf("sameBytes of equal tensors read by ranges: %v", err)
	}
	if err := sameBytes(a, c, emb); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Errorf("sameBytes by ranges with a difference in the last window = %v, want an error saying the bytes differ", err)
	}
	in, out := &checkpointtest.CountingReader{Reader: a, Views: map[string][]byte{}}, &checkpointtest.CountingReader{Reader: b, Views: map[string][]byte{}}
	if err := sameBytes(in, out, emb); err != nil {
		t.Fatalf("sameBytes of equal tensors: %v", err)
	}
	for _, r := range []*checkpointtest.CountingReader{in, out} {
		if r.Fetches != 8 || r.Releases != 8 {
			t.Errorf("8 windows: %d fetches and %d releases, want 8 and 8 (7 between windows, 1 at the end)", r.Fetches, r.Releases)
		}
	}
	copying := &checkpointtest.CountingReader{Reader: a, Copies: true}
	if err := sameBytes(copying, &checkpointtest.CountingReader{Reader: b}, emb); err != nil {
		t.Fatalf("sameBytes through a copying reader: %v", err)
	}
	if copying.Fetches != 2 {
		t.Errorf("copying reader fetched %d times, want 2 (the first refetch shows it copies)", copying.Fetches)
	}
	if err := sameBytes(&checkpointtest.CountingReader{Reader: a}, &checkpointtest.CountingReader{Reader: c}, emb); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Errorf("sameBytes with a difference in the last window = %v, want an error saying the bytes differ", err)
	}
}

func tf(v []float32, shape ...int) *tensor.Tensor { return tensor.FromFloat32(v, shape...) }

func ramp(n int, scale float32) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = scale * float32(math.Sin(float64(i)*0.7))
	}
	return v
}

var writeSafetensors = checkpointtest.WriteSafetensors
