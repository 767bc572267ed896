package runlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/monoquant/monoquant/core/plan"
	"github.com/monoquant/monoquant/core/quant"
)

// sampleRun is a run with every field set, as an entry point would record it.
func sampleRun(t testing.TB, bits int, size int64, sqnr float64) *Run {
	t.Helper()
	r := Begin("go")
	r.Versions["torch"] = "2.15.0"
	raw, err := EncodeSettings(Settings{Options: plan.Options{Bits: bits, Skip: []string{"lm_head"},
		Spec: quant.Spec{Scheme: quant.Asymmetric, GroupSize: 64}}, OutputFormat: "safetensors"})
	if err != nil {
		t.Fatal(err)
	}
	r.Settings = raw
	r.Config = []byte(`{"format_version":1}`)
	r.Input = FileRef{Path: "/data/in.pt", SHA256: strings.Repeat("a", 64), XXH3: strings.Repeat("e", 32), Bytes: 1000}
	r.Output = FileRef{Path: "/data/out.safetensors", XXH3: strings.Repeat("b", 32), Bytes: size}
	r.Calibration = &Calibration{Path: "/data/acts.pt", SHA256: strings.Repeat("c", 64), Count: 2, Shapes: [][]int{{4, 8}, {4, 8}}}
	r.Layers = []Layer{
		{Name: "fc.weight", Layer: "fc", LayerType: "linear", Format: "int8", Kernel: "int8/per_channel/asymmetric", SQNR: sqnr, BytesBefore: 400, BytesAfter: 110},
		{Name: "emb.weight", Layer: "emb", LayerType: "embedding", Format: "fp16", Kernel: "fp16", SQNR: math.Inf(1), BytesBefore: 40, BytesAfter: 20},
	}
	r.Results = map[string]float64{"sqnr_db": sqnr, "total_bytes_after": float64(size)}
	r.Warnings = []string{"last_layer_quantized: careful"}
	r.Duration = 1500 * time.Millisecond
	r.PeakRSS = PeakRSS()
	return r
}

func openTemp(t *testing.T, opts ...Option) *Log {
	t.Helper()
	l, err := Open(context.Background(), filepath.Join(t.TempDir(), "sub", FileName), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestRecordGetRoundTrip(t *testing.T) {
	ctx := context.Background()
	l := openTemp(t)
	want := sampleRun(t, 8, 500, 41.5)
	id, err := l.Record(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if id != 1 || len(want.UUID) != 32 {
		t.Fatalf("Record = id %d uuid %q, want id 1 and a 32-digit uuid", id, want.UUID)
	}
	if err := l.AddMetric(ctx, id, "accuracy", 0.91); err != nil {
		t.Fatal(err)
	}
	if err := l.AddMetric(ctx, id, "accuracy", 0.92); err != nil { // replaces
		t.Fatal(err)
	}
	got, err := l.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.UUID != want.UUID || got.EntryPoint != "go" || got.Host != want.Host || got.Versions["torch"] != "2.15.0" ||
		got.Input != want.Input || got.Output != want.Output || got.PeakRSS != want.PeakRSS ||
		got.Duration.Round(time.Millisecond) != want.Duration || !got.Started.Equal(want.Started) {
		t.Errorf("Get(%d) = %+v\nwant %+v", id, got, want)
	}
	if got.Calibration == nil || got.Calibration.Count != 2 || len(got.Calibration.Shapes) != 2 {
		t.Errorf("calibration = %+v, want count 2 with 2 shapes", got.Calibration)
	}
	if len(got.Layers) != 2 || got.Layers[0] != want.Layers[0] || !math.IsInf(got.Layers[1].SQNR, 1) {
		t.Errorf("layers = %+v, want %+v (Inf kept)", got.Layers, want.Layers)
	}
	if got.Metrics["accuracy"] != 0.92 || got.Results["sqnr_db"] != 41.5 || got.Warnings[0] != want.Warnings[0] {
		t.Errorf("metrics %v results %v warnings %v", got.Metrics, got.Results, got.Warnings)
	}
	s, err := DecodeSettings(got.Settings)
	if err != nil {
		t.Fatal(err)
	}
	if s.Options.Bits != 8 || s.Options.Spec.Scheme != quant.Asymmetric || s.Options.Spec.GroupSize != 64 || s.Options.Skip[0] != "lm_head" {
		t.Errorf("settings round trip = %+v", s)
	}
	if _, err := l.Get(ctx, 99); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(99) error = %v, want ErrNotFound", err)
	}
	if err := l.AddMetric(ctx, 99, "x", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddMetric(99) error = %v, want ErrNotFound", err)
	}
	if err := l.AddMetric(ctx, id, "x", math.NaN()); err == nil {
		t.Error("AddMetric(NaN) succeeded, want an error")
	}
}

func TestListFilter(t *testing.T) {
	ctx := context.Background()
	l := openTemp(t)
	for _, b := range []int{8, 4, 8} {
		if _, err := l.Record(ctx, sampleRun(t, b, 100, 30)); err != nil {
			t.Fatal(err)
		}
	}
	l.AddMetric(ctx, 3, "accuracy", 0.5)
	for _, tc := range []struct {
		filter map[string]string
		want   []int64
	}{
		{nil, []int64{1, 2, 3}},
		{map[string]string{"options.bits": "8"}, []int64{1, 3}},
		{map[string]string{"options.bits": "8", "metrics.accuracy": "0.5"}, []int64{3}},
		{map[string]string{"options.spec.scheme": "asymmetric", "entry_point": "go"}, []int64{1, 2, 3}},
		{map[string]string{"no.such.key": "1"}, nil},
	} {
		runs, err := l.List(ctx, tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, r := range runs {
			ids = append(ids, r.ID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(tc.want) {
			t.Errorf("List(%v) = %v, want %v", tc.filter, ids, tc.want)
		}
	}
}

func TestFileIsRealSQLite(t *testing.T) {
	l := openTemp(t)
	if _, err := l.Record(context.Background(), sampleRun(t, 8, 1, 1)); err != nil {
		t.Fatal(err)
	}
	var mode string
	var fk, version int
	l.db.QueryRow(`PRAGMA journal_mode`).Scan(&mode)
	l.db.QueryRow(`PRAGMA foreign_keys`).Scan(&fk)
	l.db.QueryRow(`SELECT version FROM schema_version`).Scan(&version)
	if mode != "wal" || fk != 1 || version != SchemaVersion() {
		t.Errorf("journal_mode %q foreign_keys %d version %d, want wal 1 %d", mode, fk, version, SchemaVersion())
	}
	// Foreign keys hold: a layer of a run that does not exist is refused.
	if _, err := l.db.Exec(`INSERT INTO layers VALUES (42,'x','x','linear','int8','k',1,1,1)`); err == nil {
		t.Error("a layer row for a missing run was accepted: foreign keys are off")
	}
	b, err := os.ReadFile(l.Path())
	if err != nil || !strings.HasPrefix(string(b), "SQLite format 3\x00") {
		t.Errorf("%s does not start with the SQLite header", l.Path())
	}
}

func TestPareto(t *testing.T) {
	mk := func(size int64, q float64) *Run {
		return &Run{Output: FileRef{Bytes: size}, Results: map[string]float64{"sqnr_db": q}}
	}
	for _, tc := range []struct {
		runs []*Run
		want string
	}{
		{[]*Run{mk(100, 40), mk(50, 20), mk(120, 30), mk(50, 25)}, "[true false false true]"},
		{[]*Run{mk(10, 5), mk(10, 5)}, "[true true]"},
		{[]*Run{mk(10, 5), {Output: FileRef{Bytes: 1}}}, "[true false]"},
		{[]*Run{mk(10, math.Inf(1)), mk(20, 50)}, "[true false]"},
	} {
		if got := fmt.Sprint(Pareto(tc.runs)); got != tc.want {
			t.Errorf("Pareto = %s, want %s", got, tc.want)
		}
	}
}

func TestCompareMarksDifferences(t *testing.T) {
	a, b := sampleRun(t, 8, 500, 41), sampleRun(t, 4, 300, 20)
	a.ID, b.ID = 1, 2
	b.Metrics["accuracy"] = 0.9
	c := Compare([]*Run{a, b})
	find := func(rows []Row, key string) Row {
		for _, r := range rows {
			if r.Key == key {
				return r
			}
		}
		t.Fatalf("no row %q", key)
		return Row{}
	}
	if r := find(c.Settings, "options.bits"); !r.Differs || r.Values[0] != "8" || r.Values[1] != "4" {
		t.Errorf("options.bits row = %+v", r)
	}
	if r := find(c.Settings, "options.spec.scheme"); r.Differs || r.Values[0] != "asymmetric" {
		t.Errorf("options.spec.scheme row = %+v", r)
	}
	if r := find(c.Layers, "fc.weight"); !r.Differs || !strings.HasPrefix(r.Values[1], "20 ") {
		t.Errorf("fc.weight row = %+v", r)
	}
	if r := find(c.Metrics, "accuracy"); !r.Differs || r.Values[0] != "" {
		t.Errorf("accuracy row = %+v", r)
	}
	if fmt.Sprint(c.Pareto) != "[true true]" {
		t.Errorf("Pareto = %v", c.Pareto)
	}
}

func TestDecodeSettingsRejectsUnknownFields(t *testing.T) {
	if _, err := DecodeSettings([]byte(`{"options":{"Bits":8},"recipe_v9":{}}`)); err == nil {
		t.Error("DecodeSettings accepted an unknown field")
	}
}

func TestDefaultPath(t *testing.T) {
	t.Setenv("MONOQUANT_HOME", "/x/home")
	if p, _ := DefaultPath(); p != "/x/home/runs.sqlite" {
		t.Errorf("DefaultPath with MONOQUANT_HOME = %q", p)
	}
	t.Setenv("MONOQUANT_HOME", "")
	t.Setenv("XDG_DATA_HOME", "/x/data")
	if p, _ := DefaultPath(); p != "/x/data/monoquant/runs.sqlite" {
		t.Errorf("DefaultPath with XDG_DATA_HOME = %q", p)
	}
	t.Setenv("XDG_DATA_HOME", "")
	t.Setenv("HOME", "/x/user")
	if p, _ := DefaultPath(); p != "/x/user/.local/share/monoquant/runs.sqlite" {
		t.Errorf("DefaultPath with HOME = %q", p)
	}
	for v, want := range map[string]bool{"0": false, "off": false, "1": true, "": true} {
		t.Setenv("MONOQUANT_LOG", v)
		if Enabled() != want {
			t.Errorf("MONOQUANT_LOG=%q: Enabled() = %v, want %v", v, !want, want)
		}
	}
}

// The log never costs a quantization: each broken log gives a warning, no error, no hang.
func TestRecordOrWarnOnBrokenLogs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	corrupt := filepath.Join(dir, "corrupt.sqlite")
	os.WriteFile(corrupt, []byte(strings.Repeat("this is not a database ", 400)), 0o644)
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, []byte("x"), 0o644)
	newer := filepath.Join(dir, "newer.sqlite")
	if l, err := Open(ctx, newer); err != nil {
		t.Fatal(err)
	} else {
		l.db.Exec(`UPDATE schema_version SET version = 99`)
		l.Close()
	}
	locked := filepath.Join(dir, "locked.sqlite")
	if l, err := Open(ctx, locked); err != nil {
		t.Fatal(err)
	} else {
		l.Close()
	}
	holder, err := sql.Open("sqlite", "file:"+locked)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	conn, err := holder.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `BEGIN EXCLUSIVE`); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, `ROLLBACK`)

	cases := []struct {
		name, path, want string
		opts             []Option
	}{
		{"corrupt", corrupt, "not a database", nil},
		{"folder is a file", filepath.Join(notDir, FileName), "not a directory", nil},
		{"newer schema", newer, "newer than this monoquant", nil},
		{"locked", locked, "locked", []Option{BusyTimeout(300 * time.Millisecond)}},
		{"full", filepath.Join(dir, "full.sqlite"), "full", []Option{MaxPages(6)}},
	}
	if runtime.GOOS == "linux" {
		// /proc/self is read-only even for root, unlike a chmod'ed folder.
		cases = append(cases, struct {
			name, path, want string
			opts             []Option
		}{"read-only folder", "/proc/self/runs.sqlite", "run log", nil})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// (A hang would be caught by go test's own -timeout; no wall-clock bound here.)
			id, warn := RecordOrWarn(ctx, tc.path, sampleRun(t, 8, 1, 1), tc.opts...)
			if id != 0 || !strings.Contains(warn, tc.want) || !strings.HasPrefix(warn, "run not recorded: ") || strings.Contains(warn, "\n") {
				t.Errorf("RecordOrWarn(%s) = %d, %q; want 0 and one line containing %q", tc.path, id, warn, tc.want)
			}
		})
	}
	// The corrupt file is left as it was: the log never destroys what it cannot read.
	if b, _ := os.ReadFile(corrupt); !strings.HasPrefix(string(b), "this is not a database") {
		t.Error("the corrupt file was changed")
	}
}

// TestConcurrentWriters: 2 processes × 4 goroutines record at once; every run is there.
func TestConcurrentWriters(t *testing.T) {
	const procs, threads, each = 2, 4, 5
	path := filepath.Join(t.TempDir(), FileName)
	var cmds []*exec.Cmd
	for p := 0; p < procs; p++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$")
		cmd.Env = append(os.Environ(), "RUNLOG_HELPER_PATH="+path, "RUNLOG_HELPER_N="+strconv.Itoa(threads*each), "RUNLOG_HELPER_THREADS="+strconv.Itoa(threads))
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
		t.Cleanup(func() {
			if t.Failed() {
				t.Log(out.String())
			}
		})
	}
	for _, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Errorf("writer process: %v", err)
		}
	}
	l, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	runs, err := l.List(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != procs*threads*each {
		t.Fatalf("%d runs recorded, want %d", len(runs), procs*threads*each)
	}
	for _, r := range runs {
		if len(r.Layers) != 2 {
			t.Errorf("run %d has %d layers, want 2", r.ID, len(r.Layers))
		}
	}
}

// TestHelperWriter is the writer process of TestConcurrentWriters (it does nothing otherwise).
func TestHelperWriter(t *testing.T) {
	path := os.Getenv("RUNLOG_HELPER_PATH")
	if path == "" {
		t.Skip("helper process for TestConcurrentWriters")
	}
	n, _ := strconv.Atoi(os.Getenv("RUNLOG_HELPER_N"))
	threads, _ := strconv.Atoi(os.Getenv("RUNLOG_HELPER_THREADS"))
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for g := 0; g < threads; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/threads; i++ {
				// Each run opens its own log, as separate quantize calls do.
				if _, warn := RecordOrWarn(context.Background(), path, sampleRun(t, 8, 1, 1)); warn != "" {
					errs <- warn
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
