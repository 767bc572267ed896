package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/monoquant/monoquant/core/convert"

	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/recipe"
)

// quantizeResult is what `quantize` prints: as a table, or as this JSON document with --json.
type quantizeResult struct {
	Input        string              `json:"input"`
	Output       string              `json:"output"`
	OutputFormat string              `json:"output_format"`
	Bits         int                 `json:"bits"`   // 0 when the recipe mixes formats
	Format       string              `json:"format"` // int8, int4, fp16, bf16 or mixed
	Mode         string              `json:"mode"`
	Note         string              `json:"note,omitempty"`
	Report       *model.Report       `json:"report"`
	Validation   *convert.Validation `json:"validation"`
	// Recipe is the resolved recipe the file stores; ShowRules puts the deciding rule of each
	// tensor in the table (when a recipe was given).
	Recipe    *recipe.Recipe `json:"recipe"`
	ShowRules bool           `json:"-"`
	// RunID is the run's id in the run log (0 when not recorded), RunLog the log's file, and
	// LogWarning why the run could not be recorded (the quantization still succeeded).
	RunID      int64  `json:"run_id,omitempty"`
	RunLog     string `json:"run_log,omitempty"`
	LogWarning string `json:"log_warning,omitempty"`

	config *model.Config // the resolved per-tensor config the plan applied
}

func (r *quantizeResult) print(e *env) {
	w := humanOut(e.stdout)
	rep := r.Report
	fmt.Fprintf(w, "Quantized %s → %s (%s, %s)\n", r.Input, r.Output, strings.ToUpper(r.Format), activationWords(r.Mode))
	if r.Note != "" {
		fmt.Fprintf(w, "Note: %s\n", r.Note)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Size        %s → %s of tensors (%s)", humanBytes(rep.TotalBytesBefore), humanBytes(rep.TotalBytesAfter), ratio(rep.TotalBytesAfter, rep.TotalBytesBefore))
	if rep.FileBytesBefore > 0 && rep.FileBytesAfter > 0 {
		fmt.Fprintf(w, "; files %s → %s (%s)", humanBytes(rep.FileBytesBefore), humanBytes(rep.FileBytesAfter), ratio(rep.FileBytesAfter, rep.FileBytesBefore))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Quantized   %s, %d weights: %s → %s, %.2f bits per weight; %s kept as they were\n",
		plural(rep.TensorsQuantized, "tensor", "tensors"), rep.QuantizedElements,
		humanBytes(rep.QuantizedBytesBefore), humanBytes(rep.QuantizedBytesAfter), rep.BitsPerWeight,
		plural(rep.TensorsKept, "tensor", "tensors"))
	for _, a := range sortedKeys(rep.Aliases) {
		fmt.Fprintf(w, "Tied        %s = %s (one storage in the input: stored once, loading ties them again)\n", a, rep.Aliases[a])
	}
	fmt.Fprintf(w, "SQNR        %s overall (summed signal over summed noise energy of all quantized weights)\n", dB(float64(rep.SQNR)))
	fmt.Fprintln(w)

	outSQNR := map[string]model.Decibels{}
	if r.Validation != nil {
		for _, l := range r.Validation.LayerOutputs {
			outSQNR[l.Tensor] = l.OutputSQNR
		}
	}
	header := []string{"tensor", "layer type", "shape", "format", "bits/w", "SQNR", "output SQNR"}
	if r.ShowRules {
		header = append(header, "rule")
	}
	t := newTable(header...).alignRight(4, 5, 6)
	for _, tr := range rep.Tensors {
		f := tr.Format
		switch {
		case tr.GroupSize > 0:
			f += fmt.Sprintf(" g%d", tr.GroupSize)
		case tr.Granularity != "":
			f += " " + strings.ReplaceAll(tr.Granularity, "_", "-")
		}
		if tr.Scheme == "asymmetric" {
			f += " asym"
		}
		o := "-"
		if v, ok := outSQNR[tr.Name]; ok {
			o = dB(float64(v))
		}
		row := []string{tr.Name, tr.LayerType, shapeString(tr.Shape), f, fmt.Sprintf("%.2f", tr.BitsPerWeight), dB(float64(tr.SQNR)), o}
		if r.ShowRules {
			row = append(row, dash(tr.Rule))
		}
		t.add(row...)
	}
	fmt.Fprintln(w, "Per tensor, worst SQNR first (output SQNR: the layer run on a random input, original vs dequantized weights):")
	t.write(w)

	if len(rep.Activations) > 0 {
		fmt.Fprintln(w)
		at := newTable("layer", "observer", "qdtype", "scale", "zero point", "min", "max", "batches").alignRight(3, 4, 5, 6, 7)
		for _, l := range sortedKeys(rep.Activations) {
			a := rep.Activations[l]
			sc, zp := "-", "-"
			if len(a.Scale) > 0 {
				sc = fmt.Sprintf("%.6g", a.Scale[0])
				zp = fmt.Sprint(a.ZeroPoint[0])
			}
			at.add(l, a.Observer, a.QDType, sc, zp, fmt.Sprintf("%.4g", a.Min), fmt.Sprintf("%.4g", a.Max), fmt.Sprint(a.Batches))
		}
		fmt.Fprintln(w, "Activation qparams (static mode):")
		at.write(w)
	}

	fmt.Fprintln(w)
	if len(rep.Warnings) == 0 {
		fmt.Fprintln(w, "Warnings: none")
	} else {
		fmt.Fprintf(w, "Warnings (%d):\n", len(rep.Warnings))
		for _, wr := range rep.Warnings {
			if wr.Tensor != "" {
				fmt.Fprintf(w, "  - %s %s: %s\n", wr.Code, wr.Tensor, wr.Message)
			} else {
				fmt.Fprintf(w, "  - %s: %s\n", wr.Code, wr.Message)
			}
		}
	}
	if v := r.Validation; v != nil {
		// Say what was compared, and what was not: a checkpoint holds no forward pass, so this is
		// a check of every weight (and of single layers), never of the model's outputs.
		tied := ""
		if v.AliasesChecked > 0 {
			tied = fmt.Sprintf(" (and %s)", plural(v.AliasesChecked, "tied name", "tied names"))
		}
		layers := "no layer run"
		if n := len(v.LayerOutputs); n > 0 {
			worst := math.Inf(1)
			for _, lc := range v.LayerOutputs {
				if x := float64(lc.OutputSQNR); x < worst { // NaN (all-zero output) is never worst
					worst = x
				}
			}
			layers = fmt.Sprintf("%s run alone on a random input, worst output SQNR %s", plural(n, "layer", "layers"), dB(worst))
		}
		fmt.Fprintf(w, "Weights validated: reopened %s; %s%s and the config checked; SQNR of %s recomputed from the file (agrees within %g dB); %s\n",
			r.Output, plural(v.TensorsChecked, "tensor", "tensors"), tied, plural(v.SQNRConfirmed, "quantized tensor", "quantized tensors"),
			convert.SQNRTolerance, layers)
		fmt.Fprintln(w, "Not validated: the whole model's outputs (a checkpoint holds no forward pass; quantize the model in Python to compare its outputs)")
	}
	if r.RunID > 0 {
		fmt.Fprintf(w, "Recorded as run %d in %s ('monoquant runs show %d')\n", r.RunID, r.RunLog, r.RunID)
	}
}

func ratio(after, before int64) string {
	if before == 0 {
		return "n/a"
	}
	r := float64(after) / float64(before)
	if r > 0 && r < 1 {
		return fmt.Sprintf("%.3f×, %.2f× smaller", r, 1/r)
	}
	return fmt.Sprintf("%.3f×", r)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// activationWords says a config's activation mode in words.
func activationWords(mode string) string {
	switch mode {
	case "none", "weight_only":
		return "weight-only"
	case "mixed":
		return "activations per layer"
	}
	return mode + " activations"
}
