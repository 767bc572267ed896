package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/convert"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/names"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/tensor"
)

func init() {
	register(&command{
		name:     "inspect",
		synopsis: "inspect FILE [--json]",
		summary:  "list a checkpoint's tensors, layer types and quantization config",
		help: `Lists the tensors of a checkpoint (name, dtype, shape, bytes), the layer each belongs to and
its detected type, and what 'monoquant quantize' with default flags would do with it. Layer
types come from the module classes when the file holds a pickled nn.Module, else from tensor
names and shapes. For a quantized checkpoint it shows the stored config instead: each quantized
tensor's format, scheme, granularity, axis or group size and original dtype and shape, and the
activation qparams of a static-mode file.

Examples:
  monoquant inspect model.pt
  monoquant inspect model.int8.safetensors
  monoquant inspect model.safetensors.index.json --json | jq '.tensors[] | select(.action == "quantize")'`,
		setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
			asJSON := fs.Bool("json", false, "print one JSON document on stdout")
			return func(ctx context.Context, e *env, args []string) error {
				if len(args) != 1 {
					return usageErr("inspect: want exactly one FILE, got %d arguments", len(args))
				}
				res, err := inspectFile(args[0])
				if err != nil {
					return err
				}
				if *asJSON {
					return writeJSON(e.stdout, res)
				}
				res.print(humanOut(e.stdout))
				return nil
			}
		},
	})
}

type inspectTensor struct {
	Name      string `json:"name"`
	DType     string `json:"dtype"`
	Shape     []int  `json:"shape"`
	Bytes     int64  `json:"bytes"`
	Layer     string `json:"layer"`
	LayerType string `json:"layer_type"`
	// Action is what `quantize` with default flags would do (plain checkpoints); Role is what
	// a stored tensor is in a quantized checkpoint (values, scale, zero_point, kept).
	Action string `json:"action,omitempty"`
	Reason string `json:"reason,omitempty"`
	Role   string `json:"role,omitempty"`
	Of     string `json:"of,omitempty"` // the quantized tensor a scale or zero point belongs to
}

type inspectResult struct {
	File        string            `json:"file"`
	Format      string            `json:"format"`
	FileBytes   int64             `json:"file_bytes"`
	TensorBytes int64             `json:"tensor_bytes"`
	Quantized   bool              `json:"quantized"`
	Tensors     []inspectTensor   `json:"tensors"`
	Metadata    map[string]string `json:"metadata"`
	ModuleTypes map[string]string `json:"module_types,omitempty"`
	// Weights is, for a Hugging Face model folder, the weights file inside it (the index of a
	// sharded set) and ModelType the model_type its config.json names.
	Weights   string `json:"weights,omitempty"`
	ModelType string `json:"model_type,omitempty"`
	// Aliases: tied tensors, alias → the tensor it shares storage with (quantize stores it once).
	Aliases map[string]string `json:"aliases,omitempty"`
	Config  *model.Config     `json:"config,omitempty"`
	// Note explains an empty default action column (nothing quantizable with default flags).
	Note string `json:"note,omitempty"`
}

func inspectFile(path string) (*inspectResult, error) {
	r, err := openInput("input", path)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	entries := r.Entries()
	md := r.Metadata()
	weights := path
	res := &inspectResult{File: path, Metadata: map[string]string{}, ModuleTypes: r.ModuleTypes(), Tensors: []inspectTensor{}}
	if checkpoint.IsDir(path) {
		if weights, err = checkpoint.FindWeights(path); err != nil {
			return nil, inputErr(err)
		}
		res.Weights = weights
		if res.ModelType, _, err = checkpoint.ModelType(path); err != nil {
			return nil, inputErr(err)
		}
	}
	res.Format, res.FileBytes = describeFormat(r, weights), fileBytes(r, weights)
	if res.Weights != "" {
		res.Format = "Hugging Face model folder: " + filepath.Base(weights) + ", " + res.Format
	}
	for k, v := range md {
		if k != model.MetadataKey {
			res.Metadata[k] = v
		}
	}
	classified := map[string]plan.TensorClass{}
	for _, c := range plan.Classify(entries, r.ModuleTypes()) {
		classified[c.Name] = c
	}
	for _, e := range entries {
		n := tensor.NumElements(e.Shape)
		res.TensorBytes += int64(n) * int64(e.DType.Size())
	}

	if model.IsQuantized(md) {
		cfg, err := model.LoadConfig(r)
		if err != nil {
			return nil, classifyCoreErr(fmt.Errorf("%s: %w", path, err))
		}
		res.Quantized, res.Config = true, cfg
		// Kept tensors of a quantized layer (its bias) belong to the layer the config names.
		layerTypes := map[string]string{}
		for _, tc := range cfg.Tensors {
			layerTypes[tc.Layer] = tc.LayerType
		}
		for _, e := range entries {
			it := inspectTensor{Name: e.Name, DType: e.DType.String(), Shape: e.Shape, Bytes: int64(tensor.NumElements(e.Shape)) * int64(e.DType.Size()), Role: "kept"}
			base, suffix := e.Name, ""
			for _, s := range []string{names.ScaleSuffix, names.ZeroPointSuffix, names.OutlierColumnsSuffix, names.OutlierWeightSuffix} {
				if b := strings.TrimSuffix(e.Name, s); b != e.Name {
					if _, ok := cfg.Tensors[b]; ok {
						base, suffix = b, s[1:]
					}
				}
			}
			if tc, ok := cfg.Tensors[base]; ok {
				it.Layer, it.LayerType = tc.Layer, tc.LayerType
				if suffix != "" {
					it.Role, it.Of = suffix, base
				} else {
					it.Role = tc.Format + " values"
				}
			} else if i := strings.LastIndex(e.Name, "."); i > 0 && layerTypes[e.Name[:i]] != "" {
				it.Layer, it.LayerType = e.Name[:i], layerTypes[e.Name[:i]]
			} else if c, ok := classified[e.Name]; ok {
				it.Layer, it.LayerType = c.Layer, string(c.LayerType)
			}
			res.Tensors = append(res.Tensors, it)
		}
		return res, nil
	}

	// What quantize would do: core/convert's planning, with the architecture config.json names
	// and the tied tensors of the file.
	p, err := convert.PlanReader(r, path, plan.Options{})
	var actions map[string]*plan.TensorPlan
	switch {
	case err == nil:
		actions = map[string]*plan.TensorPlan{}
		for i := range p.Tensors {
			actions[p.Tensors[i].Name] = &p.Tensors[i]
			if a := p.Tensors[i].AliasOf; a != "" {
				if res.Aliases == nil {
					res.Aliases = map[string]string{}
				}
				res.Aliases[p.Tensors[i].Name] = a
			}
		}
	case errors.Is(err, plan.ErrNothingToQuantize):
		res.Note = "nothing to quantize with the default layer types (linear, conv2d, lstm)"
	default:
		return nil, classifyCoreErr(fmt.Errorf("%s: %w", path, err))
	}
	for _, e := range entries {
		it := inspectTensor{Name: e.Name, DType: e.DType.String(), Shape: e.Shape, Bytes: int64(tensor.NumElements(e.Shape)) * int64(e.DType.Size()), Action: string(plan.ActionKeep)}
		if c, ok := classified[e.Name]; ok {
			it.Layer, it.LayerType = c.Layer, string(c.LayerType)
		}
		if tp, ok := actions[e.Name]; ok {
			it.Layer, it.LayerType = tp.Layer, string(tp.LayerType)
			it.Action, it.Reason = string(tp.Action), tp.Reason
		}
		res.Tensors = append(res.Tensors, it)
	}
	return res, nil
}

func (res *inspectResult) print(w io.Writer) {
	fmt.Fprintf(w, "File        %s\n", res.File)
	fmt.Fprintf(w, "Format      %s\n", res.Format)
	if res.ModelType != "" {
		fmt.Fprintf(w, "Model type  %s (config.json)\n", res.ModelType)
	}
	fmt.Fprintf(w, "Size        %s on disk, %s in %s\n", humanBytes(res.FileBytes), humanBytes(res.TensorBytes), plural(len(res.Tensors), "tensor", "tensors"))
	if res.Quantized {
		c := res.Config
		fmt.Fprintf(w, "Quantized   yes: monoquant format %d, written by %s %s, %s, %s\n", c.FormatVersion, c.Tool, c.ToolVersion,
			activationWords(c.Mode), plural(len(c.Tensors), "quantized tensor", "quantized tensors"))
	} else {
		fmt.Fprintln(w, "Quantized   no")
	}
	if len(res.ModuleTypes) > 0 {
		fmt.Fprintf(w, "Modules     %d (classes read from the pickled nn.Module)\n", len(res.ModuleTypes))
	}
	tied, how := res.Aliases, "share storage; quantize stores them once"
	if res.Config != nil {
		tied, how = res.Config.Aliases, "stored once; readers tie them again"
	}
	for _, a := range sortedKeys(tied) {
		fmt.Fprintf(w, "Tied        %s = %s (%s)\n", a, tied[a], how)
	}
	for _, k := range sortedKeys(res.Metadata) {
		v := res.Metadata[k]
		if len(v) > 60 {
			v = v[:57] + "..."
		}
		fmt.Fprintf(w, "Metadata    %s = %s\n", k, v)
	}
	fmt.Fprintln(w)
	if res.Quantized {
		t := newTable("tensor", "dtype", "shape", "layer type", "role").alignRight()
		for _, it := range res.Tensors {
			role := it.Role
			if it.Of != "" {
				role += " of " + it.Of
			}
			t.add(it.Name, it.DType, shapeString(it.Shape), dash(it.LayerType), role)
		}
		t.write(w)
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Quantization config:")
		ct := newTable("tensor", "format", "scheme", "granularity", "axis/group", "qdtype", "activations", "rule", "original")
		for _, name := range sortedKeys(res.Config.Tensors) {
			tc := res.Config.Tensors[name]
			ag := "-"
			switch tc.Granularity {
			case "per_channel":
				ag = fmt.Sprintf("axis %d", tc.Axis)
			case "per_group":
				ag = fmt.Sprintf("group %d", tc.GroupSize)
			}
			rule := "-"
			if tc.Rule != nil && res.Config.Recipe != nil && *tc.Rule >= 0 && *tc.Rule < len(res.Config.Recipe.Rules) {
				rule = fmt.Sprintf("%d %s", *tc.Rule+1, res.Config.Recipe.Rules[*tc.Rule].Match)
			}
			ct.add(name, tc.Format, dash(tc.Scheme), dash(tc.Granularity), ag, dash(tc.QDType), dash(tc.Activations), rule, tc.DType+" "+shapeString(tc.Shape))
		}
		ct.write(w)
		ot := newTable("tensor", "threshold", "float input features").alignRight(1, 2)
		for _, name := range sortedKeys(res.Config.Tensors) {
			if tc := res.Config.Tensors[name]; tc.OutlierThreshold > 0 {
				n := "per batch at run time"
				if tc.Activations == "static" {
					n = fmt.Sprint(tc.OutlierColumns)
				}
				ot.add(name, fmt.Sprintf("%g", tc.OutlierThreshold), n)
			}
		}
		if len(ot.rows) > 0 {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "LLM.int8() outliers:")
			ot.write(w)
		}
		if len(res.Config.Activations) > 0 {
			fmt.Fprintln(w)
			fmt.Fprintln(w, "Activation qparams (static mode):")
			at := newTable("layer", "observer", "qdtype", "scale", "zero point", "batches").alignRight(3, 4, 5)
			for _, l := range sortedKeys(res.Config.Activations) {
				a := res.Config.Activations[l]
				sc, zp := "-", "-"
				if len(a.Scale) > 0 {
					sc, zp = fmt.Sprintf("%.6g", a.Scale[0]), fmt.Sprint(a.ZeroPoint[0])
				}
				at.add(l, a.Observer, a.QDType, sc, zp, fmt.Sprint(a.Batches))
			}
			at.write(w)
		}
		return
	}
	t := newTable("tensor", "dtype", "shape", "layer type", "quantize (defaults)")
	for _, it := range res.Tensors {
		act := it.Action
		if it.Reason != "" {
			act += ": " + it.Reason
		}
		t.add(it.Name, it.DType, shapeString(it.Shape), dash(it.LayerType), act)
	}
	t.write(w)
	if res.Note != "" {
		fmt.Fprintf(w, "\nNote: %s\n", res.Note)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
