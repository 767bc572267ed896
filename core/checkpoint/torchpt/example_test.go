package torchpt_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/monoquant/monoquant/core/checkpoint/torchpt"
	"github.com/monoquant/monoquant/core/tensor"
)

// Write a checkpoint torch.load(path, weights_only=True) accepts, then read it back.
func Example() {
	dir, _ := os.MkdirTemp("", "torchpt")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.pt")

	w := tensor.FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3)
	out, err := torchpt.Create(path, []tensor.Info{{Name: "fc.weight", DType: w.DType, Shape: w.Shape}},
		map[string]string{"monoquant.format_version": "1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	out.Write("fc.weight", w.Data)
	if err := out.Commit(); err != nil {
		fmt.Println(err)
		return
	}

	f, err := torchpt.Open(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	for _, e := range f.Entries() {
		t, _ := f.Tensor(e.Name)
		v, _ := t.Float32s()
		fmt.Println(e.Name, e.DType, e.Shape, v)
	}
	fmt.Println(f.Metadata())
	// Output:
	// fc.weight F32 [2 3] [1 2 3 4 5 6]
	// map[monoquant.format_version:1]
}
