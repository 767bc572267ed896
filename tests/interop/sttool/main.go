// Command sttool drives the Go safetensors code from the Python interop tests
// (tests/interop/test_safetensors_*.py), which compare it with the official library.
//
//	sttool dump PATH                           print the checkpoint as JSON (metadata, tensors with hex data)
//	sttool write OUT SPEC.json                 write SPEC's tensors to OUT (.safetensors, or any suffix checkpoint.Create knows)
//	sttool write-sharded DIR BASE MAX SPEC.json write SPEC sharded into DIR with at most MAX data bytes per shard
//
// SPEC.json: {"metadata": {"k": "v"}, "tensors": [{"name": ..., "dtype": "F32", "shape": [2], "hex": "..."}]}.
// Errors go to stderr with exit status 1.
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	"github.com/monoquant/monoquant/core/checkpoint"
	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/tensor"
)

type jsonTensor struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Hex   string `json:"hex"`
}

type spec struct {
	Metadata map[string]string `json:"metadata"`
	Tensors  []jsonTensor      `json:"tensors"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sttool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: sttool dump PATH | write OUT SPEC | write-sharded DIR BASE MAX SPEC")
	}
	switch {
	case args[0] == "dump" && len(args) == 2:
		return dump(args[1])
	case args[0] == "write" && len(args) == 3:
		s, err := readSpec(args[2])
		if err != nil {
			return err
		}
		infos, data, err := s.decode()
		if err != nil {
			return err
		}
		w, err := checkpoint.Create(args[1], infos, s.Metadata)
		if err != nil {
			return err
		}
		return writeAll(w, infos, data)
	case args[0] == "write-sharded" && len(args) == 5:
		max, err := strconv.ParseInt(args[3], 10, 64)
		if err != nil {
			return fmt.Errorf("MAX %q: %v", args[3], err)
		}
		s, err := readSpec(args[4])
		if err != nil {
			return err
		}
		infos, data, err := s.decode()
		if err != nil {
			return err
		}
		w, err := safetensors.CreateSharded(args[1], args[2], infos, s.Metadata, max)
		if err != nil {
			return err
		}
		return writeAll(w, infos, data)
	}
	return fmt.Errorf("bad arguments %q", args)
}

func dump(path string) error {
	r, err := checkpoint.Open(path)
	if err != nil {
		return err
	}
	defer r.Close()
	out := spec{Metadata: r.Metadata(), Tensors: []jsonTensor{}}
	for _, e := range r.Entries() {
		t, err := r.Tensor(e.Name)
		if err != nil {
			return err
		}
		// A scalar's shape may be nil or empty depending on the reader; both print as [].
		shape := append([]int{}, t.Shape...)
		out.Tensors = append(out.Tensors, jsonTensor{Name: e.Name, DType: t.DType.String(), Shape: shape, Hex: hex.EncodeToString(t.Data)})
		r.Release(e.Name)
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(out)
}

func readSpec(path string) (*spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("spec %s: %v", path, err)
	}
	return &s, nil
}

func (s *spec) decode() ([]tensor.Info, [][]byte, error) {
	var infos []tensor.Info
	var data [][]byte
	for _, t := range s.Tensors {
		dt, err := tensor.ParseDType(t.DType)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %v", t.Name, err)
		}
		b, err := hex.DecodeString(t.Hex)
		if err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %v", t.Name, err)
		}
		infos = append(infos, tensor.Info{Name: t.Name, DType: dt, Shape: t.Shape})
		data = append(data, b)
	}
	return infos, data, nil
}

func writeAll(w checkpoint.Writer, infos []tensor.Info, data [][]byte) error {
	defer w.Abort()
	for i, e := range infos {
		if err := w.Write(e.Name, data[i]); err != nil {
			return err
		}
	}
	return w.Commit()
}
