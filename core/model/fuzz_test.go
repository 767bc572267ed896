package model

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
	"github.com/monoquant/monoquant/core/tensor"
)

// parseEntries reads the fuzzer's compact entry list: "name:dtype:d0,d1;name:dtype:..." (bad
// pieces are dropped; what a reader's header parser would have refused never reaches ReadConfig).
func parseEntries(s string) []checkpoint.Entry {
	var out []checkpoint.Entry
	for _, part := range strings.Split(s, ";") {
		f := strings.Split(part, ":")
		if len(f) != 3 {
			continue
		}
		dt, err := tensor.ParseDType(f[1])
		if err != nil {
			continue
		}
		var shape []int
		ok := true
		for _, d := range strings.Split(f[2], ",") {
			if d == "" {
				continue
			}
			n, err := strconv.Atoi(d)
			if err != nil || n < 0 || n > 1<<20 {
				ok = false
				break
			}
			shape = append(shape, n)
		}
		if ok {
			out = append(out, checkpoint.Entry{Name: f[0], DType: dt, Shape: shape})
		}
	}
	return out
}

func formatEntries(es []checkpoint.Entry) string {
	var b strings.Builder
	for _, e := range es {
		b.WriteString(e.Name + ":" + e.DType.String() + ":")
		for i, d := range e.Shape {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(d))
		}
		b.WriteByte(';')
	}
	return b.String()
}

// FuzzReadConfig feeds arbitrary configs and stored-tensor lists to the quantized format's
// reader, which every reader of a quantized file runs (CLI, C, Python load and dequantize). It
// must never panic, and what it accepts must hold up: each configured tensor has a spec, its
// stored tensors exist with the dtype and shape the spec implies, and the config survives a
// round trip through Marshal.
//
// Seeds: the configs of real plans (INT8, INT4 group-wise, BF16, static activations).
func FuzzReadConfig(f *testing.F) {
	entries := []checkpoint.Entry{ent("fc1.weight", tensor.F32, 64, 256), ent("fc1.bias", tensor.F32, 64),
		ent("fc2.weight", tensor.F32, 32, 64), ent("emb.weight", tensor.F32, 100, 16)}
	for _, o := range []plan.Options{{Bits: 8}, {Bits: 4, Spec: quant.Spec{GroupSize: 32}}, {Bits: 16, BFloat16: true}, {Bits: 8, Scheme: "asymmetric"}} {
		p, err := plan.NewPlan(entries, nil, o)
		if err != nil {
			f.Fatal(err)
		}
		js, err := PlanConfig(p).Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(js, formatEntries(OutputEntries(p)))
	}
	f.Fuzz(func(t *testing.T, raw, list string) {
		es := parseEntries(list)
		c, err := ReadConfig(es, map[string]string{MetadataKey: raw})
		if err != nil {
			// Entry points cut messages to names.MaxMessage; here they must stay linear in the input.
			if n := len(err.Error()); n > 4*(len(raw)+len(list))+4096 {
				t.Fatalf("a %d-byte error message from %d bytes of input", n, len(raw)+len(list))
			}
			return
		}
		byName := map[string]checkpoint.Entry{}
		for _, e := range es {
			byName[e.Name] = e
		}
		for name, tc := range c.Tensors {
			s, err := tc.Spec()
			if err != nil {
				t.Fatalf("accepted tensor %q has no spec: %v", name, err)
			}
			for _, want := range storedEntries(name, &s, tc.Shape, tc.QuantShape) {
				got, ok := byName[want.Name]
				if !ok || got.DType != want.DType || !slices.Equal(got.Shape, want.Shape) {
					t.Fatalf("accepted tensor %q without its stored %q %v %v (got %v)", name, want.Name, want.DType, want.Shape, got)
				}
			}
		}
		js, err := c.Marshal()
		if err != nil {
			t.Fatalf("accepted config does not marshal: %v", err)
		}
		if _, err := ReadConfig(es, map[string]string{MetadataKey: js}); err != nil {
			t.Fatalf("accepted config refused after a round trip: %v", err)
		}
	})
}
