package quant

// MinMaxF32 is the minimum and maximum of xs (a pass of the vector min/max kernel, no
// allocation), for callers that split a tensor themselves. A NaN anywhere comes back as the
// minimum or the maximum, and ±Inf as themselves, so a non-finite result means the caller must
// look closer; an empty xs gives +Inf, -Inf.
func MinMaxF32(xs []float32) (mn, mx float32) { return minMaxRun(xs) }
