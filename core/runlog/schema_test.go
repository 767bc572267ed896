package runlog

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Schema fixtures: testdata/schema/v<N>.sqlite is a real run log written at schema version N,
// holding the runs fixtureRuns records. Every version must have one, so that the migration to
// the next version is tested from a real file of the previous one:
//
//  1. append the migration to migrations (schema.go);
//  2. go test ./core/runlog -run TestSchemaFixtures -update-fixtures   (writes v<new>.sqlite only;
//     older fixtures are never rewritten: they are what users' files look like);
//  3. commit the new fixture.
var updateFixtures = flag.Bool("update-fixtures", false, "write testdata/schema/v<current>.sqlite")

func fixturePath(v int) string {
	return filepath.Join("testdata", "schema", fmt.Sprintf("v%d.sqlite", v))
}

func fixtureRuns(t testing.TB) []*Run {
	a, b := sampleRun(t, 8, 500, 41.25), sampleRun(t, 4, 300, 19.5)
	b.Metrics["accuracy"] = 0.875
	return []*Run{a, b}
}

func TestSchemaFixtures(t *testing.T) {
	ctx := context.Background()
	cur := SchemaVersion()
	if *updateFixtures {
		p := fixturePath(cur)
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s exists: fixtures of released versions are never rewritten", p)
		}
		l, err := Open(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range fixtureRuns(t) {
			if _, err := l.Record(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
			t.Fatal(err)
		}
		l.Close()
		os.Remove(p + "-wal")
		os.Remove(p + "-shm")
	}
	for v := 1; v <= cur; v++ {
		t.Run(fmt.Sprintf("from v%d", v), func(t *testing.T) {
			src, err := os.ReadFile(fixturePath(v))
			if err != nil {
				t.Fatalf("schema version %d has no fixture (%v): see the comment above TestSchemaFixtures", v, err)
			}
			p := filepath.Join(t.TempDir(), FileName)
			os.WriteFile(p, src, 0o644)
			l, err := Open(ctx, p)
			if err != nil {
				t.Fatalf("opening a v%d log: %v", v, err)
			}
			defer l.Close()
			var got int
			l.db.QueryRow(`SELECT version FROM schema_version`).Scan(&got)
			if got != cur {
				t.Errorf("after Open the schema version is %d, want %d", got, cur)
			}
			runs, err := l.List(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := fixtureRuns(t)
			if len(runs) != len(want) {
				t.Fatalf("%d runs after migrating from v%d, want %d", len(runs), v, len(want))
			}
			for i, r := range runs {
				if r.Quality() != want[i].Quality() || r.Output.Bytes != want[i].Output.Bytes || len(r.Layers) != 2 ||
					r.Metrics["accuracy"] != want[i].Metrics["accuracy"] || r.Input.SHA256 != want[i].Input.SHA256 ||
					(v >= 2 && (r.Input.XXH3 != want[i].Input.XXH3 || r.Output.XXH3 != want[i].Output.XXH3)) ||
					(v < 2 && (r.Input.XXH3 != "" || r.Output.XXH3 != "")) {
					t.Errorf("run %d after migrating from v%d = %+v", r.ID, v, r)
				}
				if _, err := DecodeSettings(r.Settings); err != nil {
					t.Errorf("run %d settings: %v", r.ID, err)
				}
			}
			// The migrated log takes new runs.
			if _, err := l.Record(ctx, sampleRun(t, 8, 1, 1)); err != nil {
				t.Errorf("recording into a log migrated from v%d: %v", v, err)
			}
		})
	}
}
