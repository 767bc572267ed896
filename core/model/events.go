package model

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/plan"
)

// StreamEvents are what QuantizeStream tells its caller as the quantization goes, each on the
// quantizing goroutine, so a caller can use every layer as soon as its outputs are written and
// free each input tensor as soon as the engine is done with it (Python's quantize(inplace=True)
// swaps in each quantized layer and drops its float weight as it goes: docs/STREAMING.md).
type StreamEvents struct {
	// Written is told each input tensor (but tied aliases, which store nothing) once every
	// output it has is complete in its buffer, in the plan's order.
	Written func(name string) error
	// Released is told an input tensor once it has had as many Release calls as
	// CountReleases was given readers: no reader of the model reads it again, and the caller
	// may free its memory. Tensors still held when the call returns are not told; the caller
	// frees them once the other readers are done (the run log's Finish).
	Released func(name string) error
}

// CountReleases makes the model count the Release calls of each of its tensors: once a tensor
// has had readers of them it is given back, and QuantizeStream tells Released. readers is the
// quantization itself plus every reader the caller runs alongside it that releases each tensor
// after its last read (the run log's fingerprint, runlog.StartModel). Call it before starting
// those readers. A model whose tensors were given back must not be quantized or read again.
func (m *Model) CountReleases(readers int) {
	rc := &releaseCount{readers: int32(max(readers, 1)), counts: make([]atomic.Int32, len(m.ck.entries)), tick: make(chan struct{}, 1)}
	m.ck.releases.Store(rc)
}

// readerPatience is the least QuantizeStream waits for another reader that releases nothing
// before it takes that reader to have stopped and waits no more (8 times the tensor's own
// quantization time when that is longer).
var readerPatience = 50 * time.Millisecond

// QuantizeStream is QuantizeInto telling ev as it goes. When other readers release the model's
// tensors too (CountReleases with more than one reader), it waits after each tensor until
// they have released it, so that Released comes for every tensor before the next is quantized. A folding recipe reads a layer's
// tensors through the folded view, which releases nothing early: no tensor is told Released.
func (m *Model) QuantizeStream(ctx context.Context, opts plan.Options, progress ProgressFunc, outputs OutputBuffers, ev StreamEvents) (*Result, error) {
	if outputs == nil {
		return nil, fmt.Errorf("%w: QuantizeStream needs output buffers", plan.ErrOption)
	}
	r, err := plan.FoldReader(m.ck, opts)
	if err != nil {
		return nil, err
	}
	folds := r != checkpoint.Reader(m.ck)
	last := time.Now() // when the quantization last went on after a tensor
	written := func(name string) error {
		if ev.Written != nil {
			if err := ev.Written(name); err != nil {
				return err
			}
		}
		rc := m.ck.releases.Load()
		if rc == nil || ev.Released == nil || folds {
			return nil
		}
		// The other readers (the run log's fingerprint) may lag: wait for this tensor, so the
		// caller frees each input before the next is quantized and the outputs never run more
		// than a tensor ahead of the inputs freed. A reader that releases nothing for several
		// times what this tensor took to quantize (at least readerPatience) is taken to have
		// stopped, or to read nothing (a fingerprint from a cache): no later tensor waits.
		if i, ok := m.ck.index[name]; ok && rc.readers > 1 {
			rc.waitBack(ctx, i, max(readerPatience, 8*time.Since(last)))
		}
		last = time.Now()
		for _, n := range rc.take() {
			if err := ev.Released(n); err != nil {
				return err
			}
		}
		return nil
	}
	return m.quantizeRun(ctx, opts, progress, outputs, written)
}
