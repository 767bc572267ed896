package quant

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/monoquant/monoquant/core/tensor"
)

// maxF16 is the largest finite IEEE half.
const maxF16 = 65504

// castFloat converts src to Float16 or BFloat16 (little-endian, two bytes each), rounding to
// nearest even like torch's .to(). Finite values that overflow become ±Inf and are counted in
// Stats.Overflow, or are clamped to ±65504 with SaturateFloat16.
func castFloat(dst []byte, src *tensor.Tensor, spec *Spec) (Stats, error) {
	n := src.Len()
	if len(dst) < 2*n {
		return Stats{}, errShortOutput(len(dst), 2*n)
	}
	st := Stats{FirstNonFinite: -1}
	var mu sync.Mutex
	parallel(n, func(_, a, b int) {
		local := Stats{FirstNonFinite: -1}
		floats(src, a, b, func(base int, xs []float32) {
			out := dst[2*base : 2*(base+len(xs))]
			for i, x := range xs {
				if !isFinite(x) {
					if local.NonFinite == 0 {
						local.FirstNonFinite = base + i
					}
					local.NonFinite++
				}
				var h uint16
				if spec.Format == BFloat16 {
					h = tensor.Float32ToBF16(x)
					if h&0x7F80 == 0x7F80 && h&0x7F == 0 && isFinite(x) {
						local.Overflow++
					}
				} else {
					if spec.SaturateFloat16 && isFinite(x) {
						x = max(min(x, maxF16), -maxF16)
					}
					h = tensor.Float32ToF16(x)
					if h&0x7FFF == 0x7C00 && isFinite(x) {
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
