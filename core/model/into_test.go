package model

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"unsafe"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
)

// TestQuantizeIntoCallerBuffers: QuantizeInto writes every tensor of the result into the
// caller's buffers (the Result's tensors are those buffers, not copies), with the same bytes as
// Quantize, whether the tensors go whole or in streamed blocks; a wrong-sized buffer is an error
// naming the tensor.
func TestQuantizeIntoCallerBuffers(t *testing.T) {
	m := testModel(t)
	for _, tc := range []struct {
		name string
		opts plan.Options
	}{
		{"int8", plan.Options{Bits: 8}},
		{"int4 asym", plan.Options{Bits: 4, Spec: quant.Spec{GroupSize: 32, Scheme: quant.Asymmetric}, GroupFallback: &yes}},
		{"int8 per-tensor", plan.Options{Spec: quant.Spec{Format: quant.Int8, Scheme: quant.Symmetric, Granularity: quant.PerTensor}}},
	} {
		want, err := m.Quantize(context.Background(), tc.opts, nil) // whole tensors
		if err != nil {
			t.Fatal(err)
		}
		for _, streamed := range []bool{false, true} {
			t.Run(tc.name, func(t *testing.T) {
				if streamed {
					oldT, oldB, oldP := streamThreshold, streamBlockBytes, inPlaceBlockBytes
					streamThreshold, streamBlockBytes, inPlaceBlockBytes = 1, 700, 700
					defer func() { streamThreshold, streamBlockBytes, inPlaceBlockBytes = oldT, oldB, oldP }()
				}
				layout, err := m.OutputLayout(tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				var bufs [][]byte
				got, err := m.QuantizeInto(context.Background(), tc.opts, nil, func(entries []checkpoint.Entry) ([][]byte, error) {
					if len(entries) != len(layout) {
						t.Fatalf("asked for %d buffers, the layout has %d", len(entries), len(layout))
					}
					for i, e := range entries {
						if e.Name != layout[i].Name || e.DType != layout[i].DType {
							t.Fatalf("entry %d is %v, the layout said %v", i, e, layout[i])
						}
						bufs = append(bufs, bytes.Repeat([]byte{0xAB}, int(LayoutBytes(e))))
					}
					return bufs, nil
				})
				if err != nil {
					t.Fatal(err)
				}
				ents := got.Entries()
				if len(ents) != len(layout) {
					t.Fatalf("result has %d tensors, layout %d", len(ents), len(layout))
				}
				for i, e := range ents {
					gt, _ := got.Tensor(e.Name)
					wt, err := want.Tensor(e.Name)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(gt.Data, wt.Data) {
						t.Fatalf("%s: bytes differ from Quantize's", e.Name)
					}
					if len(gt.Data) > 0 && unsafe.SliceData(gt.Data) != unsafe.SliceData(bufs[i]) {
						t.Errorf("%s: the result holds a copy, not the caller's buffer", e.Name)
					}
				}
			})
		}
	}
	_, err := m.QuantizeInto(context.Background(), plan.Options{Bits: 8}, nil, func(entries []checkpoint.Entry) ([][]byte, error) {
		bufs := make([][]byte, len(entries))
		bufs[0] = make([]byte, LayoutBytes(entries[0])+1)
		return bufs, nil
	})
	if !errors.Is(err, plan.ErrOption) || !strings.Contains(err.Error(), "conv.weight") {
		t.Errorf("a buffer one byte too large: %v, want plan.ErrOption naming conv.weight", err)
	}
	_, err = m.QuantizeInto(context.Background(), plan.Options{Bits: 8}, nil, func(entries []checkpoint.Entry) ([][]byte, error) {
		return make([][]byte, 2), nil
	})
	if !errors.Is(err, plan.ErrOption) {
		t.Errorf("too few buffers: %v, want plan.ErrOption", err)
	}
}

// TestDequantizeIntoCallerBuffers: DequantizeInto writes the float model into the caller's
// buffers (the Model's tensors are those buffers) with DequantizeToModel's bytes.
func TestDequantizeIntoCallerBuffers(t *testing.T) {
	q, err := testModel(t).Quantize(context.Background(), plan.Options{Bits: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want, err := DequantizeToModel(context.Background(), q.Reader())
	if err != nil {
		t.Fatal(err)
	}
	layout, err := DequantizeLayout(q.Reader())
	if err != nil {
		t.Fatal(err)
	}
	var bufs [][]byte
	got, err := DequantizeInto(context.Background(), q.Reader(), func(entries []checkpoint.Entry) ([][]byte, error) {
		for i, e := range entries {
			if e.Name != layout[i].Name {
				t.Fatalf("entry %d is %q, the layout said %q", i, e.Name, layout[i].Name)
			}
			bufs = append(bufs, make([]byte, LayoutBytes(e)))
		}
		return bufs, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got.Entries() {
		g, _ := got.Tensor(e.Name)
		w, err := want.Tensor(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(g.Data, w.Data) {
			t.Errorf("%s: bytes differ from DequantizeToModel's", e.Name)
		}
		if len(g.Data) > 0 && unsafe.SliceData(g.Data) != unsafe.SliceData(bufs[i]) {
			t.Errorf("%s: the model holds a copy, not the caller's buffer", e.Name)
		}
	}
}
