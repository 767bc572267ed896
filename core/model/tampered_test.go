package model

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// tamperedFile quantizes one asymmetric INT8 linear weight, lets edit change the stored
// tensors or metadata, saves it and returns its path.
func tamperedFile(t *testing.T, edit func(r *Result)) string {
	t.Helper()
	m := NewModel()
	w := make([]float32, 8*4)
	for i := range w {
		w[i] = float32(i%7) - 2.5
	}
	m.Add("fc.weight", tensor.FromFloat32(w, 8, 4))
	spec := quant.Spec{Format: quant.Int8, Scheme: quant.Asymmetric, Granularity: quant.PerChannel, QDType: quant.QUInt8}
	res, err := m.Quantize(context.Background(), plan.Options{Spec: spec}, nil)
	if err != nil {
		t.Fatal(err)
	}
	edit(res)
	p := filepath.Join(t.TempDir(), "q.safetensors")
	if err := res.Save(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTamperedQParamsRefusedOnLoad: a quantized file whose stored scales or zero points were
// edited is refused by LoadResult (mq_model_load, Python's monoquant.load) with the same error
// the CLI and dequantize give, naming the tensor — not loaded into a model that outputs NaN.
func TestTamperedQParamsRefusedOnLoad(t *testing.T) {
	setScale := func(v float32) func(*Result) {
		return func(r *Result) {
			st, _ := r.ck.Tensor("fc.weight.scale")
			tensor.View[float32](st.Data)[3] = v
		}
	}
	setZP := func(v int32) func(*Result) {
		return func(r *Result) {
			zt, _ := r.ck.Tensor("fc.weight.zero_point")
			tensor.View[int32](zt.Data)[1] = v
		}
	}
	cases := []struct {
		name string
		edit func(*Result)
		want string
	}{
		{"zero scale", setScale(0), `"fc.weight.scale": scale 3 is 0`},
		{"negative scale", setScale(-1), `scale 3 is -1`},
		{"NaN scale", setScale(float32(math.NaN())), `scale 3 is NaN`},
		{"Inf scale", setScale(float32(math.Inf(1))), `scale 3 is +Inf`},
		{"huge scale", setScale(1e37), `scale 3 is 1e+37; above 1.33e+36, quint8 values would dequantize to infinity`},
		{"zero point above quint8", setZP(256), `"fc.weight.zero_point": zero point 1 is 256, outside quint8 [0, 255]`},
		{"negative zero point", setZP(-1), `zero point 1 is -1`},
	}
	for _, c := range cases {
		p := tamperedFile(t, c.edit)
		_, err := LoadResult(p)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: LoadResult error = %v, want ErrFormat containing %q", c.name, err, c.want)
		}
	}
	if _, err := LoadResult(tamperedFile(t, func(*Result) {})); err != nil {
		t.Errorf("untampered file: %v", err)
	}
}

func TestActivationZeroPointRange(t *testing.T) {
	p := tamperedFile(t, func(r *Result) {
		md := r.ck.(*memCheckpoint).metadata[MetadataKey]
		md = strings.Replace(md, `"format_version":1,`, `"format_version":1,"activations":{"fc":{"observer":"minmax","qdtype":"quint8","scheme":"asymmetric","scale":[0.1],"zero_point":[99999],"min":0,"max":1,"batches":1}},`, 1)
		r.ck.(*memCheckpoint).metadata[MetadataKey] = md
	})
	_, err := LoadResult(p)
	if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "zero point 0 is 99999, outside quint8 [0, 255]") {
		t.Errorf("LoadResult(activation zero point 99999) error = %v", err)
	}
}
