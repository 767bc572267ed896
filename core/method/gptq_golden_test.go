package method

import (
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// TestGPTQAgainstTorchReference runs the reference GPTQ of testdata/gen_gptq_golden.py (torch,
// after the paper's code) and core's on the same W and H: core's output error trace(ΔH Δᵀ)
// must be the same or lower (0.5% slack for float32 against float64 arithmetic).
func TestGPTQAgainstTorchReference(t *testing.T) {
	r, err := checkpoint.Open("testdata/gptq_golden.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	get := func(name string) *tensor.Tensor {
		x, err := r.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	wt, ht := get("W"), get("H")
	w, _ := wt.Float32s()
	h32, _ := ht.Float32s()
	rows, k := wt.Shape[0], wt.Shape[1]
	h := make([]float64, len(h32))
	for i, v := range h32 {
		h[i] = float64(v)
	}
	for _, tc := range []struct {
		name string
		spec quant.Spec
		act  bool
	}{
		{"int4_g64_sym", quant.Spec{Format: quant.Int4, GroupSize: 64}, false},
		{"int4_g64_asym_actorder", quant.Spec{Format: quant.Int4, GroupSize: 64, Scheme: quant.Asymmetric, QDType: quant.QUInt4}, true},
		{"int8_channel_sym", quant.Spec{Format: quant.Int8, Granularity: quant.PerChannel}, false},
	} {
		ref, _ := get("Q_" + tc.name).Float32s()
		got, res := run(t, GPTQ, w, []int{rows, k}, tc.spec, Options{Hessian: ht, ActOrder: tc.act})
		rtn, _ := run(t, RTN, w, []int{rows, k}, tc.spec, Options{})
		eg, er, ertn := outputErr(w, got, h, rows, k), outputErr(w, ref, h, rows, k), outputErr(w, rtn, h, rows, k)
		same := 0
		for i := range got {
			if got[i] == ref[i] {
				same++
			}
		}
		t.Logf("%s: output error core %.6g, torch reference %.6g, rtn %.6g; %.1f%% of values identical (damp %.4g)",
			tc.name, eg, er, ertn, 100*float64(same)/float64(len(got)), res.Damp)
		if eg > er*1.005 {
			t.Errorf("%s: core's GPTQ output error %.6g, the torch reference's %.6g: want the same or lower", tc.name, eg, er)
		}
	}
}
