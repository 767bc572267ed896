package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"slices"

	"github.com/monoquant/monoquant/core/blocks"
	"github.com/monoquant/monoquant/core/names"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/tensor"
)

func init() {
	register(&command{
		name:     "compare",
		synopsis: "compare A B [--json]",
		summary:  "per-tensor SQNR and max error between two checkpoints",
		help: `Compares every tensor of A (the reference) with the tensor of the same name in B: SQNR in dB
(20·log10(‖a‖/‖a−b‖), torch's compute_sqnr) and the largest absolute difference. A quantized
checkpoint is dequantized tensor by tensor first, so a model can be compared with its
quantized form directly; its .scale and .zero_point tensors are not listed. Integer and bool
tensors are compared for equality. Tensors found in only one file, or with different shapes,
are listed too. The overall SQNR sums the signal and noise energies of all compared tensors.
compare exits 0 whenever both files could be read: the differences are in the report.

Examples:
  monoquant compare model.pt model.int8.safetensors
  monoquant compare model.safetensors model.dequantized.safetensors --json`,
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			asJSON := fs.Bool("json", false, "print one JSON document on stdout")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 2 {
					return usageErr("compare: want two files A and B, got %d arguments", len(args))
				}
				res, err := compareFiles(ctx, args[0], args[1])
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, res)
				}
				res.print(e)
				return nil
			}
		},
	})
}

type compareRow struct {
	Name     string         `json:"name"`
	Shape    []int          `json:"shape"`
	DTypeA   string         `json:"dtype_a"`
	DTypeB   string         `json:"dtype_b"`
	SQNR     model.Decibels `json:"sqnr_db"`
	MaxError float64        `json:"max_abs_error"`
	Status   string         `json:"status"` // compared, identical, different, only_in_a, only_in_b, shape_mismatch
	signal   float64
	noise    float64
}

type compareResult struct {
	A          string         `json:"a"`
	B          string         `json:"b"`
	Compared   int            `json:"tensors_compared"`
	OnlyInA    int            `json:"only_in_a"`
	OnlyInB    int            `json:"only_in_b"`
	Mismatched int            `json:"mismatched"`
	SQNR       model.Decibels `json:"sqnr_db"`
	MaxError   float64        `json:"max_abs_error"`
	Tensors    []compareRow   `json:"tensors"`
	QuantizedA bool           `json:"a_quantized"`
	QuantizedB bool           `json:"b_quantized"`
}

// side is one checkpoint seen as float tensors: quantized tensors dequantized on demand.
type side struct {
	r     checkpoint.Reader
	cfg   *model.Config
	names []string // logical tensors in file order
	info  map[string]tensor.Info
	alias map[string]string // a tied name the file stores once → the stored name (config aliases)
}

func openSide(what, path string) (*side, error) {
	r, err := openInput(what, path)
	if err != nil {
		return nil, err
	}
	s := &side{r: r, info: map[string]tensor.Info{}}
	entries := r.Entries()
	params := map[string]bool{}
	if model.IsQuantized(r.Metadata()) {
		if s.cfg, err = model.LoadConfig(r); err != nil {
			r.Close()
			return nil, classifyCoreErr(fmt.Errorf("%s: %w", path, err))
		}
		for name, tc := range s.cfg.Tensors {
			params[name+names.ScaleSuffix] = true
			if tc.ZeroPoint {
				params[name+names.ZeroPointSuffix] = true
			}
		}
	}
	for _, e := range entries {
		if params[e.Name] {
			continue
		}
		if s.cfg != nil {
			if tc, ok := s.cfg.Tensors[e.Name]; ok {
				dt, _ := tensor.ParseDType(tc.DType)
				e = tensor.Info{Name: e.Name, DType: dt, Shape: tc.Shape}
			}
		}
		s.names = append(s.names, e.Name)
		s.info[e.Name] = e
	}
	if s.cfg != nil && len(s.cfg.Aliases) > 0 {
		// Tied names stored once are tensors of the model like any other: each reads as its
		// stored tensor, listed right after it.
		s.alias = s.cfg.Aliases
		after := map[string][]string{}
		for _, a := range sortedKeys(s.alias) {
			after[s.alias[a]] = append(after[s.alias[a]], a)
		}
		var names []string
		for _, n := range s.names {
			names = append(names, n)
			for _, a := range after[n] {
				names = append(names, a)
				s.info[a] = tensor.Info{Name: a, DType: s.info[n].DType, Shape: s.info[n].Shape}
			}
		}
		s.names = names
	}
	return s, nil
}

// compareBlock is how many values (4 MB of float32) compare reads of each side at a time:
// whole rows of the tensor (a row is an index along axis 0; a single row larger than this is
// one block), so that it holds a block of each side, and of a float side the last releaseEvery
// bytes of pages, instead of a float32 copy of a large tensor. A variable so that tests can
// make it small.
var compareBlock = 1 << 20

// sideTensor is one side's tensor, open for compare: a quantized tensor read through a
// RowDequantizer, or a stored tensor through a stream (read as float32 a block at a time when
// it is a float tensor, compared byte for byte otherwise).
type sideTensor struct{ *model.FloatRows }

// open opens a tensor of the side. Errors are those the whole-tensor read gave: a quantized
// tensor's scales, zero points and stored length are checked here (NewRowDequantizer), a float
// tensor's length against its shape.
func (s *side) open(name string) (*sideTensor, error) {
	if target, ok := s.alias[name]; ok {
		name = target
	}
	if s.cfg != nil {
		if _, ok := s.cfg.Tensors[name]; ok {
			d, err := model.NewRowDequantizer(s.r, s.cfg, name)
			if err != nil {
				return nil, classifyCoreErr(err)
			}
			return &sideTensor{&model.FloatRows{Dequantizer: d}}, nil
		}
	}
	st, err := blocks.Open(s.r, s.info[name])
	if err != nil {
		return nil, wrapExit(exitFormat, err, "")
	}
	return &sideTensor{&model.FloatRows{Stream: st}}, nil
}

// rows is FloatRows.Rows with the engine's errors given their exit codes.
func (t *sideTensor) rows(r0, r1, rowLen int) ([]float32, error) {
	x, err := t.Rows(r0, r1, rowLen)
	if err != nil && t.Dequantizer != nil {
		return nil, classifyCoreErr(err)
	}
	return x, err
}

func compareFiles(ctx context.Context, pa, pb string) (*compareResult, error) {
	a, err := openSide("A", pa)
	if err != nil {
		return nil, err
	}
	defer a.r.Close()
	b, err := openSide("B", pb)
	if err != nil {
		return nil, err
	}
	defer b.r.Close()
	res := &compareResult{A: pa, B: pb, QuantizedA: a.cfg != nil, QuantizedB: b.cfg != nil, Tensors: []compareRow{}}
	var sig, noise float64
	for _, name := range a.names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ia := a.info[name]
		row := compareRow{Name: name, Shape: ia.Shape, DTypeA: ia.DType.String(), SQNR: model.Decibels(math.NaN())}
		ib, ok := b.info[name]
		if !ok {
			row.Status = "only_in_a"
			res.OnlyInA++
			res.Tensors = append(res.Tensors, row)
			continue
		}
		row.DTypeB = ib.DType.String()
		if !slices.Equal(ia.Shape, ib.Shape) {
			row.Status = fmt.Sprintf("shape_mismatch: %v vs %v", ia.Shape, ib.Shape)
			res.Mismatched++
			res.Tensors = append(res.Tensors, row)
			continue
		}
		if err := compareOne(ctx, a, b, name, ia.Shape, &row); err != nil {
			return nil, err
		}
		if row.Status == "different" {
			res.Mismatched++
		}
		res.Compared++
		sig += row.signal
		noise += row.noise
		res.MaxError = max(res.MaxError, row.MaxError)
		res.Tensors = append(res.Tensors, row)
	}
	for _, name := range b.names {
		if _, ok := a.info[name]; !ok {
			ib := b.info[name]
			res.OnlyInB++
			res.Tensors = append(res.Tensors, compareRow{Name: name, Shape: ib.Shape, DTypeB: ib.DType.String(), SQNR: model.Decibels(math.NaN()), Status: "only_in_b"})
		}
	}
	res.SQNR = model.Decibels(model.OverallSQNR(sig, noise))
	return res, nil
}

// compareOne compares one tensor present in both files with the same shape, a block of rows
// at a time: the SQNR sums run over the blocks in order, so the figures are those of the whole
// tensor (quant.SQNR), bit for bit.
func compareOne(ctx context.Context, a, b *side, name string, shape []int, row *compareRow) error {
	ta, err := a.open(name)
	if err != nil {
		return wrapExit(exitFormat, err, "A %s", name)
	}
	defer ta.Close()
	tb, err := b.open(name)
	if err != nil {
		return wrapExit(exitFormat, err, "B %s", name)
	}
	defer tb.Close()
	if !ta.IsFloat() || !tb.IsFloat() {
		// Integer, bool or mixed float/non-float: only equality is meaningful.
		row.Status = "different"
		if ta.Stream != nil && tb.Stream != nil && ta.Stream.DType == tb.Stream.DType {
			same, err := blocks.Equal(ta.Stream, tb.Stream, func(err error) error {
				return wrapExit(exitFormat, err, "A %s", name)
			}, func(err error) error {
				return wrapExit(exitFormat, err, "B %s", name)
			})
			if err != nil {
				return err
			}
			if same {
				row.Status = "identical"
			}
		}
		return nil
	}
	if n, na, nb := tensor.NumElements(shape), ta.Len(), tb.Len(); na != n || nb != n {
		return fail(exitFormat, "tensor %q has %d values in A and %d in B, its shape %v has %d", name, na, nb, shape, n)
	}
	rows, rowLen := 1, 1
	if len(shape) > 0 {
		rows, rowLen = shape[0], tensor.NumElements(shape[1:])
	}
	per := max(1, compareBlock/max(rowLen, 1))
	var e blocks.Energy
	for r0 := 0; r0 < rows; r0 += per {
		if err := ctx.Err(); err != nil {
			return err
		}
		r1 := min(r0+per, rows)
		x, err := ta.rows(r0, r1, rowLen)
		if err != nil {
			return wrapExit(exitFormat, err, "A %s", name)
		}
		y, err := tb.rows(r0, r1, rowLen)
		if err != nil {
			return wrapExit(exitFormat, err, "B %s", name)
		}
		row.MaxError = e.AddMaxAbs(x, y, row.MaxError)
	}
	row.signal, row.noise = e.Signal, e.Noise
	row.SQNR = model.Decibels(e.SQNR())
	row.Status = "compared"
	return nil
}

func (res *compareResult) print(e *env) {
	w := humanOut(e.stdout)
	fmt.Fprintf(w, "Compared %s (A, reference) with %s (B)\n", res.A, res.B)
	for _, q := range []struct {
		on   bool
		name string
	}{{res.QuantizedA, "A"}, {res.QuantizedB, "B"}} {
		if q.on {
			fmt.Fprintf(w, "%s is quantized: its tensors are dequantized before comparing\n", q.name)
		}
	}
	fmt.Fprintln(w)
	t := newTable("tensor", "shape", "A", "B", "SQNR", "max |A-B|", "status").alignRight(4, 5)
	for _, r := range res.Tensors {
		sq, me := "-", "-"
		if r.Status == "compared" {
			sq, me = dB(float64(r.SQNR)), fmt.Sprintf("%.4g", r.MaxError)
		}
		t.add(r.Name, shapeString(r.Shape), dash(r.DTypeA), dash(r.DTypeB), sq, me, r.Status)
	}
	t.write(w)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Overall     %s over %s (summed signal and noise energies), max |A-B| %.4g\n", dB(float64(res.SQNR)), plural(res.Compared, "tensor", "tensors"), res.MaxError)
	if res.OnlyInA+res.OnlyInB+res.Mismatched > 0 {
		fmt.Fprintf(w, "Differences %d only in A, %d only in B, %d with other shapes or values\n", res.OnlyInA, res.OnlyInB, res.Mismatched)
	}
}
