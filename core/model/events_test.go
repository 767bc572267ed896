package model

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/monoquant/monoquant/core/tensor"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/plan"
)

// TestQuantizeStreamEvents: QuantizeStream writes the same bytes as QuantizeInto and tells
// Written for every input tensor in order, each once its outputs are in the buffers, and
// Released for a tensor only once every counted reader (here the quantization and a second
// reader standing for the run log's fingerprint) has released it.
func TestQuantizeStreamEvents(t *testing.T) {
	opts := plan.Options{Bits: 8}
	want, err := testModel(t).Quantize(context.Background(), opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := readerPatience
	defer func() { readerPatience = old }()
	for _, other := range []string{"none", "before", "after", "alongside"} {
		t.Run("other reader "+other, func(t *testing.T) {
			// The "after" reader releases nothing during the call: one wait, then none. The
			// "alongside" reader always releases the next tensor: a patience no scheduler delay
			// of a busy machine reaches, so the run never takes it to have stopped.
			readerPatience = time.Second
			if other == "alongside" {
				readerPatience = time.Minute
			}
			m := testModel(t)
			readers := 1
			if other != "none" {
				readers = 2
			}
			m.CountReleases(readers)
			r := m.Reader()
			if other == "before" { // the other reader is done with every tensor first
				for _, e := range r.Entries() {
					r.Release(e.Name)
				}
			}
			if other == "alongside" { // a slower reader at the same time, as the fingerprint
				go func() {
					for _, e := range r.Entries() {
						time.Sleep(5 * time.Millisecond)
						r.Release(e.Name)
					}
				}()
			}
			var bufs [][]byte
			var entries []checkpoint.Entry
			var written, released []string
			res, err := m.QuantizeStream(context.Background(), opts, nil, func(es []checkpoint.Entry) ([][]byte, error) {
				entries = es
				for _, e := range es {
					bufs = append(bufs, make([]byte, LayoutBytes(e)))
				}
				return bufs, nil
			}, StreamEvents{
				Written: func(name string) error {
					// every output of name is final when it is told
					for i, e := range entries {
						if e.Name == name || (len(e.Name) > len(name) && e.Name[:len(name)+1] == name+".") && want.Config.Tensors[name] != nil {
							w, _ := want.Tensor(e.Name)
							if !bytes.Equal(bufs[i], w.Data) {
								t.Errorf("Written(%q): output %q is not final yet", name, e.Name)
							}
						}
					}
					if other == "alongside" && len(written) > 0 && !slices.Contains(released, written[len(written)-1]) {
						t.Errorf("Written(%q) before Released(%q): the run went on without waiting for the other reader", name, written[len(written)-1])
					}
					written = append(written, name)
					return nil
				},
				Released: func(name string) error {
					if other == "after" {
						t.Errorf("Released(%q) before the other reader released it", name)
					}
					released = append(released, name)
					return nil
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range m.Entries() {
				names = append(names, e.Name)
			}
			if !slices.Equal(written, names) {
				t.Errorf("Written told %q, want every tensor in order %q", written, names)
			}
			for _, e := range want.Entries() {
				w, _ := want.Tensor(e.Name)
				g, err := res.Tensor(e.Name)
				if err != nil || !bytes.Equal(g.Data, w.Data) {
					t.Errorf("tensor %q differs from Quantize's", e.Name)
				}
			}
			// Released comes with the next Written after the quantization let go of a tensor
			// (a quantized one once read, a kept one once written): every tensor by the end.
			slices.Sort(released)
			sorted := slices.Sorted(slices.Values(names))
			if other != "after" && !slices.Equal(released, sorted) {
				t.Errorf("Released told %q, want every tensor once: %q", released, sorted)
			}
		})
	}
}

// TestQuantizeStreamStops: an error from an event stops the run with that error.
func TestQuantizeStreamStops(t *testing.T) {
	m := testModel(t)
	stop := errors.New("stop")
	n := 0
	_, err := m.QuantizeStream(context.Background(), plan.Options{Bits: 8}, nil, func(es []checkpoint.Entry) ([][]byte, error) {
		return make([][]byte, len(es)), nil
	}, StreamEvents{Written: func(string) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	}})
	if !errors.Is(err, stop) || n != 2 {
		t.Fatalf("QuantizeStream = %v after %d events, want the event's error after 2", err, n)
	}
}

// TestKeptTensorsInPlace: a caller that gives a kept input tensor as its own output buffer gets
// it back untouched (the write finds the bytes in place), whole or as a large streamed tensor,
// and the quantized tensors are Quantize's.
func TestKeptTensorsInPlace(t *testing.T) {
	want, err := testModel(t).Quantize(context.Background(), plan.Options{Bits: 8}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, streamed := range []bool{false, true} {
		if streamed {
			oldT, oldB, oldP := streamThreshold, streamBlockBytes, inPlaceBlockBytes
			streamThreshold, streamBlockBytes, inPlaceBlockBytes = 1, 64, 64
			defer func() { streamThreshold, streamBlockBytes, inPlaceBlockBytes = oldT, oldB, oldP }()
		}
		m := testModel(t)
		res, err := m.QuantizeInto(context.Background(), plan.Options{Bits: 8}, nil, func(es []checkpoint.Entry) ([][]byte, error) {
			bufs := make([][]byte, len(es))
			for i, e := range es {
				if in, err := m.Tensor(e.Name); err == nil && LayoutBytes(e) == int64(len(in.Data)) {
					bufs[i] = in.Data // a kept tensor: its own memory
				} else {
					bufs[i] = make([]byte, LayoutBytes(e))
				}
			}
			return bufs, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range want.Entries() {
			w, _ := want.Tensor(e.Name)
			g, _ := res.Tensor(e.Name)
			if !bytes.Equal(g.Data, w.Data) {
				t.Errorf("streamed=%v: tensor %q differs from Quantize's", streamed, e.Name)
			}
			if in, err := m.Tensor(e.Name); err == nil && want.Config.Tensors[e.Name] == nil && !sameMemory(g.Data, in.Data) {
				t.Errorf("streamed=%v: kept tensor %q is not the input's memory", streamed, e.Name)
			}
		}
	}
}

// TestKeptTensorInPlaceIsNotWritten: the engine does not even write the same bytes over a kept
// input given as its own output (the run log's fingerprint may be reading it): the input here
// is read-only memory, where any write would crash the test.
func TestKeptTensorInPlaceIsNotWritten(t *testing.T) {
	oldT, oldB := streamThreshold, streamBlockBytes
	streamThreshold, streamBlockBytes = 1, 64 // the kept tensor goes the block-copy way
	defer func() { streamThreshold, streamBlockBytes = oldT, oldB }()
	ro, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skip("no anonymous mmap:", err)
	}
	defer syscall.Munmap(ro)
	for i := range ro {
		ro[i] = byte(i % 61)
	}
	if err := syscall.Mprotect(ro, syscall.PROT_READ); err != nil {
		t.Skip("no mprotect:", err)
	}
	m := NewModel()
	xs := make([]float32, 64*32)
	for i := range xs {
		xs[i] = float32(i%17) - 8
	}
	if err := m.Add("fc.weight", tensor.FromFloat32(xs, 64, 32)); err != nil {
		t.Fatal(err)
	}
	if err := m.Add("table", &tensor.Tensor{DType: tensor.F32, Shape: []int{1024}, Data: ro}); err != nil {
		t.Fatal(err)
	}
	_ = m.SetModuleType("fc", "Linear")
	res, err := m.QuantizeInto(context.Background(), plan.Options{Bits: 8}, nil, func(es []checkpoint.Entry) ([][]byte, error) {
		bufs := make([][]byte, len(es))
		for i, e := range es {
			if e.Name == "table" {
				bufs[i] = ro
			} else {
				bufs[i] = make([]byte, LayoutBytes(e))
			}
		}
		return bufs, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := res.Tensor("table"); !sameMemory(g.Data, ro) {
		t.Errorf("the kept tensor is not the input's memory")
	}
}
