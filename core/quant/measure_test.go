package quant

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/monoquant/monoquant/core/tensor"
)

// measureRef is what quantRunMeasured must return: one value at a time, sequential float64
// sums, x̂ from the stored bytes through Dequantize's own loop.
func measureRef(xs []float32, q []byte, off int, f Format, signed bool, s float32, z int32) (float64, float64) {
	ys := make([]float32, len(xs))
	dequantRun(ys, q, off, f, signed, s, z)
	var a, b float64
	for i, x := range xs {
		v := float64(x)
		d := v - float64(ys[i])
		a += v * v
		b += d * d
	}
	return a, b
}

// TestQuantRunMeasuredMatchesScalar holds the quantize-and-measure path (the AVX2 kernel where
// the CPU has it, with its scalar head and tail) to the scalar loops: the same bytes, bit for
// bit, for every length remainder and start parity, signed and unsigned, values far outside the
// range, ties at .5 and -0; and the same sums up to the order of additions. On a CPU without
// AVX2 it checks the scalar path against itself through Dequantize.
func TestQuantRunMeasuredMatchesScalar(t *testing.T) {
	if !haveQuantAVX2 {
		t.Log("no AVX2+FMA here: only the scalar path runs")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	type qd struct {
		f       Format
		lo, hi  int32
		signed  bool
		zeroPts []int32
	}
	for _, d := range []qd{
		{Int8, -128, 127, true, []int32{0, -5, 17}},
		{Int8, 0, 255, false, []int32{0, 128, 255}},
		{Int4, -8, 7, true, []int32{0, -3, 2}},
		{Int4, 0, 15, false, []int32{0, 8, 15}},
	} {
		four := d.f == Int4
		for _, n := range []int{1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000} {
			for _, off := range []int{0, 1, 2, 3} {
				if !four && off > 0 {
					continue
				}
				for _, z := range d.zeroPts {
					scale := float32(0.01 + rng.Float64()*0.1)
					xs := make([]float32, n)
					for i := range xs {
						switch rng.IntN(10) {
						case 0: // exactly half-way between two steps: round half to even
							xs[i] = (float32(rng.IntN(21)-10) + 0.5) * scale
						case 1: // far outside the range
							xs[i] = float32(rng.NormFloat64() * 1e6)
						case 2:
							xs[i] = float32(math.Copysign(0, -1))
						case 3:
							xs[i] = float32(rng.NormFloat64()) * 3e38
						default:
							xs[i] = float32(rng.NormFloat64()) * scale * 6
						}
					}
					g := newGrid(scale, z, d.lo, d.hi)
					size := PackedLen(d.f, off+n)
					want := make([]byte, size)
					got := make([]byte, size)
					if four && off&1 == 1 {
						// The previous run's low nibble, which the high-nibble store must keep.
						want[off>>1], got[off>>1] = 0x05, 0x05
					}
					if four {
						quantRun4(want, off, xs, g)
					} else {
						quantRun8(want[off:off+n], xs, g)
					}
					// Without measuring (plain Quantize): the same bytes, no sums.
					plain := make([]byte, size)
					plain[off>>1] = got[off>>1]
					if s, e := quantRunMeasured(plain, off, xs, g, four, false); s != 0 || e != 0 {
						t.Fatalf("measure=false returned sums (%v, %v)", s, e)
					}
					sig, noise := quantRunMeasured(got, off, xs, g, four, true)
					name := fmt.Sprintf("%v signed=%v n=%d off=%d zp=%d", d.f, d.signed, n, off, z)
					if string(got) != string(want) || string(plain) != string(want) {
						t.Fatalf("%s: bytes differ from the scalar loop:\n got %x\nplain %x\nwant %x", name, got, plain, want)
					}
					ws, wn := measureRef(xs, want, off, d.f, d.signed, scale, z)
					if !closeRel(sig, ws, 1e-12) || !closeRel(noise, wn, 1e-12) {
						t.Fatalf("%s: sums (%v, %v), sequential (%v, %v)", name, sig, noise, ws, wn)
					}
				}
			}
		}
	}
}

func closeRel(a, b, tol float64) bool {
	return a == b || math.Abs(a-b) <= tol*math.Max(math.Abs(a), math.Abs(b))
}

// TestQuantizeMeasured checks the exported call on the fused path (F32, groups and channels), the
// two-pass path (per-tensor, F16 input, a float cast) and the clamp policy: Quantize's bytes and
// qparams, and the sums of a sequential loop over Dequantize's output, with non-finite inputs
// left out.
func TestQuantizeMeasured(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	x := make([]float32, 48*256)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	f32 := tensor.FromFloat32(x, 48, 256)
	f16 := &tensor.Tensor{DType: tensor.F16, Shape: []int{48, 256}, Data: make([]byte, 2*len(x))}
	for i, v := range x {
		binary.LittleEndian.PutUint16(f16.Data[2*i:], tensor.Float32ToF16(v))
	}
	withNaN := append([]float32(nil), x...)
	withNaN[300], withNaN[5000] = float32(math.NaN()), float32(math.Inf(1))
	nan := tensor.FromFloat32(withNaN, 48, 256)
	for _, c := range []struct {
		name string
		src  *tensor.Tensor
		spec Spec
	}{
		{"int8 per-channel", f32, Spec{Format: Int8, Granularity: PerChannel}},
		{"int8 asym per-channel", f32, Spec{Format: Int8, Scheme: Asymmetric, QDType: QUInt8, Granularity: PerChannel}},
		{"int4 g128", f32, Spec{Format: Int4, Granularity: PerGroup, GroupSize: 128}},
		{"int4 asym g32", f32, Spec{Format: Int4, Scheme: Asymmetric, QDType: QUInt4, Granularity: PerGroup, GroupSize: 32}},
		{"int8 per-tensor", f32, Spec{Format: Int8}},
		{"int4 g64 from f16", f16, Spec{Format: Int4, Granularity: PerGroup, GroupSize: 64}},
		{"fp16 cast", f32, Spec{Format: Float16}},
		{"int8 per-channel clamp", nan, Spec{Format: Int8, Granularity: PerChannel, NonFinite: ClampNonFinite}},
		{"int4 g128 clamp", nan, Spec{Format: Int4, Granularity: PerGroup, GroupSize: 128, NonFinite: ClampNonFinite}},
	} {
		want, err := QuantizeTensor(c.src, c.spec)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		dst := make([]byte, len(want.Data))
		sc, zp := make([]float32, len(want.Scale)), make([]int32, len(want.ZeroPoint))
		st, en, err := QuantizeMeasured(dst, c.src, c.spec, sc, zp)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if string(dst) != string(want.Data) || fmt.Sprint(sc) != fmt.Sprint(want.Scale) || fmt.Sprint(zp) != fmt.Sprint(want.ZeroPoint) {
			t.Errorf("%s: bytes or qparams differ from Quantize", c.name)
		}
		if st.NonFinite != want.Stats.NonFinite {
			t.Errorf("%s: %d non-finite, Quantize counted %d", c.name, st.NonFinite, want.Stats.NonFinite)
		}
		xs, _ := c.src.Float32s()
		deq, err := want.Dequantize()
		if err != nil {
			t.Fatal(err)
		}
		var ws, wn float64
		for i, v := range xs {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				continue
			}
			d := float64(v) - float64(deq[i])
			ws += float64(v) * float64(v)
			wn += d * d
		}
		if !closeRel(en.Signal, ws, 1e-12) || !closeRel(en.Noise, wn, 1e-12) || !(wn > 0) {
			t.Errorf("%s: energy %+v, sequential (%v, %v)", c.name, en, ws, wn)
		}
	}
	// Non-finite input without the clamp fails as Quantize does.
	_, _, err := QuantizeMeasured(make([]byte, len(x)), nan, Spec{Format: Int8, Granularity: PerChannel}, make([]float32, 48), make([]int32, 48))
	if err == nil {
		t.Error("NaN input without ClampNonFinite: no error")
	}
}

// FuzzQuantRunMeasured is a differential fuzz of the quantize-and-measure path (the AVX2 kernel
// where the CPU has it) against the scalar loops: arbitrary float32 bit patterns (NaN and ±Inf
// left out: runs holding them take quantRunNaN), scales, zero points, ranges and start offsets.
func FuzzQuantRunMeasured(f *testing.F) {
	f.Add([]byte{0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 192}, float32(0.01), int8(0), uint8(0), uint8(0))
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36}, float32(3e-5), int8(-3), uint8(3), uint8(1))
	f.Fuzz(func(t *testing.T, raw []byte, scale float32, zp int8, kind, off uint8) {
		if !(scale > 0) || math.IsInf(float64(scale), 0) || math.IsInf(float64(1/scale), 0) {
			return
		}
		xs := make([]float32, len(raw)/4)
		for i := range xs {
			v := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			if v != v || math.IsInf(float64(v), 0) {
				v = 0
			}
			xs[i] = v
		}
		lims := [][2]int32{{-128, 127}, {0, 255}, {-8, 7}, {0, 15}}[kind%4]
		four := kind%4 >= 2
		z := min(max(int32(zp), lims[0]), lims[1])
		o := 0
		if four {
			o = int(off % 4)
		}
		g := newGrid(scale, z, lims[0], lims[1])
		size := PackedLen(map[bool]Format{false: Int8, true: Int4}[four], o+len(xs))
		want, got := make([]byte, size), make([]byte, size)
		if four {
			quantRun4(want, o, xs, g)
		} else {
			quantRun8(want[o:o+len(xs)], xs, g)
		}
		plain := make([]byte, size)
		quantRunMeasured(plain, o, xs, g, four, false)
		sig, noise := quantRunMeasured(got, o, xs, g, four, true)
		if string(got) != string(want) || string(plain) != string(want) {
			t.Fatalf("scale %v zp %d lims %v off %d: bytes\n got %x\nwant %x", scale, z, lims, o, got, want)
		}
		var ws, wn float64
		for _, x := range xs {
			y := float32(g.q(x)-z) * scale
			d := float64(x) - float64(y)
			ws += float64(x) * float64(x)
			wn += d * d
		}
		if !closeRel(sig, ws, 1e-9) || !closeRel(noise, wn, 1e-9) {
			if !(math.IsInf(ws, 0) || math.IsInf(wn, 0)) {
				t.Fatalf("scale %v zp %d lims %v off %d: sums (%v, %v), want (%v, %v)", scale, z, lims, o, sig, noise, ws, wn)
			}
		}
	})
}

// TestEnergies: the vector sums against a sequential loop, every length remainder, and the
// non-finite pairs left out on request.
func TestEnergies(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, n := range []int{0, 1, 7, 8, 9, 16, 31, 1000} {
		x, y := make([]float32, n), make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
			y[i] = x[i] + float32(rng.NormFloat64()*0.01)
		}
		var ws, wn float64
		for i := range x {
			d := float64(x[i]) - float64(y[i])
			ws += float64(x[i]) * float64(x[i])
			wn += d * d
		}
		if e := Energies(x, y, false); !closeRel(e.Signal, ws, 1e-12) || !closeRel(e.Noise, wn, 1e-12) {
			t.Errorf("n=%d: %+v, sequential (%v, %v)", n, e, ws, wn)
		}
		if n > 3 {
			for _, i := range []int{2, 3} {
				d := float64(x[i]) - float64(y[i])
				ws -= float64(x[i]) * float64(x[i])
				wn -= d * d
			}
			x[2], x[3] = float32(math.NaN()), float32(math.Inf(-1))
			if e := Energies(x, y, true); !closeRel(e.Signal, ws, 1e-9) || !closeRel(e.Noise, wn, 1e-9) {
				t.Errorf("n=%d skipping non-finite: %+v, want (%v, %v)", n, e, ws, wn)
			}
			if e := Energies(x, y, false); !math.IsNaN(e.Signal) && !math.IsInf(e.Signal, 0) {
				t.Errorf("n=%d keeping non-finite: %+v, want a NaN or Inf sum", n, e)
			}
		}
	}
}
