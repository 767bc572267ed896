package runlog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/monoquant/monoquant/core/runlog"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "runlog-example-")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "runs.sqlite")

	for i, bits := range []int{8, 4} {
		rec := runlog.Begin("go")
		rec.Settings, _ = runlog.EncodeSettings(runlog.Settings{})
		rec.Output = runlog.FileRef{Path: fmt.Sprintf("model.int%d.safetensors", bits), Bytes: int64(1000 / (i + 1))}
		rec.Results["sqnr_db"] = float64(40 - 20*i)
		if _, warning := runlog.RecordOrWarn(ctx, path, rec); warning != "" {
			fmt.Println(warning)
		}
	}
	l, _ := runlog.Open(ctx, path)
	defer l.Close()
	l.AddMetric(ctx, 2, "accuracy", 0.9)
	runs, _ := l.List(ctx, map[string]string{"metrics.accuracy": "0.9"})
	fmt.Println("with accuracy 0.9:", runs[0].ID, runs[0].Output.Path)
	all, _ := l.List(ctx, nil)
	fmt.Println("Pareto front:", runlog.Compare(all).Pareto)
	// Output:
	// with accuracy 0.9: 2 model.int4.safetensors
	// Pareto front: [true true]
}
