package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/checkpointtest"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/tensor"
)

// shardedFolder writes a Hugging Face-style folder: two safetensors shards behind an index,
// config.json and a tokenizer file.
func shardedFolder(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "my-model")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var infos []tensor.Info
	data := map[string][]byte{}
	add := func(name string, shape ...int) {
		n := tensor.NumElements(shape)
		v := make([]float32, n)
		for i := range v {
			v[i] = float32((i*37)%101-50) / 50
		}
		infos = append(infos, tensor.Info{Name: name, DType: tensor.F32, Shape: shape})
		data[name] = tensor.FromFloat32(v, shape...).Data
	}
	for _, l := range []string{"0", "1", "2"} {
		add("layers."+l+".fc.weight", 64, 64)
		add("layers."+l+".fc.bias", 64)
	}
	checkpointtest.WriteShardedFolder(t, dir, infos, data, `{"model_type": "bert"}`)
	return dir
}

// TestDequantizeFolder: `monoquant dequantize FOLDER` writes a folder laid out as the float
// folder the quantized one came from (its default name replaces the format tag), and refuses a
// non-empty output folder and a .pt format with the exit codes of files.
func TestDequantizeFolder(t *testing.T) {
	in := shardedFolder(t)
	q := in + ".int8"
	if r := runCLI(t, "quantize", "-m", in, "--quiet"); r.code != 0 {
		t.Fatalf("quantize: exit %d: %s", r.code, r.stderr)
	}
	r := runCLI(t, "dequantize", q, "--json", "--quiet")
	if r.code != 0 {
		t.Fatalf("dequantize: exit %d: %s", r.code, r.stderr)
	}
	var dr dequantizeResult
	if err := json.Unmarshal([]byte(r.stdout), &dr); err != nil {
		t.Fatalf("dequantize --json: %v\n%s", err, r.stdout)
	}
	out := in + ".dequantized"
	if dr.Output != out || dr.TensorsRestored != 3 || dr.TensorsOut != 6 || dr.FileBytesAfter == 0 {
		t.Errorf("dequantize --json = %+v; want output %s, 3 dequantized, 6 written, a size", dr, out)
	}
	inMap, outMap := checkpointtest.IndexWeightMap(t, in), checkpointtest.IndexWeightMap(t, out)
	if len(inMap) != len(outMap) {
		t.Errorf("output index lists %d tensors, the float folder's %d", len(outMap), len(inMap))
	}
	for name, shard := range inMap {
		if outMap[name] != shard {
			t.Errorf("%s is in %q, the float folder has it in %q", name, outMap[name], shard)
		}
	}
	for _, f := range []string{"config.json", "tokenizer.json"} {
		a, _ := os.ReadFile(filepath.Join(in, f))
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s not copied as it is (%v)", f, err)
		}
	}
	rd, err := checkpoint.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if model.IsQuantized(rd.Metadata()) {
		t.Error("the dequantized folder still carries the monoquant config")
	}
	for _, e := range rd.Entries() {
		if e.DType != tensor.F32 {
			t.Errorf("%s is %v, want F32", e.Name, e.DType)
		}
	}

	if r := runCLI(t, "dequantize", q, "--quiet"); r.code != exitOutput || !strings.Contains(r.stderr, "not empty") {
		t.Errorf("dequantize into the non-empty default folder: exit %d, %q; want %d and 'not empty'", r.code, r.stderr, exitOutput)
	}
	if r := runCLI(t, "dequantize", q, "--out", filepath.Join(t.TempDir(), "x"), "--format", "pt"); r.code != exitUsage {
		t.Errorf("dequantize FOLDER --format pt: exit %d (%s), want %d", r.code, r.stderr, exitUsage)
	}
	if r := runCLI(t, "dequantize", in, "--out", filepath.Join(t.TempDir(), "x")); r.code != exitFormat {
		t.Errorf("dequantize of a float folder: exit %d (%s), want %d", r.code, r.stderr, exitFormat)
	}
}
