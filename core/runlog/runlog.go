package runlog

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// FileName is the run log's file name inside its folder.
const FileName = "runs.sqlite"

// ErrNotFound is returned by Get and AddMetric for a run id the log does not hold.
var ErrNotFound = errors.New("no such run")

// ErrMetricName and ErrMetricValue: a metric without a name, or whose value is NaN or infinite
// (AddMetric).
var (
	ErrMetricName  = errors.New("the metric name is empty")
	ErrMetricValue = errors.New("not a finite number")
)

// DefaultPath is where the run log lives: $MONOQUANT_HOME/runs.sqlite, else
// $XDG_DATA_HOME/monoquant/runs.sqlite, else ~/.local/share/monoquant/runs.sqlite.
func DefaultPath() (string, error) { return DefaultPathEnv(os.Getenv) }

// DefaultPathEnv is DefaultPath with the environment read through getenv: the C ABI passes the
// process's live environment, which a host (Python's os.environ) may have changed after Go's
// own copy was taken.
func DefaultPathEnv(getenv func(string) string) (string, error) {
	if h := getenv("MONOQUANT_HOME"); h != "" {
		return filepath.Join(h, FileName), nil
	}
	if x := getenv("XDG_DATA_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "monoquant", FileName), nil
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".local", "share", "monoquant", FileName), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no run log folder: set MONOQUANT_HOME (%w)", err)
	}
	return filepath.Join(home, ".local", "share", "monoquant", FileName), nil
}

// Enabled reports whether runs are recorded: MONOQUANT_LOG=0 (or false, off, no) turns the
// log off for every entry point; a per-call option (--no-log, log=False) does the same for one.
func Enabled() bool { return EnabledEnv(os.Getenv) }

// EnabledEnv is Enabled with the environment read through getenv (see DefaultPathEnv).
func EnabledEnv(getenv func(string) string) bool {
	switch strings.ToLower(strings.TrimSpace(getenv("MONOQUANT_LOG"))) {
	case "0", "false", "off", "no":
		return false
	}
	return true
}

// FileRef names a file and its content. A file's identity is recorded as its XXH3 (HashFile:
// fast enough to cost a quantization nothing); its sha256 is added on request (HashFileSHA256,
// Log.AddSHA256) and was the identity of runs recorded before schema version 2. SameContent
// compares two FileRefs by whichever digest both have.
type FileRef struct {
	Path string `json:"path"`
	// SHA256 is the hex sha256 of the file (or, for several files, of the lines naming each
	// file's sha256: HashFile); "" until asked for. For in-memory inputs it is the caller's
	// state-dict fingerprint (StateDictFingerprint), and Path is "".
	SHA256 string `json:"sha256"`
	// XXH3 is the file's XXH3-128 in xxHash's canonical form, 32 hex digits as `xxhsum -H2`
	// prints them (or, for several files, the sha256 of the lines naming each file's XXH3-128).
	XXH3  string `json:"xxh3,omitempty"`
	Bytes int64  `json:"bytes"`
}

// SameContent reports whether a and b name the same content, by the XXH3 when both have one,
// else by the sha256; comparable is false when they share no digest.
func SameContent(a, b FileRef) (same, comparable bool) {
	switch {
	case a.XXH3 != "" && b.XXH3 != "":
		return a.XXH3 == b.XXH3, true
	case a.SHA256 != "" && b.SHA256 != "":
		return a.SHA256 == b.SHA256, true
	}
	return false, false
}

// Identity is the digest SameContent would compare, named: "xxh3 HEX" or "sha256 HEX" ("" for none).
func (f FileRef) Identity() string {
	switch {
	case f.XXH3 != "":
		return "xxh3 " + f.XXH3
	case f.SHA256 != "":
		return "sha256 " + f.SHA256
	}
	return ""
}

// Calibration identifies the calibration data of a static run.
type Calibration struct {
	Path string `json:"path,omitempty"`
	// SHA256: of a calibration file, "" until asked for (Log.AddSHA256); of in-memory batches,
	// their fingerprint (CalibrationHash).
	SHA256 string  `json:"sha256,omitempty"`
	XXH3   string  `json:"xxh3,omitempty"` // of a calibration file (HashFile)
	Count  int     `json:"count"`          // batches
	Shapes [][]int `json:"shapes"`         // one per batch, in the order they were given (bounded: see MaxShapes)
}

// MaxShapes bounds the shapes kept in a Calibration fingerprint: the count and hash still cover all.
const MaxShapes = 64

// Layer is one quantized tensor's result.
type Layer struct {
	Name        string  `json:"name"`
	Layer       string  `json:"layer"`
	LayerType   string  `json:"layer_type"`
	Format      string  `json:"format"`
	Kernel      string  `json:"kernel"` // the quantizer used: format/granularity/scheme[/gN]
	SQNR        float64 `json:"sqnr_db"`
	BytesBefore int64   `json:"bytes_before"`
	BytesAfter  int64   `json:"bytes_after"`
}

// Run is one recorded quantization.
type Run struct {
	ID         int64             `json:"id"`   // assigned by Record
	UUID       string            `json:"uuid"` // 32 hex digits, assigned by Record (the MLflow run id)
	Started    time.Time         `json:"started"`
	Duration   time.Duration     `json:"duration_ns"`
	Host       string            `json:"host"`
	Versions   map[string]string `json:"versions"` // monoquant, go, torch when known
	EntryPoint string            `json:"entry_point"`
	// Settings is what EncodeSettings wrote: enough to run the quantization again.
	Settings json.RawMessage `json:"settings"`
	// Config is the resolved per-tensor config (plan.Plan.Config) the run applied: the
	// defaults of the day, written out.
	Config      json.RawMessage    `json:"config"`
	Input       FileRef            `json:"input"`
	Output      FileRef            `json:"output"`
	Calibration *Calibration       `json:"calibration,omitempty"`
	Layers      []Layer            `json:"layers"`
	Results     map[string]float64 `json:"results"` // whole-model results: sizes, SQNR, validation
	Warnings    []string           `json:"warnings"`
	PeakRSS     int64              `json:"peak_rss_bytes"`
	Metrics     map[string]float64 `json:"metrics"` // attached later by AddMetric

	inputCache []cachedFile // the input's file hashes computed for this run, for the cache
}

// Log is an open run log. It is safe for concurrent use.
type Log struct {
	db   *sql.DB
	path string
	busy time.Duration // how long a write keeps retrying while another writer holds the lock
}

// Option changes how Open opens the log.
type Option func(*openConfig)

type openConfig struct {
	busy     time.Duration
	maxPages int
}

// BusyTimeout is how long a writer waits for another one's lock before giving up (default 10 s).
func BusyTimeout(d time.Duration) Option { return func(c *openConfig) { c.busy = d } }

// MaxPages caps the database size in pages (SQLite's max_page_count): a write past it fails as
// "database or disk is full", as on a full disk. Tests use it; so can a user with a quota.
func MaxPages(n int) Option { return func(c *openConfig) { c.maxPages = n } }

// Open opens (creating the file and its folder if needed) and migrates the run log at path.
// An empty path means DefaultPath.
func Open(ctx context.Context, path string, opts ...Option) (*Log, error) {
	cfg := openConfig{busy: 10 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if path == "" {
		p, err := DefaultPath()
		if err != nil {
			return nil, err
		}
		path = p
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("run log folder: %w", err)
	}
	// synchronous=NORMAL is the WAL setting SQLite recommends: no corruption on power loss, only
	// the last runs may be lost then; FULL would fsync each run.
	dsn := "file:" + escapePath(path) + fmt.Sprintf("?_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate", cfg.busy.Milliseconds())
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("run log %s: %w", path, err)
	}
	if cfg.maxPages > 0 {
		dsn += fmt.Sprintf("&_pragma=max_page_count(%d)", cfg.maxPages)
		db.Close()
		if db, err = sql.Open("sqlite", dsn); err != nil {
			return nil, fmt.Errorf("run log %s: %w", path, err)
		}
	}
	l := &Log{db: db, path: path, busy: cfg.busy}
	err = retry(ctx, cfg.busy, func() error {
		var mode string
		if err := db.QueryRowContext(ctx, `PRAGMA journal_mode=WAL`).Scan(&mode); err != nil {
			return err
		}
		return migrate(ctx, db, path)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("run log %s: %w", path, err)
	}
	return l, nil
}

// escapePath makes a file path safe inside a "file:" URI (? and # would start the query).
func escapePath(p string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
}

// retry runs f again while SQLite says busy or locked, up to the busy timeout: the busy handler
// covers most waits, but a WAL upgrade or a read-to-write upgrade reports SQLITE_BUSY at once.
func retry(ctx context.Context, limit time.Duration, f func() error) error {
	deadline := time.Now().Add(limit)
	wait := 5 * time.Millisecond
	for {
		err := f()
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

func isBusy(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code() & 0xff
		return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
	}
	return false
}

// Path is the file the log is in.
func (l *Log) Path() string { return l.path }

// Close closes the log; nil is a no-op.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	return l.db.Close()
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain data reaches here
	}
	return string(b)
}

func rawOrNull(r json.RawMessage) string {
	if len(r) == 0 {
		return "null"
	}
	return string(r)
}

// nullFloat stores NaN as NULL (SQLite has no NaN); ±Inf are stored as they are.
func nullFloat(f float64) any {
	if math.IsNaN(f) {
		return nil
	}
	return f
}

// Record stores a run in one transaction and returns its id (also set in run.ID and run.UUID).
func (l *Log) Record(ctx context.Context, run *Run) (int64, error) {
	if run.UUID == "" {
		run.UUID = newUUID()
	}
	var id int64
	err := retry(ctx, l.busy, func() error {
		tx, err := l.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		res, err := tx.ExecContext(ctx, `INSERT INTO runs (uuid, started, duration_ms, host, versions, entry_point,
			settings, config, input_path, input_sha256, input_bytes, output_path, output_sha256, output_bytes,
			calibration, results, warnings, peak_rss, input_xxh3, output_xxh3) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			run.UUID, run.Started.UTC().Format(time.RFC3339Nano), float64(run.Duration)/1e6, run.Host,
			jsonText(orEmptyMap(run.Versions)), run.EntryPoint, rawOrNull(run.Settings), rawOrNull(run.Config),
			run.Input.Path, run.Input.SHA256, run.Input.Bytes, run.Output.Path, run.Output.SHA256, run.Output.Bytes,
			jsonText(run.Calibration), jsonText(finiteMap(run.Results)), jsonText(orEmpty(run.Warnings)), run.PeakRSS,
			run.Input.XXH3, run.Output.XXH3)
		if err != nil {
			return err
		}
		id, err = res.LastInsertId()
		if err != nil {
			return err
		}
		st, err := tx.PrepareContext(ctx, `INSERT INTO layers (run_id, name, layer, layer_type, format, kernel, sqnr_db,
			bytes_before, bytes_after) VALUES (?,?,?,?,?,?,?,?,?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, ly := range run.Layers {
			if _, err := st.ExecContext(ctx, id, ly.Name, ly.Layer, ly.LayerType, ly.Format, ly.Kernel, nullFloat(ly.SQNR), ly.BytesBefore, ly.BytesAfter); err != nil {
				return err
			}
		}
		for _, c := range run.inputCache {
			if err := storeHash(ctx, tx, c.ref, c.id); err != nil {
				return err
			}
		}
		for k, v := range run.Metrics {
			if _, err := tx.ExecContext(ctx, `INSERT INTO metrics (run_id, key, value, logged) VALUES (?,?,?,?)`,
				id, k, v, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
				return err
			}
		}
		return tx.Commit()
	})
	if err != nil {
		return 0, fmt.Errorf("run log %s: %w", l.path, err)
	}
	run.ID = id
	return id, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orEmptyMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// finiteMap keeps JSON-encodable values: JSON has no Inf or NaN, so +Inf (a lossless SQNR) is
// stored as 1e308-clamped ±MaxFloat64 and NaN is left out.
func finiteMap(m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		switch {
		case math.IsNaN(v):
		case math.IsInf(v, 1):
			out[k] = math.MaxFloat64
		case math.IsInf(v, -1):
			out[k] = -math.MaxFloat64
		default:
			out[k] = v
		}
	}
	return out
}

// AddMetric attaches (or replaces) a user metric, e.g. an accuracy measured after the run.
func (l *Log) AddMetric(ctx context.Context, id int64, key string, value float64) error {
	if key == "" {
		return ErrMetricName
	}
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return fmt.Errorf("metric %q: value %v is %w", key, value, ErrMetricValue)
	}
	return retry(ctx, l.busy, func() error {
		tx, err := l.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM runs WHERE id = ?`, id).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("run %d: %w in %s", id, ErrNotFound, l.path)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO metrics (run_id, key, value, logged) VALUES (?,?,?,?)
			ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, logged = excluded.logged`,
			id, key, value, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
			return err
		}
		return tx.Commit()
	})
}

// Get returns one run with its layers and metrics.
func (l *Log) Get(ctx context.Context, id int64) (*Run, error) {
	runs, err := l.query(ctx, `WHERE id = ?`, id)
	if err != nil {
		return nil, err
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("run %d: %w in %s", id, ErrNotFound, l.path)
	}
	return runs[0], nil
}

// List returns the runs that match every filter (see Fields), oldest first.
func (l *Log) List(ctx context.Context, filters map[string]string) ([]*Run, error) {
	runs, err := l.query(ctx, ``)
	if err != nil {
		return nil, err
	}
	if len(filters) == 0 {
		return runs, nil
	}
	var out []*Run
	for _, r := range runs {
		f := Fields(r)
		ok := true
		for k, v := range filters {
			if got, has := f[k]; !has || got != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

func (l *Log) query(ctx context.Context, where string, args ...any) ([]*Run, error) {
	rows, err := l.db.QueryContext(ctx, `SELECT id, uuid, started, duration_ms, host, versions, entry_point, settings,
		config, input_path, input_sha256, input_bytes, output_path, output_sha256, output_bytes, calibration, results,
		warnings, peak_rss, input_xxh3, output_xxh3 FROM runs `+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("run log %s: %w", l.path, err)
	}
	defer rows.Close()
	var runs []*Run
	byID := map[int64]*Run{}
	for rows.Next() {
		r := &Run{}
		var started, versions, settings, config, calib, results, warnings string
		var durMS float64
		if err := rows.Scan(&r.ID, &r.UUID, &started, &durMS, &r.Host, &versions, &r.EntryPoint, &settings, &config,
			&r.Input.Path, &r.Input.SHA256, &r.Input.Bytes, &r.Output.Path, &r.Output.SHA256, &r.Output.Bytes,
			&calib, &results, &warnings, &r.PeakRSS, &r.Input.XXH3, &r.Output.XXH3); err != nil {
			return nil, fmt.Errorf("run log %s: %w", l.path, err)
		}
		r.Started, _ = time.Parse(time.RFC3339Nano, started)
		r.Duration = time.Duration(durMS * 1e6)
		r.Settings, r.Config = json.RawMessage(settings), json.RawMessage(config)
		for _, p := range []struct {
			s string
			v any
		}{{versions, &r.Versions}, {calib, &r.Calibration}, {results, &r.Results}, {warnings, &r.Warnings}} {
			if err := json.Unmarshal([]byte(p.s), p.v); err != nil {
				return nil, fmt.Errorf("run log %s: run %d: %w", l.path, r.ID, err)
			}
		}
		r.Metrics = map[string]float64{}
		runs = append(runs, r)
		byID[r.ID] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("run log %s: %w", l.path, err)
	}
	if len(runs) == 0 {
		return runs, nil
	}
	lw, la := "", []any{}
	if where != "" {
		lw, la = "WHERE run_id = ?", []any{runs[0].ID}
	}
	lrows, err := l.db.QueryContext(ctx, `SELECT run_id, name, layer, layer_type, format, kernel, sqnr_db, bytes_before,
		bytes_after FROM layers `+lw+` ORDER BY run_id, rowid`, la...)
	if err != nil {
		return nil, fmt.Errorf("run log %s: %w", l.path, err)
	}
	defer lrows.Close()
	for lrows.Next() {
		var id int64
		var ly Layer
		var sq sql.NullFloat64
		if err := lrows.Scan(&id, &ly.Name, &ly.Layer, &ly.LayerType, &ly.Format, &ly.Kernel, &sq, &ly.BytesBefore, &ly.BytesAfter); err != nil {
			return nil, fmt.Errorf("run log %s: %w", l.path, err)
		}
		ly.SQNR = math.NaN()
		if sq.Valid {
			ly.SQNR = sq.Float64
		}
		if r := byID[id]; r != nil {
			r.Layers = append(r.Layers, ly)
		}
	}
	if err := lrows.Err(); err != nil {
		return nil, err
	}
	mrows, err := l.db.QueryContext(ctx, `SELECT run_id, key, value FROM metrics `+lw, la...)
	if err != nil {
		return nil, fmt.Errorf("run log %s: %w", l.path, err)
	}
	defer mrows.Close()
	for mrows.Next() {
		var id int64
		var k string
		var v float64
		if err := mrows.Scan(&id, &k, &v); err != nil {
			return nil, err
		}
		if r := byID[id]; r != nil {
			r.Metrics[k] = v
		}
	}
	return runs, mrows.Err()
}

// RecordOrWarn opens the log at path (empty: DefaultPath), records the run and closes it. It
// never returns an error: a log that cannot be opened or written (locked past the busy timeout,
// corrupt, read-only, full) gives one warning line instead, and id 0.
func RecordOrWarn(ctx context.Context, path string, run *Run, opts ...Option) (id int64, warning string) {
	l, err := Open(ctx, path, opts...)
	if err == nil {
		id, err = l.Record(ctx, run)
		l.Close()
	}
	if err != nil {
		return 0, notRecorded(err)
	}
	return id, ""
}

// notRecorded is the one warning of a run the log could not take.
func notRecorded(err error) string {
	return "run not recorded: " + oneLine(err.Error()) + " (the quantization itself succeeded; MONOQUANT_LOG=0 turns the log off)"
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }
