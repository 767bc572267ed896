package quant

// quantMeasure8AVX2 quantizes xs[:n] (n a positive multiple of 8, all finite) to one byte each
// and, when measure is set, returns Σx² and Σ(x − x̂)²; see quantrun_amd64.s.
//
//go:noescape
func quantMeasure8AVX2(dst *byte, xs *float32, n int, inv, scale float32, loB, hiB, zb int32, measure bool) (sig, noise float64)

// quantMeasure4AVX2 is quantMeasure8AVX2 for packed nibbles: dst receives n/2 bytes.
//
//go:noescape
func quantMeasure4AVX2(dst *byte, xs *float32, n int, inv, scale float32, loB, hiB, zb int32, measure bool) (sig, noise float64)

// energyAVX2 returns Σx² and Σ(x − y)² over n pairs (a positive multiple of 8).
//
//go:noescape
func energyAVX2(x, y *float32, n int) (sig, noise float64)

// castMeasureHalfAVX2 casts xs[:n] (n a positive multiple of 8) to Float16 (or BFloat16) and
// measures the error, stopping before the first block of 8 with a non-finite or overflowing
// value: it returns how many it did; see quantrun_amd64.s.
//
//go:noescape
func castMeasureHalfAVX2(dst *byte, xs *float32, n int, bf16 bool) (done int, sig, noise float64)

// castMeasureHalfAVX512 is castMeasureHalfAVX2 sixteen values at a time (n a positive multiple
// of 16, blocks of 16); see quantrun_amd64.s.
//
//go:noescape
func castMeasureHalfAVX512(dst *byte, xs *float32, n int, bf16 bool) (done int, sig, noise float64)
