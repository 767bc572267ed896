// Command benchmodel measures end-to-end quantization of a large float32 safetensors checkpoint:
// it generates a transformer-shaped file, quantizes it (INT8 per-channel and INT4 g128) in child
// processes so that each run's peak RSS (VmHWM) is its own, times dd on the same bytes, runs the
// torch script on the same job and prints a markdown section for BENCHMARKS.md.
//
//	go run ./bench/model run -size 2GiB -python .venv/bin/python
//
// Subcommands: run (everything), gen (write the checkpoint), quantize (one run, prints JSON).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/tensor"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchmodel run|gen|quantize [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runAll(os.Args[2:])
	case "gen":
		err = genCmd(os.Args[2:])
	case "quantize":
		err = quantizeCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown subcommand %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchmodel:", err)
		os.Exit(1)
	}
}

// parseSize reads "2GiB", "512MiB", "2e9" or a plain byte count.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"GB", 1e9}, {"MB", 1e6}} {
		if strings.HasSuffix(s, u.suf) {
			mult, s = u.m, strings.TrimSuffix(s, u.suf)
			break
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(f * float64(mult)), nil
}

// layout returns Llama-like tensors (hidden 2048, MLP 5632, vocab 32000) with as many decoder
// layers as fit in about size bytes of float32.
// vocab is the rows of the embedding and lm_head, the largest tensors (-vocab; 128000 makes
// them 4× larger, to show that the peak RSS of streaming does not follow the largest tensor).
var vocab = 32000

func layout(size int64, dt tensor.DType) []tensor.Info {
	const d, f = 2048, 5632
	var out []tensor.Info
	add := func(name string, shape ...int) {
		out = append(out, tensor.Info{Name: name, DType: dt, Shape: shape})
	}
	perLayer := int64(4*(4*d*d+3*d*f) + 2*4*d)
	fixed := int64(4 * (2*vocab*d + d))
	layers := max(1, int((size-fixed+perLayer/2)/perLayer))
	add("model.embed_tokens.weight", vocab, d)
	for i := 0; i < layers; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		add(p+"input_layernorm.weight", d)
		for _, n := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
			add(p+"self_attn."+n+".weight", d, d)
		}
		add(p+"post_attention_layernorm.weight", d)
		add(p+"mlp.gate_proj.weight", f, d)
		add(p+"mlp.up_proj.weight", f, d)
		add(p+"mlp.down_proj.weight", d, f)
	}
	add("model.norm.weight", d)
	add("lm_head.weight", vocab, d)
	return out
}

func genCmd(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	out := fs.String("out", "", "output .safetensors path")
	sizeS := fs.String("size", "2GiB", "approximate size")
	dtS := fs.String("dtype", "F32", "weight dtype: F32, or BF16/F16 (the same shapes at half the bytes)")
	fs.IntVar(&vocab, "vocab", vocab, "rows of the embedding and lm_head (the largest tensors)")
	fs.Parse(args)
	size, err := parseSize(*sizeS)
	if err != nil {
		return err
	}
	dt, err := parseDType(*dtS)
	if err != nil {
		return err
	}
	return generate(*out, layout(size, dt))
}

// generate writes the checkpoint with Gaussian-like weights (a sum of four uniforms, cheap to
// make) scaled like trained weights; norms are ones.
func generate(path string, entries []tensor.Info) error {
	w, err := safetensors.Create(path, entries, map[string]string{"format": "pt"})
	if err != nil {
		return err
	}
	defer w.Abort()
	var buf []float32
	for i, e := range entries {
		n := tensor.NumElements(e.Shape)
		if cap(buf) < n {
			buf = make([]float32, n)
		}
		v := buf[:n]
		if len(e.Shape) == 1 {
			for j := range v {
				v[j] = 1
			}
		} else {
			fill(v, uint64(i+1), float32(1/math.Sqrt(float64(e.Shape[1]))))
		}
		data := tensor.Float32Bytes(v)
		if e.DType != tensor.F32 {
			half := make([]byte, 2*n)
			for j, f := range v {
				h := tensor.Float32ToBF16(f)
				if e.DType == tensor.F16 {
					h = tensor.Float32ToF16(f)
				}
				half[2*j], half[2*j+1] = byte(h), byte(h>>8)
			}
			data = half
		}
		if err := w.Write(e.Name, data); err != nil {
			return err
		}
	}
	return w.Commit()
}

func fill(v []float32, seed uint64, std float32) {
	workers := runtime.GOMAXPROCS(0)
	per := (len(v) + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := min(w*per, len(v)), min((w+1)*per, len(v))
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := seed*0x9E3779B97F4A7C15 + uint64(w+1)*0xBF58476D1CE4E5B9
			next := func() float32 {
				s ^= s << 13
				s ^= s >> 7
				s ^= s << 17
				return float32(s>>40) / (1 << 24)
			}
			// Sum of four uniforms: variance 4/12, so scale by sqrt(3) to get unit variance.
			k := std * 1.7320508
			for j := lo; j < hi; j++ {
				v[j] = (next() + next() + next() + next() - 2) * k
			}
		}()
	}
	wg.Wait()
}

func parseDType(s string) (tensor.DType, error) {
	switch strings.ToUpper(s) {
	case "F32", "FLOAT32":
		return tensor.F32, nil
	case "BF16", "BFLOAT16":
		return tensor.BF16, nil
	case "F16", "FLOAT16":
		return tensor.F16, nil
	}
	return 0, fmt.Errorf("dtype %q: want F32, BF16 or F16", s)
}

// Result of one quantize run, printed as JSON by the child.
type Result struct {
	Bits          int     `json:"bits"`
	Seconds       float64 `json:"seconds"`
	InputBytes    int64   `json:"input_bytes"`
	OutputBytes   int64   `json:"output_bytes"`
	PeakRSS       int64   `json:"peak_rss_bytes"`
	SQNR          float64 `json:"sqnr_db"`
	BitsPerWeight float64 `json:"bits_per_weight"`
	Tensors       int     `json:"tensors_quantized"`
	CPU           float64 `json:"cpu_seconds"` // user + system, filled in by the parent
}

func quantizeCmd(args []string) error {
	fs := flag.NewFlagSet("quantize", flag.ExitOnError)
	in := fs.String("in", "", "input .safetensors")
	out := fs.String("out", "", "output .safetensors")
	bits := fs.Int("bits", 8, "8 or 4")
	cpuprof := fs.String("cpuprofile", "", "write a CPU profile here")
	fs.Parse(args)
	if *cpuprof != "" {
		f, err := os.Create(*cpuprof)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	r, err := safetensors.Open(*in)
	if err != nil {
		return err
	}
	defer r.Close()
	p, err := plan.NewPlan(r.Entries(), r.ModuleTypes(), plan.Options{Bits: *bits})
	if err != nil {
		return err
	}
	tw := &timedWriter{}
	create := func(e []checkpoint.Entry, md map[string]string) (checkpoint.Writer, error) {
		w, err := safetensors.Create(*out, e, md)
		tw.w = w
		return tw, err
	}
	rep, err := model.Quantize(context.Background(), r, create, p, model.Run{})
	if err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "bits %d: %.2fs total, %.2fs in Write, %.2fs in Commit (fsync), %.2fs reading+quantizing+measuring\n",
		*bits, secs, tw.write.Seconds(), tw.commit.Seconds(), secs-tw.write.Seconds()-tw.commit.Seconds())
	ist, _ := os.Stat(*in)
	ost, _ := os.Stat(*out)
	res := Result{Bits: *bits, Seconds: secs, InputBytes: ist.Size(), OutputBytes: ost.Size(), PeakRSS: vmHWM(),
		SQNR: float64(rep.SQNR), BitsPerWeight: rep.BitsPerWeight, Tensors: rep.TensorsQuantized}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// timedWriter splits the wall time between computing and writing.
type timedWriter struct {
	w             checkpoint.Writer
	write, commit time.Duration
}

func (t *timedWriter) Write(name string, data []byte) error {
	s := time.Now()
	err := t.w.Write(name, data)
	t.write += time.Since(s)
	return err
}

// WritePart passes streamed blocks through (the engine streams only to a checkpoint.PartWriter).
func (t *timedWriter) WritePart(name string, data []byte) error {
	s := time.Now()
	err := t.w.(checkpoint.PartWriter).WritePart(name, data)
	t.write += time.Since(s)
	return err
}

func (t *timedWriter) Commit() error {
	s := time.Now()
	err := t.w.Commit()
	t.commit += time.Since(s)
	return err
}

func (t *timedWriter) Abort() error { return t.w.Abort() }

// vmHWM is the process's peak resident set (VmHWM, bytes), which counts mapped file pages.
func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return -1
}

func runAll(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	sizeS := fs.String("size", "2GiB", "approximate checkpoint size")
	dir := fs.String("dir", "", "work folder (default: a new temp folder, deleted after)")
	python := fs.String("python", ".venv/bin/python", "python with torch and safetensors ('' to skip torch)")
	torchScript := fs.String("torch-script", "bench/model/torch_quantize.py", "torch comparison script")
	dtS := fs.String("dtype", "F32", "weight dtype of the generated checkpoint: F32, BF16 or F16 (the same shapes)")
	fs.IntVar(&vocab, "vocab", vocab, "rows of the embedding and lm_head (the largest tensors)")
	fs.Parse(args)
	size, err := parseSize(*sizeS)
	if err != nil {
		return err
	}
	dt, err := parseDType(*dtS)
	if err != nil {
		return err
	}
	work := *dir
	if work == "" {
		if work, err = os.MkdirTemp("", "monoquant-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	load0 := loadAvg()
	in := filepath.Join(work, "model.safetensors")
	t0 := time.Now()
	if err := generate(in, layout(size, dt)); err != nil {
		return err
	}
	st, _ := os.Stat(in)
	fmt.Fprintf(os.Stderr, "generated %s (%.2f GB) in %.1fs\n", in, float64(st.Size())/1e9, time.Since(t0).Seconds())
	fmt.Printf("Largest tensor: %d×2048 %v (%.0f MB).\n\n", vocab, dt, float64(vocab)*2048*float64(dt.Size())/1e6)

	// Every timed step starts with no dirty pages in flight, so one step's writeback does not
	// land on the next one's clock.
	syncAll()
	ddRead, err := ddTime("if="+in, "of=/dev/null", "bs=16M")
	if err != nil {
		return err
	}
	var results []Result
	for _, bits := range []int{8, 4} {
		out := filepath.Join(work, fmt.Sprintf("q%d.safetensors", bits))
		syncAll()
		cmd := exec.Command(self, "quantize", "-in", in, "-out", out, "-bits", strconv.Itoa(bits))
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("quantize %d bits: %w", bits, err)
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("quantize %d bits printed %q: %w", bits, b, err)
		}
		r.CPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
		results = append(results, r)
		os.Remove(out)
	}
	ddWrite := map[int]float64{}
	for _, r := range results {
		out := filepath.Join(work, "dd.bin")
		mb := (r.OutputBytes + 1<<20 - 1) >> 20
		syncAll()
		t, err := ddTime("if=/dev/zero", "of="+out, "bs=1M", fmt.Sprintf("count=%d", mb), "conv=fsync")
		if err != nil {
			return err
		}
		ddWrite[r.Bits] = t
		os.Remove(out)
	}
	var torch *torchResult
	if *python != "" {
		out := filepath.Join(work, "torch_q8.safetensors")
		syncAll()
		cmd := exec.Command(*python, *torchScript, in, out)
		cmd.Stderr = os.Stderr
		b, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("torch script: %w", err)
		}
		torch = &torchResult{}
		if err := json.Unmarshal(lastLine(b), torch); err != nil {
			return fmt.Errorf("torch script printed %q: %w", b, err)
		}
		torch.CPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
		os.Remove(out)
	}
	printMarkdown(os.Stdout, dt, st.Size(), ddRead, ddWrite, results, torch)
	fmt.Printf("\nLoad average (1 min) at the start: %s, at the end: %s (2 cores).\n", load0, loadAvg())
	return nil
}

type torchResult struct {
	Seconds float64 `json:"seconds"`
	PeakRSS int64   `json:"peak_rss_bytes"`
	SQNR    float64 `json:"sqnr_db"`
	Torch   string  `json:"torch"`
	CPU     float64 `json:"-"`
}

func lastLine(b []byte) []byte {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return []byte(lines[len(lines)-1])
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func syncAll() { exec.Command("sync").Run() }

var ddSecs = regexp.MustCompile(`, ([0-9.e+-]+) s,`)

// ddTime runs dd and returns the seconds it reports.
func ddTime(args ...string) (float64, error) {
	cmd := exec.Command("dd", args...)
	b, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("dd %v: %v: %s", args, err, b)
	}
	m := ddSecs.FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("dd %v: cannot read its time from %q", args, b)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

func printMarkdown(w *os.File, dt tensor.DType, input int64, ddRead float64, ddWrite map[int]float64, rs []Result, torch *torchResult) {
	gb := func(b int64) float64 { return float64(b) / 1e9 }
	fmt.Fprintf(w, "Input: %.2f GB %s safetensors (Llama-like shapes: hidden 2048, MLP 5632, vocab %d; embeddings not quantized, lm_head is). Generated into a temp folder and deleted after; it stays in the page cache, as it would right after a download.\n\n", gb(input), strings.ToLower(dt.String()), vocab)
	fmt.Fprintf(w, "| run | wall (s) | CPU (s) | throughput (GB/s of input) | peak RSS (MB) | peak RSS / input | output (GB) | dd read+write (s) | wall / dd | SQNR (dB) | bits/weight |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		dd := ddRead + ddWrite[r.Bits]
		name := "monoquant INT8 per-channel"
		if r.Bits == 4 {
			name = "monoquant INT4 g128"
		}
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %.2f | %.0f | %.1f%% | %.2f | %.2f | %.2f× | %.2f | %.3f |\n", name, r.Seconds, r.CPU, gb(r.InputBytes)/r.Seconds,
			float64(r.PeakRSS)/1e6, 100*float64(r.PeakRSS)/float64(r.InputBytes), gb(r.OutputBytes), dd, r.Seconds/dd, r.SQNR, r.BitsPerWeight)
	}
	if torch != nil && len(rs) > 0 {
		r := rs[0]
		fmt.Fprintf(w, "| torch %s INT8 per-channel (PerChannelMinMaxObserver + quantize_per_channel) | %.2f | %.2f | %.2f | %.0f | %.1f%% | | | | %.2f | |\n",
			torch.Torch, torch.Seconds, torch.CPU, gb(r.InputBytes)/torch.Seconds, float64(torch.PeakRSS)/1e6, 100*float64(torch.PeakRSS)/float64(r.InputBytes), torch.SQNR)
		fmt.Fprintf(w, "\nINT8: monoquant is %.1f× faster than torch with %.1f× less peak RSS.\n", torch.Seconds/r.Seconds, float64(torch.PeakRSS)/float64(r.PeakRSS))
	}
	fmt.Fprintf(w, "\ndd: read the input `dd if=model.safetensors of=/dev/null bs=16M` %.2f s; write the output's size `dd if=/dev/zero bs=1M conv=fsync`: INT8 %.2f s, INT4 %.2f s.\n", ddRead, ddWrite[8], ddWrite[4])
}
