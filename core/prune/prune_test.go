package prune

import (
	"errors"
	"slices"
	"testing"
)

func TestMagnitude(t *testing.T) {
	tests := []struct {
		w        []float32
		sparsity float64
		want     []float32
	}{
		{[]float32{1, -0.5, 2, 0.1}, 0.5, []float32{1, 0, 2, 0}},
		{[]float32{3, -3, 1, 1}, 0.25, []float32{3, -3, 0, 1}}, // a tie: the lower index goes
		{[]float32{1, 2, 3}, 0.3, []float32{1, 2, 3}},          // floor(0.9) = 0 weights
		{[]float32{-4, 1, -2, 3, 0.5, -0.25}, 0.5, []float32{-4, 0, -2, 3, 0, 0}},
	}
	for _, tt := range tests {
		w := slices.Clone(tt.w)
		n, err := Apply(Magnitude, w, len(w), tt.sparsity)
		if err != nil || !slices.Equal(w, tt.want) {
			t.Errorf("Apply(magnitude, %v, %v) = %v, %v; want %v", tt.w, tt.sparsity, w, err, tt.want)
		}
		zeros := 0
		for i := range w {
			if w[i] == 0 && tt.w[i] != 0 {
				zeros++
			}
		}
		if n != zeros {
			t.Errorf("Apply(magnitude, %v) counted %d zeroed, made %d", tt.w, n, zeros)
		}
	}
	for _, s := range []float64{0, 1, -0.5, 2} {
		if _, err := Apply(Magnitude, []float32{1, 2}, 2, s); !errors.Is(err, ErrPrune) {
			t.Errorf("Apply(magnitude, sparsity %v) = %v, want ErrPrune", s, err)
		}
	}
}

func TestTwoFour(t *testing.T) {
	w := []float32{1, -5, 2, 0.5 /* row 0 */, 0, 0, 0, 0 /* row 1 */, 3, 3, 3, 3, -1, 2, -3, 4}
	want := []float32{0, -5, 2, 0, 0, 0, 0, 0, 3, 3, 0, 0, 0, 0, -3, 4}
	n, err := Apply(TwoFour, w, 8, 0)
	if err != nil || !slices.Equal(w, want) || n != 8 {
		t.Errorf("Apply(2:4) = %v, %d, %v; want %v, 8", w, n, err, want)
	}
	for g := 0; g < len(w); g += 4 {
		nz := 0
		for _, v := range w[g : g+4] {
			if v != 0 {
				nz++
			}
		}
		if nz > 2 {
			t.Errorf("group %d keeps %d non-zeros", g/4, nz)
		}
	}
	if _, err := Apply(TwoFour, make([]float32, 6), 6, 0); err == nil {
		t.Error("2:4 on rows of 6 values: no error")
	}
	if _, err := Apply("3:4", w, 8, 0); !errors.Is(err, ErrPrune) {
		t.Errorf("an unknown kind: %v", err)
	}
}

func TestUnits(t *testing.T) {
	// 4 hidden units: fc1 [4, 2], fc2 [3, 4]. Unit 2 carries nothing out, unit 0 little.
	w1 := []float32{1, 0, 0.1, 0.1, 5, 5, 1, 1}
	b1 := []float32{0, 0, 0, 0}
	w2 := []float32{
		1, 1, 0, 1,
		1, 1, 0, 1,
		1, 1, 0, 1,
	}
	tests := []struct {
		fraction float64
		want     []int
	}{
		{0, []int{0, 1, 2, 3}},
		{0.25, []int{0, 1, 3}},
		{0.5, []int{0, 3}}, // scores: 1.73, 0.24, 0, 2.45
		{0.99, []int{3}},   // at least one unit stays
	}
	for _, tt := range tests {
		got, err := Units(w1, b1, w2, 4, 1, tt.fraction)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Units(fraction %v) = %v, %v; want %v", tt.fraction, got, err, tt.want)
		}
		if k := KeptUnits(4, tt.fraction); k != len(tt.want) {
			t.Errorf("KeptUnits(4, %v) = %d, want %d", tt.fraction, k, len(tt.want))
		}
	}
	// A Conv2d pair: w2 [2, 4, 2] (inner 2): unit 1 carries the most out.
	conv2 := []float32{0, 0, 3, 3, 1, 0, 0, 1, 0, 0, 3, 3, 1, 0, 0, 1}
	if got, err := Units([]float32{1, 1, 1, 1}, nil, conv2, 4, 2, 0.5); err != nil || !slices.Equal(got, []int{1, 3}) { // units 2 and 3 tie: the lower goes
		t.Errorf("Units(conv pair, 0.5) = %v, %v; want [1 3]", got, err)
	}
	for _, c := range []struct {
		name   string
		w1, w2 []float32
		b1     []float32
		f      float64
	}{
		{"fraction 1", w1, w2, nil, 1},
		{"negative", w1, w2, nil, -0.1},
		{"w1 not hidden rows", w1[:7], w2, nil, 0.5},
		{"w2 not rows of hidden", w1, w2[:11], nil, 0.5},
		{"bias length", w1, w2, []float32{1}, 0.5},
	} {
		if _, err := Units(c.w1, c.b1, c.w2, 4, 1, c.f); !errors.Is(err, ErrPrune) {
			t.Errorf("Units(%s) = %v, want ErrPrune", c.name, err)
		}
	}
}
