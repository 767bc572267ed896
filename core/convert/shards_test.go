package convert

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/recipe"
)

// openConversion opens in and plans it, as File does.
func openConversion(t *testing.T, in string, opts plan.Options, run Run) *Conversion {
	t.Helper()
	r, err := checkpoint.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	c, err := New(r, in, opts, run)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The shards written one by one — each by its own Conversion, in reverse order, as workers
// would — then finished, are the same files, byte for byte, as one Write.
func TestParallelShardsAreByteIdentical(t *testing.T) {
	in := gpt2Folder(t, "gpt2")
	opts := plan.Options{Bits: 4, Spec: quantGroup(32)}
	seq := filepath.Join(t.TempDir(), "seq")
	want, err := File(context.Background(), in, seq, opts, Run{})
	if err != nil {
		t.Fatal(err)
	}
	par := filepath.Join(t.TempDir(), "par")
	shards, err := openConversion(t, in, opts, Run{}).BeginShards(par)
	if err != nil {
		t.Fatal(err)
	}
	if len(shards) < 2 {
		t.Fatalf("BeginShards listed %v: the input has several shards", shards)
	}
	reps := make([]*model.Report, len(shards))
	for k := len(shards) - 1; k >= 0; k-- {
		if reps[k], err = openConversion(t, in, opts, Run{}).WriteShard(context.Background(), par, k); err != nil {
			t.Fatalf("shard %d: %v", k, err)
		}
	}
	res, err := openConversion(t, in, opts, Run{Validate: true}).FinishShards(context.Background(), par, reps)
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(seq)
	got, _ := os.ReadDir(par)
	if len(ents) != len(got) {
		t.Fatalf("parallel output has %d files, sequential %d", len(got), len(ents))
	}
	for _, e := range ents {
		a, _ := os.ReadFile(filepath.Join(seq, e.Name()))
		b, err := os.ReadFile(filepath.Join(par, e.Name()))
		if err != nil || string(a) != string(b) {
			t.Errorf("%s differs from the sequential run's (%v)", e.Name(), err)
		}
	}
	if res.Report.TotalBytesAfter != want.Report.TotalBytesAfter || res.Report.TensorsQuantized != want.Report.TensorsQuantized ||
		res.Report.SQNR != want.Report.SQNR || len(res.Report.Warnings) != len(want.Report.Warnings) {
		t.Errorf("merged report %+v, sequential %+v", res.Report, want.Report)
	}
	if res.Validation == nil {
		t.Error("FinishShards with Validate: no validation")
	}
	// Errors: a shard out of range, a finish with a shard missing, a non-sharded input.
	if _, err := openConversion(t, in, opts, Run{}).WriteShard(context.Background(), par, len(shards)); err == nil {
		t.Error("WriteShard past the last shard: no error")
	}
	miss := filepath.Join(t.TempDir(), "miss")
	c := openConversion(t, in, opts, Run{})
	if _, err := c.BeginShards(miss); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteShard(context.Background(), miss, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.FinishShards(context.Background(), miss, nil); err == nil || !errors.Is(err, ErrOutput) {
		t.Errorf("FinishShards with shards missing: %v", err)
	}
	AbortShards(miss)
	if _, err := os.Stat(miss); !os.IsNotExist(err) {
		t.Errorf("AbortShards left %s: %v", miss, err)
	}
	if _, err := c.BeginShards(par); err == nil {
		t.Error("BeginShards into a non-empty folder: no error")
	}
	// An input that is not a model folder (the index file itself: one output file) has no shards.
	idx := openConversion(t, filepath.Join(in, "model.safetensors.index.json"), opts, Run{})
	if got, err := idx.BeginShards(filepath.Join(t.TempDir(), "x")); err != nil || got != nil {
		t.Errorf("BeginShards of an index file = %v, %v; want none", got, err)
	}
	if _, err := idx.WriteShard(context.Background(), t.TempDir(), 0); !errors.Is(err, ErrNotSharded) {
		t.Errorf("WriteShard of an index file: %v, want ErrNotSharded", err)
	}
}

// A pruned layer passes the output check: its SQNR is measured against the input as it was.
func TestPrunedFileValidates(t *testing.T) {
	in := gpt2Folder(t, "gpt2")
	rec, err := recipe.Parse([]byte(`[{"match": "transformer.h.0.mlp.c_fc", "bits": 8, "prune": "magnitude", "sparsity": 0.5}, {"match": "*", "bits": 8}]`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := File(context.Background(), in, filepath.Join(t.TempDir(), "q"), plan.Options{Recipe: rec}, Run{Validate: true}); err != nil {
		t.Fatalf("a pruned conversion fails its check: %v", err)
	}
	units, _ := recipe.Parse([]byte(`[{"match": "transformer.h.0.mlp.c_fc", "bits": 8, "prune_units": 0.5, "into": "transformer.h.0.mlp.c_proj"}, {"match": "*", "bits": 8}]`))
	if _, err := File(context.Background(), in, filepath.Join(t.TempDir(), "u"), plan.Options{Recipe: units}, Run{}); err == nil || !errors.Is(err, plan.ErrOption) {
		t.Errorf("prune_units in the file pipeline: %v, want an option error", err)
	}
}
