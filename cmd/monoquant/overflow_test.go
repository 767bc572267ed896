package main

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/tensor"
)

// One FP16/BF16 overflow rule in every mode (issue 12). The three old behaviours: Python's
// report failed to encode +Inf (InternalError); the CLI's --json mode failed the same way after
// writing, leaving the output behind; text mode wrote Inf into the file and said "Validated".
// Now values beyond the range saturate to the largest finite value, a warning names the layer
// and the count, the file is finite, and a failing run leaves nothing in either mode.
func TestFloat16OverflowEveryMode(t *testing.T) {
	dir := t.TempDir()
	w := ramp(16*32, 0.1)
	w[3], w[40], w[41] = 1e6, -7e4, 3.4e38
	in := filepath.Join(dir, "big.safetensors")
	writeSafetensorsMeta(t, in, nil, "fc.weight", tensor.FromFloat32(w, 16, 32))
	for _, c := range []struct {
		dtype string
		top   uint16 // the largest finite value's bits
		over  string
	}{
		{"fp16", 0x7bff, "3 values"}, // 1e6, -7e4 and 3.4e38 all exceed 65504
		{"bf16", 0x7f7f, "1 values"}, // only 3.4e38 rounds past BF16's largest finite value
	} {
		for _, asJSON := range []bool{false, true} {
			out := filepath.Join(dir, c.dtype+map[bool]string{false: ".txt", true: ".json"}[asJSON]+".safetensors")
			args := []string{"quantize", "--model", in, "--bits", "16", "--dtype", c.dtype, "--out", out, "--no-log", "--quiet"}
			if asJSON {
				args = append(args, "--json")
			}
			r := runCLI(t, args...)
			if r.code != 0 {
				t.Fatalf("%s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
			}
			if asJSON {
				var doc struct {
					Report struct {
						Warnings []struct{ Code, Message string } `json:"warnings"`
					} `json:"report"`
				}
				if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
					t.Fatalf("%s --json: stdout is not JSON: %v", c.dtype, err)
				}
				rep := doc.Report
				if !slices.ContainsFunc(rep.Warnings, func(w struct{ Code, Message string }) bool {
					return w.Code == "fp16_overflow" && strings.Contains(w.Message, c.over+` of "fc.weight"`)
				}) {
					t.Errorf("%s --json: warnings %v, want fp16_overflow naming %s", c.dtype, rep.Warnings, c.over)
				}
			} else if !strings.Contains(r.stdout, `fp16_overflow fc.weight: layer "fc": `+c.over) || !strings.Contains(r.stdout, "Weights validated") {
				t.Errorf("%s text: stdout lacks the overflow warning or the check:\n%s", c.dtype, r.stdout)
			}
			f, err := checkpoint.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			x, err := f.Tensor("fc.weight")
			if err != nil {
				t.Fatal(err)
			}
			h := func(i int) uint16 { return binary.LittleEndian.Uint16(x.Data[2*i:]) }
			vals := make([]float32, len(x.Data)/2)
			tensor.ConvertToFloat32(vals, x.DType, x.Data)
			for i, v := range vals {
				if math.IsInf(float64(v), 0) || math.IsNaN(float64(v)) {
					t.Fatalf("%s: value %d is %v in the file", c.dtype, i, v)
				}
			}
			if h(41) != c.top {
				t.Errorf("%s: 3.4e38 stored as %#04x, want %#04x (the largest finite value)", c.dtype, h(41), c.top)
			}
			f.Close()
		}
	}
	// A failing run leaves no output in text or JSON mode.
	nan := ramp(16*32, 0.1)
	nan[5] = float32(math.NaN())
	bad := filepath.Join(dir, "nan.safetensors")
	writeSafetensorsMeta(t, bad, nil, "fc.weight", tensor.FromFloat32(nan, 16, 32))
	for _, extra := range [][]string{nil, {"--json"}} {
		out := filepath.Join(dir, "never.safetensors")
		r := runCLI(t, append([]string{"quantize", "--model", bad, "--bits", "16", "--out", out, "--no-log", "--quiet"}, extra...)...)
		if r.code != exitData {
			t.Errorf("NaN %v: exit %d, want %d", extra, r.code, exitData)
		}
		if got := listDir(t, dir); slices.Contains(got, "never.safetensors") || slices.ContainsFunc(got, func(n string) bool { return strings.HasPrefix(n, ".") }) {
			t.Errorf("NaN %v: the folder holds %v after a failed run", extra, got)
		}
	}
}

// Group sizes below 16 (issue 12: "--group-size 8" fell back to INT8 silently, "no divisor in
// [16, 7]"): any even size that divides the row is used as given; one that does not is an error
// naming --group-size and --group-fallback; with --group-fallback the change is announced.
func TestSmallGroupSizes(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "w.safetensors")
	writeSafetensorsMeta(t, in, nil, "fc.weight", tensor.FromFloat32(ramp(8*24, 0.1), 8, 24))
	for _, gs := range []string{"2", "6", "8", "12", "24"} {
		out := filepath.Join(dir, "g"+gs+".safetensors")
		r := runCLI(t, "quantize", "-m", in, "-b", "4", "-g", gs, "-o", out, "--json", "-q", "--no-log")
		if r.code != 0 || !strings.Contains(r.stdout, `"group_size": `+gs) || strings.Contains(r.stdout, "group_size_fallback") {
			t.Errorf("-g %s: exit %d, want INT4 with group %s and no fallback: %.400s%s", gs, r.code, gs, r.stdout, r.stderr)
		}
	}
	args := []string{"quantize", "-m", in, "-b", "4", "-g", "10", "-o", filepath.Join(dir, "g10.safetensors"), "--no-log"}
	assertOneLineError(t, args, runCLI(t, args...), exitUsage, "--group-size 10 does not divide the row length 24 (give a group size that divides it, or allow --group-fallback)")
	r := runCLI(t, append(args, "--group-fallback", "-q")...)
	if r.code != 0 || !strings.Contains(r.stdout, "group_size_fallback fc.weight: group size 10 does not divide the row length 24; using INT8 per-channel") {
		t.Errorf("-g 10 --group-fallback: exit %d, want the announced INT8 fallback:\n%s%s", r.code, r.stdout, r.stderr)
	}
}
