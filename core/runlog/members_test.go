package runlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/zeebo/xxh3"
)

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// xxh3Of is a file's XXH3-128 as HashFile gives it, from the one-shot API.
func xxh3Of(b []byte) string {
	s := xxh3.Hash128(b).Bytes()
	return hex.EncodeToString(s[:])
}

// The canonical form is xxHash's: XXH3-128 of nothing, seed 0, as `xxhsum -H2` prints it.
func TestXXH3Canonical(t *testing.T) {
	f := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(f, nil, 0o644)
	if ref, err := HashFile(f); err != nil || ref.XXH3 != "99aa06d3014798d86001c324468d497f" || ref.SHA256 != "" {
		t.Errorf("HashFile(empty) = %+v, %v; want xxh3 99aa06d3014798d86001c324468d497f and no sha256", ref, err)
	}
	ref, err := HashFileSHA256(f)
	if err != nil || ref.XXH3 != "99aa06d3014798d86001c324468d497f" || ref.SHA256 != sumOf(nil) {
		t.Errorf("HashFileSHA256(empty) = %+v, %v", ref, err)
	}
}

// A sharded checkpoint's identity covers its index and every shard, a model folder's every file
// in it: the sha256 of the documented lines naming each file's XXH3 (and, with HashFileSHA256, of
// the lines naming each file's sha256), so a change of any shard (not only of the index)
// changes it; each file is cached on its own, and a rewritten shard is hashed again.
func TestHashFileShardedAndFolder(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("file identities are read on Linux only")
	}
	defer func(w time.Duration) { racyWindow = w }(racyWindow)
	racyWindow = 0
	ctx := context.Background()
	dir := t.TempDir()
	files := map[string]string{
		"model.safetensors.index.json":     `{"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}}`,
		"model-00001-of-00002.safetensors": "shard one",
		"model-00002-of-00002.safetensors": "shard two",
		"config.json":                      `{"model_type": "llama"}`,
	}
	for n, b := range files {
		os.WriteFile(filepath.Join(dir, n), []byte(b), 0o644)
	}
	index := filepath.Join(dir, "model.safetensors.index.json")
	lines := func(names ...string) string {
		var s strings.Builder
		for _, n := range names {
			fmt.Fprintf(&s, "%s\t%s\n", n, xxh3Of([]byte(files[n])))
		}
		return sumOf([]byte(s.String()))
	}
	shaLines := func(names ...string) string {
		var s strings.Builder
		for _, n := range names {
			fmt.Fprintf(&s, "%s\t%s\n", n, sumOf([]byte(files[n])))
		}
		return sumOf([]byte(s.String()))
	}
	shardNames := []string{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json"}
	ref, err := HashFile(index)
	if err != nil || ref.XXH3 != lines(shardNames...) || ref.SHA256 != "" || ref.Path != index {
		t.Fatalf("HashFile(index) = %+v, %v; want the sha256 of the lines of the index and its 2 shards %s", ref, err, lines(shardNames...))
	}
	if ref, err := HashFile(dir); err != nil || ref.XXH3 != lines(append([]string{"config.json"}, shardNames...)...) {
		t.Fatalf("HashFile(folder) = %+v, %v; want the lines of its 4 files", ref, err)
	}
	if both, err := HashFileSHA256(dir); err != nil || both.XXH3 != lines(append([]string{"config.json"}, shardNames...)...) ||
		both.SHA256 != shaLines(append([]string{"config.json"}, shardNames...)...) {
		t.Fatalf("HashFileSHA256(folder) = %+v, %v; want both lines' sha256", both, err)
	}
	if single, _ := HashFile(filepath.Join(dir, "config.json")); single.XXH3 != xxh3Of([]byte(files["config.json"])) {
		t.Errorf("one file's identity %s is not its XXH3", single.XXH3)
	}

	// cached per file: a planted marker in one shard's entry shows in the combined identity
	logPath := filepath.Join(dir, "log", FileName)
	r := sampleRun(t, 8, 1, 1)
	if err := HashInputAsync(ctx, logPath, index).SetInput(r); err != nil || r.Input.XXH3 != ref.XXH3 || len(r.inputCache) != 3 {
		t.Fatalf("HashInputAsync(index) = %+v, %v, %d files to cache; want %s and 3", r.Input, err, len(r.inputCache), ref.XXH3)
	}
	if _, w := RecordOrWarn(ctx, logPath, r); w != "" {
		t.Fatal(w)
	}
	l, err := Open(ctx, logPath)
	if err != nil {
		t.Fatal(err)
	}
	marker := strings.Repeat("e", 32)
	shard2 := filepath.Join(dir, "model-00002-of-00002.safetensors")
	l.db.Exec(`UPDATE file_hashes SET xxh3 = ? WHERE path = ?`, marker, shard2)
	l.Close()
	withMarker := func() string { // the lines with the marker as shard two's XXH3
		var s strings.Builder
		for _, n := range shardNames {
			sum := xxh3Of([]byte(files[n]))
			if n == "model-00002-of-00002.safetensors" {
				sum = marker
			}
			fmt.Fprintf(&s, "%s\t%s\n", n, sum)
		}
		return sumOf([]byte(s.String()))
	}()
	if got, _ := HashInputAsync(ctx, logPath, index).Wait(); got.XXH3 != withMarker {
		t.Errorf("unchanged shards: %s, want the identity from the cached hashes %s", got.XXH3, withMarker)
	}
	// a rewritten shard (same size) is hashed again, and so is the identity
	rewriteSameSize(t, shard2, []byte("shard 2!!"), time.Time{})
	now, _ := HashFile(index)
	if got, _ := HashInputAsync(ctx, logPath, index).Wait(); got.XXH3 != now.XXH3 || got.XXH3 == withMarker || got.XXH3 == ref.XXH3 {
		t.Errorf("rewritten shard: %s, want %s", got.XXH3, now.XXH3)
	}

	// an index naming a shard outside its folder, or a missing shard, is an error
	bad := filepath.Join(dir, "bad.safetensors.index.json")
	os.WriteFile(bad, []byte(`{"weight_map": {"a": "../x.safetensors"}}`), 0o644)
	if _, err := HashFile(bad); err == nil || !strings.Contains(err.Error(), "leaves the index's folder") {
		t.Errorf("HashFile(index naming ../) = %v", err)
	}
	os.WriteFile(bad, []byte(`{"weight_map": {"a": "gone.safetensors"}}`), 0o644)
	if _, err := HashInputAsync(ctx, logPath, bad).Wait(); err == nil || !strings.Contains(err.Error(), "gone.safetensors") {
		t.Errorf("HashInputAsync(index naming a missing shard) = %v", err)
	}
}
