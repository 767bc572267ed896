package tensor

import (
	"math"
	"strings"
	"testing"
)

func TestViewSpan(t *testing.T) {
	tests := []struct {
		shape  []int
		stride []int64
		want   int64
		err    string
	}{
		{[]int{2, 3}, []int64{3, 1}, 6, ""},
		{[]int{2, 3}, []int64{1, 2}, 6, ""},
		{[]int{1 << 20, 1 << 20}, []int64{0, 0}, 1, ""},
		{[]int{4, 0}, []int64{1, 1}, 0, ""},
		{[]int{3, 2}, []int64{1 << 62, 1}, 0, "64 bits"},
		{[]int{2}, []int64{math.MaxInt64}, 0, "64 bits"},
		{[]int{2}, []int64{-1}, 0, "negative"},
	}
	for _, tt := range tests {
		got, err := ViewSpan(tt.shape, tt.stride)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ViewSpan(%v, %v) error = %v, want %q", tt.shape, tt.stride, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ViewSpan(%v, %v) = %d, %v, want %d", tt.shape, tt.stride, got, err, tt.want)
		}
	}
}

func TestCheckMaterialize(t *testing.T) {
	// 4 TiB logical over one float: refused.
	if err := CheckMaterialize("tensor w", 1<<40, 4, 1); err == nil || !strings.Contains(err.Error(), "broadcast view") {
		t.Errorf("4 TiB over 4 bytes: error = %v", err)
	}
	// A bias row of 1024 floats expanded over a batch of 64: allowed (256 KiB).
	if err := CheckMaterialize("tensor b", 64*1024, 4, 1024); err != nil {
		t.Errorf("64×1024 over 1024: %v", err)
	}
	// Non-overlapping views are always allowed.
	if err := CheckMaterialize("tensor c", 1<<30, 4, 1<<30); err != nil {
		t.Errorf("contiguous: %v", err)
	}
	// Just past the bound.
	span := int64(1 << 20)
	n := int(ViewExpansion*span + ViewSlack/4 + 1)
	if err := CheckMaterialize("tensor d", n, 4, span); err == nil {
		t.Errorf("one element past the bound accepted")
	}
}
