package safetensors

import (
	"bytes"

	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/tensor"
	"github.com/zeebo/xxh3"
)

// testTensors returns entries and deterministic data of every dtype, including a scalar and an
// empty tensor.
func testTensors() ([]tensor.Info, [][]byte) {
	infos := []tensor.Info{
		{Name: "enc.weight", DType: tensor.F32, Shape: []int{3, 4}},
		{Name: "enc.bias", DType: tensor.BF16, Shape: []int{3}},
		{Name: "half", DType: tensor.F16, Shape: []int{5}},
		{Name: "dbl", DType: tensor.F64, Shape: []int{2}},
		{Name: "i8", DType: tensor.I8, Shape: []int{7}},
		{Name: "u8", DType: tensor.U8, Shape: []int{1, 3}},
		{Name: "i16", DType: tensor.I16, Shape: []int{2}},
		{Name: "i32", DType: tensor.I32, Shape: []int{2}},
		{Name: "i64", DType: tensor.I64, Shape: []int{2}},
		{Name: "mask", DType: tensor.Bool, Shape: []int{4}},
		{Name: "scalar", DType: tensor.F32, Shape: []int{}},
		{Name: "empty", DType: tensor.F32, Shape: []int{0, 5}},
		{Name: "ünï/cøde \"q\"", DType: tensor.U8, Shape: []int{2}},
	}
	data := make([][]byte, len(infos))
	for i, e := range infos {
		b := make([]byte, tensor.NumElements(e.Shape)*e.DType.Size())
		for j := range b {
			b[j] = byte(i*31 + j*7)
		}
		if e.DType == tensor.Bool {
			for j := range b {
				b[j] &= 1
			}
		}
		data[i] = b
	}
	return infos, data
}

func writeAll(t *testing.T, w interface{ Write(string, []byte) error }, infos []tensor.Info, data [][]byte) {
	t.Helper()
	for i, e := range infos {
		if err := w.Write(e.Name, data[i]); err != nil {
			t.Fatalf("Write(%q): %v", e.Name, err)
		}
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	infos, data := testTensors()
	path := filepath.Join(t.TempDir(), "out.safetensors")
	meta := map[string]string{"format": "pt", "quant": `{"bits":8,"<&>":true}`}
	w, err := Create(path, infos, meta)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	writeAll(t, w, infos, data)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	raw, _ := os.ReadFile(path)
	n := binary.LittleEndian.Uint64(raw)
	if n%8 != 0 || !bytes.HasSuffix(bytes.TrimRight(raw[8:8+n], " "), []byte("}")) {
		t.Errorf("header length %d not 8-aligned or not space-padded: %q", n, raw[8:8+n])
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	for _, e := range f.Entries() {
		names = append(names, e.Name)
	}
	var declared []string
	for _, e := range infos {
		declared = append(declared, e.Name)
	}
	// The empty tensor shares its offset with the next one, so compare as sets plus the order of
	// the non-empty ones.
	if !slices.Equal(sortedCopy(names), sortedCopy(declared)) {
		t.Errorf("entries = %v, want %v", names, declared)
	}
	for i, e := range infos {
		got, err := f.Tensor(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		if got.DType != e.DType || !slices.Equal(got.Shape, e.Shape) || !bytes.Equal(got.Data, data[i]) {
			t.Errorf("%q read back as %v%v %x, want %v%v %x", e.Name, got.DType, got.Shape, got.Data, e.DType, e.Shape, data[i])
		}
	}
	if md := f.Metadata(); !mapsEqual(md, meta) {
		t.Errorf("Metadata() = %v, want %v", md, meta)
	}
}

func sortedCopy(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func TestCreateRejects(t *testing.T) {
	dir := t.TempDir()
	f32 := func(name string, shape ...int) tensor.Info {
		return tensor.Info{Name: name, DType: tensor.F32, Shape: shape}
	}
	cases := []struct {
		name    string
		entries []tensor.Info
		meta    map[string]string
		want    string
	}{
		{"empty name", []tensor.Info{f32("")}, nil, "empty name"},
		{"reserved", []tensor.Info{f32("__metadata__")}, nil, "reserved"},
		{"duplicate", []tensor.Info{f32("a", 1), f32("a", 2)}, nil, `"a" is declared twice`},
		{"bad dtype", []tensor.Info{{Name: "a", DType: tensor.Invalid, Shape: []int{1}}}, nil, "invalid dtype"},
		{"negative dim", []tensor.Info{f32("a", 2, -1)}, nil, "invalid shape [2 -1]"},
		{"overflow", []tensor.Info{f32("a", 1<<40, 1<<40)}, nil, "invalid shape"},
		{"bad utf8 name", []tensor.Info{f32("a\xff")}, nil, "not valid UTF-8"},
		{"bad utf8 meta", nil, map[string]string{"k": "\xff"}, "valid UTF-8"},
	}
	for _, c := range cases {
		w, err := Create(filepath.Join(dir, "x.safetensors"), c.entries, c.meta)
		if err == nil {
			w.Abort()
			t.Errorf("Create(%s) succeeded, want error containing %q", c.name, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("Create(%s) error = %q, want ErrInvalid containing %q", c.name, err, c.want)
		}
	}
	if _, err := Create(filepath.Join(dir, "no", "such", "x.safetensors"), nil, nil); err == nil {
		t.Error("Create in a missing folder succeeded")
	}
	assertNoFiles(t, dir)
}

func assertNoFiles(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		t.Errorf("left behind in %s: %s", dir, e.Name())
	}
}

func TestWriterChecksOrderAndSize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.safetensors")
	infos := []tensor.Info{
		{Name: "a", DType: tensor.F32, Shape: []int{2}},
		{Name: "b", DType: tensor.I8, Shape: []int{3}},
	}
	w, err := Create(path, infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		n    int
		want string // "" means success
	}{
		{"b", 3, `expected tensor "a" (number 1 in declared order), got "b"`},
		{"a", 7, `tensor "a": shape [2] of F32 needs 8 bytes, got 7`},
		{"a", 8, ""},
		{"b", 3, ""},
		{"c", 1, `all 2 declared tensors are written; "c" is one too many`},
	}
	for _, s := range steps {
		err := w.Write(s.name, make([]byte, s.n))
		switch {
		case s.want == "" && err != nil:
			t.Errorf("Write(%q, %d bytes) = %v, want success", s.name, s.n, err)
		case s.want != "" && (err == nil || !strings.Contains(err.Error(), s.want)):
			t.Errorf("Write(%q, %d bytes) = %v, want error containing %q", s.name, s.n, err, s.want)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
	if err := w.Abort(); err != nil {
		t.Errorf("Abort after Commit = %v, want nil", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Abort after Commit removed the file: %v", err)
	}
	if err := w.Write("a", make([]byte, 8)); err == nil {
		t.Error("Write after Commit succeeded")
	}
}

func TestAbortAndIncompleteCommitLeaveOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	old := []byte("old contents")
	os.WriteFile(path, old, 0o644)
	infos := []tensor.Info{{Name: "a", DType: tensor.F32, Shape: []int{2}}, {Name: "b", DType: tensor.F32, Shape: []int{1}}}

	w, _ := Create(path, infos, nil)
	w.Write("a", make([]byte, 8))
	if err := w.Abort(); err != nil {
		t.Fatal(err)
	}
	w2, _ := Create(path, infos, nil)
	w2.Write("a", make([]byte, 8))
	if err := w2.Commit(); err == nil || !strings.Contains(err.Error(), `only 1 of 2 tensors written; next missing is "b"`) {
		t.Errorf("Commit with a missing tensor = %v", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, old) {
		t.Errorf("target = %q after Abort / failed Commit, want the old %q", got, old)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("folder holds %d entries, want only the old file", len(ents))
	}
}

func TestShardedRoundTrip(t *testing.T) {
	infos, data := testTensors()
	dir := t.TempDir()
	meta := map[string]string{"format": "pt"}
	// 24 bytes per shard: enc.weight (48 bytes) is alone, then small tensors are packed.
	sw, err := CreateSharded(dir, "model", infos, meta, 24)
	if err != nil {
		t.Fatal(err)
	}
	defer sw.Abort()
	writeAll(t, sw, infos, data)
	if err := sw.Commit(); err != nil {
		t.Fatal(err)
	}
	names := sw.ShardNames()
	if len(names) < 3 || names[0] != fmt.Sprintf("model-00001-of-%05d.safetensors", len(names)) {
		t.Errorf("shard names = %v", names)
	}
	var idx struct {
		Metadata  map[string]any    `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	var total int
	for _, d := range data {
		total += len(d)
	}
	if got, _ := idx.Metadata["total_size"].(float64); int(got) != total {
		t.Errorf("total_size = %v, want %d", idx.Metadata["total_size"], total)
	}
	if idx.WeightMap["enc.weight"] != names[0] || idx.WeightMap["enc.bias"] == names[0] {
		t.Errorf("weight_map = %v: enc.weight (48 bytes > 24) should fill shard 1 alone", idx.WeightMap)
	}

	// Each shard is a safetensors file of its own (the set is read by checkpoint.Open).
	for i, e := range infos {
		f, err := Open(filepath.Join(dir, idx.WeightMap[e.Name]))
		if err != nil {
			t.Fatal(err)
		}
		got, err := f.Tensor(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Data, data[i]) || !slices.Equal(got.Shape, e.Shape) {
			t.Errorf("sharded %q = %v %x, want %v %x", e.Name, got.Shape, got.Data, e.Shape, data[i])
		}
		if md := f.Metadata(); md["format"] != "pt" {
			t.Errorf("shard %s metadata = %v", idx.WeightMap[e.Name], md)
		}
		f.Close()
	}
}

func TestShardedAbortLeavesNothing(t *testing.T) {
	infos, data := testTensors()
	dir := t.TempDir()
	sw, err := CreateSharded(dir, "model", infos, nil, 16)
	if err != nil {
		t.Fatal(err)
	}
	sw.Write(infos[0].Name, data[0])
	sw.Abort()
	assertNoFiles(t, dir)
	for _, c := range []struct {
		base string
		max  int64
		meta map[string]string
	}{{"../x", 10, nil}, {"a/b", 10, nil}, {"", 10, nil}, {"m", 0, nil}, {"m", 10, map[string]string{"total_size": "1"}}} {
		if _, err := CreateSharded(dir, c.base, infos, c.meta, c.max); err == nil {
			t.Errorf("CreateSharded(%q, max %d, meta %v) succeeded", c.base, c.max, c.meta)
		}
	}
	assertNoFiles(t, dir)
}

// writeShard writes a small shard holding the named F32[1] tensors.

func writeShard(t *testing.T, path string, names ...string) {
	t.Helper()
	var infos []tensor.Info
	for _, n := range names {
		infos = append(infos, tensor.Info{Name: n, DType: tensor.F32, Shape: []int{1}})
	}
	w, err := Create(path, infos, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		w.Write(n, make([]byte, 4))
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
}

// HashXXH3 gives the XXH3-128 of the committed file as written, header included, with whole
// tensors and parts alike; asked too late, or before Commit, it gives nothing.
func TestWriterXXH3WhileWriting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.safetensors")
	entries := []tensor.Info{{Name: "a", DType: tensor.F32, Shape: []int{2, 3}}, {Name: "b", DType: tensor.U8, Shape: []int{5}}}
	w, err := Create(path, entries, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if !w.HashXXH3() || !w.HashXXH3() {
		t.Fatal("HashXXH3 before the first tensor = false")
	}
	if err := w.Write("a", make([]byte, 24)); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePart("b", []byte{1, 2}); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePart("b", []byte{3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	if sum, n := w.XXH3(); sum != "" || n != 0 {
		t.Errorf("XXH3 before Commit = %q, %d", sum, n)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	want := xxh3.Hash128(b).Bytes() // one shot over the file's bytes, against the streamed hash
	if sum, n := w.XXH3(); sum != hex.EncodeToString(want[:]) || n != int64(len(b)) {
		t.Errorf("XXH3 = %s, %d; want the file's %x, %d", sum, n, want, len(b))
	}

	late, err := Create(filepath.Join(t.TempDir(), "late.safetensors"), entries[:1], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Abort()
	late.Write("a", make([]byte, 24))
	if late.HashXXH3() {
		t.Error("HashXXH3 after a tensor = true; the header and tensor are no longer hashable")
	}
	late.Commit()
	if sum, _ := late.XXH3(); sum != "" {
		t.Errorf("XXH3 not asked for = %q", sum)
	}
}
