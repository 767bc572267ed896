package quant

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/monoquant/monoquant/core/tensor"
)

// castFloat converts src to Float16 or BFloat16 (little-endian, two bytes each), rounding to
// nearest even like torch's .to(). Finite values that overflow are counted in Stats.Overflow and
// become ±Inf, or with SaturateFloat16 the largest finite value (±65504, BF16 ±3.3895e38).
func castFloat(dst []byte, src *tensor.Tensor, spec *Spec) (Stats, error) {
	n := src.Len()
	if len(dst) < 2*n {
		return Stats{}, errShortOutput(len(dst), 2*n)
	}
	st := Stats{FirstNonFinite: -1}
	var mu sync.Mutex
	bf16 := spec.Format == BFloat16
	parallel(n, func(_, a, b int) {
		local := Stats{FirstNonFinite: -1}
		floats(src, a, b, func(base int, xs []float32) {
			out := dst[2*base : 2*(base+len(xs))]
			for i, x := range xs {
				var h uint16
				if bf16 {
					h = tensor.Float32ToBF16(x)
				} else {
					h = tensor.Float32ToF16(x)
				}
				// An all-ones exponent in the output is the only sign of trouble: the input
				// was NaN or ±Inf, or a finite value overflowed. Everything else needs no check.
				if (bf16 && h&0x7F80 == 0x7F80) || (!bf16 && h&0x7C00 == 0x7C00) {
					switch {
					case !isFinite(x):
						if local.NonFinite == 0 {
							local.FirstNonFinite = base + i
						}
						local.NonFinite++
					case spec.SaturateFloat16:
						local.Overflow++
						if bf16 {
							h = h&0x8000 | 0x7F7F // ±3.3895314e38
						} else {
							h = h&0x8000 | 0x7BFF // ±65504
						}
					default:
						local.Overflow++
					}
				}
				binary.LittleEndian.PutUint16(out[2*i:], h)
			}
		})
		mu.Lock()
		st.merge(local)
		mu.Unlock()
	})
	if st.NonFinite > 0 && spec.NonFinite != ClampNonFinite {
		return st, nonFiniteErr(st)
	}
	return st, nil
}

func errShortOutput(have, need int) error {
	return fmt.Errorf("%w: output buffer has %d bytes, need %d", ErrSpec, have, need)
}
