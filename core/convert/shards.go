package convert

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/runlog"
)

// Parallel shards. The conversion of a sharded model folder can be split by output shard, so
// that workers sharing a filesystem each write some of them (Python's quantize_file(...,
// executor=...)); the output is byte-identical to Write's:
//
//	shards, _ := c.BeginShards(out)          // once: the output folder, the shard file names
//	rep, _ := c.WriteShard(ctx, out, k)     // once per shard, anywhere (each opens its own Conversion)
//	res, _ := c.FinishShards(ctx, out, reps) // once, after all: index, other files, check, run log
//
// or AbortShards(out) after a failure. Every shard carries the whole plan's metadata, as Write's
// shards do, and each worker plans the same input under the same options, so each makes the
// same decisions; which shard a tensor goes to is decided here, never by the caller.

// ErrNotSharded is returned by WriteShard and FinishShards for an input that is not a sharded
// model folder (BeginShards returns no shards for one).
var ErrNotSharded = errors.New("the input is not a sharded model folder")

// BeginShards prepares the output folder (made if missing; an existing one must be empty) and
// lists the output shard files, in order. For an input that is not a sharded model folder it
// does nothing and returns none: convert it with Write.
func (c *Conversion) BeginShards(out string) ([]string, error) {
	order, err := c.Shards()
	if err != nil || order == nil {
		return nil, err
	}
	if SamePath(c.folder, out) {
		return nil, fmt.Errorf("%w folder %s is the input folder; choose another output (monoquant never overwrites its input)", ErrOutput, out)
	}
	if _, err := prepareFolder(out); err != nil {
		return nil, err
	}
	return order, nil
}

// Shards lists the output shard files of a sharded model folder's conversion, in order (nil
// for any other input), touching nothing.
func (c *Conversion) Shards() ([]string, error) {
	l, err := c.shardLayout()
	if err != nil || l == nil {
		return nil, err
	}
	_, order, err := l.files(model.OutputEntries(c.plan))
	return order, err
}

// shardFiles is the output layout of a sharded conversion: the output entries, the shard file
// of each and the shard files in order (ErrNotSharded for any other input).
func (c *Conversion) shardFiles() (l *shardLayout, entries []checkpoint.Entry, files, order []string, err error) {
	if l, err = c.shardLayout(); err != nil {
		return nil, nil, nil, nil, err
	}
	if l == nil {
		return nil, nil, nil, nil, ErrNotSharded
	}
	entries = model.OutputEntries(c.plan)
	files, order, err = l.files(entries)
	return l, entries, files, order, err
}

// WriteShard quantizes the tensors of output shard k (of BeginShards' list) into its file in
// out, atomically, and returns their report.
func (c *Conversion) WriteShard(ctx context.Context, out string, k int) (*model.Report, error) {
	l, entries, files, order, err := c.shardFiles()
	if err != nil {
		return nil, err
	}
	if k < 0 || k >= len(order) {
		return nil, fmt.Errorf("%w: shard %d: the output has %d shards", plan.ErrOption, k, len(order))
	}
	name := order[k]
	only := map[string]bool{}
	for i, e := range entries {
		if files[i] == name {
			only[l.owner(e.Name)] = true
		}
	}
	create := func(all []checkpoint.Entry, md map[string]string) (checkpoint.Writer, error) {
		var mine []checkpoint.Entry
		for i, e := range all {
			if files[i] == name {
				mine = append(mine, e)
			}
		}
		return safetensors.Create(filepath.Join(out, name), mine, shardMetadata(md))
	}
	return model.Quantize(ctx, c.r, create, c.plan, model.Run{Progress: c.run.Progress, Calibration: c.cal, Only: only})
}

// FinishShards completes a conversion whose shards were all written by WriteShard: it writes the
// index, copies the input folder's other files, checks the output when Run.Validate is set and
// records the run; reps are the shards' reports (merged into the result's).
func (c *Conversion) FinishShards(ctx context.Context, out string, reps []*model.Report) (res *Result, err error) {
	l, entries, files, order, err := c.shardFiles()
	if err != nil {
		return nil, err
	}
	for _, f := range order {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			return nil, fmt.Errorf("%w: shard %s was not written: %v", ErrOutput, f, err)
		}
	}
	md, err := model.OutputMetadata(c.r, c.plan, model.Run{Calibration: c.cal})
	if err != nil {
		return nil, err
	}
	if err := safetensors.WriteIndex(out, l.base, entries, files, shardMetadata(md)); err != nil {
		return nil, err
	}
	index := filepath.Join(out, l.base+safetensors.IndexSuffix)
	rep := model.MergeReports(reps)
	rep.FileBytesBefore, rep.FileBytesAfter = FileBytes(c.r, c.in), fileSize(index)
	if ow, err := checkpoint.Open(index); err == nil {
		rep.FileBytesAfter = FileBytes(ow, index)
		ow.Close()
	}
	res = &Result{Plan: c.plan, Report: rep}
	if c.rec != nil {
		c.rec.outHash = runlog.HashFileAsync(index)
	}
	if c.run.Validate {
		v, err := Validate(ctx, c.r, index, c.plan, rep)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return nil, fmt.Errorf("%w: %w", ErrValidation, err)
		}
		res.Validation = v
	}
	skip := map[string]bool{filepath.Base(c.in): true, filepath.Base(index): true}
	if sh, ok := c.r.(interface{ Shards() []string }); ok {
		for _, s := range sh.Shards() {
			skip[filepath.Base(s)] = true
		}
	}
	for _, f := range order {
		skip[f] = true
	}
	if err := copyOthers(ctx, c.folder, out, skip); err != nil {
		return nil, err
	}
	if c.rec != nil {
		c.rec.finish(ctx, c, res)
	}
	return res, nil
}

// AbortShards removes what a parallel conversion wrote into out (its shards, index and copied
// files: out was empty when BeginShards ran) and out itself when it is then empty.
func AbortShards(out string) {
	ents, err := os.ReadDir(out)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.Type().IsRegular() {
			os.Remove(filepath.Join(out, e.Name()))
		}
	}
	os.Remove(out) // only succeeds when empty
}
