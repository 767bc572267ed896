package runlog

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/tensor"
)

func f32(vals ...float32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// The fingerprint is the documented formula, independent of tensor order, and changes with any
// tensor's name, dtype, shape or data.
func TestStateDictFingerprint(t *testing.T) {
	d := func(name, dt string, shape []int, data []byte) TensorDigest {
		return TensorDigest{Name: name, DType: dt, Shape: shape, Digest: TensorDigestOf(data)}
	}
	a, b := d("fc.weight", "F32", []int{2, 3}, f32(1, 2, 3, 4, 5, 6)), d("fc.bias", "F32", []int{2}, f32(0, 1))
	got := StateDictFingerprint([]TensorDigest{a, b})
	line := func(x TensorDigest, shape string) string {
		return x.Name + "\t" + x.DType + "\t" + shape + "\t" + x.Digest + "\n"
	}
	want := sha256.Sum256([]byte(line(b, "2") + line(a, "2,3")))
	if got != hex.EncodeToString(want[:]) {
		t.Errorf("StateDictFingerprint = %s, want the sha256 of the sorted lines %x", got, want)
	}
	if StateDictFingerprint([]TensorDigest{b, a}) != got {
		t.Error("the fingerprint depends on the tensors' order")
	}
	for _, other := range [][]TensorDigest{
		{a, d("fc.bias", "F32", []int{2}, f32(0, 2))},
		{a, d("fc.bias", "F32", []int{1, 2}, f32(0, 1))},
		{a, d("fc.bias", "F16", []int{2}, f32(0, 1))},
		{a, d("fc.b", "F32", []int{2}, f32(0, 1))},
		{a},
	} {
		if StateDictFingerprint(other) == got {
			t.Errorf("%+v fingerprints like the original", other)
		}
	}
}

// A tensor's digest is XXH3-128 in xxHash's canonical form: the values of the reference C
// library (libxxhash 0.8.1's XXH3_128bits, as `xxhsum -H2` prints them), on each of XXH3's
// input-length paths (0, 1-3, 4-8, 9-16, 17-128, 129-240 and long inputs), and one changed
// weight changes it.
func TestTensorDigestOf(t *testing.T) {
	seq := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + i>>8)
		}
		return b
	}
	for _, c := range []struct {
		n    int
		want string
	}{
		{0, "99aa06d3014798d86001c324468d497f"},
		{1, "a6cd5e9392000f6ac44bdff4074eecdb"},
		{3, "656e81c56e41fe02c3489259e968ad9e"},
		{4, "ab5c3e7474d809db81a65295de8e7dde"},
		{8, "e4b9dd0b66ff3c50ebabbd0695002ff6"},
		{9, "82ddc95bc76007671c69c3f04aaed08c"},
		{16, "ddf6c1254d70f76794eaa17b20756f46"},
		{17, "263f67af63088041735fe434ded90c3c"},
		{100, "858be3b5082c7eb73dc31a0ba04530cd"},
		{128, "dd9e5aa9bd51cc9cc6bd21ecc865f29f"},
		{129, "00433635cf8d872e7f4accb76587485b"},
		{240, "89e3a0a2ee355d25d10beb4e0599e4b3"},
		{241, "75f4da43f23cce5a541b19226f0052e8"},
		{1000, "bae798f9321bda6cd1db6a0afea2cc82"},
		{1024, "a3da96fbd688736171bee625238addb4"},
		{4096, "08ef8fc6d37a71915c722d9ceb6f9064"},
		{100003, "1f54492de8a6ea06a9b717cb7935c575"},
	} {
		if got := TensorDigestOf(seq(c.n)); got != c.want {
			t.Errorf("TensorDigestOf(%d bytes) = %s, want %s", c.n, got, c.want)
		}
	}
	w := make([]float32, 1<<16)
	for i := range w {
		w[i] = float32(math.Sin(float64(i)))
	}
	a := TensorDigestOf(f32(w...))
	for _, i := range []int{0, 12345, len(w) - 1} {
		v := append([]float32{}, w...)
		v[i] = math.Nextafter32(v[i], 2)
		if TensorDigestOf(f32(v...)) == a {
			t.Errorf("weight %d one ulp up digests like the original", i)
		}
	}
}

// A model built in memory and the file it was saved to fingerprint the same.
func TestFingerprintModelAndFile(t *testing.T) {
	m := model.NewModel()
	m.Add("fc.weight", &tensor.Tensor{DType: tensor.F32, Shape: []int{2, 3}, Data: f32(1, 2, 3, 4, 5, 6)})
	m.Add("fc.bias", &tensor.Tensor{DType: tensor.F32, Shape: []int{2}, Data: f32(0, 1)})
	fromModel, n, err := FingerprintReader(context.Background(), m.Reader())
	if err != nil || n != 32 {
		t.Fatalf("FingerprintReader(model) = %s, %d bytes, %v; want 32 bytes", fromModel, n, err)
	}
	path := filepath.Join(t.TempDir(), "m.safetensors")
	if err := m.Save(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	r, err := checkpoint.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fromFile, _, err := FingerprintReader(context.Background(), r)
	if err != nil || fromFile != fromModel {
		t.Errorf("file fingerprint %s (%v), model %s: want equal", fromFile, err, fromModel)
	}
}

func TestCalibrationHash(t *testing.T) {
	if (*CalibrationHash)(nil).Calibration() != nil || NewCalibrationHash().Calibration() != nil {
		t.Error("an empty calibration fingerprint is not nil")
	}
	feed := func(batches ...[]float32) *Calibration {
		c := NewCalibrationHash()
		for _, b := range batches {
			c.Add("fc", &tensor.Tensor{DType: tensor.F32, Shape: []int{1, len(b)}, Data: f32(b...)})
		}
		return c.Calibration()
	}
	a := feed([]float32{1, 2}, []float32{3})
	if a.Count != 2 || len(a.Shapes) != 2 || a.Shapes[1][1] != 1 || len(a.SHA256) != 64 {
		t.Errorf("Calibration = %+v, want count 2, shapes [1 2] [1 1]", a)
	}
	want := sha256.Sum256([]byte("fc\tF32\t1,2\t" + TensorDigestOf(f32(1, 2)) + "\nfc\tF32\t1,1\t" + TensorDigestOf(f32(3)) + "\n"))
	if a.SHA256 != hex.EncodeToString(want[:]) {
		t.Errorf("calibration fingerprint %s, want the sha256 of the batches' lines %x", a.SHA256, want)
	}
	if b := feed([]float32{1, 2}, []float32{3}); b.SHA256 != a.SHA256 {
		t.Error("the same data fingerprints differently")
	}
	if b := feed([]float32{1}, []float32{2, 3}); b.SHA256 == a.SHA256 {
		t.Error("the same bytes split into other batches fingerprint the same")
	}
	many := make([][]float32, MaxShapes+5)
	for i := range many {
		many[i] = []float32{float32(i)}
	}
	if c := feed(many...); c.Count != MaxShapes+5 || len(c.Shapes) != MaxShapes {
		t.Errorf("count %d shapes %d, want %d and %d", c.Count, len(c.Shapes), MaxShapes+5, MaxShapes)
	}
}

// An in-memory quantization is recorded with the model's fingerprint, the process's versions
// and the resolved settings; a trial with its objectives as metrics.
func TestRecordModelAndTrial(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	SetVersion("torch", "2.99")
	defer SetVersion("torch", "")
	m := model.NewModel()
	w := make([]float32, 16*32)
	for i := range w {
		w[i] = float32(math.Sin(float64(i)))
	}
	m.Add("fc.weight", &tensor.Tensor{DType: tensor.F32, Shape: []int{16, 32}, Data: f32(w...)})
	m.SetModuleType("fc", "Linear")
	want, _, _ := FingerprintReader(context.Background(), m.Reader())
	rec := StartModel("python.quantize", path, m)
	res, err := m.Quantize(context.Background(), plan.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, logPath, warning := rec.Finish(context.Background(), plan.Options{}, res, &Calibration{Count: 1, SHA256: "ab"})
	if id != 1 || logPath != path || warning != "" {
		t.Fatalf("Finish = %d, %s, %q; want run 1 in %s", id, logPath, warning, path)
	}
	tid, warning := RecordTrial(context.Background(), path, Trial{EntryPoint: "search", Recipe: res.Plan.Recipe,
		Objectives: map[string]float64{"metric": 0.5, "size": 99}, Results: map[string]float64{"bits_per_weight": 8}})
	if tid != 2 || warning != "" {
		t.Fatalf("RecordTrial = %d, %q", tid, warning)
	}
	l, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, err := l.Get(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.EntryPoint != "python.quantize" || r.Input.SHA256 != want || r.Input.Path != "" || r.Input.Bytes != 16*32*4 ||
		r.Versions["torch"] != "2.99" || len(r.Layers) != 1 || r.Calibration == nil || r.Calibration.SHA256 != "ab" {
		t.Errorf("in-memory run = entry %s input %+v versions %v layers %d calibration %+v", r.EntryPoint, r.Input, r.Versions, len(r.Layers), r.Calibration)
	}
	if s, err := DecodeSettings(r.Settings); err != nil || s.Recipe == nil {
		t.Errorf("settings %s: %v, want the resolved recipe", r.Settings, err)
	}
	tr, _ := l.Get(context.Background(), 2)
	if tr.EntryPoint != "search" || tr.Metrics["metric"] != 0.5 || tr.Metrics["size"] != 99 || tr.Results["bits_per_weight"] != 8 ||
		!strings.Contains(string(tr.Settings), `"recipe"`) {
		t.Errorf("trial run = %+v", tr)
	}
}

// Trials of one search are compared on the search's objectives, not on size and SQNR.
func TestCompareTrialsOnTheirObjectives(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	goals := map[string]string{"metric": "max", "size": "min"}
	for _, o := range []map[string]float64{{"metric": 0.9, "size": 100}, {"metric": 0.8, "size": 120}, {"metric": 0.95, "size": 200}, {"metric": 0.5, "size": 50}} {
		if _, w := RecordTrial(context.Background(), path, Trial{EntryPoint: "search", Objectives: o, Goals: goals}); w != "" {
			t.Fatal(w)
		}
	}
	l, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	runs, _ := l.List(context.Background(), nil)
	c := Compare(runs)
	if want := []bool{true, false, true, true}; c.Front != "metric (max), size (min)" || fmt.Sprint(c.Pareto) != fmt.Sprint(want) {
		t.Errorf("Compare(trials) front %q %v, want the objectives and %v", c.Front, c.Pareto, want)
	}
	if runs[0].Size() != 100 {
		t.Errorf("a trial's size = %v, want its size objective 100", runs[0].Size())
	}
	other := sampleRun(t, 8, 10, 30)
	if c := Compare(append(runs, other)); c.Front != SizeQualityFront {
		t.Errorf("trials with a file run: front %q, want %q", c.Front, SizeQualityFront)
	}
}
