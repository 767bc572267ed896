package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"
)

// runOnPTY runs the real binary with stderr on a pseudo-terminal (as in an interactive shell)
// and stdout on a pipe, and returns both.
func runOnPTY(t *testing.T, args ...string) (stdout, terminal string, code int) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal available: %v", err)
	}
	defer ptmx.Close()
	pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 160})
	cmd := exec.Command(binPath, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close() // the child holds its own copy; EOF (EIO) comes once it exits
	var term bytes.Buffer
	done := make(chan struct{})
	go func() {
		io.Copy(&term, ptmx) // ends with EIO when the child's side closes
		close(done)
	}()
	err = cmd.Wait()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("reading the terminal did not end")
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), term.String(), code
}

func TestProgressBarOnTerminal(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	in := filepath.Join(root, "examples", "tiny_transformer.safetensors")
	stdout, term, code := runOnPTY(t, "quantize", "--model", in, "--bits", "4", "--out", filepath.Join(dir, "q.safetensors"))
	if code != 0 {
		t.Fatalf("quantize on a terminal: exit %d, terminal:\n%s", code, term)
	}
	for _, want := range []string{"quantizing [28/28 tensors]", "100%", "MB", "\r"} {
		if !strings.Contains(term, want) {
			t.Errorf("the terminal shows no %q; it got:\n%q", want, term)
		}
	}
	if !strings.Contains(stdout, "Per tensor, worst SQNR first") || strings.Contains(stdout, "quantizing [") {
		t.Errorf("stdout should hold the report and no bar:\n%s", stdout)
	}

	// --quiet keeps the terminal clean.
	_, term, code = runOnPTY(t, "quantize", "--model", in, "--quiet", "--out", filepath.Join(dir, "q2.safetensors"))
	if code != 0 || strings.TrimSpace(term) != "" {
		t.Errorf("quantize --quiet on a terminal: exit %d, terminal %q; want 0 and nothing", code, term)
	}
	// dequantize draws its own bar.
	_, term, code = runOnPTY(t, "dequantize", filepath.Join(dir, "q.safetensors"), "--out", filepath.Join(dir, "d.safetensors"))
	if code != 0 || !strings.Contains(term, "dequantizing [") {
		t.Errorf("dequantize on a terminal: exit %d, terminal %q; want a bar", code, term)
	}
	// An error on a terminal is still one line.
	_, term, code = runOnPTY(t, "quantize", "--model", filepath.Join(dir, "missing.pt"))
	if code != exitInput || strings.Count(strings.TrimSpace(term), "\n") != 0 || !strings.HasPrefix(term, "monoquant: ") {
		t.Errorf("missing input on a terminal: exit %d, terminal %q; want %d and one line", code, term, exitInput)
	}
}

func TestNoProgressBarWhenRedirected(t *testing.T) {
	root := repoRoot(t)
	dir := t.TempDir()
	in := filepath.Join(root, "examples", "tiny_transformer.safetensors")
	logf, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(binPath, "quantize", "--model", in, "--out", filepath.Join(dir, "q.safetensors"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, logf
	if err := cmd.Run(); err != nil {
		t.Fatalf("quantize with stderr in a file: %v", err)
	}
	logged, _ := os.ReadFile(logf.Name())
	if len(logged) != 0 {
		t.Errorf("stderr redirected to a file got %q, want nothing", logged)
	}
	if !strings.Contains(out.String(), "Weights validated: reopened") {
		t.Errorf("stdout lacks the report:\n%s", out.String())
	}
}

func TestProgressWrapper(t *testing.T) {
	var b bytes.Buffer
	if p := newProgress(&env{stderr: &b, stderrTTY: false}, false, "x"); p != nil {
		t.Errorf("newProgress without a terminal = %v, want nil (no bar)", p)
	}
	if p := newProgress(&env{stderr: &b, stderrTTY: true}, true, "x"); p != nil {
		t.Errorf("newProgress with --quiet = %v, want nil (no bar)", p)
	}
	var nilBar *progress
	nilBar.update(1, 2, 3, 4) // a nil bar is a no-op, so commands need no checks
	nilBar.finish()
	nilBar.abort()
	p := newProgress(&env{stderr: &b, stderrTTY: true}, false, "quantizing")
	p.update(1, 4, 250, 1000)
	p.update(4, 4, 1000, 1000)
	p.finish()
	got := b.String()
	for _, want := range []string{"quantizing [1/4 tensors]", "quantizing [4/4 tensors]", "100%", "1.0 kB"} {
		if !strings.Contains(got, want) {
			t.Errorf("bar output lacks %q: %q", want, got)
		}
	}
	if !strings.HasSuffix(got, "\n") {
		t.Errorf("a finished bar must end its line: %q", got)
	}
}

func TestSignalInterruptsCleanly(t *testing.T) {
	dir := t.TempDir()
	// 64 MB of Linear weights: long enough for the signal to land mid-run.
	tensors := map[string]*tensorT{}
	var order []string
	for i := 0; i < 16; i++ {
		n := "layers." + strconv.Itoa(i) + ".weight"
		tensors[n] = tf(ramp(1024*1024, 0.05), 1024, 1024)
		order = append(order, n)
	}
	in := filepath.Join(dir, "big.safetensors")
	writeSafetensors(t, in, tensors, order...)
	// stderr on a terminal, so the run draws its bar: the first bar says the quantization runs,
	// and main has put its signal handler in place long before. A signal sent at a fixed time
	// after the start instead could come, on a busy machine, while the process is still
	// starting, and kill it outright (exit by signal, not 130).
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal available: %v", err)
	}
	defer ptmx.Close()
	pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 160})
	cmd := exec.Command(binPath, "quantize", "--model", in)
	cmd.Stderr = tty
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tty.Close()
	var term bytes.Buffer
	running, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for told := false; ; {
			n, err := ptmx.Read(buf)
			term.Write(buf[:n])
			if !told && bytes.Contains(term.Bytes(), []byte("quantizing [")) {
				close(running)
				told = true
			}
			if err != nil { // EIO once the child's side closes
				return
			}
		}
	}()
	select {
	case <-running:
	case <-done:
		cmd.Wait()
		t.Fatalf("quantize ended without drawing its bar; terminal %q", term.String())
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("quantize drew no bar in a minute")
	}
	cmd.Process.Signal(syscall.SIGINT)
	err = cmd.Wait()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("reading the terminal did not end")
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		t.Log("the run finished before the signal arrived")
		if _, err := os.Stat(filepath.Join(dir, "big.int8.safetensors")); err != nil {
			t.Errorf("exit 0 but no output: %v", err)
		}
	case errors.As(err, &ee) && ee.ExitCode() == exitInterrupted:
		// The bar is cleared, then one line says so.
		const msg = "monoquant: interrupted; no output was written"
		if got := term.String(); strings.Count(got, msg) != 1 || !strings.HasSuffix(strings.TrimRight(got, "\r\n"), msg) {
			t.Errorf("interrupted run: terminal %q, want it to end with %q once", got, msg)
		}
		if got := listDir(t, dir); len(got) != 1 || got[0] != "big.safetensors" {
			t.Errorf("after SIGINT the folder holds %v, want only the input", got)
		}
	default:
		t.Errorf("SIGINT during quantize: %v (terminal %q), want exit %d", err, term.String(), exitInterrupted)
	}
}
