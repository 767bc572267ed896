package runlog

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// WriteJSONL writes one JSON document per run (the Run type's JSON), one per line.
func WriteJSONL(w io.Writer, runs []*Run) error {
	enc := json.NewEncoder(w)
	for _, r := range runs {
		c := *r
		c.Results = finiteMap(r.Results)
		c.Layers = make([]Layer, len(r.Layers))
		for i, l := range r.Layers {
			l.SQNR = finiteMap(map[string]float64{"v": l.SQNR})["v"]
			c.Layers[i] = l
		}
		if err := enc.Encode(&c); err != nil {
			return err
		}
	}
	return nil
}

// WriteCSV writes one row per run: the columns are the union of every run's Fields, sorted,
// after id; a run without a field has an empty cell.
func WriteCSV(w io.Writer, runs []*Run) error {
	fields := make([]map[string]string, len(runs))
	cols := map[string]bool{}
	for i, r := range runs {
		fields[i] = Fields(r)
		for k := range fields[i] {
			if k != "id" {
				cols[k] = true
			}
		}
	}
	header := append([]string{"id"}, sortedKeys(cols)...)
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return err
	}
	for _, f := range fields {
		rec := make([]string, len(header))
		for i, k := range header {
			rec[i] = f[k]
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// MLflowExperimentID is the experiment the MLflow export puts every run in.
const MLflowExperimentID = "0"

var mlflowKeyBad = regexp.MustCompile(`[^A-Za-z0-9_\-. /]`)

// mlflowKey makes a name valid as an MLflow param or metric key (alphanumerics, _ - . space /).
func mlflowKey(k string) string { return mlflowKeyBad.ReplaceAllString(k, "_") }

// WriteMLflow writes the runs in MLflow's file-store layout under dir (mlflow ui
// --backend-store-uri DIR, or MlflowClient("file:DIR")): experiment 0 "monoquant", one run per
// log run with params (the settings), metrics (results, per-tensor SQNR as layer_sqnr_db/<tensor>,
// user metrics) and tags (host, entry point, hashes). dir must be empty or not exist: an export
// never mixes with other files.
func WriteMLflow(dir string, runs []*Run) error {
	if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
		return fmt.Errorf("export folder %s is not empty", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	exp := filepath.Join(abs, MLflowExperimentID)
	if err := os.MkdirAll(exp, 0o755); err != nil {
		return err
	}
	created := int64(0)
	if len(runs) > 0 {
		created = runs[0].Started.UnixMilli()
	}
	if err := writeYAML(filepath.Join(exp, "meta.yaml"), [][2]string{
		{"artifact_location", quoteYAML("file://" + exp)}, {"creation_time", strconv.FormatInt(created, 10)},
		{"experiment_id", quoteYAML(MLflowExperimentID)}, {"last_update_time", strconv.FormatInt(created, 10)},
		{"lifecycle_stage", "active"}, {"name", "monoquant"},
	}); err != nil {
		return err
	}
	for _, r := range runs {
		rd := filepath.Join(exp, r.UUID)
		for _, sub := range []string{"params", "metrics", "tags", "artifacts"} {
			if err := os.MkdirAll(filepath.Join(rd, sub), 0o755); err != nil {
				return err
			}
		}
		start, end := r.Started.UnixMilli(), r.Started.Add(r.Duration).UnixMilli()
		if err := writeYAML(filepath.Join(rd, "meta.yaml"), [][2]string{
			{"artifact_uri", quoteYAML("file://" + filepath.Join(rd, "artifacts"))}, {"end_time", strconv.FormatInt(end, 10)},
			{"entry_point_name", "''"}, {"experiment_id", quoteYAML(MLflowExperimentID)}, {"lifecycle_stage", "active"},
			{"run_id", r.UUID}, {"run_name", quoteYAML(fmt.Sprintf("run-%d", r.ID))}, {"run_uuid", r.UUID},
			{"source_name", "''"}, {"source_type", "4"}, {"source_version", "''"}, {"start_time", strconv.FormatInt(start, 10)},
			{"status", "3"}, {"tags", "[]"}, {"user_id", quoteYAML(r.Host)},
		}); err != nil {
			return err
		}
		params := SettingsFields(r.Settings)
		params["input"] = r.Input.Path
		params["output"] = r.Output.Path
		for k, v := range params {
			if len(v) > 6000 {
				v = v[:6000]
			}
			if err := writeNested(filepath.Join(rd, "params"), mlflowKey(k), v); err != nil {
				return err
			}
		}
		metrics := map[string]float64{}
		for k, v := range r.Results {
			metrics[k] = v
		}
		for _, l := range r.Layers {
			metrics["layer_sqnr_db/"+l.Name] = l.SQNR
		}
		for k, v := range r.Metrics {
			metrics["user/"+k] = v
		}
		for k, v := range metrics {
			if math.IsNaN(v) {
				continue
			}
			line := fmt.Sprintf("%d %s 0\n", end, strconv.FormatFloat(clampInf(v), 'g', -1, 64))
			if err := writeNested(filepath.Join(rd, "metrics"), mlflowKey(k), line); err != nil {
				return err
			}
		}
		tags := map[string]string{
			"mlflow.runName": fmt.Sprintf("run-%d", r.ID), "mlflow.source.name": "monoquant " + r.EntryPoint,
			"monoquant.run_id": strconv.FormatInt(r.ID, 10), "monoquant.host": r.Host, "monoquant.entry_point": r.EntryPoint,
			"monoquant.input_sha256": r.Input.SHA256, "monoquant.output_sha256": r.Output.SHA256,
			"monoquant.input_xxh3": r.Input.XXH3, "monoquant.output_xxh3": r.Output.XXH3,
			"monoquant.warnings": strings.Join(r.Warnings, "\n"),
		}
		for k, v := range r.Versions {
			tags["monoquant.version."+k] = v
		}
		for k, v := range tags {
			if v == "" && (strings.HasSuffix(k, "_sha256") || strings.HasSuffix(k, "_xxh3")) {
				continue // a digest not computed (a file's sha256 until runs show --sha256)
			}
			if err := writeNested(filepath.Join(rd, "tags"), k, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func clampInf(v float64) float64 {
	if math.IsInf(v, 1) {
		return math.MaxFloat64
	}
	if math.IsInf(v, -1) {
		return -math.MaxFloat64
	}
	return v
}

// writeNested writes one MLflow key file; a "/" in the key is a folder, as MLflow stores it.
func writeNested(dir, key, content string) error {
	p := filepath.Join(dir, filepath.FromSlash(key))
	if !strings.HasPrefix(p, dir+string(filepath.Separator)) {
		return fmt.Errorf("key %q leaves the export folder", key)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(content), 0o644)
}

func quoteYAML(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func writeYAML(path string, kv [][2]string) error {
	var b strings.Builder
	for _, p := range kv {
		b.WriteString(p[0] + ": " + p[1] + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
