package runlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/zeebo/xxh3"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/model"
	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/recipe"
	"github.com/monoquant/monoquant/core/tensor"
)

// TensorDigest is one tensor's part of a state-dict fingerprint.
type TensorDigest struct {
	Name   string
	DType  string // tensor.DType's name: "F32", "BF16", "I64", ...
	Shape  []int
	Digest string // TensorDigestOf the data: hex XXH3-128, row-major and little-endian
}

// TensorDigestOf is a tensor's digest in a state-dict fingerprint: the XXH3-128 of its bytes
// (seed 0) in xxHash's canonical form, 32 hex digits, high half first, as `xxhsum -H2` prints
// it. Not sha256: XXH3 hashes at memory speed (about 15x sha256 with SHA-NI here), so an
// in-memory run's input identity costs no more than ~2% of a quantization; it is not a
// cryptographic hash (the identity guards against mistakes, not adversaries), but any change
// of the bytes changes it but with probability 2^-128.
func TensorDigestOf(data []byte) string {
	b := xxh3.Hash128(data).Bytes()
	return hex.EncodeToString(b[:])
}

// StateDictFingerprint is the input identity of an in-memory model (Python's quantize of an
// nn.Module or a state dict, mq_model_quantize of a built model): the hex sha256 of the lines
//
//	<name>\t<dtype>\t<d0,d1,...>\t<TensorDigestOf the data>\n
//
// one per tensor, sorted by name. It depends on the tensors only (not their order, not where
// they came from), so the weights of a file fingerprint the same as the module they were saved
// from (FingerprintReader), and any tool that can hash a tensor's bytes can check it.
func StateDictFingerprint(ts []TensorDigest) string {
	sorted := append([]TensorDigest{}, ts...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	h := sha256.New()
	for _, t := range sorted {
		dims := make([]string, len(t.Shape))
		for i, d := range t.Shape {
			dims[i] = strconv.Itoa(d)
		}
		fmt.Fprintf(h, "%s\t%s\t%s\t%s\n", t.Name, t.DType, strings.Join(dims, ","), t.Digest)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// FingerprintReader computes the StateDictFingerprint of every tensor of r, and their bytes.
// It reads each tensor once and releases it; ctx stops it between tensors.
func FingerprintReader(ctx context.Context, r checkpoint.Reader) (string, int64, error) {
	var ds []TensorDigest
	var n int64
	for _, e := range r.Entries() {
		if err := ctx.Err(); err != nil {
			return "", 0, err
		}
		t, err := r.Tensor(e.Name)
		if err != nil {
			return "", 0, fmt.Errorf("fingerprint: %w", err)
		}
		ds = append(ds, TensorDigest{Name: e.Name, DType: t.DType.String(), Shape: t.Shape, Digest: TensorDigestOf(t.Data)})
		n += int64(len(t.Data))
		r.Release(e.Name)
	}
	return StateDictFingerprint(ds), n, nil
}

// CalibrationHash fingerprints the calibration data of an in-memory run as the engine sees
// it: Count is the number of activation batches fed (one per layer and batch, as a
// calibration file's entries), Shapes their shapes (the first MaxShapes), SHA256 the sha256
// of the lines "<layer>\t<dtype>\t<d0,d1,...>\t<TensorDigestOf the data>\n", one per batch in
// the order fed. Safe for concurrent use.
type CalibrationHash struct {
	mu sync.Mutex
	h  hash.Hash
	c  Calibration
}

// NewCalibrationHash starts an empty fingerprint.
func NewCalibrationHash() *CalibrationHash {
	return &CalibrationHash{h: sha256.New(), c: Calibration{Shapes: [][]int{}}}
}

// Add feeds one batch of a layer's activations.
func (c *CalibrationHash) Add(layer string, x *tensor.Tensor) {
	dims := make([]string, len(x.Shape))
	for i, d := range x.Shape {
		dims[i] = strconv.Itoa(d)
	}
	line := fmt.Sprintf("%s\t%s\t%s\t%s\n", layer, x.DType, strings.Join(dims, ","), TensorDigestOf(x.Data))
	c.mu.Lock()
	defer c.mu.Unlock()
	io.WriteString(c.h, line)
	c.c.Count++
	if len(c.c.Shapes) < MaxShapes {
		c.c.Shapes = append(c.c.Shapes, append([]int{}, x.Shape...))
	}
}

// Calibration is the fingerprint so far (nil for a nil hash or none fed).
func (c *CalibrationHash) Calibration() *Calibration {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.c.Count == 0 {
		return nil
	}
	out := c.c
	out.Shapes = append([][]int{}, c.c.Shapes...)
	out.SHA256 = hex.EncodeToString(c.h.Sum(nil))
	return &out
}

var (
	versionsMu sync.Mutex
	versions   = map[string]string{}
)

// SetVersion adds component=version to the versions of every run Begin starts in this
// process from now on: a binding names its host ("torch", "python"), which the engine cannot
// know. An empty version removes the component.
func SetVersion(component, version string) {
	versionsMu.Lock()
	defer versionsMu.Unlock()
	if version == "" {
		delete(versions, component)
		return
	}
	versions[component] = version
}

func processVersions() map[string]string {
	versionsMu.Lock()
	defer versionsMu.Unlock()
	return maps.Clone(versions)
}

// ModelRecording records an in-memory quantization (model.Model.Quantize): StartModel before
// quantizing (the state-dict fingerprint is computed, and the log opened, beside the
// quantization, which reads the same tensors), Finish with the result.
type ModelRecording struct {
	rec  *Run
	path string
	fp   chan fingerprint
	stop context.CancelFunc
}

// fingerprint is what StartModel's goroutine found: the input identity and the open log.
type fingerprint struct {
	sha    string
	bytes  int64
	err    error
	path   string // the log's file
	log    *Log   // nil when it could not be opened (logErr)
	logErr error
}

// StartModel starts the record of quantizing m for entryPoint, to go into the log at path
// ("" for DefaultPath). m's tensors must stay unchanged until Finish returns.
func StartModel(entryPoint, path string, m *model.Model) *ModelRecording {
	ctx, stop := context.WithCancel(context.Background())
	r := &ModelRecording{rec: Begin(entryPoint), path: path, fp: make(chan fingerprint, 1), stop: stop}
	go func() {
		var f fingerprint
		f.sha, f.bytes, f.err = FingerprintReader(ctx, m.Reader())
		if f.path = path; f.path == "" {
			f.path, f.logErr = DefaultPath()
		}
		if f.err == nil && f.logErr == nil {
			// opening (and on first use creating and migrating) the log takes milliseconds:
			// here they overlap the quantization instead of following it
			f.log, f.logErr = Open(ctx, f.path)
		}
		r.fp <- f
	}()
	return r
}

// Abandon stops the fingerprint of a quantization that failed; nothing is recorded.
func (r *ModelRecording) Abandon() {
	r.stop()
	f := <-r.fp
	f.log.Close()
}

// Finish fills the record from the quantization's result and stores it. It never fails:
// a run that cannot be recorded gives id 0 and a warning. logPath is the log's file.
func (r *ModelRecording) Finish(ctx context.Context, opts plan.Options, res *model.Result, cal *Calibration) (id int64, logPath, warning string) {
	f := <-r.fp
	defer r.stop()
	defer f.log.Close()
	if f.logErr == nil && f.err != nil {
		f.logErr = f.err
	}
	rec := r.rec
	if f.logErr == nil {
		rec.Input = FileRef{SHA256: f.sha, Bytes: f.bytes}
		rec.Calibration = cal
		f.logErr = rec.SetReport(Settings{Options: opts, Recipe: res.Plan.Recipe}, res.Plan, res.Report)
	}
	if f.logErr == nil {
		id, f.logErr = f.log.Record(ctx, rec)
	}
	if f.logErr != nil {
		return 0, f.path, notRecorded(f.logErr)
	}
	return id, f.path, ""
}

// Trial is a run known by its results only: a search trial the caller quantized and measured
// itself (core/search), recorded so that `runs compare` shows the trials side by side.
type Trial struct {
	EntryPoint string         // "search"
	Recipe     *recipe.Recipe // the resolved recipe the trial applied
	// Objectives are stored as the run's metrics (the columns `runs compare` shows), Goals
	// ("max" or "min" per objective) with the settings, so that compare finds the trials' front
	// on them. An objective "size" with goal "min" is the trial's size in bytes.
	Objectives map[string]float64
	Goals      map[string]string
	// Results are whole-model results (bits_per_weight, ...).
	Results map[string]float64
}

// RecordTrial records a trial in the log at path ("" for DefaultPath); it never fails (see
// RecordOrWarn). The run has no input or output file: it cannot be reproduced from the log.
func RecordTrial(ctx context.Context, path string, t Trial) (id int64, warning string) {
	rec := Begin(t.EntryPoint)
	settings, err := EncodeSettings(Settings{Recipe: t.Recipe, Objectives: t.Goals})
	if err != nil {
		return 0, "run not recorded: " + err.Error()
	}
	rec.Settings = settings
	maps.Copy(rec.Results, t.Results)
	maps.Copy(rec.Metrics, t.Objectives)
	if v, ok := t.Objectives["size"]; ok && t.Goals["size"] == "min" {
		rec.Results["total_bytes_after"] = v
	}
	return RecordOrWarn(ctx, path, rec)
}
