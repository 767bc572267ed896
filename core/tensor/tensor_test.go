package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/x448/float16"
)

func TestDTypeNames(t *testing.T) {
	for _, dt := range []DType{F32, F16, BF16, F64, I8, U8, I16, I32, I64, Bool} {
		got, err := ParseDType(dt.String())
		if err != nil || got != dt {
			t.Errorf("ParseDType(%q) = %v, %v; want %v", dt.String(), got, err, dt)
		}
	}
	if _, err := ParseDType("F8"); err == nil || !strings.Contains(err.Error(), `"F8"`) {
		t.Errorf("ParseDType(F8) error = %v, want one naming F8", err)
	}
	if _, err := ParseDType("invalid"); err == nil {
		t.Errorf("ParseDType(invalid) succeeded, want an error")
	}
	if s := DType(99).String(); s != "DType(99)" {
		t.Errorf("DType(99).String() = %q", s)
	}
	if DType(99).Size() != 0 || Invalid.Valid() || !BF16.IsFloat() || I8.IsFloat() {
		t.Errorf("Size/Valid/IsFloat wrong for edge dtypes")
	}
}

func TestNumElements(t *testing.T) {
	cases := []struct {
		shape []int
		want  int
	}{
		{nil, 1},
		{[]int{3, 7}, 21},
		{[]int{4, 0, 5}, 0},
		{[]int{-1, 3}, -1},
		{[]int{math.MaxInt / 2, 3}, -1},
	}
	for _, c := range cases {
		if got := NumElements(c.shape); got != c.want {
			t.Errorf("NumElements(%v) = %d, want %d", c.shape, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		t    Tensor
		want string // "" for valid
	}{
		{Tensor{F32, []int{2, 3}, make([]byte, 24)}, ""},
		{Tensor{BF16, []int{}, make([]byte, 2)}, ""},
		{Tensor{F32, []int{2, 3}, make([]byte, 23)}, "needs 24 bytes, have 23"},
		{Tensor{Invalid, []int{1}, make([]byte, 4)}, "invalid dtype"},
		{Tensor{F32, []int{-2}, nil}, "invalid shape [-2]"},
		{Tensor{F64, []int{math.MaxInt / 4}, nil}, "needs"},
	}
	for _, c := range cases {
		err := c.t.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("Validate(%v %v, %d bytes) = %v, want nil", c.t.DType, c.t.Shape, len(c.t.Data), err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("Validate(%v %v, %d bytes) = %v, want an error containing %q", c.t.DType, c.t.Shape, len(c.t.Data), err, c.want)
		}
	}
}

func TestViewAlignment(t *testing.T) {
	buf := make([]byte, 4*5+1)
	for i := 0; i < 5; i++ {
		binary.LittleEndian.PutUint32(buf[1+4*i:], math.Float32bits(float32(i)+0.5))
	}
	// Offset 1 is misaligned: View must copy and still give the right values.
	got := View[float32](buf[1:])
	for i, v := range got {
		if v != float32(i)+0.5 {
			t.Errorf("View(misaligned)[%d] = %v, want %v", i, v, float32(i)+0.5)
		}
	}
	v := []float32{1, 2, 3}
	view := View[float32](Float32Bytes(v))
	view[0] = 9
	if v[0] != 9 {
		t.Errorf("View of aligned bytes copied; want a view")
	}
}

func TestFloat32s(t *testing.T) {
	f64 := New(F64, 3)
	for i, x := range []float64{0.1, -1e-50, 3.4028235677973366e38} {
		binary.LittleEndian.PutUint64(f64.Data[8*i:], math.Float64bits(x))
	}
	got, err := f64.Float32s()
	if err != nil {
		t.Fatal(err)
	}
	// RNE: 0.1 -> 0x3dcccccd; -1e-50 -> -0; 3.4028235677973366e38 (the f32 max rounding boundary) -> +Inf
	want := []uint32{0x3dcccccd, 0x80000000, 0x7f800000}
	for i := range want {
		if math.Float32bits(got[i]) != want[i] {
			t.Errorf("F64 -> F32 [%d] = %#08x, want %#08x", i, math.Float32bits(got[i]), want[i])
		}
	}
	bf := &Tensor{BF16, []int{2}, []byte{0x80, 0x3f, 0xc0, 0xff}}
	got, err = bf.Float32s()
	if err != nil || got[0] != 1 || !math.IsNaN(float64(got[1])) {
		t.Errorf("BF16 [0x3f80, 0xffc0] -> %v, %v; want [1 NaN]", got, err)
	}
	f16 := &Tensor{F16, []int{2}, []byte{0x00, 0x3c, 0x01, 0x00}}
	got, err = f16.Float32s()
	if err != nil || got[0] != 1 || got[1] != float32(math.Ldexp(1, -24)) {
		t.Errorf("F16 [0x3c00, 0x0001] -> %v, %v; want [1 2^-24]", got, err)
	}
	if _, err := (&Tensor{I8, []int{2}, []byte{1, 2}}).Float32s(); err == nil || !strings.Contains(err.Error(), "I8 is not a floating-point type") {
		t.Errorf("Float32s(I8) error = %v", err)
	}
	if _, err := (&Tensor{F32, []int{2}, []byte{1}}).Float32s(); err == nil {
		t.Errorf("Float32s(short data) succeeded, want an error")
	}
}

// TestHalfRounding checks round-to-nearest-even at ties, overflow and NaN against values worked
// out by hand from the formats' definitions.
func TestHalfRounding(t *testing.T) {
	bf := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, even stays
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, odd rounds up
		{math.Float32frombits(0x3f808001), 0x3f81}, // above the tie
		{math.Float32frombits(0x7f7fffff), 0x7f80}, // FLT_MAX overflows to +Inf
		{float32(math.Inf(-1)), 0xff80},
		{-0.0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
	}
	for _, c := range bf {
		if got := Float32ToBF16(c.in); got != c.want {
			t.Errorf("Float32ToBF16(%v = %#08x) = %#04x, want %#04x", c.in, math.Float32bits(c.in), got, c.want)
		}
	}
	if got := Float32ToBF16(float32(math.NaN())); got&0x7f80 != 0x7f80 || got&0x7f == 0 {
		t.Errorf("Float32ToBF16(NaN) = %#04x, want a NaN", got)
	}
	if got := Float32ToBF16(math.Float32frombits(0x7f800001)); got&0x7f == 0 {
		t.Errorf("Float32ToBF16(signalling NaN 0x7f800001) = %#04x, want a NaN, not Inf", got)
	}
	f16 := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3c00},
		{65504, 0x7bff},
		{65519, 0x7bff},
		{65520, 0x7c00},
		{1 + 1.0/2048, 0x3c00}, // tie between 1 and 1+2^-10: even
		{1 + 3.0/2048, 0x3c02},
		{float32(math.Ldexp(1, -24)), 0x0001},
		{float32(math.Ldexp(1, -25)), 0x0000}, // tie with 0: even
		{float32(math.Ldexp(1.5, -25)), 0x0001},
	}
	for _, c := range f16 {
		if got := Float32ToF16(c.in); got != c.want {
			t.Errorf("Float32ToF16(%v) = %#04x, want %#04x", c.in, got, c.want)
		}
	}
}

func TestNewAndFromFloat32(t *testing.T) {
	x := New(BF16, 3, 7)
	if len(x.Data) != 42 || x.Len() != 21 || x.Validate() != nil {
		t.Errorf("New(BF16, 3, 7): %d bytes, %d elements, %v", len(x.Data), x.Len(), x.Validate())
	}
	for _, bad := range []func(){
		func() { New(F32, -1) },
		func() { New(Invalid, 2) },
		func() { FromFloat32(make([]float32, 5), 2, 3) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("constructor with a bad shape did not panic")
				}
			}()
			bad()
		}()
	}
	if b := Float32Bytes(nil); b == nil || len(b) != 0 {
		t.Errorf("Float32Bytes(nil) = %v, want an empty slice", b)
	}
}

func ExampleTensor_Float32s() {
	x := &Tensor{DType: BF16, Shape: []int{2}, Data: []byte{0x80, 0x3f, 0x49, 0x40}}
	v, err := x.Float32s()
	fmt.Println(v, err)
	// Output: [1 3.140625] <nil>
}

// TestFloat32ToF16MatchesLibrary sweeps float32 bit patterns (every 2^k-th one plus the
// neighbourhood of every half boundary) and checks the hand-written conversion against
// x448/float16 bit for bit; NaN only has to stay a NaN.
func TestFloat32ToF16MatchesLibrary(t *testing.T) {
	check := func(b uint32) bool {
		f := math.Float32frombits(b)
		got, want := Float32ToF16(f), float16Reference(f)
		if f != f {
			if got&0x7C00 != 0x7C00 || got&0x3FF == 0 || got&0x8000 != uint16(b>>16)&0x8000 {
				t.Errorf("Float32ToF16(NaN %#08x) = %#04x, want a NaN of the same sign", b, got)
				return false
			}
			return true
		}
		if got != want {
			t.Errorf("Float32ToF16(%v = %#08x) = %#04x, want %#04x", f, b, got, want)
			return false
		}
		return true
	}
	fails := 0
	for b := uint64(0); b <= math.MaxUint32 && fails < 10; b += 251 {
		if !check(uint32(b)) {
			fails++
		}
	}
	// Around every representable half: the value itself, the ties either side, one ulp off.
	for h := uint32(0); h < 0x7C00 && fails < 10; h++ {
		for _, sign := range []uint32{0, 0x80000000} {
			c := math.Float32bits(float16.Frombits(uint16(h)).Float32())
			for d := int32(-2); d <= 2; d++ {
				if !check(sign | uint32(int32(c)+d)) {
					fails++
				}
			}
			next := math.Float32bits(float16.Frombits(uint16(h + 1)).Float32())
			mid := math.Float32bits((float16.Frombits(uint16(h)).Float32() + float16.Frombits(uint16(h+1)).Float32()) / 2)
			for _, b := range []uint32{mid - 1, mid, mid + 1, next} {
				if !check(sign | b) {
					fails++
				}
			}
		}
	}
}
