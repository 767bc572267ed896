package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/blocks"
	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/checkpointtest"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// encodeFloats stores v as a tensor of float dtype dt (F16 and BF16 rounded to nearest even).
func encodeFloats(v []float32, dt tensor.DType, shape ...int) *tensor.Tensor {
	t := tensor.New(dt, shape...)
	for i, x := range v {
		switch dt {
		case tensor.F32:
			binary.LittleEndian.PutUint32(t.Data[4*i:], math.Float32bits(x))
		case tensor.F64:
			binary.LittleEndian.PutUint64(t.Data[8*i:], math.Float64bits(float64(x)*1.0000001))
		case tensor.F16:
			binary.LittleEndian.PutUint16(t.Data[2*i:], tensor.Float32ToF16(x))
		case tensor.BF16:
			binary.LittleEndian.PutUint16(t.Data[2*i:], tensor.Float32ToBF16(x))
		}
	}
	return t
}

func int64s(v ...int64) *tensor.Tensor {
	t := tensor.New(tensor.I64, len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(t.Data[8*i:], uint64(x))
	}
	return t
}

// wholeCompare is compare as it was before it read tensors in blocks: each side's tensor as
// one float32 slice (a quantized one through model.DequantizeTensor), quant.SQNR over the pair
// and the largest |a − b|; the overall SQNR from the summed energies. It returns the rows of
// the compared tensors by name, and the overall SQNR and max error.
func wholeCompare(t *testing.T, pa, pb string) (map[string]compareRow, float64, float64) {
	t.Helper()
	a, err := openSide("A", pa)
	if err != nil {
		t.Fatal(err)
	}
	defer a.r.Close()
	b, err := openSide("B", pb)
	if err != nil {
		t.Fatal(err)
	}
	defer b.r.Close()
	values := func(s *side, name string) ([]float32, *tensor.Tensor) {
		t.Helper()
		if s.cfg != nil {
			if _, ok := s.cfg.Tensors[name]; ok {
				x, err := model.DequantizeTensor(s.r, s.cfg, name)
				if err != nil {
					t.Fatal(err)
				}
				v, _ := x.Float32s()
				return v, x
			}
		}
		x, err := s.r.Tensor(name)
		if err != nil {
			t.Fatal(err)
		}
		x = &tensor.Tensor{DType: x.DType, Shape: x.Shape, Data: append([]byte(nil), x.Data...)}
		if !x.DType.IsFloat() {
			return nil, x
		}
		v, err := x.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		return v, x
	}
	rows := map[string]compareRow{}
	var sig, noise, maxErr float64
	for _, name := range a.names {
		if _, ok := b.info[name]; !ok {
			continue
		}
		va, ta := values(a, name)
		vb, tb := values(b, name)
		row := compareRow{Name: name, SQNR: model.Decibels(math.NaN()), Status: "compared"}
		if va == nil || vb == nil {
			row.Status = "different"
			if ta.DType == tb.DType && bytes.Equal(ta.Data, tb.Data) {
				row.Status = "identical"
			}
			rows[name] = row
			continue
		}
		for i := range va {
			x, y := float64(va[i]), float64(vb[i])
			d := x - y
			row.signal += x * x
			row.noise += d * d
			if ad := math.Abs(d); ad > row.MaxError || math.IsNaN(ad) {
				row.MaxError = ad
			}
		}
		row.SQNR = model.Decibels(quant.SQNR(va, vb))
		sig, noise, maxErr = sig+row.signal, noise+row.noise, max(maxErr, row.MaxError)
		rows[name] = row
	}
	return rows, model.OverallSQNR(sig, noise), maxErr
}

// sameFloat is bit-for-bit equality, with any NaN equal to any NaN.
func sameFloat(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

// TestCompareInBlocks: comparing in blocks of a row or a few (blocks that end inside the rows
// of a 1-d tensor, INT4 ranges that start on a high nibble), with a float side's pages
// released every few blocks, gives the figures of the default block size and those of
// comparing whole tensors (what compare did before), bit for bit: every pairing of float
// (F32, F16, BF16, F64), quantized (INT8 per-channel, asymmetric, INT4 group-wise) and integer
// tensors, a NaN in a middle block, an integer tensor that differs in its last window.
func TestCompareInBlocks(t *testing.T) {
	dir := t.TempDir()
	fc := ramp(67*48, 0.1)
	tensors := func(fc []float32, up tensor.DType, ids ...int64) map[string]*tensor.Tensor {
		return map[string]*tensor.Tensor{
			"fc.weight":   tf(fc, 67, 48),
			"fc.bias":     tf(ramp(67, 0.5), 67),
			"conv.weight": tf(ramp(10*3*4*4, 0.3), 10, 3, 4, 4),
			"up.weight":   encodeFloats(ramp(40*48, 0.7), up, 40, 48),
			"proj.weight": encodeFloats(ramp(33*48, 0.2), tensor.BF16, 33, 48),
			"out.weight":  encodeFloats(ramp(9*48, 0.4), tensor.F64, 9, 48),
			"wide.weight": tf(ramp(3*1040, 0.3), 3, 1040), // a row is larger than the small blocks
			"pos_ids":     int64s(ids...),
			"temperature": tf([]float32{0.7}),
		}
	}
	order := []string{"fc.weight", "fc.bias", "conv.weight", "up.weight", "proj.weight", "out.weight", "wide.weight", "pos_ids", "temperature"}
	ids := make([]int64, 300)
	for i := range ids {
		ids[i] = int64(i)
	}
	in := filepath.Join(dir, "in.safetensors")
	writeSafetensors(t, in, tensors(fc, tensor.F16, ids...), order...)
	// A float model close to the first: other values, a NaN in a middle row, up.weight as F32,
	// pos_ids different in the last element only.
	fc2 := ramp(67*48, 0.1001)
	fc2[40*48+3] = float32(math.NaN())
	ids2 := append([]int64(nil), ids...)
	ids2[299] = -1
	other := filepath.Join(dir, "other.safetensors")
	writeSafetensors(t, other, tensors(fc2, tensor.F32, ids2...), order...)
	quantized := map[string]string{}
	for name, args := range map[string][]string{
		"q8":   {"--bits", "8"},
		"q8a":  {"--bits", "8", "--scheme", "asymmetric"},
		"q4g":  {"--bits", "4", "--group-size", "16", "--group-fallback"},
		"fp16": {"--bits", "16"},
	} {
		out := filepath.Join(dir, name+".safetensors")
		args = append([]string{"quantize", "--model", in, "--out", out, "--quiet"}, args...)
		if r := runCLI(t, args...); r.code != 0 {
			t.Fatalf("monoquant %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		quantized[name] = out
	}
	pairs := [][2]string{
		{in, quantized["q8"]}, {in, quantized["q8a"]}, {in, quantized["q4g"]}, {in, quantized["fp16"]},
		{quantized["q4g"], quantized["q8"]}, {quantized["q8"], in},
		{in, other}, {other, in}, {in, in},
	}
	run := func(block, release int, pa, pb string) *compareResult {
		t.Helper()
		defer func(b, r int) { compareBlock, blocks.ReleaseEvery = b, r }(compareBlock, blocks.ReleaseEvery)
		compareBlock, blocks.ReleaseEvery = block, release
		res, err := compareFiles(context.Background(), pa, pb)
		if err != nil {
			t.Fatalf("compare %s %s: %v", pa, pb, err)
		}
		return res
	}
	for _, p := range pairs {
		label := filepath.Base(p[0]) + " vs " + filepath.Base(p[1])
		want, wantSQNR, wantMax := wholeCompare(t, p[0], p[1])
		def := run(compareBlock, blocks.ReleaseEvery, p[0], p[1])
		for _, bl := range [][2]int{{7, 64}, {100, 1000}, {5000, 1 << 20}} {
			got := run(bl[0], bl[1], p[0], p[1])
			if len(got.Tensors) != len(order) || got.Compared != len(order) {
				t.Fatalf("%s, blocks of %d: %d tensors, %d compared; want %d and %d", label, bl[0], len(got.Tensors), got.Compared, len(order), len(order))
			}
			for i, r := range got.Tensors {
				w, d := want[r.Name], def.Tensors[i]
				if r.Status != w.Status || !sameFloat(float64(r.SQNR), float64(w.SQNR)) || !sameFloat(r.MaxError, w.MaxError) ||
					!sameFloat(r.signal, w.signal) || !sameFloat(r.noise, w.noise) {
					t.Errorf("%s %s, blocks of %d values: %s SQNR %v max %v (energies %v, %v); whole tensors: %s %v max %v (%v, %v)",
						label, r.Name, bl[0], r.Status, r.SQNR, r.MaxError, r.signal, r.noise, w.Status, w.SQNR, w.MaxError, w.signal, w.noise)
				}
				if r.Status != d.Status || !sameFloat(float64(r.SQNR), float64(d.SQNR)) || !sameFloat(r.MaxError, d.MaxError) {
					t.Errorf("%s %s: blocks of %d values give %s %v max %v, the default block %s %v max %v", label, r.Name, bl[0], r.Status, r.SQNR, r.MaxError, d.Status, d.SQNR, d.MaxError)
				}
			}
			if !sameFloat(float64(got.SQNR), wantSQNR) || !sameFloat(got.MaxError, wantMax) || got.Mismatched != def.Mismatched {
				t.Errorf("%s, blocks of %d values: overall %v max %v, %d mismatched; whole tensors %v max %v, default block %d mismatched",
					label, bl[0], got.SQNR, got.MaxError, got.Mismatched, wantSQNR, wantMax, def.Mismatched)
			}
		}
	}
	// The cases the pairs are there for did come up.
	res := run(7, 64, in, other)
	byName := map[string]compareRow{}
	for _, r := range res.Tensors {
		byName[r.Name] = r
	}
	if r := byName["fc.weight"]; !math.IsNaN(r.MaxError) || !math.IsNaN(float64(r.SQNR)) {
		t.Errorf("fc.weight with a NaN in row 40: SQNR %v, max %v; want NaN and NaN", r.SQNR, r.MaxError)
	}
	if byName["pos_ids"].Status != "different" || byName["up.weight"].Status != "compared" || byName["up.weight"].DTypeA != "F16" {
		t.Errorf("in vs other: pos_ids %q, up.weight %+v; want different, compared F16 with F32", byName["pos_ids"].Status, byName["up.weight"])
	}
	for _, r := range run(7, 64, in, in).Tensors {
		if r.Name == "pos_ids" && r.Status != "identical" || r.Name == "fc.weight" && !math.IsInf(float64(r.SQNR), 1) {
			t.Errorf("in vs in: %+v; want pos_ids identical, fc.weight at +Inf dB", r)
		}
	}
	a, err := openSide("A", quantized["q4g"])
	if err != nil {
		t.Fatal(err)
	}
	defer a.r.Close()
	for _, name := range []string{"fc.weight", "up.weight", "proj.weight", "out.weight", "wide.weight"} {
		if _, ok := a.cfg.Tensors[name]; !ok {
			t.Errorf("%s is not quantized in the INT4 file: the pairs do not cover a quantized %s", name, a.info[name].DType)
		}
	}
}

// TestCompareReleasesAsItGoes: a float side is read through a stream that releases its pages
// and fetches the tensor again every blocks.ReleaseEvery bytes; a quantized side holds its stored
// values once, and both are released at the end.
func TestCompareReleasesAsItGoes(t *testing.T) {
	defer func(b, r int) { compareBlock, blocks.ReleaseEvery = b, r }(compareBlock, blocks.ReleaseEvery)
	compareBlock, blocks.ReleaseEvery = 50, 512
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	writeSafetensors(t, in, map[string]*tensor.Tensor{"fc.weight": tf(ramp(100*10, 0.3), 100, 10)}, "fc.weight") // 4000 bytes
	q := filepath.Join(dir, "q.safetensors")
	if r := runCLI(t, "quantize", "--model", in, "--out", q, "--bits", "8", "--quiet"); r.code != 0 {
		t.Fatalf("quantize: exit %d: %s", r.code, r.stderr)
	}
	a, err := openSide("A", in)
	if err != nil {
		t.Fatal(err)
	}
	defer a.r.Close()
	b, err := openSide("B", q)
	if err != nil {
		t.Fatal(err)
	}
	defer b.r.Close()
	ca, cb := &checkpointtest.CountingReader{Reader: a.r, Views: map[string][]byte{}}, &checkpointtest.CountingReader{Reader: b.r}
	a.r, b.r = ca, cb
	var row compareRow
	if err := compareOne(context.Background(), a, b, "fc.weight", []int{100, 10}, &row); err != nil {
		t.Fatal(err)
	}
	// Blocks of 5 rows (200 bytes of A): a release before the blocks at 600, 1200, ... 3600.
	if ca.Fetches != 7 || ca.Releases != 7 {
		t.Errorf("float side: %d fetches and %d releases, want 7 and 7 (6 between windows, 1 at the end)", ca.Fetches, ca.Releases)
	}
	// The quantized side: its scales and its values fetched once each, all released.
	if cb.Fetches != 2 || cb.Releases != 2 {
		t.Errorf("quantized side: %d fetches and %d releases, want 2 and 2", cb.Fetches, cb.Releases)
	}
	if row.Status != "compared" || !(float64(row.SQNR) > 30) {
		t.Errorf("row %+v; want compared, SQNR above 30 dB", row)
	}
}

// TestCompareShortTensor: a float tensor whose values do not fill its shape is a format error
// naming the side, as the whole-tensor read reported it, not a crash or a partial comparison.
func TestCompareShortTensor(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.safetensors")
	writeSafetensors(t, a, map[string]*tensor.Tensor{"w": tf(ramp(12, 1), 3, 4)}, "w")
	r, err := checkpoint.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := &side{r: shortReader{r}, info: map[string]tensor.Info{"w": {Name: "w", DType: tensor.F32, Shape: []int{3, 4}}}}
	if _, err := s.open("w"); err == nil || !strings.Contains(err.Error(), "needs 48 bytes, have 44") {
		t.Errorf("open of a short tensor = %v, want the length error", err)
	}
}

// shortReader drops the last 4 bytes of every tensor.
type shortReader struct{ checkpoint.Reader }

func (s shortReader) Tensor(name string) (*tensor.Tensor, error) {
	t, err := s.Reader.Tensor(name)
	if err == nil {
		t = &tensor.Tensor{DType: t.DType, Shape: t.Shape, Data: t.Data[:len(t.Data)-4]}
	}
	return t, err
}

// A quantized file that stores tied tensors once compares whole against its float input: each
// tied name reads as the stored tensor (config aliases), none is "only in A".
func TestCompareTiedTensors(t *testing.T) {
	in := "../../testdata/checkpoints/torch/tied.pt"
	q := filepath.Join(t.TempDir(), "q.safetensors")
	r := mustCLI(t, "quantize", "-m", in, "-o", q, "-q", "--no-log")
	if !strings.Contains(r.stdout, "Tied        emb.weight = head.weight (one storage in the input: stored once") {
		t.Errorf("the quantize report does not name the tied tensors:\n%s", r.stdout)
	}
	res, err := compareFiles(context.Background(), in, q)
	if err != nil {
		t.Fatal(err)
	}
	if res.OnlyInA != 0 || res.OnlyInB != 0 || res.Mismatched != 0 || res.Compared != 6 {
		t.Errorf("compare tied.pt with its quantized file: %d compared, %d only in A, %d only in B, %d mismatched; want 6, 0, 0, 0",
			res.Compared, res.OnlyInA, res.OnlyInB, res.Mismatched)
	}
	// inspect names the tied tensors of both files.
	for _, f := range []string{in, q} {
		ir, err := inspectFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var buf strings.Builder
		ir.print(&buf)
		if !strings.Contains(buf.String(), "Tied        emb.weight = head.weight") {
			t.Errorf("inspect %s does not name the tied tensors:\n%s", f, buf.String())
		}
	}
	for _, row := range res.Tensors {
		if (row.Name == "emb.weight" || row.Name == "b.weight") && !(float64(row.SQNR) > 30) {
			t.Errorf("%s: SQNR %v, want the stored tensor's (> 30 dB)", row.Name, row.SQNR)
		}
	}
}
