// Command pttool is the Go side of the torch interop tests: it reads a .pt with core's torchpt
// reader and prints what it found as JSON, or writes a .pt with torchpt's writer from raw
// tensor bytes, so pytest can hold both directions against real torch.
//
//	pttool dump FILE              JSON: entries (name, dtype, shape, base64 data), metadata, module_types
//	pttool write OUT SPEC.json    SPEC: {"tensors": [{"name", "dtype", "shape", "file"}], "metadata": {}}
//
// Errors go to stderr as one line, exit status 1.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/monoquant/monoquant/core/checkpoint/torchpt"
	"github.com/monoquant/monoquant/core/tensor"
)

type entryJSON struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []int  `json:"shape"`
	Data  []byte `json:"data,omitempty"` // base64 in JSON
	File  string `json:"file,omitempty"`
}

type dumpJSON struct {
	Entries     []entryJSON       `json:"entries"`
	Metadata    map[string]string `json:"metadata"`
	ModuleTypes map[string]string `json:"module_types"`
}

type specJSON struct {
	Tensors  []entryJSON       `json:"tensors"`
	Metadata map[string]string `json:"metadata"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pttool:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: pttool dump FILE | pttool write OUT SPEC.json")
	}
	switch args[0] {
	case "dump":
		return dump(args[1])
	case "write":
		if len(args) != 3 {
			return fmt.Errorf("usage: pttool write OUT SPEC.json")
		}
		return write(args[1], args[2])
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func dump(path string) error {
	f, err := torchpt.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	out := dumpJSON{Entries: []entryJSON{}, Metadata: f.Metadata(), ModuleTypes: f.ModuleTypes()}
	for _, e := range f.Entries() {
		t, err := f.Tensor(e.Name)
		if err != nil {
			return err
		}
		out.Entries = append(out.Entries, entryJSON{Name: e.Name, DType: e.DType.String(), Shape: e.Shape, Data: append([]byte{}, t.Data...)})
		f.Release(e.Name)
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(out)
}

func write(out, specPath string) error {
	raw, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var spec specJSON
	if err := json.Unmarshal(raw, &spec); err != nil {
		return fmt.Errorf("%s: %w", specPath, err)
	}
	infos := make([]tensor.Info, len(spec.Tensors))
	for i, t := range spec.Tensors {
		dt, err := tensor.ParseDType(t.DType)
		if err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		infos[i] = tensor.Info{Name: t.Name, DType: dt, Shape: t.Shape}
	}
	w, err := torchpt.Create(out, infos, spec.Metadata)
	if err != nil {
		return err
	}
	for _, t := range spec.Tensors {
		data, err := os.ReadFile(t.File)
		if err != nil {
			w.Abort()
			return err
		}
		if err := w.Write(t.Name, data); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}
