package model

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// partCounter passes a writer through and counts the parts it takes.
type partCounter struct {
	checkpoint.PartWriter
	parts map[string]int
}

func (p *partCounter) WritePart(name string, b []byte) error {
	p.parts[name]++
	return p.PartWriter.WritePart(name, b)
}

// releaseCounter passes a reader through and counts the ranges it releases.
type releaseCounter struct {
	checkpoint.Reader
	ranges int
}

func (r *releaseCounter) ReleaseRange(name string, off, n int64) {
	r.ranges++
	r.Reader.(checkpoint.RangeReleaser).ReleaseRange(name, off, n)
}

func (r *releaseCounter) ReadRange(name string, off int64, dst []byte) error {
	return r.Reader.(checkpoint.RangeReader).ReadRange(name, off, dst)
}

// TestStreamedMatchesWhole quantizes the same checkpoint tensor by tensor and in streamed blocks
// of rows (a tiny threshold forces streaming): the output files must be byte for byte the same,
// which covers the quantized data, scales and zero points, for safetensors and .pt outputs.
func TestStreamedMatchesWhole(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	if err := testModel(t).Save(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	specs := []struct {
		name     string
		opts     plan.Options
		streamed string // a tensor that must be streamed
	}{
		{"int8", plan.Options{Bits: 8}, "fc1.weight"},
		{"int8 asym", plan.Options{Bits: 8, Spec: quant.Spec{Scheme: quant.Asymmetric, QDType: quant.QUInt8}}, "fc1.weight"},
		{"int4 g64", plan.Options{Bits: 4, Spec: quant.Spec{GroupSize: 64}, GroupFallback: &yes}, "fc1.weight"},
		// conv.weight rows have 27 values: INT4 blocks must start on a byte.
		{"int4 per-channel", plan.Options{Bits: 4, Spec: quant.Spec{Granularity: quant.PerChannel}}, "conv.weight"},
		{"fp16", plan.Options{Bits: 16}, "fc1.weight"},
		// per-tensor is never streamed; the result must not change either
		{"int8 per-tensor", plan.Options{Spec: quant.Spec{Format: quant.Int8, Scheme: quant.Symmetric, Granularity: quant.PerTensor}}, ""},
	}
	run := func(t *testing.T, opts plan.Options, out string) (*Report, map[string]int, int) {
		t.Helper()
		r, err := checkpoint.Open(in)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		p, err := plan.PlanReader(r, opts)
		if err != nil {
			t.Fatal(err)
		}
		rc := &releaseCounter{Reader: r}
		pc := &partCounter{parts: map[string]int{}}
		create := func(e []checkpoint.Entry, md map[string]string) (checkpoint.Writer, error) {
			w, err := checkpoint.Create(out, e, md)
			if err != nil {
				return nil, err
			}
			pc.PartWriter = w.(checkpoint.PartWriter)
			return pc, nil
		}
		rep, err := Quantize(context.Background(), rc, create, p, Run{})
		if err != nil {
			t.Fatal(err)
		}
		return rep, pc.parts, rc.ranges
	}
	for _, ext := range []string{".safetensors", ".pt"} {
		for _, sp := range specs {
			t.Run(sp.name+ext, func(t *testing.T) {
				whole := filepath.Join(dir, "whole"+ext)
				wrep, parts, _ := run(t, sp.opts, whole)
				if len(parts) != 0 {
					t.Fatalf("default threshold streamed %v in a small model", parts)
				}
				want, err := os.ReadFile(whole)
				if err != nil {
					t.Fatal(err)
				}
				for _, block := range []int64{1, 700, 5000} {
					oldT, oldB := streamThreshold, streamBlockBytes
					streamThreshold, streamBlockBytes = 1, block
					streamed := filepath.Join(dir, "streamed"+ext)
					srep, parts, ranges := run(t, sp.opts, streamed)
					streamThreshold, streamBlockBytes = oldT, oldB
					if sp.streamed != "" && block < 1000 && (parts[sp.streamed] < 2 || ranges < 2) {
						t.Fatalf("block %d: %s went in %d parts with %d ranges released, want it streamed", block, sp.streamed, parts[sp.streamed], ranges)
					}
					if sp.streamed == "" && parts["fc1.weight"] != 0 {
						t.Fatalf("block %d: per-tensor fc1.weight streamed in %d parts", block, parts["fc1.weight"])
					}
					// A kept tensor is written in parts too, each released after.
					if block == 1 && parts["fc1.bias"] != 256 {
						t.Fatalf("block 1: kept fc1.bias (256 bytes) went in %d parts", parts["fc1.bias"])
					}
					got, err := os.ReadFile(streamed)
					if err != nil {
						t.Fatal(err)
					}
					if ext == ".pt" {
						// Each .pt file has its own random serialization id: compare the tensors.
						sameTensors(t, streamed, whole)
					} else if !bytes.Equal(got, want) {
						t.Fatalf("block %d: streamed output (%d bytes) differs from whole (%d bytes)", block, len(got), len(want))
					}
					if len(srep.Tensors) != len(wrep.Tensors) || srep.TensorsQuantized != wrep.TensorsQuantized {
						t.Fatalf("block %d: report has %d tensors, whole %d", block, len(srep.Tensors), len(wrep.Tensors))
					}
					for i := range srep.Tensors {
						a, b := srep.Tensors[i], wrep.Tensors[i]
						if a.Name != b.Name || a.BytesAfter != b.BytesAfter || a.Overflow != b.Overflow || a.NonFinite != b.NonFinite {
							t.Fatalf("block %d: report %+v, whole %+v", block, a, b)
						}
						// The energies are summed in another order: equal to rounding.
						if d := a.NoiseEnergy - b.NoiseEnergy; d > 1e-9*b.NoiseEnergy || -d > 1e-9*b.NoiseEnergy {
							t.Fatalf("block %d: %s noise %g, whole %g", block, a.Name, a.NoiseEnergy, b.NoiseEnergy)
						}
					}
				}
			})
		}
	}
}

// sameTensors checks that two checkpoints list the same tensors with the same bytes.
func sameTensors(t *testing.T, a, b string) {
	t.Helper()
	ra, err := checkpoint.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	rb, err := checkpoint.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	ea, eb := ra.Entries(), rb.Entries()
	if len(ea) != len(eb) {
		t.Fatalf("%s has %d tensors, %s %d", a, len(ea), b, len(eb))
	}
	for i := range ea {
		if ea[i].Name != eb[i].Name || ea[i].DType != eb[i].DType || !slices.Equal(ea[i].Shape, eb[i].Shape) {
			t.Fatalf("entry %d: %v vs %v", i, ea[i], eb[i])
		}
		ta, err := ra.Tensor(ea[i].Name)
		if err != nil {
			t.Fatal(err)
		}
		tb, err := rb.Tensor(eb[i].Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ta.Data, tb.Data) {
			t.Fatalf("tensor %q differs", ea[i].Name)
		}
	}
	if !maps.Equal(ra.Metadata(), rb.Metadata()) {
		t.Fatalf("metadata differs")
	}
}

// TestStreamedBadInput puts a NaN deep inside a streamed tensor: the error must be the one the
// whole tensor gives (its index counted from the tensor's start) and no output may appear.
func TestStreamedBadInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	m := testModel(t)
	w, _ := m.Tensor("fc1.weight")
	v := tensor.View[float32](w.Data)
	v[40*256+7] = float32(math.NaN())
	if err := m.Save(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	whole := filepath.Join(dir, "whole.safetensors")
	_, werr := quantizeFile(in, whole, plan.Options{Bits: 8})
	if werr == nil {
		t.Fatal("a NaN weight quantized without error")
	}
	oldT, oldB := streamThreshold, streamBlockBytes
	streamThreshold, streamBlockBytes = 1, 4096
	defer func() { streamThreshold, streamBlockBytes = oldT, oldB }()
	streamed := filepath.Join(dir, "streamed.safetensors")
	_, serr := quantizeFile(in, streamed, plan.Options{Bits: 8})
	if serr == nil || serr.Error() != werr.Error() {
		t.Fatalf("streamed error %v, whole %v", serr, werr)
	}
	t.Logf("error: %v", serr)
	if !strings.Contains(serr.Error(), "fc1.weight") {
		t.Fatalf("error %q does not name the tensor", serr)
	}
	for _, p := range []string{whole, streamed} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("a failed quantization left %s", p)
		}
	}
}

// cancelAfter cancels a context once a reader has released n ranges.
type cancelAfter struct {
	checkpoint.Reader
	n      atomic.Int32 // kept tensors release from the writer goroutine
	cancel func()
}

func (c *cancelAfter) ReleaseRange(name string, off, n int64) {
	if c.n.Add(-1) == 0 {
		c.cancel()
	}
	c.Reader.(checkpoint.RangeReleaser).ReleaseRange(name, off, n)
}

func (c *cancelAfter) ReadRange(name string, off int64, dst []byte) error {
	return c.Reader.(checkpoint.RangeReader).ReadRange(name, off, dst)
}

// TestStreamedProgressAndCancel: progress comes once per tensor, in order, when tensors go in
// blocks; a cancellation between two blocks of one tensor stops the run with no file left.
func TestStreamedProgressAndCancel(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	if err := testModel(t).Save(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	oldT, oldB := streamThreshold, streamBlockBytes
	streamThreshold, streamBlockBytes = 1, 4096
	defer func() { streamThreshold, streamBlockBytes = oldT, oldB }()
	var seen []string
	out := filepath.Join(dir, "out.safetensors")
	if _, err := quantizeFileRun(in, out, plan.Options{Bits: 8}, Run{Progress: func(p Progress) {
		seen = append(seen, p.Tensor)
	}}); err != nil {
		t.Fatal(err)
	}
	r, err := checkpoint.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var names []string
	for _, e := range r.Entries() {
		names = append(names, e.Name)
	}
	if !slices.Equal(seen, names) {
		t.Fatalf("progress for %v, want each of %v once in order", seen, names)
	}
	p, err := plan.PlanReader(r, plan.Options{Bits: 8})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cut := filepath.Join(dir, "cut.safetensors")
	// conv.weight (1728 bytes, one block) is first; lstm.weight_ih_l0 (32 KiB) takes 8 blocks.
	ca := &cancelAfter{Reader: r, cancel: cancel}
	ca.n.Store(3)
	_, err = Quantize(ctx, ca, CreateFile(cut), p, Run{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled between blocks: %v", err)
	}
	if _, err := os.Stat(cut); !os.IsNotExist(err) {
		t.Fatalf("a cancelled run left %s", cut)
	}
}

// TestCancelAtTheLastTensor: a cancel from the last tensor's progress callback (how C and
// Python cancel) still wins: the run fails with context.Canceled and no output appears, for
// quantize and for dequantize.
func TestCancelAtTheLastTensor(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	if err := testModel(t).Save(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	r, err := checkpoint.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p, err := plan.PlanReader(r, plan.Options{Bits: 8})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	last := func(pr Progress) {
		if pr.TensorsDone == pr.TensorsTotal {
			cancel()
		}
	}
	out := filepath.Join(dir, "q.safetensors")
	if _, err := Quantize(ctx, r, CreateFile(out), p, Run{Progress: last}); !errors.Is(err, context.Canceled) {
		t.Fatalf("quantize cancelled at the last tensor: %v, want context.Canceled", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a cancelled quantize left %s (%v)", out, err)
	}
	// dequantize: a real quantized file, cancelled at its last tensor
	if _, err := Quantize(context.Background(), r, CreateFile(out), p, Run{}); err != nil {
		t.Fatal(err)
	}
	q, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	deq := filepath.Join(dir, "d.safetensors")
	err = Dequantize(ctx2, q, CreateFile(deq), func(pr Progress) {
		if pr.TensorsDone == pr.TensorsTotal {
			cancel2()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("dequantize cancelled at the last tensor: %v, want context.Canceled", err)
	}
	if _, err := os.Stat(deq); !os.IsNotExist(err) {
		t.Errorf("a cancelled dequantize left %s (%v)", deq, err)
	}
}
