package torchpt

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"unsafe"
)

func pint(v int) string {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(v))
	return "J" + string(b[:])
}

func pstr(s string) string {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(len(s)))
	return "X" + string(b[:]) + s
}

func ptuple(items ...string) string { return "(" + strings.Join(items, "") + "t" }

// viewPickle is data.pkl for a dict of float32 views of storage "0" (numel elements):
// name → (offset, shape, stride).
func viewPickle(numel int, views map[string][3][]int) string {
	p := "\x80\x02}("
	for name, v := range views {
		shape, stride := []string{}, []string{}
		for _, d := range v[1] {
			shape = append(shape, pint(d))
		}
		for _, d := range v[2] {
			stride = append(stride, pint(d))
		}
		p += pstr(name) + "ctorch._utils\n_rebuild_tensor_v2\n(" +
			ptuple(pstr("storage"), "ctorch\nFloatStorage\n", pstr("0"), pstr("cpu"), pint(numel)) + "Q" +
			pint(v[0][0]) + ptuple(shape...) + ptuple(stride...) + "\x89" + "ccollections\nOrderedDict\n)Rt" + "R"
	}
	return p + "u."
}

// TestBroadcastViewBounded: a stride-0 view that claims 4 TiB of one stored float is refused
// when the file is opened, naming the tensor; a modest broadcast reads.
func TestBroadcastViewBounded(t *testing.T) {
	pkl := viewPickle(1, map[string][3][]int{"huge": {{0}, {1 << 20, 1 << 20}, {0, 0}}})
	p := zipWith(t, stored("a/data.pkl", []byte(pkl)), stored("a/data/0", make([]byte, 4)))
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), `tensor "huge"`) || !strings.Contains(err.Error(), "broadcast view") {
		t.Errorf("Open(4 TiB broadcast view) error = %v, want a refusal naming the tensor", err)
	}
	pkl = viewPickle(4, map[string][3][]int{"bias": {{0}, {8, 4}, {0, 1}}})
	p = zipWith(t, stored("a/data.pkl", []byte(pkl)), stored("a/data/0", []byte{0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64}))
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := f.Tensor("bias")
	if err != nil || len(b.Data) != 8*16 || !bytes.Equal(b.Data[112:], b.Data[:16]) {
		t.Errorf("Tensor(bias) = %v, %v; want 8 copies of the 4 floats", b, err)
	}
}

// TestStrideOverflowRefused: strides whose reach wraps int64 are refused, not wrapped.
func TestStrideOverflowRefused(t *testing.T) {
	// {2^62, 1} cannot be spelled with BININT; LONG1 of 8 bytes carries it.
	big := "\x8a\x08" + string([]byte{0, 0, 0, 0, 0, 0, 0, 0x40})
	pkl := "\x80\x02}(" + pstr("w") + "ctorch._utils\n_rebuild_tensor_v2\n(" +
		ptuple(pstr("storage"), "ctorch\nFloatStorage\n", pstr("0"), pstr("cpu"), pint(4)) + "Q" +
		pint(0) + ptuple(pint(3), pint(2)) + "(" + big + pint(1) + "t\x89ccollections\nOrderedDict\n)RtRu."
	p := zipWith(t, stored("a/data.pkl", []byte(pkl)), stored("a/data/0", make([]byte, 16)))
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), "64 bits") {
		t.Errorf("Open(strides {2^62, 1}) error = %v, want an overflow refusal", err)
	}
}

// TestSharedDeflatedStorageInflatedOnce: views of one deflated storage share one inflated copy
// until the last of them is released.
func TestSharedDeflatedStorageInflatedOnce(t *testing.T) {
	pkl := viewPickle(4, map[string][3][]int{"a": {{0}, {2}, {1}}, "b": {{2}, {2}, {1}}})
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("a/data.pkl")
	w.Write([]byte(pkl))
	w, _ = zw.CreateHeader(&zip.FileHeader{Name: "a/data/0", Method: zip.Deflate})
	w.Write(make([]byte, 16))
	zw.Close()
	p := zipWith(t) // a temp dir path
	p = strings.TrimSuffix(p, "x.pt") + "shared.pt"
	writeFile(t, p, buf.Bytes())
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a, err1 := f.Tensor("a")
	b, err2 := f.Tensor("b")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if unsafe.SliceData(b.Data) != (*byte)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(a.Data)), 8)) {
		t.Errorf("the two views of one deflated storage were inflated separately")
	}
	rec := f.refs["a"].st.rec
	f.Release("a")
	if rec.inflated == nil {
		t.Errorf("inflated copy dropped while view b still needs it")
	}
	f.Release("b")
	if rec.inflated != nil {
		t.Errorf("inflated copy kept after every view was released")
	}
}

// TestArchiveExpansionCapped: deflated records that together would inflate past MaxExpansion
// times the file are refused before anything is inflated, even when each one's ratio is one
// deflate can honestly reach.
func TestArchiveExpansionCapped(t *testing.T) {
	pkl := statePickle(4)
	c := make([]byte, 200<<10)
	p := zipWith(t, stored("a/data.pkl", pkl),
		rawEntry{name: "a/data/0", method: zip.Deflate, data: c, usize: 200 << 20, csize: uint64(len(c))})
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), "zip bomb") || !strings.Contains(err.Error(), "100 times") {
		t.Errorf("Open(200 KiB inflating to 200 MiB) error = %v, want the expansion cap", err)
	}
}

// TestNamesWithNULOrBadUTF8Refused: such names cannot cross the C ABI or be written back.
func TestNamesWithNULOrBadUTF8Refused(t *testing.T) {
	for _, name := range []string{"a\x00b", "bad\xff"} {
		pkl := viewPickle(4, map[string][3][]int{name: {{0}, {4}, {1}}})
		p := zipWith(t, stored("a/data.pkl", []byte(pkl)), stored("a/data/0", make([]byte, 16)))
		_, err := Open(p)
		if err == nil || !strings.Contains(err.Error(), "tensor name") || strings.ContainsAny(err.Error(), "\x00\xff") {
			t.Errorf("Open(name %q) error = %v, want a refusal that does not print the raw bytes", name, err)
		}
	}
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
