package method

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// heavyWeights are rows of Student-t-like values: a few large weights per group, as in
// trained layers, where clipping and zero-point optimisation pay off.
func heavyWeights(rows, k int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	w := make([]float32, rows*k)
	for i := range w {
		g := rng.NormFloat64()
		c := rng.NormFloat64()*rng.NormFloat64() + rng.NormFloat64()
		w[i] = float32(0.02 * (g + 0.3*c))
	}
	return w
}

func run(t testing.TB, m Method, w []float32, shape []int, spec quant.Spec, o Options) ([]float32, Result) {
	t.Helper()
	src := tensor.FromFloat32(w, shape...)
	if _, err := spec.Normalize(shape); err != nil {
		t.Fatal(err)
	}
	np := spec.NumParams(shape)
	dst := make([]byte, quant.PackedLen(spec.Format, len(w)))
	sc, zp := make([]float32, np), make([]int32, np)
	res, err := Quantize(m, dst, src, spec, sc, zp, o)
	if err != nil {
		t.Fatalf("Quantize(%s) = %v", m, err)
	}
	back := make([]float32, len(w))
	if err := quant.Dequantize(back, dst, shape, spec, sc, zp); err != nil {
		t.Fatal(err)
	}
	return back, res
}

func TestRTNIsQuantBytes(t *testing.T) {
	w := heavyWeights(16, 256, 1)
	spec := quant.Spec{Format: quant.Int4, GroupSize: 64, Scheme: quant.Asymmetric}
	src := tensor.FromFloat32(w, 16, 256)
	a := make([]byte, len(w)/2)
	b := make([]byte, len(w)/2)
	sa, za, sb, zb := make([]float32, 64), make([]int32, 64), make([]float32, 64), make([]int32, 64)
	if _, err := quant.Quantize(a, src, spec, sa, za); err != nil {
		t.Fatal(err)
	}
	if _, err := Quantize(RTN, b, src, spec, sb, zb, Options{}); err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatal("rtn bytes differ from quant.Quantize")
	}
}

func TestMethodsBeatRTN(t *testing.T) {
	w := heavyWeights(64, 512, 2)
	shape := []int{64, 512}
	for _, tc := range []struct {
		m    Method
		spec quant.Spec
		gain float64 // dB over rtn with the same spec
	}{
		{MSE, quant.Spec{Format: quant.Int4, GroupSize: 128}, 0.3},
		{MSE, quant.Spec{Format: quant.Int4, GroupSize: 128, Scheme: quant.Asymmetric}, 0.3},
		{MSE, quant.Spec{Format: quant.Int8, Granularity: quant.PerChannel}, 0},
		{HQQ, quant.Spec{Format: quant.Int4, GroupSize: 128, Scheme: quant.Asymmetric}, 0},
		{HQQ, quant.Spec{Format: quant.Int4, GroupSize: 64, Scheme: quant.Asymmetric, QDType: quant.QUInt4}, 0},
	} {
		rtn, _ := run(t, RTN, w, shape, tc.spec, Options{})
		got, _ := run(t, tc.m, w, shape, tc.spec, Options{})
		dr, dm := quant.SQNR(w, rtn), quant.SQNR(w, got)
		t.Logf("%s %v %v g%d: rtn %.4f dB, %s %.4f dB", tc.m, tc.spec.Format, tc.spec.Scheme, tc.spec.GroupSize, dr, tc.m, dm)
		if dm < dr+tc.gain-1e-6 {
			t.Errorf("%s on %+v: SQNR %.2f dB, want >= rtn %.2f + %.1f dB", tc.m, tc.spec, dm, dr, tc.gain)
		}
	}
}

func TestMSEStridedChannels(t *testing.T) {
	// per channel on axis 1 ([in, out] weights): the search must use each column's values.
	w := heavyWeights(96, 32, 3)
	spec := quant.Spec{Format: quant.Int8, Granularity: quant.PerChannel, Axis: 1}
	rtn, _ := run(t, RTN, w, []int{96, 32}, spec, Options{})
	got, _ := run(t, MSE, w, []int{96, 32}, spec, Options{})
	if quant.SQNR(w, got) < quant.SQNR(w, rtn) {
		t.Errorf("mse axis 1: %.2f dB < rtn %.2f dB", quant.SQNR(w, got), quant.SQNR(w, rtn))
	}
}

// outputErr is Σ over samples of ‖(W − Ŵ) x‖²  = trace((W−Ŵ) H (W−Ŵ)ᵀ).
func outputErr(w, q []float32, h []float64, rows, k int) float64 {
	var tot float64
	d := make([]float64, k)
	for r := range rows {
		for i := range k {
			d[i] = float64(w[r*k+i] - q[r*k+i])
		}
		for i := range k {
			var s float64
			for j := range k {
				s += h[i*k+j] * d[j]
			}
			tot += d[i] * s
		}
	}
	return tot
}

// hessian returns XᵀX for correlated inputs with a few strong features.
func hessian(n, k int, seed uint64) ([]float64, *tensor.Tensor) {
	rng := rand.New(rand.NewPCG(seed, 2))
	x := make([]float64, n*k)
	for s := range n {
		base := rng.NormFloat64()
		for i := range k {
			v := rng.NormFloat64() + 0.5*base
			if i%17 == 0 {
				v *= 4
			}
			x[s*k+i] = v
		}
	}
	h := make([]float64, k*k)
	for s := range n {
		row := x[s*k : (s+1)*k]
		for i := range k {
			for j := range k {
				h[i*k+j] += row[i] * row[j]
			}
		}
	}
	h32 := make([]float32, k*k)
	for i := range h {
		h32[i] = float32(h[i])
	}
	return h, tensor.FromFloat32(h32, k, k)
}

func TestGPTQLowersOutputError(t *testing.T) {
	rows, k := 32, 256
	w := heavyWeights(rows, k, 4)
	h, ht := hessian(512, k, 5)
	for _, tc := range []struct {
		name string
		spec quant.Spec
		act  bool
	}{
		{"int4 g64", quant.Spec{Format: quant.Int4, GroupSize: 64}, false},
		{"int4 g64 act-order", quant.Spec{Format: quant.Int4, GroupSize: 64, Scheme: quant.Asymmetric}, true},
		{"int8 per channel", quant.Spec{Format: quant.Int8, Granularity: quant.PerChannel}, false},
	} {
		rtn, _ := run(t, RTN, w, []int{rows, k}, tc.spec, Options{})
		got, res := run(t, GPTQ, w, []int{rows, k}, tc.spec, Options{Hessian: ht, ActOrder: tc.act, BlockSize: 64})
		er, eg := outputErr(w, rtn, h, rows, k), outputErr(w, got, h, rows, k)
		t.Logf("%s: output error rtn %.4g, gptq %.4g (damp %.3g)", tc.name, er, eg, res.Damp)
		if !(eg < 0.8*er) {
			t.Errorf("%s: gptq output error %.4g, want < 0.8 × rtn %.4g", tc.name, eg, er)
		}
		if res.Singular || res.DeadInputs != 0 {
			t.Errorf("%s: a full-rank Hessian was reported singular: %+v", tc.name, res)
		}
	}
}

func TestGPTQSingularHessianIsDampedAndReported(t *testing.T) {
	rows, k := 8, 64
	w := heavyWeights(rows, k, 6)
	// 16 samples < 64 inputs: rank-deficient, and input 3 never fires.
	rng := rand.New(rand.NewPCG(7, 7))
	h := make([]float32, k*k)
	for range 16 {
		x := make([]float32, k)
		for i := range x {
			if i != 3 {
				x[i] = float32(rng.NormFloat64())
			}
		}
		for i := range k {
			for j := range k {
				h[i*k+j] += x[i] * x[j]
			}
		}
	}
	back, res := run(t, GPTQ, w, []int{rows, k}, quant.Spec{Format: quant.Int4, GroupSize: 32}, Options{Hessian: tensor.FromFloat32(h, k, k)})
	if !res.Singular || res.DeadInputs != 1 || !(res.Damp > 0) {
		t.Errorf("result %+v, want Singular, 1 dead input, positive damp", res)
	}
	for r := range rows {
		if back[r*k+3] != 0 {
			t.Errorf("row %d: dead input 3 kept weight %v, want 0", r, back[r*k+3])
		}
	}
}

func TestBadInput(t *testing.T) {
	w := heavyWeights(4, 64, 8)
	src := tensor.FromFloat32(w, 4, 64)
	dst := make([]byte, 256)
	sc, zp := make([]float32, 64), make([]int32, 64)
	i4 := quant.Spec{Format: quant.Int4, GroupSize: 32}
	for _, tc := range []struct {
		m    Method
		spec quant.Spec
		o    Options
		want string
	}{
		{"awq", i4, Options{}, `unknown method "awq"`},
		{GPTQ, i4, Options{}, "needs the layer's input Hessian"},
		{GPTQ, i4, Options{Hessian: tensor.FromFloat32(make([]float32, 9), 3, 3)}, "the Hessian is [3 3]; the weight's 64 inputs need [64, 64]"},
		{HQQ, i4, Options{}, "needs the asymmetric scheme"},
		{MSE, quant.Spec{Format: quant.Float16}, Options{}, "float cast"},
		{MSE, i4, Options{MSEGrid: 60}, "mse step"},
		{GPTQ, i4, Options{Hessian: tensor.FromFloat32(make([]float32, 64*64), 64, 64), PercDamp: -1}, "dampening"},
	} {
		_, err := Quantize(tc.m, dst, src, tc.spec, sc, zp, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Quantize(%s, %+v) = %v, want an error containing %q", tc.m, tc.o, err, tc.want)
		}
	}
	w[5] = float32(math.NaN())
	_, err := Quantize(MSE, dst, src, i4, sc, zp, Options{})
	if !errors.Is(err, quant.ErrNonFinite) {
		t.Errorf("mse on NaN = %v, want ErrNonFinite", err)
	}
}

func TestPowNeg03(t *testing.T) {
	for _, a := range []float32{1e-30, 1e-8, 3e-5, 0.001, 0.37, 1, 1.4142, 1.5, 7, 1234.5} {
		got, want := float64(powNeg03(a)), math.Pow(float64(a), -0.3)
		if math.Abs(got-want) > 2e-6*want {
			t.Errorf("powNeg03(%g) = %g, want %g", a, got, want)
		}
	}
}

// TestHQQDoesNotShrink: hqq's error has no component along the weights (Σ x·x̂ = Σ x² per
// group, to the rounding of a few values), where a least-squares fit, and mse's clip search,
// pull every group toward its zero point by about 1/SQNR.
func TestHQQDoesNotShrink(t *testing.T) {
	w := heavyWeights(64, 512, 4)
	shape := []int{64, 512}
	spec := quant.Spec{Format: quant.Int4, GroupSize: 128, Scheme: quant.Asymmetric}
	rel := func(q []float32) (worst, mean float64) {
		n := 0
		for g := 0; g < len(w); g += 128 {
			var xx, xq float64
			for i := g; i < g+128; i++ {
				xx += float64(w[i]) * float64(w[i])
				xq += float64(w[i]) * float64(q[i])
			}
			r := xq/xx - 1
			worst = max(worst, math.Abs(r))
			mean += r
			n++
		}
		return worst, mean / float64(n)
	}
	hqq, _ := run(t, HQQ, w, shape, spec, Options{})
	mse, _ := run(t, MSE, w, shape, spec, Options{})
	hw, hm := rel(hqq)
	_, mm := rel(mse)
	t.Logf("Σx·x̂/Σx² − 1 per group: hqq mean %.2e (worst %.2e), mse mean %.2e", hm, hw, mm)
	if hw > 1e-5 {
		t.Errorf("hqq: a group's Σx·x̂ is %.2e off Σx²; want the error orthogonal to the weights", hw)
	}
	if !(mm < -5*math.Abs(hm)) {
		t.Errorf("the test cannot tell: mse shrinks by %.2e on average, hqq by %.2e", mm, hm)
	}
}

func TestHQQStridedChannels(t *testing.T) {
	// per channel on axis 1: hqq's values go back to each column (scatter of gather)
	w := heavyWeights(96, 32, 5)
	spec := quant.Spec{Format: quant.Int8, Granularity: quant.PerChannel, Axis: 1, Scheme: quant.Asymmetric}
	rtn, _ := run(t, RTN, w, []int{96, 32}, spec, Options{})
	got, _ := run(t, HQQ, w, []int{96, 32}, spec, Options{})
	if quant.SQNR(w, got) < quant.SQNR(w, rtn) {
		t.Errorf("hqq axis 1: %.2f dB < rtn %.2f dB", quant.SQNR(w, got), quant.SQNR(w, rtn))
	}
}
