package main

import (
	"path/filepath"
	"testing"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/runlog"
	"github.com/monoquant/monoquant/core/tensor"
)

// TestWrappersKeepStreaming: the CLI's input and output wrappers (which tag errors with exit
// codes) keep the range reads and part writes of the files they wrap, so large tensors still
// stream through the CLI; a reader without ranges does not gain them.
func TestWrappersKeepStreaming(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.safetensors")
	writeSafetensorsMeta(t, in, nil, "w", tf(ramp(12, 1), 3, 4))
	r, err := openInput("input", in)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rr, ok := r.(checkpoint.RangedReader)
	if !ok {
		t.Fatalf("openInput gave %T, which hides ReadRange/ReleaseRange", r)
	}
	dst := make([]byte, 8)
	if err := rr.ReadRange("w", 44, dst); err == nil || exitCode(err) != exitFormat {
		t.Errorf("ReadRange past the end = %v (exit %d), want a format error", err, exitCode(err))
	}
	w, err := createOutput(filepath.Join(dir, "out.safetensors"))([]checkpoint.Entry{{Name: "w", DType: tensor.F32, Shape: []int{2}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if _, ok := w.(checkpoint.PartWriter); !ok {
		t.Errorf("createOutput gave %T, which hides WritePart", w)
	}
	pt := filepath.Join(dir, "in.pt")
	pw, err := checkpoint.Create(pt, []checkpoint.Entry{{Name: "w", DType: tensor.F32, Shape: []int{1}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pw.Write("w", make([]byte, 4))
	if err := pw.Commit(); err != nil {
		t.Fatal(err)
	}
	p, err := openInput("input", pt)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, ok := p.(checkpoint.RangedReader); ok {
		t.Errorf("a .pt reader (%T) claims to read ranges", p)
	}
}

// The CLI's output writer keeps the checkpoint writer reachable, so the run log takes the
// output's XXH3 as it is written instead of reading the file again.
func TestOutputWriterKeepsTheDigest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "o.safetensors")
	w, err := createOutput(path)([]checkpoint.Entry{{Name: "a", DType: tensor.F32, Shape: []int{2}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	d := checkpoint.AsDigestWriter(w)
	if d == nil || !d.HashXXH3() {
		t.Fatalf("createOutput's writer %T offers no digest while writing", w)
	}
	w.Write("a", make([]byte, 8))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	got, _ := d.XXH3()
	if want, _ := runlog.HashFile(path); got == "" || got != want.XXH3 {
		t.Errorf("XXH3 while writing %q, of the file %q", got, want.XXH3)
	}
}
