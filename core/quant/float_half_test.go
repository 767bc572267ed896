package quant

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/monoquant/monoquant/core/tensor"
)

// TestCastMeasuredMatchesScalar: the one-pass Float16/BFloat16 cast with its error measured
// (the vector kernel where the CPU has it) stores the bytes of the scalar rules for every class
// of input — normal, subnormal in the half, below its range, ties, near and past the largest
// finite value, NaN and ±Inf (clamped), saturated or not — counts the same overflows and
// non-finite values, and measures the same sums up to the order of the additions.
func TestCastMeasuredMatchesScalar(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	n := 5000 + 3 // a tail the vector kernel leaves to the scalar loop
	xs := make([]float32, n)
	special := []float32{0, float32(math.Copysign(0, -1)), 65504, 65519.99, 65520, 65536, -70000, 1e-8, 6e-8, 3e-5, -6.1e-5,
		float32(math.Inf(1)), float32(math.NaN()), 3.3895314e38, 3.4e38, -3.39e38, 1.0000001, 0.333333, 1e-40, -1e-45}
	for i := range xs {
		switch {
		case i%97 == 0:
			xs[i] = special[(i/97)%len(special)]
		case i%3 == 0:
			xs[i] = math.Float32frombits(rng.Uint32()) // every exponent, NaNs included
		default:
			xs[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(12)-6)))
		}
	}
	src := tensor.FromFloat32(xs, n)
	for _, f := range []Format{Float16, BFloat16} {
		for _, sat := range []bool{false, true} {
			spec := Spec{Format: f, SaturateFloat16: sat, NonFinite: ClampNonFinite}
			want := make([]byte, 2*n)
			wst := Stats{FirstNonFinite: -1}
			var wacc normAcc
			castScalar(want, 0, xs, f == BFloat16, sat, &wst, &wacc, true)
			got := make([]byte, 2*n)
			st, en, err := castFloatMeasured(got, src, &spec, true)
			if err != nil {
				t.Fatalf("%v saturate=%v: %v", f, sat, err)
			}
			for i := 0; i < n; i++ {
				if got[2*i] != want[2*i] || got[2*i+1] != want[2*i+1] {
					t.Fatalf("%v saturate=%v: x[%d] = %g (%#08x) cast to %#04x, the scalar rule gives %#04x", f, sat, i, xs[i],
						math.Float32bits(xs[i]), uint16(got[2*i])|uint16(got[2*i+1])<<8, uint16(want[2*i])|uint16(want[2*i+1])<<8)
				}
			}
			if st.Overflow != wst.Overflow || st.NonFinite != wst.NonFinite || st.FirstNonFinite != wst.FirstNonFinite {
				t.Errorf("%v saturate=%v: stats %+v, the scalar loop's %+v", f, sat, st, wst)
			}
			close := func(a, b float64) bool {
				return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
			}
			if !close(en.Signal, wacc.ps) || !close(en.Noise, wacc.pn) && !(math.IsInf(en.Noise, 1) && math.IsInf(wacc.pn, 1)) {
				t.Errorf("%v saturate=%v: energy %+v, the scalar loop's {%g %g}", f, sat, en, wacc.ps, wacc.pn)
			}
			// and castFloat without measuring stores the same bytes
			plain := make([]byte, 2*n)
			if _, err := castFloat(plain, src, &spec); err != nil || string(plain) != string(want) {
				t.Errorf("%v saturate=%v: castFloat differs from the measured cast (err %v)", f, sat, err)
			}
		}
	}
	if !haveHalfAVX2 {
		t.Log("no AVX2/F16C here: the scalar path was compared with itself")
	}
}
