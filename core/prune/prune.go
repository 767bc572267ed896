// Package prune decides which weights and which hidden units are removed: unstructured
// magnitude pruning, 2:4 semi-structured pruning, and structured pruning of the hidden units
// between two coupled layers (an FFN's fc1 → fc2).
//
// Unstructured and 2:4 pruning zero weights in place: the tensor keeps its shape and its stored
// format, so a pruned layer is no smaller on disk (no sparse format is written); the zeros are
// exact after quantization (0 is a grid point of every scheme). Structured pruning removes whole
// hidden units: Units says which to keep, and the caller that holds the layers shrinks both
// (fc1's rows and bias, fc2's columns), which really shrinks the model.
//
// Every choice is deterministic: of two equal weights or units, the lower index is removed first.
package prune

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrPrune is wrapped by every error of this package.
var ErrPrune = errors.New("pruning")

// Kinds of weight pruning (the recipe's "prune" key).
const (
	Magnitude = "magnitude" // the smallest |w| of the tensor, a fraction "sparsity" of them
	TwoFour   = "2:4"       // in each run of 4 consecutive weights of a row, the 2 smallest |w|
)

// Kinds lists the weight pruning kinds.
var Kinds = []string{Magnitude, TwoFour}

// Apply zeroes the weights kind selects in w (a tensor of rows of rowLen values) and returns how
// many it zeroed. sparsity is the fraction for Magnitude (0 < sparsity < 1); 2:4 ignores it.
func Apply(kind string, w []float32, rowLen int, sparsity float64) (int, error) {
	switch kind {
	case Magnitude:
		return magnitude(w, sparsity)
	case TwoFour:
		return twoFour(w, rowLen)
	}
	return 0, fmt.Errorf("%w: kind %q is not one of %v", ErrPrune, kind, Kinds)
}

// CheckSparsity accepts a magnitude sparsity strictly between 0 and 1.
func CheckSparsity(s float64) error {
	if !(s > 0 && s < 1) {
		return fmt.Errorf("%w: sparsity %v must be between 0 and 1 (exclusive)", ErrPrune, s)
	}
	return nil
}

func magnitude(w []float32, sparsity float64) (int, error) {
	if err := CheckSparsity(sparsity); err != nil {
		return 0, err
	}
	k := int(math.Floor(sparsity * float64(len(w))))
	if k == 0 {
		return 0, nil
	}
	idx := make([]int32, len(w))
	for i := range idx {
		idx[i] = int32(i)
	}
	// The k smallest by |w|, ties to the lower index: a stable order, O(n log n).
	slices.SortStableFunc(idx, func(a, b int32) int {
		return cmp.Compare(math.Abs(float64(w[a])), math.Abs(float64(w[b])))
	})
	for _, i := range idx[:k] {
		w[i] = 0
	}
	return k, nil
}

func twoFour(w []float32, rowLen int) (int, error) {
	if rowLen <= 0 || len(w)%rowLen != 0 {
		return 0, fmt.Errorf("%w: %d values are not rows of %d", ErrPrune, len(w), rowLen)
	}
	if rowLen%4 != 0 {
		return 0, fmt.Errorf("%w: 2:4 needs rows whose length is a multiple of 4, not %d", ErrPrune, rowLen)
	}
	n := 0
	for g := 0; g+4 <= len(w); g += 4 {
		q := w[g : g+4]
		// The two largest |w| stay: find them (ties to the lower index), zero the others.
		a, b := -1, -1
		for i := range q {
			v := math.Abs(float64(q[i]))
			switch {
			case a < 0 || v > math.Abs(float64(q[a])):
				a, b = i, a
			case b < 0 || v > math.Abs(float64(q[b])):
				b = i
			}
		}
		for i := range q {
			if i != a && i != b {
				q[i] = 0
				n++
			}
		}
	}
	return n, nil
}

// Units returns the hidden units to keep, in increasing order, when fraction of the hidden
// units between two coupled layers are removed. w1 is the first layer's weight, hidden rows
// (a Linear's [out, in], a Conv2d's [out, in, kh, kw]); b1 its bias (nil or hidden values); w2
// the second layer's weight, [out2, hidden, inner...] in row-major order with inner values per
// (output, unit) pair (1 for a Linear, kh·kw for a Conv2d). A unit's importance is
// ‖(w1[j], b1[j])‖₂·‖w2[:, j]‖₂ (the weight that flows through it); the least important
// round(fraction·hidden) go, and at least one unit stays.
func Units(w1 []float32, b1 []float32, w2 []float32, hidden, inner int, fraction float64) ([]int, error) {
	if hidden <= 0 || inner <= 0 {
		return nil, fmt.Errorf("%w: %d hidden units of %d values", ErrPrune, hidden, inner)
	}
	if !(fraction >= 0 && fraction < 1) {
		return nil, fmt.Errorf("%w: prune_units %v must be at least 0 and below 1", ErrPrune, fraction)
	}
	if len(w1)%hidden != 0 || len(w1) == 0 {
		return nil, fmt.Errorf("%w: the first layer's %d weights are not %d rows (its outputs must be the hidden units)", ErrPrune, len(w1), hidden)
	}
	if len(w2)%(hidden*inner) != 0 || len(w2) == 0 {
		return nil, fmt.Errorf("%w: the second layer's %d weights are not rows of %d units × %d values (its inputs must be the hidden units)", ErrPrune, len(w2), hidden, inner)
	}
	if b1 != nil && len(b1) != hidden {
		return nil, fmt.Errorf("%w: the first layer's bias has %d values for %d hidden units", ErrPrune, len(b1), hidden)
	}
	in1, out2 := len(w1)/hidden, len(w2)/(hidden*inner)
	score := make([]float64, hidden)
	for j := range hidden {
		var s1, s2 float64
		for _, v := range w1[j*in1 : (j+1)*in1] {
			s1 += float64(v) * float64(v)
		}
		if b1 != nil {
			s1 += float64(b1[j]) * float64(b1[j])
		}
		for o := range out2 {
			for _, x := range w2[(o*hidden+j)*inner : (o*hidden+j+1)*inner] {
				s2 += float64(x) * float64(x)
			}
		}
		score[j] = math.Sqrt(s1) * math.Sqrt(s2)
		if math.IsNaN(score[j]) || math.IsInf(score[j], 0) {
			return nil, fmt.Errorf("%w: hidden unit %d has a non-finite weight", ErrPrune, j)
		}
	}
	drop := min(int(math.Round(fraction*float64(hidden))), hidden-1)
	order := make([]int, hidden)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(score[a], score[b]) })
	keep := slices.Clone(order[drop:])
	slices.Sort(keep)
	return keep, nil
}

// KeptUnits is how many of hidden units stay when fraction of them are removed (as Units).
func KeptUnits(hidden int, fraction float64) int {
	return hidden - min(int(math.Round(fraction*float64(hidden))), hidden-1)
}
