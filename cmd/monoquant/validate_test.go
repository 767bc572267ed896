package main

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
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
	validate := func(block, release int, args []string) *validation {
		t.Helper()
		defer func(b, r int) { validateBlock, releaseEvery = b, r }(validateBlock, releaseEvery)
		validateBlock, releaseEvery = block, release
		out := filepath.Join(t.TempDir(), "q.safetensors")
		args = append([]string{"quantize", "--model", in, "--out", out, "--json", "--quiet", "--nonfinite", "clamp"}, args...)
		r := runCLI(t, args...)
		if r.code != 0 {
			t.Fatalf("monoquant %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		var res quantizeResult
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatal(err)
		}
		return res.Validation
	}
	close := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) || math.Abs(a-b) <= 1e-9 }
	for _, args := range [][]string{{"--bits", "8"}, {"--bits", "8", "--scheme", "asymmetric"}, {"--bits", "4", "--group-size", "16"}, {"--bits", "16"}} {
		name := strings.Join(args, " ")
		whole, blocks := validate(validateBlock, releaseEvery, args), validate(100, 1000, args)
		if whole.SQNRConfirmed != 5 || blocks.SQNRConfirmed != 5 || len(whole.LayerOutputs) != 3 || len(blocks.LayerOutputs) != 3 {
			t.Fatalf("%s: validation %+v in one block, %+v in blocks; want 5 SQNRs confirmed and 3 layers run", name, whole, blocks)
		}
		if math.Abs(blocks.MaxSQNRDeviation-whole.MaxSQNRDeviation) > 1e-9 {
			t.Errorf("%s: SQNR deviation %v in blocks, %v in one block", name, blocks.MaxSQNRDeviation, whole.MaxSQNRDeviation)
		}
		for i, w := range whole.LayerOutputs {
			b := blocks.LayerOutputs[i]
			if b.Tensor != w.Tensor || !close(float64(b.WeightSQNR), float64(w.WeightSQNR)) || math.Abs(float64(b.OutputSQNR-w.OutputSQNR)) > 1e-9 {
				t.Errorf("%s: layer check %+v in blocks, %+v in one block", name, b, w)
			}
		}
	}
}

// countingReader counts a reader's Tensor and Release calls; with copies set it returns a new
// copy of the data on every fetch, as a reader of strided .pt tensors does.
type countingReader struct {
	checkpoint.Reader
	fetches, releases int
	copies            bool
	// views makes every fetch of a name return the same bytes, as a reader handing out views
	// of a mapping would. The file readers now return copies (read under mapped.Guard, so a
	// truncated file cannot crash); this keeps the windowing logic for view readers tested.
	views map[string][]byte
}

func (c *countingReader) Tensor(name string) (*tensor.Tensor, error) {
	c.fetches++
	t, err := c.Reader.Tensor(name)
	if err == nil && c.copies {
		t.Data = append([]byte(nil), t.Data...)
	}
	if err == nil && c.views != nil {
		if v, ok := c.views[name]; ok {
			t.Data = v
		} else {
			c.views[name] = t.Data
		}
	}
	return t, err
}

func (c *countingReader) Release(name string) {
	c.releases++
	c.Reader.Release(name)
}

// TestSameBytesReleasesAsItGoes: a kept tensor is compared window by window, its pages released
// and its view fetched again after each window (a copying reader is fetched once more, then
// kept), and a difference in the last window is still found.
func TestSameBytesReleasesAsItGoes(t *testing.T) {
	defer func(n int) { releaseEvery = n }(releaseEvery)
	releaseEvery = 512
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
	in, out := &countingReader{Reader: a, views: map[string][]byte{}}, &countingReader{Reader: b, views: map[string][]byte{}}
	if err := sameBytes(in, out, "emb.weight"); err != nil {
		t.Fatalf("sameBytes of equal tensors: %v", err)
	}
	for _, r := range []*countingReader{in, out} {
		if r.fetches != 8 || r.releases != 8 {
			t.Errorf("8 windows: %d fetches and %d releases, want 8 and 8 (7 between windows, 1 at the end)", r.fetches, r.releases)
		}
	}
	copying := &countingReader{Reader: a, copies: true}
	if err := sameBytes(copying, &countingReader{Reader: b}, "emb.weight"); err != nil {
		t.Fatalf("sameBytes through a copying reader: %v", err)
	}
	if copying.fetches != 2 {
		t.Errorf("copying reader fetched %d times, want 2 (the first refetch shows it copies)", copying.fetches)
	}
	if err := sameBytes(&countingReader{Reader: a}, &countingReader{Reader: c}, "emb.weight"); err == nil || !strings.Contains(err.Error(), "differ") {
		t.Errorf("sameBytes with a difference in the last window = %v, want an error saying the bytes differ", err)
	}
}
