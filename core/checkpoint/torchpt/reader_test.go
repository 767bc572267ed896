package torchpt

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/monoquant/monoquant/core/checkpoint/pickle"
	"github.com/monoquant/monoquant/core/tensor"
)

const fixtures = "../../../testdata/checkpoints/torch"
const malicious = "../../../testdata/malicious"

type expectedFile struct {
	Entries []struct {
		Name   string `json:"name"`
		DType  string `json:"dtype"`
		Shape  []int  `json:"shape"`
		SHA256 string `json:"sha256"`
	} `json:"entries"`
	ModuleTypes map[string]string `json:"module_types"`
	Metadata    map[string]string `json:"metadata"`
}

func loadExpected(t *testing.T) map[string]expectedFile {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(fixtures, "expected.json"))
	if err != nil {
		t.Fatalf("read expected.json (run testdata/gen_torch_fixtures.py): %v", err)
	}
	var exp map[string]expectedFile
	if err := json.Unmarshal(raw, &exp); err != nil {
		t.Fatal(err)
	}
	return exp
}

// TestReadTorchFixtures holds every file torch.save wrote against the names, dtypes, shapes and
// byte hashes torch itself reported.
func TestReadTorchFixtures(t *testing.T) {
	exp := loadExpected(t)
	if len(exp) < 7 {
		t.Fatalf("expected.json lists %d files, want at least 7", len(exp))
	}
	for file, want := range exp {
		t.Run(file, func(t *testing.T) {
			f, err := Open(filepath.Join(fixtures, file))
			if err != nil {
				t.Fatalf("Open(%s): %v", file, err)
			}
			defer f.Close()
			got := f.Entries()
			if len(got) != len(want.Entries) {
				t.Fatalf("Open(%s): %d entries, want %d", file, len(got), len(want.Entries))
			}
			for i, w := range want.Entries {
				g := got[i]
				if g.Name != w.Name || g.DType.String() != w.DType || !reflect.DeepEqual(g.Shape, w.Shape) {
					t.Errorf("%s entry %d = %s %v %v, want %s %s %v", file, i, g.Name, g.DType, g.Shape, w.Name, w.DType, w.Shape)
					continue
				}
				tt, err := f.Tensor(g.Name)
				if err != nil {
					t.Errorf("%s: Tensor(%q): %v", file, g.Name, err)
					continue
				}
				if err := tt.Validate(); err != nil {
					t.Errorf("%s: Tensor(%q) invalid: %v", file, g.Name, err)
				}
				sum := sha256.Sum256(tt.Data)
				if h := hex.EncodeToString(sum[:]); h != w.SHA256 {
					t.Errorf("%s: Tensor(%q) bytes hash %s, want %s (torch's values)", file, g.Name, h[:12], w.SHA256[:12])
				}
			}
			if !reflect.DeepEqual(f.ModuleTypes(), want.ModuleTypes) {
				t.Errorf("%s: ModuleTypes() = %v, want %v", file, f.ModuleTypes(), want.ModuleTypes)
			}
			if f.Metadata() == nil || len(f.Metadata()) != len(want.Metadata) {
				t.Errorf("%s: Metadata() = %v, want %v", file, f.Metadata(), want.Metadata)
			}
		})
	}
}

// TestNoAliasOfTheMapping checks that no tensor, contiguous or not, is a view into the mapping:
// a file truncated under the mapping would make any later read of such a view a SIGBUS, so
// every tensor is copied out under mapped.Guard.
func TestNoAliasOfTheMapping(t *testing.T) {
	f, err := Open(filepath.Join(fixtures, "views.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mapped := f.m.Bytes()
	lo := uintptr(unsafe.Pointer(&mapped[0]))
	hi := lo + uintptr(len(mapped))
	inMap := func(b []byte) bool {
		p := uintptr(unsafe.Pointer(&b[0]))
		return p >= lo && p < hi
	}
	for _, c := range []struct {
		name string
		view bool
	}{{"base", false}, {"slice", false}, {"transposed", false}, {"strided", false}, {"expanded", false}} {
		tt, err := f.Tensor(c.name)
		if err != nil {
			t.Fatalf("Tensor(%q): %v", c.name, err)
		}
		if got := inMap(tt.Data); got != c.view {
			t.Errorf("Tensor(%q) data inside the mapping = %v, want %v", c.name, got, c.view)
		}
	}
}

func TestMaliciousCorpus(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(malicious, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest map[string]struct {
		Refused string `json:"refused"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	if len(manifest) < 30 {
		t.Fatalf("manifest lists %d files, want at least 30", len(manifest))
	}
	for file, want := range manifest {
		f, err := Open(filepath.Join(malicious, file))
		if err == nil {
			f.Close()
			t.Errorf("Open(%s) succeeded, want an error", file)
			continue
		}
		if want.Refused != "" {
			var re *pickle.RefusedError
			if !errors.As(err, &re) || re.Global != want.Refused {
				t.Errorf("Open(%s) error = %v, want a refusal naming %s", file, err, want.Refused)
			}
			if !strings.Contains(err.Error(), "refusing to unpickle "+want.Refused+": it could run code") {
				t.Errorf("Open(%s) message %q does not name %s", file, err, want.Refused)
			}
		} else if !strings.Contains(err.Error(), want.Error) {
			t.Errorf("Open(%s) error = %v, want one containing %q", file, err, want.Error)
		}
	}
}

// zipWith builds a torch-shaped archive from raw entries (method, declared sizes and bytes as
// given), for lying headers and bombs that a normal zip writer would not produce.
type rawEntry struct {
	name         string
	method       uint16
	data         []byte // bytes as stored
	crc          uint32
	usize, csize uint64
}

func zipWith(t *testing.T, entries ...rawEntry) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		w, err := zw.CreateRaw(&zip.FileHeader{Name: e.name, Method: e.method, CRC32: e.crc,
			CompressedSize64: e.csize, UncompressedSize64: e.usize})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(e.data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "x.pt")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func stored(name string, data []byte) rawEntry {
	return rawEntry{name: name, method: zip.Store, data: data, usize: uint64(len(data)), csize: uint64(len(data))}
}

// statePickle is data.pkl for {"w": float32 tensor of shape [numel]} in storage "0".
func statePickle(numel int) []byte {
	return buildPickle([]tensor.Info{{Name: "w", DType: tensor.F32, Shape: []int{numel}}}, nil)
}

func TestZipBombsAndLies(t *testing.T) {
	pkl := statePickle(4)
	deflated := func(raw []byte) []byte {
		var b bytes.Buffer
		zw := zip.NewWriter(&b)
		w, _ := zw.CreateHeader(&zip.FileHeader{Name: "x", Method: zip.Deflate})
		w.Write(raw)
		zw.Close()
		zr, _ := zip.NewReader(bytes.NewReader(b.Bytes()), int64(b.Len()))
		rc, _ := zr.File[0].OpenRaw()
		out := new(bytes.Buffer)
		out.ReadFrom(rc)
		return out.Bytes()
	}
	zeros := make([]byte, 1<<20)
	bomb := deflated(zeros)
	tests := []struct {
		name    string
		entries []rawEntry
		want    string
	}{
		{"declared size over limit", []rawEntry{stored("a/data.pkl", pkl),
			{name: "a/data/0", method: zip.Deflate, data: bomb, usize: 1 << 40, csize: uint64(len(bomb))}},
			"declares 1099511627776 uncompressed bytes"},
		{"declared ratio impossible", []rawEntry{stored("a/data.pkl", pkl),
			{name: "a/data/0", method: zip.Deflate, data: []byte{1, 2, 3}, usize: 1 << 30, csize: 3}},
			"compression ratio"},
		{"inflates beyond declared", []rawEntry{stored("a/data.pkl", pkl),
			{name: "a/data/0", method: zip.Deflate, data: bomb, usize: 16, csize: uint64(len(bomb))}},
			"inflates beyond its declared 16 bytes"},
		{"stored sizes disagree", []rawEntry{stored("a/data.pkl", pkl),
			{name: "a/data/0", method: zip.Store, data: make([]byte, 16), usize: 1 << 20, csize: 16}},
			"stored but declares"},
		{"duplicate names", []rawEntry{stored("a/data.pkl", pkl), stored("a/data/0", make([]byte, 16)), stored("a/data/0", make([]byte, 16))},
			"two entries named a/data/0"},
		{"no data.pkl", []rawEntry{stored("a/data/0", make([]byte, 16))}, "no <folder>/data.pkl"},
		{"two data.pkl", []rawEntry{stored("a/data.pkl", pkl), stored("b/data.pkl", pkl)}, "2 data.pkl records"},
		{"unknown method", []rawEntry{stored("a/data.pkl", pkl), {name: "a/data/0", method: 12, data: make([]byte, 16), usize: 16, csize: 16}},
			"compression method 12"},
		{"bad byteorder", []rawEntry{stored("a/data.pkl", pkl), stored("a/byteorder", []byte("middle")), stored("a/data/0", make([]byte, 16))},
			"byteorder"},
		{"record shorter than storage", []rawEntry{stored("a/data.pkl", pkl), stored("a/data/0", make([]byte, 15))},
			"claims 4 elements of 4 bytes but its record has only 15 bytes"},
	}
	for _, tt := range tests {
		p := zipWith(t, tt.entries...)
		f, err := Open(p)
		if err == nil {
			// Lies inside compressed records surface when the tensor is read.
			_, err = f.Tensor("w")
			f.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// TestDeflatedRecordReads checks that an honest compressed record (a re-zipped checkpoint)
// reads back correctly.
func TestDeflatedRecordReads(t *testing.T) {
	pkl := statePickle(4)
	data := []byte{0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64} // 1, 2, 3, 4
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create("a/data.pkl")
	w.Write(pkl)
	w, _ = zw.CreateHeader(&zip.FileHeader{Name: "a/data/0", Method: zip.Deflate})
	w.Write(data)
	zw.Close()
	p := filepath.Join(t.TempDir(), "deflated.pt")
	os.WriteFile(p, b.Bytes(), 0o644)
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tt, err := f.Tensor("w")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tt.Data, data) {
		t.Errorf("deflated record read as %v, want %v", tt.Data, data)
	}
}

func TestTruncatedFiles(t *testing.T) {
	for _, name := range []string{"model_state.pt", "legacy.pt", "module.pt"} {
		full, err := os.ReadFile(filepath.Join(fixtures, name))
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		for _, n := range []int{0, 1, 10, len(full) / 3, len(full) / 2, len(full) - 30, len(full) - 1} {
			p := filepath.Join(dir, fmt.Sprintf("cut%d.pt", n))
			os.WriteFile(p, full[:n], 0o644)
			f, err := Open(p)
			if err == nil {
				// A legacy file cut inside its last storage must still fail.
				f.Close()
				t.Errorf("Open(%s cut to %d of %d bytes) succeeded, want an error", name, n, len(full))
			}
		}
	}
}

func TestTensorErrors(t *testing.T) {
	f, err := Open(filepath.Join(fixtures, "dtypes.pt"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tensor("nope"); err == nil || !strings.Contains(err.Error(), `no tensor named "nope"`) {
		t.Errorf("Tensor(nope) error = %v", err)
	}
	f.Release("float32")
	if tt, err := f.Tensor("float32"); err != nil || len(tt.Data) != 24 {
		t.Errorf("Tensor after Release = %v, %v; want the data read again", tt, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := f.Tensor("float32"); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Tensor after Close error = %v, want 'closed'", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.pt")); err == nil {
		t.Errorf("Open(missing file) succeeded")
	}
	empty := filepath.Join(t.TempDir(), "empty.pt")
	os.WriteFile(empty, nil, 0o644)
	if _, err := Open(empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("Open(empty file) error = %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.pt")
	os.WriteFile(junk, []byte("hello world"), 0o644)
	if _, err := Open(junk); err == nil || !strings.Contains(err.Error(), "not a torch checkpoint") {
		t.Errorf("Open(text file) error = %v", err)
	}
}

func TestConcurrentReads(t *testing.T) {
	f, err := Open(filepath.Join(fixtures, "views.pt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range f.Entries() {
				if _, err := f.Tensor(e.Name); err != nil {
					t.Errorf("Tensor(%q): %v", e.Name, err)
				}
				f.Release(e.Name)
			}
		}()
	}
	wg.Wait()
}

// TestHostileStructures: pickles that are valid but would make a naive walk loop forever or
// visit 2^40 nodes must fail with an error naming the problem.
func TestHostileStructures(t *testing.T) {
	old := walkLimits
	walkLimits.MaxObjects = 1 << 16
	defer func() { walkLimits = old }()
	laughs := "\x80\x02]q\x00"
	for i := 0; i < 40; i++ {
		laughs += fmt.Sprintf("](h%ch%ceq%c", byte(i), byte(i), byte(i+1))
	}
	laughs += "."
	// Each level is a dict of two 1000-byte keys both holding the level below: few containers,
	// but names that grow by 1 KB a level and double in number.
	key := func(c byte) string { return "X\xe8\x03\x00\x00" + strings.Repeat(string(c), 1000) }
	nameBomb := "\x80\x02]q\x00"
	for i := 0; i < 20; i++ {
		nameBomb += fmt.Sprintf("}(%sh%c%sh%cuq%c", key('a'), byte(i), key('b'), byte(i), byte(i+1))
	}
	nameBomb += "."
	tests := []struct{ name, pkl, want string }{
		{"self-containing list", "\x80\x02]q\x00h\x00a.", "nested deeper than"},
		{"self-containing dict", "\x80\x02}q\x00X\x01\x00\x00\x00ah\x00s.", "nested deeper than"},
		{"2^40 shared references", laughs, "containers for its pickle size"},
		{"long keys shared 2^20 times", nameBomb, "tensor-name bytes"},
	}
	for _, tt := range tests {
		p := zipWith(t, stored("a/data.pkl", []byte(tt.pkl)))
		_, err := Open(p)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Open error = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
}

// TestBigEndianArchive: a checkpoint saved on a big-endian machine (byteorder "big") comes back
// little-endian, for contiguous and strided views alike.
func TestBigEndianArchive(t *testing.T) {
	be := []byte{0x3f, 0x80, 0, 0, 0x40, 0, 0, 0, 0x40, 0x40, 0, 0, 0x40, 0x80, 0, 0} // 1, 2, 3, 4
	le := []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40}
	p := zipWith(t, stored("a/data.pkl", statePickle(4)), stored("a/byteorder", []byte("big")), stored("a/data/0", be))
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tt, err := f.Tensor("w")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tt.Data, le) {
		t.Errorf("big-endian record read as % x, want % x", tt.Data, le)
	}
	// The mapped file itself must be untouched by the swap.
	if !bytes.Equal(f.refs["w"].st.rec.data, be) {
		t.Errorf("reading swapped the mapped bytes in place")
	}
}

// TestRebuildTensorV3 reads the _rebuild_tensor_v3 form: an untyped (byte) storage with the
// dtype passed separately.
func TestRebuildTensorV3(t *testing.T) {
	pkl := "\x80\x02ccollections\nOrderedDict\n)R(X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v3\n" +
		"((X\x07\x00\x00\x00storagectorch\nUntypedStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x08tQ" +
		"K\x01K\x03\x85K\x01\x85\x89ccollections\nOrderedDict\n)Rctorch\nfloat16\ntRu."
	data := []byte{0, 0x3c, 0, 0x40, 0, 0x42, 0, 0x44} // f16 1, 2, 3, 4
	f, err := Open(zipWith(t, stored("a/data.pkl", []byte(pkl)), stored("a/data/0", data)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tt, err := f.Tensor("w")
	if err != nil {
		t.Fatal(err)
	}
	if tt.DType != tensor.F16 || !reflect.DeepEqual(tt.Shape, []int{3}) || !bytes.Equal(tt.Data, data[2:]) {
		t.Errorf("v3 tensor = %v %v % x, want F16 [3] % x", tt.DType, tt.Shape, tt.Data, data[2:])
	}
}

// TestHostileClaimsAllocateLittle: files claiming 10^15-element shapes or 10^12-element
// storages are refused without allocating anything near those sizes.
func TestHostileClaimsAllocateLittle(t *testing.T) {
	for _, name := range []string{"huge_shape.pt", "huge_2d_shape.pt", "lying_numel.pt", "lying_string_length.pt"} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := Open(filepath.Join(malicious, name))
		runtime.ReadMemStats(&after)
		if err == nil {
			t.Errorf("Open(%s) succeeded", name)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
			t.Errorf("Open(%s) allocated %d bytes, want under 4 MiB", name, got)
		}
	}
}

// TestSharedReferenceBlowupDefaultLimits runs the 2^40-node DAG against the shipped limits
// (TestHostileStructures lowers them): the walk must stop at the container limit.
func TestSharedReferenceBlowupDefaultLimits(t *testing.T) {
	laughs := "\x80\x02]q\x00"
	for i := 0; i < 40; i++ {
		laughs += fmt.Sprintf("](h%ch%ceq%c", byte(i), byte(i), byte(i+1))
	}
	p := zipWith(t, stored("a/data.pkl", []byte(laughs+".")))
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), "containers") {
		t.Errorf("Open(2^40-node DAG) error = %v, want the container limit", err)
	}
}
