package observer

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

var allKinds = []Kind{MinMax, MovingAverageMinMax, PerChannelMinMax, MovingAveragePerChannelMinMax, Histogram}

func mustNew(t testing.TB, o Options) Observer {
	t.Helper()
	obs, err := New(o)
	if err != nil {
		t.Fatalf("New(%+v): %v", o, err)
	}
	return obs
}

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		in   Options
		want Options
	}{
		{Options{Kind: MinMax}, Options{Kind: MinMax, DType: quant.QUInt8, Scheme: quant.Asymmetric, Eps: quant.DefaultEps}},
		{Options{Kind: MovingAverageMinMax}, Options{Kind: MovingAverageMinMax, DType: quant.QUInt8, Scheme: quant.Asymmetric, Eps: quant.DefaultEps, AveragingConstant: 0.01}},
		{Options{Kind: Histogram}, Options{Kind: Histogram, DType: quant.QUInt8, Scheme: quant.Asymmetric, Eps: quant.DefaultEps, Bins: 2048}},
		{Options{Kind: PerChannelMinMax, ChAxis: -1}, Options{Kind: PerChannelMinMax, DType: quant.QUInt8, Scheme: quant.Asymmetric, Eps: quant.DefaultEps, ChAxis: -1}},
		{Options{Kind: MovingAveragePerChannelMinMax, AveragingConstant: 1, DType: quant.QInt8, Scheme: quant.Symmetric},
			Options{Kind: MovingAveragePerChannelMinMax, DType: quant.QInt8, Scheme: quant.Symmetric, Eps: quant.DefaultEps, AveragingConstant: 1}},
	}
	for _, tt := range tests {
		got := mustNew(t, tt.in).Options()
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("New(%+v).Options() = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestNewRejects(t *testing.T) {
	r := func(a, b int) *[2]int { return &[2]int{a, b} }
	tests := []struct {
		name string
		in   Options
		want string // a fragment of the error
	}{
		{"no kind", Options{}, "unknown observer kind"},
		{"kind 99", Options{Kind: 99}, "unknown observer kind"},
		{"4-bit dtype", Options{Kind: MinMax, DType: quant.QUInt4}, "not an observer dtype"},
		{"scheme 7", Options{Kind: MinMax, Scheme: 7}, "unknown scheme"},
		{"symmetric quint8 reduce_range", Options{Kind: MinMax, Scheme: quant.Symmetric, ReduceRange: true}, "reduce_range"},
		{"symmetric quint8 reduce_range per channel", Options{Kind: PerChannelMinMax, Scheme: quant.Symmetric, ReduceRange: true}, "reduce_range"},
		{"negative eps", Options{Kind: MinMax, Eps: -1}, "eps"},
		{"NaN eps", Options{Kind: MinMax, Eps: float32(math.NaN())}, "eps"},
		{"Inf eps", Options{Kind: MinMax, Eps: float32(math.Inf(1))}, "eps"},
		{"averaging constant above 1", Options{Kind: MovingAverageMinMax, AveragingConstant: 1.5}, "(0, 1]"},
		{"negative averaging constant", Options{Kind: MovingAveragePerChannelMinMax, AveragingConstant: -0.1}, "(0, 1]"},
		{"NaN averaging constant", Options{Kind: MovingAverageMinMax, AveragingConstant: float32(math.NaN())}, "(0, 1]"},
		{"averaging constant on minmax", Options{Kind: MinMax, AveragingConstant: 0.5}, "only for the moving-average"},
		{"channel axis on histogram", Options{Kind: Histogram, ChAxis: 1}, "only for the per-channel"},
		{"negative bins", Options{Kind: Histogram, Bins: -3}, "bins -3"},
		{"too many bins", Options{Kind: Histogram, Bins: 1 << 30}, "bins"},
		{"bins on minmax", Options{Kind: MinMax, Bins: 10}, "only for the histogram"},
		{"range without 0", Options{Kind: MinMax, QuantRange: r(1, 10)}, "include 0"},
		{"empty range", Options{Kind: MinMax, DType: quant.QInt8, QuantRange: r(0, 0)}, "less than"},
		{"range too wide for qint8", Options{Kind: MinMax, DType: quant.QInt8, QuantRange: r(-200, 100)}, "does not fit"},
	}
	for _, tt := range tests {
		_, err := New(tt.in)
		if err == nil || !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: New(%+v) error = %v, want ErrOptions mentioning %q", tt.name, tt.in, err, tt.want)
		}
	}
}

func TestNewCopiesQuantRange(t *testing.T) {
	qr := [2]int{0, 127}
	obs := mustNew(t, Options{Kind: MinMax, QuantRange: &qr})
	qr[1] = 15
	if got := *obs.Options().QuantRange; got != [2]int{0, 127} {
		t.Errorf("QuantRange after the caller changed its array = %v, want [0 127]", got)
	}
}

// state captures everything an observer exposes, to check that a refused batch changed nothing.
func state(obs Observer) [3][]float32 {
	mn, mx := obs.Range()
	var h []float32
	if ho, ok := obs.(*HistogramObserver); ok {
		h = ho.Histogram()
	}
	return [3][]float32{mn, mx, h}
}

func sameState(a, b [3][]float32) bool {
	for k := range a {
		if sameBits(a[k], b[k]) != "" {
			return false
		}
	}
	return true
}

func TestBadInputLeavesStateUnchanged(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	tests := []struct {
		name string
		x    *tensor.Tensor
		want string
	}{
		{"nil", nil, "nil tensor"},
		{"int dtype", &tensor.Tensor{DType: tensor.I32, Shape: []int{2, 2}, Data: make([]byte, 16)}, "not a float type"},
		{"short data", &tensor.Tensor{DType: tensor.F32, Shape: []int{2, 2}, Data: make([]byte, 12)}, "needs 16 bytes"},
		{"NaN", tensor.FromFloat32([]float32{1, 2, nan, 4, nan, 6}, 2, 3), "2 NaN value(s), the first at flat index 2"},
		{"NaN f64", f64Tensor([]float64{0, math.NaN()}, 2, 1), "NaN"},
		{"NaN and Inf", tensor.FromFloat32([]float32{inf, nan, 0, 1}, 2, 2), "NaN"},
	}
	for _, kind := range allKinds {
		for _, tt := range tests {
			obs := mustNew(t, Options{Kind: kind})
			if err := obs.Observe(tensor.FromFloat32([]float32{-1, 0.5, 2, 3}, 2, 2)); err != nil {
				t.Fatal(err)
			}
			before := state(obs)
			err := obs.Observe(tt.x)
			if err == nil || !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%v: Observe(%s) error = %v, want ErrInput mentioning %q", kind, tt.name, err, tt.want)
			}
			if !sameState(before, state(obs)) {
				t.Errorf("%v: Observe(%s) changed the state: %v -> %v", kind, tt.name, before, state(obs))
			}
		}
	}
}

func f64Tensor(v []float64, shape ...int) *tensor.Tensor {
	x := tensor.New(tensor.F64, shape...)
	copy(tensor.View[float64](x.Data), v)
	return x
}

func TestInfinity(t *testing.T) {
	inf := float32(math.Inf(1))
	withInf := tensor.FromFloat32([]float32{1, -inf, -2, inf, 7.5, 0}, 2, 3)
	for _, kind := range []Kind{MinMax, MovingAverageMinMax, PerChannelMinMax, MovingAveragePerChannelMinMax} {
		obs := mustNew(t, Options{Kind: kind})
		err := obs.Observe(withInf)
		if err == nil || !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), "2 infinite value(s), the first (-Inf) at flat index 1") {
			t.Errorf("%v: Observe(with ±Inf) error = %v, want one naming 2 infinite values from index 1", kind, err)
		}
	}
	// The histogram leaves infinities out, exactly as if they had not been there.
	got := mustNew(t, Options{Kind: Histogram}).(*HistogramObserver)
	want := mustNew(t, Options{Kind: Histogram}).(*HistogramObserver)
	for _, err := range []error{got.Observe(withInf), want.Observe(tensor.FromFloat32([]float32{1, -2, 7.5, 0}, 4))} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if !sameState(state(got), state(want)) {
		t.Errorf("histogram of [1 -Inf -2 Inf 7.5 0] differs from that of [1 -2 7.5 0]")
	}
	// A batch of nothing but infinities is ignored.
	before := state(got)
	if err := got.Observe(tensor.FromFloat32([]float32{inf, -inf}, 2)); err != nil || !sameState(before, state(got)) {
		t.Errorf("Observe([Inf -Inf]) = %v and changed state %v, want it ignored", err, !sameState(before, state(got)))
	}
}

func TestEmptyTensorIgnored(t *testing.T) {
	for _, kind := range allKinds {
		obs := mustNew(t, Options{Kind: kind})
		for _, shape := range [][]int{{0}, {0, 3}, {4, 0, 2}} {
			before := state(obs)
			if err := obs.Observe(tensor.New(tensor.F32, shape...)); err != nil {
				t.Errorf("%v: Observe(empty %v) = %v, want nil", kind, shape, err)
			}
			if !sameState(before, state(obs)) {
				t.Errorf("%v: Observe(empty %v) changed the state", kind, shape)
			}
		}
		if err := obs.Observe(tensor.FromFloat32([]float32{1, 2}, 1, 2)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestQParamsBeforeData(t *testing.T) {
	for _, kind := range allKinds {
		for _, dt := range []quant.QDType{quant.QUInt8, quant.QInt8, quant.QInt32} {
			obs := mustNew(t, Options{Kind: kind, DType: dt})
			s, z, err := obs.QParams()
			if err != nil || !reflect.DeepEqual(s, []float32{1}) || !reflect.DeepEqual(z, []int32{0}) {
				t.Errorf("%v %v: QParams() before data = %v, %v, %v; want [1], [0], nil (torch's defaults)", kind, dt, s, z, err)
			}
		}
	}
}

// Constant and all-zero data get a usable scale: positive and finite, never 0, NaN or Inf.
func TestConstantAndZeroData(t *testing.T) {
	for _, kind := range allKinds {
		for _, c := range []float32{0, 3.25, -0.7, 1e-30, 1e30} {
			for _, scheme := range []quant.Scheme{quant.Asymmetric, quant.Symmetric} {
				obs := mustNew(t, Options{Kind: kind, DType: quant.QInt8, Scheme: scheme})
				x := tensor.FromFloat32([]float32{c, c, c, c, c, c}, 2, 3)
				for i := 0; i < 2; i++ {
					if err := obs.Observe(x); err != nil {
						t.Fatal(err)
					}
				}
				s, z, err := obs.QParams()
				if err != nil {
					t.Fatalf("%v %v constant %v: QParams: %v", kind, scheme, c, err)
				}
				for i := range s {
					if !(s[i] > 0) || math.IsInf(float64(s[i]), 0) || z[i] < -128 || z[i] > 127 {
						t.Errorf("%v %v constant %v: scale %v zero point %v, want a positive finite scale and zp in [-128, 127]", kind, scheme, c, s[i], z[i])
					}
				}
				if c == 0 && s[0] != quant.DefaultEps {
					t.Errorf("%v %v all zero: scale %v, want eps %v", kind, scheme, s[0], quant.DefaultEps)
				}
			}
		}
	}
}

// A constant histogram keeps min == max and its search returns that value (torch: every error
// term is 0 and the loop runs to the end).
func TestHistogramMinEqualsMax(t *testing.T) {
	obs := mustNew(t, Options{Kind: Histogram})
	h := obs.(*HistogramObserver)
	x := tensor.FromFloat32([]float32{2.5, 2.5, 2.5}, 3)
	for i := 0; i < 3; i++ {
		if err := obs.Observe(x); err != nil {
			t.Fatal(err)
		}
	}
	mn, mx := obs.Range()
	if mn[0] != 2.5 || mx[0] != 2.5 {
		t.Fatalf("Range() = %v, %v, want [2.5] [2.5]", mn, mx)
	}
	var total float32
	for _, v := range h.Histogram() {
		total += v
	}
	if total != 9 {
		t.Errorf("histogram holds %v values, want 9", total)
	}
	lo, hi := h.search()
	if lo != 2.5 || hi != 2.5 {
		t.Errorf("search() = %v, %v, want 2.5, 2.5", lo, hi)
	}
	s, z, err := obs.QParams()
	if want := float32(2.5) / 255; err != nil || s[0] != want || z[0] != 0 {
		t.Errorf("QParams() = %v, %v, %v; want [%v] [0]", s, z, err, want)
	}
}

func TestQInt32Range(t *testing.T) {
	for _, rr := range []bool{false, true} {
		obs := mustNew(t, Options{Kind: MinMax, DType: quant.QInt32, ReduceRange: rr})
		if err := obs.Observe(tensor.FromFloat32([]float32{-1, 3}, 2)); err != nil {
			t.Fatal(err)
		}
		s, z, err := obs.QParams()
		// torch: qint32 ignores reduce_range; scale = max(4 / f32(2^32-1), eps) (eps wins here),
		// zp = -2^31 - round(-1/scale).
		wantS := max(float32(4)/float32(4294967295), quant.DefaultEps)
		wantZ := int64(math.MinInt32) - int64(math.RoundToEven(float64(float32(-1)/wantS)))
		if err != nil || s[0] != wantS || int64(z[0]) != wantZ {
			t.Errorf("qint32 reduce_range=%v: QParams() = %v, %v, %v; want [%v] [%v]", rr, s, z, err, wantS, wantZ)
		}
	}
}

func TestResetForgets(t *testing.T) {
	a := tensor.FromFloat32([]float32{-50, 1, 2, 100, 3, 4}, 2, 3)
	b := tensor.FromFloat32([]float32{0.5, -0.25, 0.125, 1, 2, -2}, 2, 3)
	for _, kind := range allKinds {
		used, fresh := mustNew(t, Options{Kind: kind}), mustNew(t, Options{Kind: kind})
		if err := used.Observe(a); err != nil {
			t.Fatal(err)
		}
		used.Reset()
		if s, z, _ := used.QParams(); s[0] != 1 || z[0] != 0 {
			t.Errorf("%v: QParams() after Reset = %v, %v, want torch's defaults", kind, s, z)
		}
		for _, obs := range []Observer{used, fresh} {
			if err := obs.Observe(b); err != nil {
				t.Fatal(err)
			}
		}
		if !sameState(state(used), state(fresh)) {
			t.Errorf("%v: state after Reset and a batch = %v, fresh observer = %v", kind, state(used), state(fresh))
		}
	}
}

func TestPerChannelShapes(t *testing.T) {
	x23 := tensor.FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	tests := []struct {
		axis     int
		first    *tensor.Tensor
		next     *tensor.Tensor
		want     string // error fragment for next ("" = accepted)
		min, max []float32
	}{
		{0, x23, x23, "", []float32{1, 4}, []float32{3, 6}},
		{1, x23, x23, "", []float32{1, 2, 3}, []float32{4, 5, 6}},
		{-1, x23, x23, "", []float32{1, 2, 3}, []float32{4, 5, 6}},
		{-2, x23, x23, "", []float32{1, 4}, []float32{3, 6}},
		{0, x23, tensor.FromFloat32([]float32{1, 2, 3}, 3, 1), "has 3 channels along axis 0, earlier batches had 2", []float32{1, 4}, []float32{3, 6}},
		{2, x23, nil, "", nil, nil},
		{0, x23, tensor.FromFloat32([]float32{1, 2}, 2), "2 or more dimensions", []float32{1, 4}, []float32{3, 6}},
	}
	for _, tt := range tests {
		obs := mustNew(t, Options{Kind: PerChannelMinMax, ChAxis: tt.axis})
		err := obs.Observe(tt.first)
		if tt.next == nil {
			if err == nil || !strings.Contains(err.Error(), "out of range") {
				t.Errorf("axis %d on %v: error = %v, want out of range", tt.axis, tt.first.Shape, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		err = obs.Observe(tt.next)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("axis %d: Observe(%v) error = %v, want %q", tt.axis, tt.next.Shape, err, tt.want)
		}
		mn, mx := obs.Range()
		if !reflect.DeepEqual(mn, tt.min) || !reflect.DeepEqual(mx, tt.max) {
			t.Errorf("axis %d: Range() = %v, %v, want %v, %v", tt.axis, mn, mx, tt.min, tt.max)
		}
	}
}

// fmaF32 must round a*b+c once; math/big gives the exact value to compare with.
func TestFMAF32Exact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	exact := func(a, b, c float32) float32 {
		x := new(big.Float).SetPrec(200).SetFloat64(float64(a))
		x.Mul(x, new(big.Float).SetFloat64(float64(b)))
		x.Add(x, new(big.Float).SetFloat64(float64(c)))
		f, _ := x.Float32()
		return f
	}
	cases := [][3]float32{
		{1.3333334, 5, 1e-30},          // product on a float32 tie, c breaks it upwards
		{1.3333334, 5, -1e-30},         // ... and downwards
		{3, 0.1, 0.7},                  // ordinary
		{1 << 20, 1 << 20, -(1 << 40)}, // exact cancellation
		// (2^-150 - 2^-196) + 129·2^-149 rounds in float64 onto the subnormal tie 129.5·2^-149;
		// the exact sum is below it.
		{float32(math.Ldexp(1+0x1p-23, -100)), float32(math.Ldexp(1-0x1p-23, -50)), float32(math.Ldexp(129, -149))},
	}
	for i := 0; i < 200000; i++ {
		a := float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(20)-10)))
		b := float32(rng.IntN(40000))
		c := float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(40)-20)))
		cases = append(cases, [3]float32{a, b, c})
	}
	// Results near and below the float32 normal range, where ties are not where the fast
	// path looks for them.
	for i := 0; i < 50000; i++ {
		a := float32(rng.NormFloat64() * math.Pow(10, float64(-rng.IntN(12)-34)))
		b := float32(rng.IntN(40000))
		c := float32(rng.NormFloat64() * math.Pow(10, float64(-rng.IntN(12)-34)))
		cases = append(cases, [3]float32{a, b, c})
	}
	for _, c := range cases {
		if got, want := fmaF32(c[0], c[1], c[2]), exact(c[0], c[1], c[2]); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("fmaF32(%v, %v, %v) = %v, want %v", c[0], c[1], c[2], got, want)
		}
	}
}

// The fast floor division must agree with c10::div_floor_floating (its general path) on every
// finite input.
func TestFloorDivF32(t *testing.T) {
	slow := func(a, b float32) float32 {
		mod := float32(math.Mod(float64(a), float64(b)))
		div := (a - mod) / b
		if mod != 0 && (b < 0) != (mod < 0) {
			div -= 1
		}
		if div != 0 {
			f := float32(math.Floor(float64(div)))
			if div-f > 0.5 {
				f += 1
			}
			return f
		}
		return float32(math.Copysign(0, float64(a/b)))
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 300000; i++ {
		b := float32(math.Abs(rng.NormFloat64()) * math.Pow(10, float64(rng.IntN(30)-15)))
		a := float32(float64(rng.IntN(1<<20)-(1<<19)) * float64(b) * (1 + (rng.Float64()-0.5)*1e-6))
		if b == 0 {
			continue
		}
		got, want := floorDivF32(a, b), slow(a, b)
		if got != want && !(got == 0 && want == 0) {
			t.Fatalf("floorDivF32(%v, %v) = %v, want %v", a, b, got, want)
		}
	}
	if got := floorDivF32(1, 0); !math.IsInf(float64(got), 1) {
		t.Errorf("floorDivF32(1, 0) = %v, want +Inf", got)
	}
}

// The search skips empty bins when nothing can overflow; that shortcut must not change a bit of
// the error torch would compute over every bin.
func TestQuantErrorSkipsEmptyBinsExactly(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := 0; trial < 200; trial++ {
		bins := []int{2048, 100, 7, 256}[trial%4]
		hist := make([]float32, bins)
		for i := range hist {
			if rng.IntN(3) == 0 {
				hist[i] = float32(rng.IntN(1000)) + float32(rng.IntN(16))/16
			}
		}
		lo := float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(12)-6)))
		hi := lo + float32(rng.ExpFloat64()*math.Pow(10, float64(rng.IntN(12)-6)))
		if !(hi > lo) {
			continue
		}
		fast := newErrorModel(hist, lo, hi, 256)
		if !fast.finite {
			t.Fatalf("range [%v, %v] should take the fast path", lo, hi)
		}
		slow := newErrorModel(hist, lo, hi, 256)
		slow.finite = false
		for k := 0; k < 20; k++ {
			ns := rng.IntN(bins)
			ne := ns + rng.IntN(bins-ns)
			if got, want := fast.quantError(ns, ne), slow.quantError(ns, ne); math.Float64bits(got) != math.Float64bits(want) {
				t.Fatalf("bins %d range [%v, %v]: quantError(%d, %d) = %v skipping empty bins, %v over all bins", bins, lo, hi, ns, ne, got, want)
			}
		}
	}
}
