package runlog

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
)

// Begin starts a run record for an entry point ("cli", "python", "c", "go"): the clock, host
// and versions. Fill the rest with SetReport and the caller's file identities.
func Begin(entryPoint string) *Run {
	host, _ := os.Hostname()
	v := processVersions() // SetVersion's: the binding's host (torch, python)
	v["monoquant"], v["go"] = model.ToolVersion, runtime.Version()
	return &Run{
		Started: time.Now(), Host: host, EntryPoint: entryPoint, Versions: v,
		Results: map[string]float64{}, Metrics: map[string]float64{},
	}
}

// JSONSafe returns copies of runs that encoding/json can write: JSON has no Inf or NaN, so a
// lossless tensor's SQNR (+Inf) becomes the largest float64 and an undefined one (NaN, -Inf)
// 0. Every caller that prints runs as JSON (the CLI, the C ABI) goes through it.
func JSONSafe(runs []*Run) []*Run {
	out := make([]*Run, len(runs))
	for i, r := range runs {
		c := *r
		c.Layers = append([]Layer{}, r.Layers...)
		for j := range c.Layers {
			if math.IsInf(c.Layers[j].SQNR, 1) {
				c.Layers[j].SQNR = math.MaxFloat64
			} else if math.IsNaN(c.Layers[j].SQNR) || math.IsInf(c.Layers[j].SQNR, -1) {
				c.Layers[j].SQNR = 0
			}
		}
		c.Results = finiteMap(r.Results)
		out[i] = &c
	}
	return out
}

// SetReport fills the run's settings, resolved config, per-layer and whole-model results,
// warnings, duration and peak RSS from what the quantization produced.
func (r *Run) SetReport(s Settings, p *plan.Plan, rep *model.Report) error {
	var err error
	if r.Settings, err = EncodeSettings(s); err != nil {
		return err
	}
	if r.Config, err = json.Marshal(model.PlanConfig(p)); err != nil {
		return fmt.Errorf("encoding the resolved config: %w", err)
	}
	r.Layers = r.Layers[:0]
	for _, t := range rep.Tensors {
		k := t.Format
		if t.Granularity != "" {
			k += "/" + t.Granularity
		}
		if t.Scheme != "" {
			k += "/" + t.Scheme
		}
		if t.GroupSize > 0 {
			k += fmt.Sprintf("/g%d", t.GroupSize)
		}
		r.Layers = append(r.Layers, Layer{Name: t.Name, Layer: t.Layer, LayerType: t.LayerType, Format: t.Format,
			Kernel: k, SQNR: float64(t.SQNR), BytesBefore: t.BytesBefore, BytesAfter: t.BytesAfter})
	}
	res := r.Results
	res["total_bytes_before"] = float64(rep.TotalBytesBefore)
	res["total_bytes_after"] = float64(rep.TotalBytesAfter)
	res["quantized_bytes_before"] = float64(rep.QuantizedBytesBefore)
	res["quantized_bytes_after"] = float64(rep.QuantizedBytesAfter)
	if rep.FileBytesBefore > 0 {
		res["file_bytes_before"] = float64(rep.FileBytesBefore)
		res["file_bytes_after"] = float64(rep.FileBytesAfter)
	}
	res["bits_per_weight"] = rep.BitsPerWeight
	res["tensors_quantized"] = float64(rep.TensorsQuantized)
	res["tensors_kept"] = float64(rep.TensorsKept)
	res["sqnr_db"] = float64(rep.SQNR)
	if rep.TotalBytesBefore > 0 {
		res["size_ratio"] = float64(rep.TotalBytesAfter) / float64(rep.TotalBytesBefore)
	}
	r.Warnings = r.Warnings[:0]
	for _, w := range rep.Warnings {
		r.Warnings = append(r.Warnings, w.String())
	}
	r.Duration = time.Since(r.Started)
	r.PeakRSS = PeakRSS()
	return nil
}

// PeakRSS is this process's peak resident set size in bytes (0 where unknown).
func PeakRSS() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return int64(ru.Maxrss) // macOS reports bytes
	}
	return int64(ru.Maxrss) * 1024 // Linux reports KiB
}

// Quality is the run's overall weight SQNR in dB (NaN when unknown): the y axis of compare.
func (r *Run) Quality() float64 {
	if v, ok := r.Results["sqnr_db"]; ok {
		return v
	}
	return math.NaN()
}

// Size is the run's quantized size in bytes: the output file, else the tensors' payload.
func (r *Run) Size() float64 {
	if r.Output.Bytes > 0 {
		return float64(r.Output.Bytes)
	}
	return r.Results["total_bytes_after"]
}
