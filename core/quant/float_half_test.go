package quant

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
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
	n := 5000 + 3 // a tail the vector kernels leave to the scalar loop (3 past 8, 11 past 16)
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
	// NaNs whose bfloat16 rounding carries out of the exponent (0xFFFFFFFF would wrap to +0,
	// 0x7FFFFFFF to -0 if only the output were looked at), alone in otherwise finite blocks of
	// 8 and 16, at the first, a middle and the last lane; and -Inf.
	for i, bits := range []uint32{0xFFFFFFFF, 0x7FFFFFFF, 0x7FFF8000, 0xFFFF8000, 0xFF800000} {
		for _, lane := range []int{0, 5, 15} {
			j := 4096 + 64*i + 16*(lane%3) + lane
			xs[j] = math.Float32frombits(bits)
		}
	}
	for _, k := range append([]halfKernel{{name: "scalar"}}, halfKernels()...) {
		t.Run(k.name, func(t *testing.T) {
			old := halfVector
			halfVector = k
			defer func() { halfVector = old }()
			for _, m := range []int{n, 0, 1, 7, 8, 15, 16, 17, 33} {
				checkCastMatchesScalar(t, xs[:m])
			}
			checkCastMatchesScalar(t, xs[4096:4096+5*64]) // the NaN blocks from a fresh start
		})
	}
	if len(halfKernels()) == 0 {
		t.Log("no AVX2/F16C here: the scalar path was compared with itself")
	}
}

// checkCastMatchesScalar casts xs with castFloatMeasured and castFloat (both formats, saturating
// or not) and compares bytes, counts and sums with the scalar loop's.
func checkCastMatchesScalar(t *testing.T, xs []float32) {
	t.Helper()
	n := len(xs)
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
				t.Fatalf("%v saturate=%v n=%d: %v", f, sat, n, err)
			}
			for i := 0; i < n; i++ {
				if got[2*i] != want[2*i] || got[2*i+1] != want[2*i+1] {
					t.Fatalf("%v saturate=%v n=%d: x[%d] = %g (%#08x) cast to %#04x, the scalar rule gives %#04x", f, sat, n, i, xs[i],
						math.Float32bits(xs[i]), uint16(got[2*i])|uint16(got[2*i+1])<<8, uint16(want[2*i])|uint16(want[2*i+1])<<8)
				}
			}
			if st.Overflow != wst.Overflow || st.NonFinite != wst.NonFinite || st.FirstNonFinite != wst.FirstNonFinite {
				t.Errorf("%v saturate=%v n=%d: stats %+v, the scalar loop's %+v", f, sat, n, st, wst)
			}
			close := func(a, b float64) bool {
				return a == b || math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
			}
			if !close(en.Signal, wacc.ps) || !close(en.Noise, wacc.pn) && !(math.IsInf(en.Noise, 1) && math.IsInf(wacc.pn, 1)) {
				t.Errorf("%v saturate=%v n=%d: energy %+v, the scalar loop's {%g %g}", f, sat, n, en, wacc.ps, wacc.pn)
			}
			// and castFloat without measuring stores the same bytes
			plain := make([]byte, 2*n)
			if _, err := castFloat(plain, src, &spec); err != nil || string(plain) != string(want) {
				t.Errorf("%v saturate=%v n=%d: castFloat differs from the measured cast (err %v)", f, sat, n, err)
			}
		}
	}
}

// TestHalfCastRejectsWideNaN: a NaN whose bfloat16 rounding carries out of the exponent
// (0xFFFFFFFF, as bitwise all-ones memory reads) inside a block the vector kernel takes is
// still a non-finite input: rejected with its index, by the measured cast quantize() uses and by
// the plain one. (The AVX2 kernel once stored it as +0 and counted nothing.)
func TestHalfCastRejectsWideNaN(t *testing.T) {
	for _, k := range append([]halfKernel{{name: "scalar"}}, halfKernels()...) {
		t.Run(k.name, func(t *testing.T) {
			old := halfVector
			halfVector = k
			defer func() { halfVector = old }()
			checkWideNaNRejected(t)
		})
	}
}

func checkWideNaNRejected(t *testing.T) {
	for _, bits := range []uint32{0xFFFFFFFF, 0x7FFFFFFF} {
		xs := make([]float32, 64)
		for i := range xs {
			xs[i] = float32(i) * 0.25
		}
		xs[21] = math.Float32frombits(bits)
		src := tensor.FromFloat32(xs, 4, 16)
		for _, f := range []Format{Float16, BFloat16} {
			spec := Spec{Format: f}
			if _, err := spec.Normalize(src.Shape); err != nil {
				t.Fatal(err)
			}
			_, _, err := QuantizeMeasured(make([]byte, 128), src, spec, nil, nil)
			if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "flat index 21") {
				t.Errorf("QuantizeMeasured(%#08x at 21, %v) error = %v, want ErrNonFinite at flat index 21", bits, f, err)
			}
			if _, err := QuantizeTensor(src, spec); !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), "flat index 21") {
				t.Errorf("QuantizeTensor(%#08x at 21, %v) error = %v, want ErrNonFinite at flat index 21", bits, f, err)
			}
		}
	}
}
