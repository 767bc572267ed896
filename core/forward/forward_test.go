package forward

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type forwardCase struct {
	Kind     string    `json:"kind"`
	Name     string    `json:"name"`
	X        []float32 `json:"x"`
	XShape   []int     `json:"x_shape"`
	W        []float32 `json:"w"`
	WShape   []int     `json:"w_shape"`
	B        []float32 `json:"b"`
	Stride   []int     `json:"stride"`
	Padding  []int     `json:"padding"`
	Dilation []int     `json:"dilation"`
	Groups   int       `json:"groups"`
	Y        []float32 `json:"y"`
	YShape   []int     `json:"y_shape"`
}

// TestForwardMatchesTorch checks Linear and Conv2d against torch's F.linear and
// F.conv2d (testdata/gen_forward_golden.py). torch sums in float32 and we in float64, so the
// results agree to float32 rounding of the sum, not bit for bit.
func TestForwardMatchesTorch(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Cases []forwardCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Cases) == 0 {
		t.Fatal("no golden cases")
	}
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			var y []float32
			var shape []int
			switch c.Kind {
			case "linear":
				y, err = Linear(c.X, c.XShape[0], c.W, c.WShape[0], c.WShape[1], c.B)
				shape = []int{c.XShape[0], c.WShape[0]}
			case "conv2d":
				p := Conv2dParams{Stride: [2]int{c.Stride[0], c.Stride[1]}, Padding: [2]int{c.Padding[0], c.Padding[1]},
					Dilation: [2]int{c.Dilation[0], c.Dilation[1]}, Groups: c.Groups}
				var s [4]int
				y, s, err = Conv2d(c.X, [4]int(c.XShape), c.W, [4]int(c.WShape), c.B, p)
				shape = s[:]
			default:
				t.Fatalf("unknown kind %q", c.Kind)
			}
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			if !slices.Equal(shape, c.YShape) || len(y) != len(c.Y) {
				t.Fatalf("%s: output shape %v (%d values), torch %v (%d values)", c.Name, shape, len(y), c.YShape, len(c.Y))
			}
			for i := range y {
				if d := math.Abs(float64(y[i] - c.Y[i])); d > 1e-5*max(1, math.Abs(float64(c.Y[i]))) {
					t.Errorf("%s: y[%d] = %v, torch %v", c.Name, i, y[i], c.Y[i])
					break
				}
			}
		})
	}
}

func TestForwardErrors(t *testing.T) {
	x := make([]float32, 12)
	w := make([]float32, 6)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"linear input size", errOf(Linear(x[:5], 2, w, 2, 3, nil)), "input has 5 values"},
		{"linear weight size", errOf(Linear(x[:6], 2, w[:5], 2, 3, nil)), "weight has 5 values"},
		{"linear bias size", errOf(Linear(x[:6], 2, w, 2, 3, []float32{1})), "bias has 1 values"},
		{"linear zero out", errOf(Linear(x[:6], 2, w, 0, 3, nil)), "bad sizes"},
		{"conv channels", errOf3(Conv2d(x, [4]int{1, 3, 2, 2}, w, [4]int{1, 2, 1, 3}, nil, Conv2dParams{})), "input has 3 channels"},
		{"conv kernel too big", errOf3(Conv2d(x, [4]int{1, 1, 3, 4}, w, [4]int{1, 1, 6, 1}, nil, Conv2dParams{})), "smaller than the dilated kernel"},
		{"conv bad stride", errOf3(Conv2d(x, [4]int{1, 1, 3, 4}, w, [4]int{1, 1, 2, 3}, nil, Conv2dParams{Stride: [2]int{-1, 1}})), "bad stride"},
		{"conv groups", errOf3(Conv2d(x, [4]int{1, 3, 2, 2}, w, [4]int{2, 1, 1, 3}, nil, Conv2dParams{Groups: 3})), "groups 3"},
		{"conv input size", errOf3(Conv2d(x[:5], [4]int{1, 1, 3, 4}, w, [4]int{1, 1, 2, 3}, nil, Conv2dParams{})), "input has 5 values"},
	}
	for _, tc := range tests {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, tc.err, tc.want)
		}
	}
}

func errOf(_ []float32, err error) error            { return err }
func errOf3(_ []float32, _ [4]int, err error) error { return err }

// BenchmarkLinearForward is the CLI's output check of one 2048×5632 Linear layer (batch 4).
func BenchmarkLinearForward(b *testing.B) {
	const batch, in, out = 4, 5632, 2048
	x, w := make([]float32, batch*in), make([]float32, out*in)
	for i := range w {
		w[i] = float32(i%17) * 0.01
	}
	for i := range x {
		x[i] = float32(i%13) * 0.1
	}
	b.SetBytes(int64(4 * len(w)))
	for b.Loop() {
		if _, err := Linear(x, batch, w, out, in, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestLinearForwardVectorPath holds Linear (the AVX2 dot products where the CPU has them,
// with scalar tails) to a plain float64 loop for every remainder of the input width and of the
// batch: only the order of float64 additions differs, so the float32 outputs agree to an ulp.
func TestLinearForwardVectorPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, in := range []int{1, 7, 8, 9, 15, 16, 17, 31, 64, 100, 257} {
		for _, batch := range []int{1, 3, 4, 5, 8, 9} {
			const out = 6
			x, w, b := make([]float32, batch*in), make([]float32, out*in), make([]float32, out)
			for _, v := range [][]float32{x, w, b} {
				for i := range v {
					v[i] = float32(rng.NormFloat64())
				}
			}
			y, err := Linear(x, batch, w, out, in, b)
			if err != nil {
				t.Fatal(err)
			}
			for r := 0; r < batch; r++ {
				for o := 0; o < out; o++ {
					var acc float64
					for i := 0; i < in; i++ {
						acc += float64(w[o*in+i]) * float64(x[r*in+i])
					}
					want := float32(acc + float64(b[o]))
					if got := y[r*out+o]; math.Abs(float64(got-want)) > 1e-6*max(1, math.Abs(float64(want))) {
						t.Fatalf("in %d batch %d: y[%d,%d] = %v, want %v", in, batch, r, o, got, want)
					}
				}
			}
		}
	}
}
