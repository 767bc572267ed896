package runlog

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations[i] takes a database from schema version i to i+1; len(migrations) is the current
// version. A migration is never edited once released: add a new one, and a fixture
// testdata/schema/v<N>.sql holding a database of the previous version (see schema_test.go).
var migrations = []string{
	// 0 → 1: the first schema.
	`CREATE TABLE runs (
		id           INTEGER PRIMARY KEY,
		uuid         TEXT NOT NULL UNIQUE,
		started      TEXT NOT NULL,
		duration_ms  REAL NOT NULL,
		host         TEXT NOT NULL,
		versions     TEXT NOT NULL,
		entry_point  TEXT NOT NULL,
		settings     TEXT NOT NULL,
		config       TEXT NOT NULL,
		input_path   TEXT NOT NULL,
		input_sha256 TEXT NOT NULL,
		input_bytes  INTEGER NOT NULL,
		output_path  TEXT NOT NULL,
		output_sha256 TEXT NOT NULL,
		output_bytes INTEGER NOT NULL,
		calibration  TEXT NOT NULL,
		results      TEXT NOT NULL,
		warnings     TEXT NOT NULL,
		peak_rss     INTEGER NOT NULL
	);
	CREATE TABLE layers (
		run_id       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
		name         TEXT NOT NULL,
		layer        TEXT NOT NULL,
		layer_type   TEXT NOT NULL,
		format       TEXT NOT NULL,
		kernel       TEXT NOT NULL,
		sqnr_db      REAL,
		bytes_before INTEGER NOT NULL,
		bytes_after  INTEGER NOT NULL,
		PRIMARY KEY (run_id, name)
	);
	CREATE TABLE metrics (
		run_id  INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
		key     TEXT NOT NULL,
		value   REAL NOT NULL,
		logged  TEXT NOT NULL,
		PRIMARY KEY (run_id, key)
	);
	-- sha256 of input files by identity (device, inode, size, mtime, ctime), so that the many
	-- runs of one model hash it once; ctime changes on any write and cannot be set back.
	CREATE TABLE file_hashes (
		path     TEXT PRIMARY KEY,
		dev      INTEGER NOT NULL,
		ino      INTEGER NOT NULL,
		size     INTEGER NOT NULL,
		mtime_ns INTEGER NOT NULL,
		ctime_ns INTEGER NOT NULL,
		sha256   TEXT NOT NULL
	);`,
	// 1 → 2: files are identified by their XXH3-128 when recorded (sha256 on request): runs
	// keep both digests of their input and output (a digest not known is ''), and the hash
	// cache keeps the XXH3 beside the sha256.
	`ALTER TABLE runs ADD COLUMN input_xxh3 TEXT NOT NULL DEFAULT '';
	ALTER TABLE runs ADD COLUMN output_xxh3 TEXT NOT NULL DEFAULT '';
	ALTER TABLE file_hashes ADD COLUMN xxh3 TEXT NOT NULL DEFAULT '';`,
}

// SchemaVersion is the schema version this package writes.
func SchemaVersion() int { return len(migrations) }

// migrate brings the database to SchemaVersion in one transaction. A database written by a
// newer monoquant (a higher version) is refused rather than guessed at.
func migrate(ctx context.Context, db *sql.DB, path string) error {
	// The common case, an up-to-date log, needs no write lock (a locked log is still readable).
	var cur int
	if db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&cur) == nil && cur == len(migrations) {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return err
	}
	var v int
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
	switch {
	case err == sql.ErrNoRows:
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	if v > len(migrations) {
		return fmt.Errorf("run log %s has schema version %d, newer than this monoquant knows (%d): upgrade monoquant or set MONOQUANT_HOME to another folder", path, v, len(migrations))
	}
	if v == len(migrations) {
		return nil
	}
	for ; v < len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("run log %s: migrating schema %d → %d: %w", path, v, v+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v); err != nil {
		return err
	}
	return tx.Commit()
}
