package method

import (
	"fmt"
	"math"
	"sort"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/mat"

	"github.com/monoquant/monoquant/core/quant"
)

// gptq runs Frantar et al.'s column-by-column quantization with error feedback and returns
// the dequantized weights (x̂ = (q − z)·s, which the quant kernel maps back to the same q),
// filling scale and zp. The tensor is viewed as [rows, K]; H is [K, K].
func gptq(xs []float32, shape []int, spec *quant.Spec, r quant.Range, o Options, scale []float32, zp []int32) ([]float32, Result, error) {
	var res Result
	rows := shape[0]
	n := len(xs)
	if rows == 0 || n == 0 {
		return make([]float32, n), res, nil
	}
	k := n / rows
	gs := k // per channel: one group per row
	if spec.Granularity == quant.PerGroup {
		gs = spec.GroupSize
	}
	gpr := k / gs
	if o.Hessian == nil {
		return nil, res, fmt.Errorf("%w: method gptq needs the layer's input Hessian H = XᵀX over calibration inputs, a [%d, %d] float tensor (K = %d inputs): pass it as the Hessian option", ErrMethod, k, k, k)
	}
	hs := o.Hessian.Shape
	if len(hs) != 2 || hs[0] != k || hs[1] != k {
		return nil, res, fmt.Errorf("%w: the Hessian is %v; the weight's %d inputs need [%d, %d]", ErrMethod, hs, k, k, k)
	}
	hf, err := o.Hessian.Float32s()
	if err != nil {
		return nil, res, fmt.Errorf("%w: Hessian: %v", ErrMethod, err)
	}
	if i, bad := firstNonFinite(hf); bad > 0 {
		return nil, res, fmt.Errorf("%w: the Hessian holds %d NaN/Inf values (first at flat index %d)", ErrMethod, bad, i)
	}
	diag := make([]float64, k)
	for i := range k {
		diag[i] = float64(hf[i*k+i])
		if diag[i] < 0 {
			return nil, res, fmt.Errorf("%w: Hessian diagonal entry %d is %v; XᵀX has no negative diagonal", ErrMethod, i, diag[i])
		}
	}
	// Column order: act-order sorts by decreasing H[i,i] (stable, so ties keep their order).
	perm := make([]int, k)
	for i := range perm {
		perm[i] = i
	}
	if o.ActOrder {
		sort.SliceStable(perm, func(a, b int) bool { return diag[perm[a]] > diag[perm[b]] })
	}
	// W in permuted column order, float64.
	w := make([]float64, rows*k)
	for rr := range rows {
		row := xs[rr*k : (rr+1)*k]
		for j, c := range perm {
			w[rr*k+j] = float64(row[c])
		}
	}
	// h is J·H·J (rows and columns in reverse order) of the permuted H: see U below.
	h := mat.NewSymDense(k, nil)
	for a := range k {
		for b := a; b < k; b++ {
			h.SetSym(k-1-a, k-1-b, float64(hf[perm[a]*k+perm[b]]))
		}
	}
	// Inputs that never fired (H[i,i] = 0): H[i,i] = 1 and their weights zeroed, as the paper's
	// code does (they cannot affect the output on the calibration data).
	for j := range k {
		if h.At(k-1-j, k-1-j) == 0 {
			res.DeadInputs++
			h.SetSym(k-1-j, k-1-j, 1)
			for rr := range rows {
				w[rr*k+j] = 0
			}
		}
	}
	var ch mat.Cholesky
	res.Singular = res.DeadInputs > 0 || !ch.Factorize(h)
	var mean float64
	for j := range k {
		mean += h.At(j, j)
	}
	mean /= float64(k)
	damp := o.PercDamp * mean
	ok := false
	d0 := make([]float64, k) // the undamped diagonal: h is damped in place (no K×K copy)
	for j := range k {
		d0[j] = h.At(j, j)
	}
	for try := 0; try < 4 && !ok; try++ {
		for j := range k {
			h.SetSym(j, j, d0[j]+damp)
		}
		if ok = ch.Factorize(h); !ok {
			damp *= 10 // not positive definite even damped: damp harder, and say so
			res.Singular = true
		}
	}
	if !ok {
		return nil, res, fmt.Errorf("%w: the Hessian is not positive semi-definite (Cholesky fails even with dampening %g): is it XᵀX?", ErrMethod, damp)
	}
	res.Damp = damp
	// The paper's code needs U, the upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU), and gets it
	// by inverting H and factorizing again. With J the order-reversing permutation and
	// JHJ = LLᵀ, H⁻¹ = (J L⁻¹ J)ᵀ(J L⁻¹ J) and J L⁻¹ J is upper triangular with a positive
	// diagonal, so U = J L⁻¹ J: one factorization (of the reversed matrix, done above) and
	// one triangular inverse, half the work.
	var lt mat.TriDense
	ch.LTo(&lt)
	if err := lt.InverseTri(&lt); err != nil {
		return nil, res, fmt.Errorf("%w: inverting the Cholesky factor of the damped Hessian: %v (ill-conditioned; raise the dampening)", ErrMethod, err)
	}
	li := lt.RawTriangular()
	ud := make([]float64, k*k)
	for a := range k {
		for b := a; b < k; b++ {
			ud[a*k+b] = li.Data[(k-1-a)*li.Stride+(k-1-b)]
		}
	}
	u := blas64.Triangular{N: k, Stride: k, Data: ud}

	lo, hi := spec.QDType.Limits()
	// Static groups (act-order): qparams from the unquantized weights, all at once.
	if o.ActOrder {
		mins, maxs := make([]float32, rows*gpr), make([]float32, rows*gpr)
		for i := range mins {
			mins[i], maxs[i] = minMax(xs[i*gs : (i+1)*gs])
		}
		if err := quant.CalculateQParams(mins, maxs, spec.QDType, spec.Scheme, r, spec.Eps, scale, zp); err != nil {
			return nil, res, err
		}
	}
	out := make([]float32, n)
	bs := o.BlockSize
	errs := make([]float64, rows*bs)
	var qerr error
	for i1 := 0; i1 < k; i1 += bs {
		i2 := min(i1+bs, k)
		cnt := i2 - i1
		parallelFor(rows, func(ra, rb int) {
			var mn, mx [1]float32
			var s1 [1]float32
			var z1 [1]int32
			snap := make([]float64, cnt)
			for rr := ra; rr < rb; rr++ {
				wr := w[rr*k : (rr+1)*k]
				er := errs[rr*bs : rr*bs+cnt]
				if !o.ActOrder {
					copy(snap, wr[i1:i2])
				}
				for i := range cnt {
					j := i1 + i
					c := perm[j]
					gi := rr*gpr + c/gs
					if !o.ActOrder && c%gs == 0 {
						// dynamic groups: qparams of the group's weights as the paper's code
						// sees them, with the updates of earlier blocks (inside this block,
						// the values at the block's start)
						mn[0], mx[0] = minMax64(snap[j-i1 : min(j+gs, i2)-i1])
						if j+gs > i2 {
							a, b := minMax64(wr[i2 : j+gs])
							mn[0], mx[0] = min(mn[0], a), max(mx[0], b)
						}
						if err := quant.CalculateQParams(mn[:], mx[:], spec.QDType, spec.Scheme, r, spec.Eps, s1[:], z1[:]); err != nil {
							qerr = err
							return
						}
						scale[gi], zp[gi] = s1[0], z1[0]
					}
					s, z := scale[gi], zp[gi]
					inv := 1 / s
					v := float32(wr[j]) * inv
					v = max(min(v, float32(hi-z)+1), float32(lo-z)-1)
					q := (v + roundMagic) - roundMagic
					q = max(min(q, float32(hi-z)), float32(lo-z))
					deq := q * s
					out[rr*k+c] = deq
					d := u.Data[j*u.Stride+j]
					e := (wr[j] - float64(deq)) / d
					er[i] = e
					urow := u.Data[j*u.Stride : j*u.Stride+k]
					for t := j + 1; t < i2; t++ {
						wr[t] -= e * urow[t]
					}
				}
			}
		})
		if qerr != nil {
			return nil, res, qerr
		}
		if i2 < k {
			// lazy batch: W[:, i2:] -= Err · U[i1:i2, i2:]
			blas64.Gemm(blas.NoTrans, blas.NoTrans, -1,
				blas64.General{Rows: rows, Cols: cnt, Stride: bs, Data: errs},
				blas64.General{Rows: cnt, Cols: k - i2, Stride: u.Stride, Data: u.Data[i1*u.Stride+i2:]},
				1, blas64.General{Rows: rows, Cols: k - i2, Stride: k, Data: w[i2:]})
		}
	}
	return out, res, nil
}

func minMax64(xs []float64) (float32, float32) {
	mn, mx := xs[0], xs[0]
	for _, x := range xs[1:] {
		mn, mx = math.Min(mn, x), math.Max(mx, x)
	}
	return float32(mn), float32(mx)
}
