package torchpt

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint/atomicfile"
	"github.com/monoquant/monoquant/core/tensor"
)

type namedTensor struct {
	info tensor.Info
	data []byte
}

func sampleTensors() []namedTensor {
	mk := func(name string, dt tensor.DType, shape []int, fill func(i int, b []byte)) namedTensor {
		n := tensor.NumElements(shape)
		b := make([]byte, n*dt.Size())
		for i := 0; i < n; i++ {
			fill(i, b[i*dt.Size():])
		}
		return namedTensor{tensor.Info{Name: name, DType: dt, Shape: shape}, b}
	}
	return []namedTensor{
		mk("layer.weight", tensor.F32, []int{3, 4}, func(i int, b []byte) {
			binary.LittleEndian.PutUint32(b, math.Float32bits(float32(i)*0.5-2))
		}),
		mk("layer.bias", tensor.BF16, []int{5}, func(i int, b []byte) { binary.LittleEndian.PutUint16(b, tensor.Float32ToBF16(float32(i))) }),
		mk("half", tensor.F16, []int{2, 2}, func(i int, b []byte) { binary.LittleEndian.PutUint16(b, tensor.Float32ToF16(float32(-i))) }),
		mk("double", tensor.F64, []int{}, func(i int, b []byte) { binary.LittleEndian.PutUint64(b, math.Float64bits(math.Pi)) }),
		mk("q.int8", tensor.I8, []int{2, 3, 2}, func(i int, b []byte) { b[0] = byte(int8(i*20 - 128)) }),
		mk("u8", tensor.U8, []int{7}, func(i int, b []byte) { b[0] = byte(i * 37) }),
		mk("i16", tensor.I16, []int{3}, func(i int, b []byte) { binary.LittleEndian.PutUint16(b, uint16(int16(-30000+i))) }),
		mk("i32", tensor.I32, []int{1, 3}, func(i int, b []byte) { binary.LittleEndian.PutUint32(b, uint32(int32(-1-i))) }),
		mk("i64", tensor.I64, []int{2}, func(i int, b []byte) { binary.LittleEndian.PutUint64(b, uint64(int64(1)<<40+int64(i))) }),
		mk("mask", tensor.Bool, []int{4}, func(i int, b []byte) { b[0] = byte(i % 2) }),
		mk("empty", tensor.F32, []int{0, 5}, func(int, []byte) {}),
		mk("ünicode.name", tensor.F32, []int{1, 1, 1, 1, 2}, func(i int, b []byte) { binary.LittleEndian.PutUint32(b, math.Float32bits(1)) }),
	}
}

func writeSample(t *testing.T, path string, ts []namedTensor, meta map[string]string) {
	t.Helper()
	infos := make([]tensor.Info, len(ts))
	for i, nt := range ts {
		infos[i] = nt.info
	}
	w, err := Create(path, infos, meta)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	for _, nt := range ts {
		if err := w.Write(nt.info.Name, nt.data); err != nil {
			t.Fatalf("Write(%q): %v", nt.info.Name, err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func checkRoundTrip(t *testing.T, path string, ts []namedTensor, meta map[string]string) {
	t.Helper()
	f, err := Open(path)
	if err != nil {
		t.Fatalf("Open(our file): %v", err)
	}
	defer f.Close()
	if len(f.Entries()) != len(ts) {
		t.Fatalf("read %d entries, want %d", len(f.Entries()), len(ts))
	}
	for i, nt := range ts {
		e := f.Entries()[i]
		if e.Name != nt.info.Name || e.DType != nt.info.DType || !reflect.DeepEqual(e.Shape, nt.info.Shape) {
			t.Errorf("entry %d = %v, want %v", i, e, nt.info)
		}
		tt, err := f.Tensor(nt.info.Name)
		if err != nil {
			t.Fatalf("Tensor(%q): %v", nt.info.Name, err)
		}
		if !bytes.Equal(tt.Data, nt.data) {
			t.Errorf("Tensor(%q) = %v, want %v", nt.info.Name, tt.Data, nt.data)
		}
	}
	want := meta
	if want == nil {
		want = map[string]string{}
	}
	if !reflect.DeepEqual(f.Metadata(), want) {
		t.Errorf("Metadata() = %v, want %v", f.Metadata(), want)
	}
}

// checkArchive verifies the zip with the standard library (CRCs included) and torch's layout:
// the records torch writes, every record's data 64-byte aligned.
func checkArchive(t *testing.T, path string, n int) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatalf("archive/zip cannot open our file: %v", err)
	}
	defer zr.Close()
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
		off, err := f.DataOffset()
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		if off%alignment != 0 {
			t.Errorf("record %s data at offset %d, not %d-aligned", f.Name, off, alignment)
		}
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Errorf("record %s: %v (CRC or size wrong)", f.Name, err)
		}
		rc.Close()
	}
	want := []string{"archive/data.pkl", "archive/.format_version", "archive/.storage_alignment", "archive/byteorder"}
	for i := 0; i < n; i++ {
		want = append(want, "archive/data/"+itoa(i))
	}
	want = append(want, "archive/version", "archive/.data/serialization_id")
	if !reflect.DeepEqual(names, want) {
		t.Errorf("records = %v, want %v", names, want)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestWriteReadRoundTrip(t *testing.T) {
	ts := sampleTensors()
	meta := map[string]string{"monoquant.format": "1", "config": `{"bits": 8}`, "ünï": "cödé"}
	p := filepath.Join(t.TempDir(), "out.pt")
	writeSample(t, p, ts, meta)
	checkRoundTrip(t, p, ts, meta)
	checkArchive(t, p, len(ts))

	// No metadata: no BUILD, Metadata() is empty but not nil.
	p2 := filepath.Join(t.TempDir(), "nometa.pt")
	writeSample(t, p2, ts[:2], nil)
	checkRoundTrip(t, p2, ts[:2], nil)

	// No tensors at all is a valid (empty) state dict.
	p3 := filepath.Join(t.TempDir(), "none.pt")
	writeSample(t, p3, nil, map[string]string{"k": "v"})
	checkRoundTrip(t, p3, nil, map[string]string{"k": "v"})
}

func TestForcedZip64(t *testing.T) {
	old := zip64Limit
	zip64Limit = 0 // every size and offset takes the zip64 path, as a >4 GiB file would
	defer func() { zip64Limit = old }()
	ts := sampleTensors()
	p := filepath.Join(t.TempDir(), "zip64.pt")
	writeSample(t, p, ts, map[string]string{"a": "b"})
	checkRoundTrip(t, p, ts, map[string]string{"a": "b"})
	checkArchive(t, p, len(ts))
	torchLoads(t, p, len(ts))
}

// torchLoads asks the project's torch to load p with weights_only (plain and mmap) when the
// virtualenv exists; the pytest interop suite covers the ordinary layout in more depth.
func torchLoads(t *testing.T, p string, n int) {
	t.Helper()
	if testing.Short() {
		t.Log("-short: torch check skipped")
		return
	}
	py, _ := filepath.Abs("../../../.venv/bin/python")
	if _, err := os.Stat(py); err != nil {
		t.Logf("no %s: torch check skipped", py)
		return
	}
	script := `import sys, torch
for mm in (False, True):
    sd = torch.load(sys.argv[1], weights_only=True, mmap=mm)
    assert len(sd) == int(sys.argv[2]), len(sd)
print("ok")`
	out, err := exec.Command(py, "-c", script, p, itoa(n)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Errorf("torch.load(weights_only=True) of our file failed: %v\n%s", err, out)
	}
}

func TestWriterErrors(t *testing.T) {
	dir := t.TempDir()
	f32 := func(name string, shape ...int) tensor.Info {
		return tensor.Info{Name: name, DType: tensor.F32, Shape: shape}
	}
	createErrs := []struct {
		name    string
		entries []tensor.Info
		meta    map[string]string
		want    string
	}{
		{"duplicate", []tensor.Info{f32("a", 1), f32("a", 2)}, nil, `two entries are named "a"`},
		{"empty name", []tensor.Info{f32("", 1)}, nil, "empty or non-UTF-8 name"},
		{"bad utf8 name", []tensor.Info{f32("\xff", 1)}, nil, "non-UTF-8"},
		{"huge name", []tensor.Info{f32(strings.Repeat("n", 1<<17), 1)}, nil, "131072-byte name"},
		{"invalid dtype", []tensor.Info{{Name: "x", DType: tensor.Invalid, Shape: []int{1}}}, nil, "torch storages cannot hold"},
		{"negative dim", []tensor.Info{f32("x", -1)}, nil, "invalid shape"},
		{"overflowing shape", []tensor.Info{f32("x", 1<<40, 1<<40)}, nil, "invalid shape"},
		{"bad metadata", nil, map[string]string{"k": "\xff"}, "not valid UTF-8"},
	}
	for _, tt := range createErrs {
		_, err := Create(filepath.Join(dir, "x.pt"), tt.entries, tt.meta)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Create error = %v, want one containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := Create(filepath.Join(dir, "no/such/folder/x.pt"), nil, nil); err == nil {
		t.Errorf("Create in a missing folder succeeded")
	}

	target := filepath.Join(dir, "w.pt")
	w, err := Create(target, []tensor.Info{f32("a", 2), f32("b", 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write("b", make([]byte, 4)); err == nil || !strings.Contains(err.Error(), `expected "a" next`) {
		t.Errorf("out-of-order Write error = %v", err)
	}
	if err := w.Write("a", make([]byte, 7)); err == nil || !strings.Contains(err.Error(), "got 7 bytes, want 8") {
		t.Errorf("short Write error = %v", err)
	}
	if err := w.Write("a", make([]byte, 8)); err != nil {
		t.Fatalf("Write(a): %v", err)
	}
	if err := w.Commit(); err == nil || !strings.Contains(err.Error(), "1 of 2 tensors written") {
		t.Errorf("early Commit error = %v", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("failed Commit left %s behind (stat err %v)", target, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".w.pt.tmp-*")); len(left) != 0 {
		t.Errorf("failed Commit left temporary files %v", left)
	}
	if err := w.Abort(); err != nil {
		t.Errorf("Abort after failed Commit: %v", err)
	}
	if err := w.Write("b", make([]byte, 4)); err == nil {
		t.Errorf("Write after Commit/Abort succeeded")
	}

	w2, _ := Create(target, []tensor.Info{f32("a", 1)}, nil)
	w2.Write("a", make([]byte, 4))
	if err := w2.Write("a", make([]byte, 4)); err == nil || !strings.Contains(err.Error(), "already written") {
		t.Errorf("extra Write error = %v", err)
	}
	if err := w2.Abort(); err != nil {
		t.Errorf("Abort: %v", err)
	}
	if err := w2.Abort(); err != nil {
		t.Errorf("second Abort: %v", err)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Errorf("Abort left %s behind", target)
	}
}

// TestHelperSlowWriter is the child process of TestKillMidWrite; it does nothing otherwise.
func TestHelperSlowWriter(t *testing.T) {
	path := os.Getenv("TORCHPT_SLOW_WRITE")
	if path == "" {
		t.Skip("runs only as TestKillMidWrite's child process")
	}
	const n = 200
	infos := make([]tensor.Info, n)
	for i := range infos {
		infos[i] = tensor.Info{Name: "t" + itoa(i), DType: tensor.F32, Shape: []int{64 << 10}}
	}
	w, err := Create(path, infos, map[string]string{"new": "yes"})
	if err != nil {
		os.Exit(3)
	}
	data := make([]byte, 256<<10)
	for i := range infos {
		if err := w.Write(infos[i].Name, data); err != nil {
			os.Exit(4)
		}
		if i == 5 {
			os.Stdout.WriteString("writing\n")
			io.Copy(io.Discard, os.Stdin) // the parent kills it here, however busy the machine
		}
	}
	w.Commit()
	os.Exit(0)
}

// TestKillMidWrite SIGKILLs a process in the middle of writing over an existing checkpoint (and
// over no file): the target must be the old file, intact, or absent — never a torn one.
func TestKillMidWrite(t *testing.T) {
	for _, withOld := range []bool{true, false} {
		dir := t.TempDir()
		target := filepath.Join(dir, "model.pt")
		old := sampleTensors()[:3]
		if withOld {
			writeSample(t, target, old, map[string]string{"old": "yes"})
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSlowWriter$")
		cmd.Env = append(os.Environ(), "TORCHPT_SLOW_WRITE="+target)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cmd.StdinPipe(); err != nil { // held open: the child waits mid-write
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "writing\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child did not start writing: %q %v", line, err)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("the child was not killed mid-write (%v): the test did not exercise a torn write", cmd.ProcessState)
		}
		if withOld {
			checkRoundTrip(t, target, old, map[string]string{"old": "yes"})
		} else if _, err := os.Stat(target); !os.IsNotExist(err) {
			t.Errorf("killed writer with no old file left %s (stat err %v), want nothing", target, err)
		}
		// The temporary file had no name: nothing of the killed write is left in the folder.
		if left, _ := filepath.Glob(filepath.Join(dir, ".model.pt.tmp-*")); atomicfile.Unnamed(dir) && len(left) != 0 {
			t.Errorf("the killed writer left %v behind", left)
		}
	}
}
