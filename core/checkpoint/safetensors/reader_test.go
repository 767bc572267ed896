package safetensors

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint/mapped"
	"github.com/monoquant/monoquant/core/tensor"
)

// fixtures made by testdata/gen_safetensors_fixtures.py with the official library.
var fixtureDir = filepath.Join("..", "..", "..", "testdata", "checkpoints", "safetensors")

type expectedTensor struct {
	DType   string   `json:"dtype"`
	Shape   []int    `json:"shape"`
	Hex     string   `json:"hex"`
	F32Bits []uint32 `json:"f32_bits"`
}

type expectedFile struct {
	Metadata map[string]string         `json:"metadata"`
	Tensors  map[string]expectedTensor `json:"tensors"`
}

func loadExpected(t *testing.T) map[string]expectedFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(fixtureDir, "expected.json"))
	if err != nil {
		t.Fatalf("fixtures missing (run .venv/bin/python testdata/gen_safetensors_fixtures.py): %v", err)
	}
	var out map[string]expectedFile
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

type reader interface {
	Entries() []tensor.Info
	Tensor(string) (*tensor.Tensor, error)
	Release(string)
	Metadata() map[string]string
	Close() error
}

// checkAgainstExpected compares every tensor of r with what torch said when it wrote the file.
func checkAgainstExpected(t *testing.T, file string, r reader, want expectedFile) {
	t.Helper()
	entries := r.Entries()
	if len(entries) != len(want.Tensors) {
		t.Errorf("%s: %d entries, want %d", file, len(entries), len(want.Tensors))
	}
	for _, e := range entries {
		w, ok := want.Tensors[e.Name]
		if !ok {
			t.Errorf("%s: unexpected tensor %q", file, e.Name)
			continue
		}
		got, err := r.Tensor(e.Name)
		if err != nil {
			t.Errorf("%s: Tensor(%q): %v", file, e.Name, err)
			continue
		}
		if got.DType.String() != w.DType || !slices.Equal(got.Shape, w.Shape) || !slices.Equal(e.Shape, w.Shape) {
			t.Errorf("%s: %q is %v%v (entry %v), want %s%v", file, e.Name, got.DType, got.Shape, e.Shape, w.DType, w.Shape)
		}
		if h := hex.EncodeToString(got.Data); h != w.Hex {
			t.Errorf("%s: %q bytes = %s, want %s", file, e.Name, h, w.Hex)
		}
		if err := got.Validate(); err != nil {
			t.Errorf("%s: %q: Validate: %v", file, e.Name, err)
		}
		if got.DType.IsFloat() {
			f, err := got.Float32s()
			if err != nil {
				t.Fatalf("%s: %q: Float32s: %v", file, e.Name, err)
			}
			for i, v := range f {
				if math.Float32bits(v) != w.F32Bits[i] {
					t.Errorf("%s: %q[%d] = %g, torch .float() gives %g", file, e.Name, i, v, math.Float32frombits(w.F32Bits[i]))
				}
			}
		}
		r.Release(e.Name)
		// Released pages come back from the file on the next touch.
		if again, _ := r.Tensor(e.Name); hex.EncodeToString(again.Data) != w.Hex {
			t.Errorf("%s: %q changed after Release", file, e.Name)
		}
	}
	if md := r.Metadata(); !mapsEqual(md, want.Metadata) {
		t.Errorf("%s: Metadata() = %v, want %v", file, md, want.Metadata)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestOpenOfficialFiles(t *testing.T) {
	exp := loadExpected(t)
	f, err := Open(filepath.Join(fixtureDir, "all_dtypes.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkAgainstExpected(t, "all_dtypes", f, exp["all_dtypes.safetensors"])

	// File order is data-offset order, which the official writer sorts by alignment then name.
	var lastEnd int64
	for i, off := range f.hdr.Offsets {
		if off[0] != lastEnd {
			t.Errorf("entry %d (%s) starts at %d, want %d", i, f.hdr.Entries[i].Name, off[0], lastEnd)
		}
		lastEnd = off[1]
	}

	// The sharded fixture is read by checkpoint.Open (core/checkpoint: TestOpenOfficialSharded).
}

func TestBadFiles(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(fixtureDir, "bad", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest map[string]struct {
		Want string `json:"want"`
	}
	if err := json.Unmarshal(b, &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) < 20 {
		t.Fatalf("manifest lists %d bad files, expected the full set", len(manifest))
	}
	for name, c := range manifest {
		path := filepath.Join(fixtureDir, "bad", name)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f, err := Open(path)
		runtime.ReadMemStats(&after)
		if err == nil {
			f.Close()
			t.Errorf("Open(%s) succeeded, want error containing %q", name, c.Want)
			continue
		}
		if !strings.Contains(err.Error(), c.Want) {
			t.Errorf("Open(%s) error = %q, want it to contain %q", name, err, c.Want)
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%s) error = %q does not name the file", name, err)
		}
		wantKind := ErrInvalid
		if strings.Contains(c.Want, "unsupported") {
			wantKind = ErrUnsupported
		}
		if !errors.Is(err, wantKind) {
			t.Errorf("Open(%s) error %q is not %v", name, err, wantKind)
		}
		// A lying header (huge shapes, offsets, lengths) must be refused from what it claims,
		// not by allocating what it claims: the fixtures are a few KB each.
		if got := after.TotalAlloc - before.TotalAlloc; got > 16<<20 {
			t.Errorf("Open(%s) allocated %d bytes before failing, want under 16 MiB", name, got)
		}
	}
}

// Errors about one tensor must say which tensor.
func TestErrorsNameTheTensor(t *testing.T) {
	cases := []struct {
		header string
		data   int
		want   string
	}{
		{`{"w.0":{"dtype":"I4","shape":[8],"data_offsets":[0,4]}}`, 4, `tensor "w.0": unsupported dtype I4`},
		{`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"layer.bias":{"dtype":"F32","shape":[1000000000000000],"data_offsets":[4,8]}}`, 8, `tensor "layer.bias": shape [1000000000000000] of F32 needs`},
		{`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, 12, `tensor "y": data_offsets [4, 12] overlap`},
		{`{"k":{"dtype":"F32","shape":"2","data_offsets":[0,8]}}`, 8, `tensor "k": shape`},
		{`{"k":{"dtype":"F32","shape":[2],"data_offsets":[0]}}`, 8, `tensor "k": data_offsets: [0] has 1 elements, want 2`},
		{`{"k":{"dtype":"F32","shape":[2],"data_offsets":["0","8"]}}`, 8, `tensor "k": data_offsets: ["0","8"] is not an array of non-negative integers`},
		{`{"k":[1]}`, 0, `tensor "k": not a JSON object`},
		{`{"__metadata__":{"a":"b"},"__metadata__":{"a":"b"}}`, 0, `__metadata__ appears twice`},
		{`{"__metadata__":{"a":null}}`, 0, `__metadata__["a"] is null, not a string`},
		{`{"__metadata__":[]}`, 0, `__metadata__ must be an object`},
		{`{"k":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, 4, `tensor "k": data_offsets [0, 8] run past the 4-byte data area`},
		{`{"k":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}}`, 8, `shape: [18446744073709551616] is not an array`},
		{`{"k":{"dtype":"F32","shape":[9223372036854775808,0],"data_offsets":[0,0]}}`, 0, `dimension 9223372036854775808 is too large`},
	}
	for _, c := range cases {
		file := headerBytes(c.header, c.data)
		_, err := ParseHeader(file)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseHeader(%s) error = %v, want it to contain %q", c.header, err, c.want)
		}
	}
}

func headerBytes(h string, dataLen int) []byte {
	b := make([]byte, 8, 8+len(h)+dataLen)
	putU64(b, uint64(len(h)))
	b = append(b, h...)
	return append(b, make([]byte, dataLen)...)
}

func putU64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (8 * i))
	}
}

// Headers the official library accepts must be accepted too.
func TestLenientLikeOfficial(t *testing.T) {
	cases := []struct {
		header string
		data   int
		names  []string
	}{
		{`{}`, 0, nil},
		{`  {"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}   `, 8, []string{"a"}},
		{`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":[1,{"x":2}]}}`, 8, []string{"a"}},
		{`{"__metadata__":null,"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}`, 8, []string{"a", "b"}},
		{`{"s":{"dtype":"BOOL","shape":[],"data_offsets":[0,1]}}`, 1, []string{"s"}},
		{`{"z":{"dtype":"I64","shape":[9223372036854775807,0],"data_offsets":[0,0]}}`, 0, []string{"z"}},
	}
	for _, c := range cases {
		h, err := ParseHeader(headerBytes(c.header, c.data))
		if err != nil {
			t.Errorf("ParseHeader(%s): %v", c.header, err)
			continue
		}
		var names []string
		for _, e := range h.Entries {
			names = append(names, e.Name)
		}
		if !slices.Equal(names, c.names) {
			t.Errorf("ParseHeader(%s) entries = %v, want %v", c.header, names, c.names)
		}
	}
}

func TestReaderMisuse(t *testing.T) {
	f, err := Open(filepath.Join(fixtureDir, "all_dtypes.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tensor("no.such"); err == nil || !strings.Contains(err.Error(), `no tensor named "no.such"`) {
		t.Errorf("Tensor(no.such) error = %v", err)
	}
	f.Release("no.such") // must not panic
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := f.Tensor("f32.weight"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Tensor after Close: error = %v, want closed", err)
	}
	f.Release("f32.weight")

	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Open(dir) error = %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.safetensors")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) error = %v, want not exist", err)
	}
}

// The data handed out is never the mapping itself: a file truncated under the mapping would
// make a later read of such a view a SIGBUS, so every tensor is copied out under mapped.Guard.
func TestNoAliasOfTheMapping(t *testing.T) {
	f, err := Open(filepath.Join(fixtureDir, "all_dtypes.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	whole := f.m.Bytes()
	for _, e := range f.Entries() {
		tt, _ := f.Tensor(e.Name)
		if len(tt.Data) == 0 {
			continue
		}
		if inside(&tt.Data[0], whole) {
			t.Errorf("tensor %q data is a view of the mapping", e.Name)
		}
	}
}

// TestTruncatedWhileOpen: a file cut short after Open reports the change on the next read of a
// vanished tensor, and does not crash.
func TestTruncatedWhileOpen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.safetensors")
	n := 4 * os.Getpagesize()
	hdr := fmt.Sprintf(`{"a":{"dtype":"U8","shape":[%d],"data_offsets":[0,%d]},"b":{"dtype":"U8","shape":[%d],"data_offsets":[%d,%d]}}`, n, n, n, n, 2*n)
	raw := append(binary.LittleEndian.AppendUint64(nil, uint64(len(hdr))), hdr...)
	raw = append(raw, make([]byte, 2*n)...)
	if err := os.WriteFile(p, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := os.Truncate(p, int64(n)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tensor("b"); !errors.Is(err, mapped.ErrChanged) || !strings.Contains(err.Error(), "file changed or truncated while reading") {
		t.Errorf("Tensor(b) after truncation = %v, want ErrChanged", err)
	}
	// The block reads of streaming are guarded the same way, and bounded by the tensor.
	dst := make([]byte, 64)
	if err := f.ReadRange("b", int64(n/2), dst); !errors.Is(err, mapped.ErrChanged) {
		t.Errorf("ReadRange(b) after truncation = %v, want ErrChanged", err)
	}
	if err := f.ReadRange("a", 0, dst); err != nil {
		t.Errorf("ReadRange(a), inside what is left = %v", err)
	}
	for _, off := range []int64{-1, int64(n) - 63, int64(n) + 1} {
		if err := f.ReadRange("a", off, dst); err == nil || !strings.Contains(err.Error(), "outside") {
			t.Errorf("ReadRange(a, %d, 64 bytes) = %v, want an out-of-bounds error", off, err)
		}
	}
	if err := f.ReadRange("zz", 0, dst); err == nil || !strings.Contains(err.Error(), "no tensor") {
		t.Errorf("ReadRange of an unknown tensor = %v", err)
	}
}

func inside(p *byte, b []byte) bool {
	for i := range b {
		if &b[i] == p {
			return true
		}
	}
	return false
}
