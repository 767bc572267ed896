package quant

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"

	"github.com/monoquant/monoquant/core/tensor"
)

// castFloat converts src to Float16 or BFloat16 (little-endian, two bytes each), rounding to
// nearest even like torch's .to(). Finite values that overflow are counted in Stats.Overflow and
// become ±Inf, or with SaturateFloat16 the largest finite value (±65504, BF16 ±3.3895e38).
func castFloat(dst []byte, src *tensor.Tensor, spec *Spec) (Stats, error) {
	st, _, err := castFloatMeasured(dst, src, spec, false)
	return st, err
}

// castFloatMeasured is castFloat that, with measure, also returns the Energy of src against the
// cast values (non-finite inputs left out, as measure does), in the same pass.
func castFloatMeasured(dst []byte, src *tensor.Tensor, spec *Spec, measure bool) (Stats, Energy, error) {
	n := src.Len()
	if len(dst) < 2*n {
		return Stats{}, Energy{}, errShortOutput(len(dst), 2*n)
	}
	st := Stats{FirstNonFinite: -1}
	var mu sync.Mutex
	bf16 := spec.Format == BFloat16
	shares := make([]Energy, runtime.GOMAXPROCS(0))
	parallel(n, func(w, a, b int) {
		local := Stats{FirstNonFinite: -1}
		var acc normAcc
		floats(src, a, b, func(base int, xs []float32) {
			out := dst[2*base : 2*(base+len(xs))]
			i := 0
			if k := halfVector; k.fn != nil {
				// Blocks of k.block values in the vector kernel; a block with a NaN, an Inf or
				// an overflow, and the tail, by the scalar rules below.
				for whole := len(xs) / k.block * k.block; i < whole; {
					done, sig, noise := k.fn(&out[2*i], &xs[i], whole-i, bf16)
					if measure {
						acc.ps += sig
						acc.pn += noise
					}
					i += done
					if i < whole {
						castScalar(out[2*i:2*(i+k.block)], base+i, xs[i:i+k.block], bf16, spec.SaturateFloat16, &local, &acc, measure)
						i += k.block
					}
				}
			}
			castScalar(out[2*i:], base+i, xs[i:], bf16, spec.SaturateFloat16, &local, &acc, measure)
		})
		mu.Lock()
		st.merge(local)
		shares[w] = Energy{acc.ps, acc.pn}
		mu.Unlock()
	})
	if st.NonFinite > 0 && spec.NonFinite != ClampNonFinite {
		return st, Energy{}, nonFiniteErr(st)
	}
	var en Energy
	for _, s := range shares {
		en.Signal += s.Signal
		en.Noise += s.Noise
	}
	return st, en, nil
}

// halfKernel is a vector cast-and-measure kernel: fn casts xs[:n] (n a positive multiple of
// block) to Float16 or BFloat16 and returns Σx² and Σ(x − y)², stopping before the first block
// of block values that holds a NaN or ±Inf input or a value that overflows; it returns how many
// values it did (see castMeasureHalfAVX2).
type halfKernel struct {
	name  string
	fn    func(dst *byte, xs *float32, n int, bf16 bool) (done int, sig, noise float64)
	block int
}

// halfKernels lists the vector kernels this CPU runs, the fastest first.
func halfKernels() []halfKernel {
	var ks []halfKernel
	if haveHalfAVX512 {
		ks = append(ks, halfKernel{"avx512", castMeasureHalfAVX512, 16})
	}
	if haveHalfAVX2 {
		ks = append(ks, halfKernel{"avx2", castMeasureHalfAVX2, 8})
	}
	return ks
}

// halfVector is the kernel castFloatMeasured uses (none: fn nil, the scalar loop only).
var halfVector = func() halfKernel {
	if ks := halfKernels(); len(ks) > 0 {
		return ks[0]
	}
	return halfKernel{}
}()

// castScalar casts xs (the values from index base on) into out, two bytes each, counting
// non-finite inputs and overflows in local and, with measure, adding the error to acc.
func castScalar(out []byte, base int, xs []float32, bf16, saturate bool, local *Stats, acc *normAcc, measure bool) {
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
			case saturate:
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
		if measure {
			acc.add(base+i, x, halfValue(h, bf16))
		}
	}
}

func errShortOutput(have, need int) error {
	return fmt.Errorf("%w: output buffer has %d bytes, need %d", ErrSpec, have, need)
}
