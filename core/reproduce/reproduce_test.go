package reproduce

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/runlog"
)

// record quantizes a copy of the bundled example with opts and returns the log and the run.
func record(t *testing.T, opts plan.Options) (*runlog.Log, *runlog.Run, string) {
	t.Helper()
	t.Setenv("MONOQUANT_LOG", "1")
	dir := t.TempDir()
	b, err := os.ReadFile("../../examples/digits_cnn.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(dir, "m.safetensors")
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "runs.sqlite")
	ctx := context.Background()
	res, err := convert.File(ctx, in, filepath.Join(dir, "q.safetensors"), opts, convert.Run{Log: &convert.Log{Entry: "go", Path: logPath, OutputFormat: "safetensors"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.RunID != 1 || res.LogWarning != "" {
		t.Fatalf("run id %d, warning %q; want 1 and none", res.RunID, res.LogWarning)
	}
	l, err := runlog.Open(ctx, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	r, err := l.Get(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	return l, r, in
}

func TestIdenticalAndRecorded(t *testing.T) {
	yes := true
	for _, opts := range []plan.Options{{}, {Bits: 4, Spec: quant.Spec{GroupSize: 32}, GroupFallback: &yes}} {
		l, r, _ := record(t, opts)
		keep := filepath.Join(t.TempDir(), "again.safetensors")
		res, err := Run(context.Background(), r, Options{Output: keep, Log: &convert.Log{Entry: "go", Path: l.Path()}})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Identical || res.OutputDigest != "xxh3 "+r.Output.XXH3 || res.RecordedDigest != res.OutputDigest || len(res.Differences) != 0 {
			t.Errorf("Run(%+v) = identical %v, digest %s (recorded %s), differences %q; want identical", opts, res.Identical, res.OutputDigest, r.Output.XXH3, res.Differences)
		}
		if h, _ := runlog.HashFile(keep); h.XXH3 == "" || h.XXH3 != r.Output.XXH3 || res.Output != keep {
			t.Errorf("kept output %s xxh3 %s, want %s", res.Output, h.XXH3, r.Output.XXH3)
		}
		again, err := l.Get(context.Background(), res.NewRunID)
		if err != nil || res.NewRunID != 2 || again.Output.XXH3 != r.Output.XXH3 || string(again.Settings) != string(r.Settings) {
			t.Errorf("the reproduction as run %d: %v; want run 2 with the same settings and output hash", res.NewRunID, err)
		}
	}
}

func TestDifferentSaysWhat(t *testing.T) {
	_, r, _ := record(t, plan.Options{})
	r.Output.XXH3 = strings.Repeat("0", 32)
	r.Layers[0].SQNR += 1
	r.Versions["monoquant"] = "0.0.1"
	res, err := Run(context.Background(), r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := strings.Join(res.Differences, "\n")
	if res.Identical || res.NewRunID != 0 || res.Output != "" || !strings.Contains(d, "monoquant version: recorded 0.0.1") ||
		!strings.Contains(d, "tensor "+r.Layers[0].Name+": SQNR") {
		t.Errorf("Run of a tampered record: identical %v, new run %d, output %q, differences:\n%s", res.Identical, res.NewRunID, res.Output, d)
	}
}

// A run recorded before the log knew XXH3 has only sha256s: its input is checked and its output
// compared by sha256, and a tampered one is found different.
func TestRunRecordedBySHA256(t *testing.T) {
	_, r, _ := record(t, plan.Options{})
	in, err := runlog.HashFileSHA256(r.Input.Path)
	if err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(t.TempDir(), "first.safetensors")
	first, err := Run(context.Background(), r, Options{Output: keep})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := runlog.HashFileSHA256(first.Output)
	old := *r
	old.Input = runlog.FileRef{Path: r.Input.Path, SHA256: in.SHA256, Bytes: in.Bytes}
	old.Output = runlog.FileRef{Path: r.Output.Path, SHA256: out.SHA256, Bytes: out.Bytes}
	res, err := Run(context.Background(), &old, Options{})
	if err != nil || !res.Identical || res.OutputDigest != "sha256 "+out.SHA256 || res.RecordedDigest != res.OutputDigest {
		t.Fatalf("Run(sha256 record) = %+v, %v; want identical by sha256 %s", res, err, out.SHA256)
	}
	old.Output.SHA256 = strings.Repeat("0", 64)
	if res, err := Run(context.Background(), &old, Options{}); err != nil || res.Identical {
		t.Errorf("Run(tampered sha256 record) = %+v, %v; want different", res, err)
	}
	old.Input.SHA256 = strings.Repeat("1", 64)
	if _, err := Run(context.Background(), &old, Options{}); !errors.Is(err, ErrInputChanged) || !strings.Contains(err.Error(), "sha256 "+in.SHA256) {
		t.Errorf("Run(record with another input sha256) = %v; want ErrInputChanged giving the file's sha256", err)
	}
}

func TestRefusesWhatCannotBeReproduced(t *testing.T) {
	_, r, in := record(t, plan.Options{})
	inMemory := *r
	inMemory.Input.Path, inMemory.EntryPoint = "", "python.quantize"
	if _, err := Run(context.Background(), &inMemory, Options{}); !errors.Is(err, ErrNotReproducible) {
		t.Errorf("in-memory run: %v, want ErrNotReproducible", err)
	}
	bad := *r
	bad.Settings = []byte(`{"options": {}, "from_the_future": 1}`)
	if _, err := Run(context.Background(), &bad, Options{}); !errors.Is(err, runlog.ErrSettings) {
		t.Errorf("unknown settings: %v, want ErrSettings", err)
	}
	b, _ := os.ReadFile(in)
	os.WriteFile(in, append(b, 0), 0o644)
	if _, err := Run(context.Background(), r, Options{}); !errors.Is(err, ErrInputChanged) || !strings.Contains(err.Error(), "nothing reproduced") {
		t.Errorf("changed input: %v, want ErrInputChanged", err)
	}
}

// A model folder of shards (index, shards, config.json) is recorded as the folder with the
// identity of all its files; it reproduces into a folder with the recorded output hash (the
// output index and its shards), and a changed shard, not only a changed index, stops it.
func TestShardedFolder(t *testing.T) {
	t.Setenv("MONOQUANT_LOG", "1")
	src := "../../testdata/checkpoints/safetensors/sharded"
	dir := t.TempDir()
	in := filepath.Join(dir, "model")
	os.Mkdir(in, 0o755)
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, _ := os.ReadFile(filepath.Join(src, e.Name()))
		os.WriteFile(filepath.Join(in, e.Name()), b, 0o644)
	}
	os.WriteFile(filepath.Join(in, "config.json"), []byte(`{"model_type": "llama"}`), 0o644)
	logPath := filepath.Join(dir, "runs.sqlite")
	ctx := context.Background()
	res, err := convert.File(ctx, in, filepath.Join(dir, "q"), plan.Options{}, convert.Run{Log: &convert.Log{Entry: "go", Path: logPath, OutputFormat: "safetensors"}})
	if err != nil || res.RunID != 1 {
		t.Fatalf("convert.File(folder) = run %v, %v, warning %q", res.RunID, err, res.LogWarning)
	}
	l, err := runlog.Open(ctx, logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, err := l.Get(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := runlog.HashFile(in)
	outIdx := filepath.Join(dir, "q", "model.safetensors.index.json")
	out, _ := runlog.HashFile(outIdx)
	if r.Input.Path != in || r.Input.SHA256 != whole.SHA256 || r.Output.Path != outIdx || r.Output.SHA256 != out.SHA256 {
		t.Fatalf("recorded input %+v output %+v; want the folder %s and the output index %s with their shards' identities", r.Input, r.Output, whole.SHA256, out.SHA256)
	}
	got, err := Run(ctx, r, Options{})
	if err != nil || !got.Identical || got.OutputDigest != "xxh3 "+r.Output.XXH3 {
		t.Fatalf("Run(folder run) = %+v, %v; want identical", got, err)
	}
	shard := filepath.Join(in, "model-00002-of-00003.safetensors")
	b, _ := os.ReadFile(shard)
	b[len(b)-1] ^= 1
	os.WriteFile(shard, b, 0o644)
	if _, err := Run(ctx, r, Options{}); !errors.Is(err, ErrInputChanged) {
		t.Errorf("a changed shard: %v, want ErrInputChanged", err)
	}
}
