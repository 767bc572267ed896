package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// binPath is the monoquant binary built once for the tests that need a real process (the
// pseudo-terminal, exit codes seen by a shell, signals).
var binPath string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "monoquant-cli-test-")
	if err != nil {
		panic(err)
	}
	// The tests never write to the user's run log: it lives in the temp folder, and it is off
	// unless a test (runs_test.go) turns it on.
	os.Setenv("MONOQUANT_HOME", filepath.Join(dir, "home"))
	os.Setenv("MONOQUANT_LOG", "0")
	binPath = filepath.Join(dir, "monoquant")
	cmd := exec.Command("go", "build", "-o", binPath, ".")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		panic("building monoquant for the tests: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// repoRoot is where examples/ and testdata/ live.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

type result struct {
	stdout, stderr string
	code           int
}

// runCLI runs a command line in-process (fast, and covered by -race).
func runCLI(t testing.TB, args ...string) result {
	t.Helper()
	return runCLIctx(t, context.Background(), false, args...)
}

func runCLIctx(t testing.TB, ctx context.Context, tty bool, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(ctx, &env{stdout: &out, stderr: &errb, stderrTTY: tty}, args)
	return result{out.String(), errb.String(), code}
}

// copyFile puts a fixture into a test's own folder, so that default output names land there.
func copyFile(t testing.TB, src, dir string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// listDir names a folder's entries, to prove a failed run left nothing behind (no output, no
// temporary file).
func listDir(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func assertOneLineError(t *testing.T, args []string, r result, wantCode int, wantMsg string) {
	t.Helper()
	if r.code != wantCode {
		t.Errorf("monoquant %s: exit code %d, want %d (stderr %q)", strings.Join(args, " "), r.code, wantCode, r.stderr)
	}
	if !strings.Contains(r.stderr, wantMsg) {
		t.Errorf("monoquant %s: stderr %q, want it to contain %q", strings.Join(args, " "), r.stderr, wantMsg)
	}
	if lines := strings.Count(strings.TrimRight(r.stderr, "\n"), "\n"); lines != 0 {
		t.Errorf("monoquant %s: stderr has %d lines, want one: %q", strings.Join(args, " "), lines+1, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "monoquant: ") && wantCode != exitOK {
		t.Errorf("monoquant %s: stderr %q does not start with \"monoquant: \"", strings.Join(args, " "), r.stderr)
	}
	if strings.Contains(r.stderr, "goroutine ") || strings.Contains(r.stderr, ".go:") {
		t.Errorf("monoquant %s: stderr looks like a stack trace: %q", strings.Join(args, " "), r.stderr)
	}
}
