package main

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/tensor"
)

// TestValidationInBlocks: validating in blocks of a couple of rows gives the figures of
// validating each tensor in one block (which, for these small tensors, is what the default
// block size does, and what the whole-tensor check did): the weight SQNRs bit for bit (the
// sums run in the same order), the layer output SQNRs up to float64 summation order.
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
	validate := func(block int, args []string) *validation {
		t.Helper()
		defer func(b int) { validateBlock = b }(validateBlock)
		validateBlock = block
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
	same := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }
	for _, args := range [][]string{{"--bits", "8"}, {"--bits", "8", "--scheme", "asymmetric"}, {"--bits", "4", "--group-size", "16"}, {"--bits", "16"}} {
		name := strings.Join(args, " ")
		whole, blocks := validate(validateBlock, args), validate(100, args)
		if whole.SQNRConfirmed != 5 || blocks.SQNRConfirmed != 5 || len(whole.LayerOutputs) != 3 || len(blocks.LayerOutputs) != 3 {
			t.Fatalf("%s: validation %+v in one block, %+v in blocks; want 5 SQNRs confirmed and 3 layers run", name, whole, blocks)
		}
		if blocks.MaxSQNRDeviation != whole.MaxSQNRDeviation {
			t.Errorf("%s: SQNR deviation %v in blocks, %v in one block", name, blocks.MaxSQNRDeviation, whole.MaxSQNRDeviation)
		}
		for i, w := range whole.LayerOutputs {
			b := blocks.LayerOutputs[i]
			if b.Tensor != w.Tensor || !same(float64(b.WeightSQNR), float64(w.WeightSQNR)) || math.Abs(float64(b.OutputSQNR-w.OutputSQNR)) > 1e-9 {
				t.Errorf("%s: layer check %+v in blocks, %+v in one block", name, b, w)
			}
		}
	}
}
