package tensor

import (
	"encoding/binary"
	"math"
	"testing"

	"github.com/x448/float16"
)

// TestConvertHalvesExhaustive holds ConvertToFloat32 (the vector paths where the CPU has them,
// their scalar tails, and the unaligned fallback) to the one-value definitions for every one of
// the 65536 F16 and BF16 bit patterns, bit for bit: signaling NaNs keep their payload.
func TestConvertHalvesExhaustive(t *testing.T) {
	if !haveF16C || !haveAVX2 {
		t.Log("no F16C/AVX2 here: only the scalar paths run")
	}
	all := make([]byte, 2*65536+2)
	for h := 0; h < 65536; h++ {
		binary.LittleEndian.PutUint16(all[2*h:], uint16(h))
	}
	ref := map[DType]func(uint16) uint32{
		F16:  func(h uint16) uint32 { return math.Float32bits(float16.Frombits(h).Float32()) },
		BF16: func(h uint16) uint32 { return uint32(h) << 16 },
	}
	for dt, want := range ref {
		for _, c := range []struct {
			name string
			off  int // byte offset: 1 is an address not aligned for uint16
			n    int
		}{{"all", 0, 65536}, {"tail", 2, 65535 - 7}, {"short", 0, 15}, {"unaligned", 1, 65536}} {
			src := make([]byte, len(all)+1)
			copy(src[c.off:], all)
			if c.off == 1 {
				// Shift so that element i is still the pattern i, at an odd address.
				copy(src[1:], all)
			}
			in := src[c.off : c.off+2*c.n]
			dst := make([]float32, c.n)
			ConvertToFloat32(dst, dt, in)
			for i := range dst {
				h := binary.LittleEndian.Uint16(in[2*i:])
				if got := math.Float32bits(dst[i]); got != want(h) {
					t.Fatalf("%v %s: %#04x -> %#08x, want %#08x", dt, c.name, h, got, want(h))
				}
			}
		}
	}
}
