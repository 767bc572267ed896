package safetensors_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/monoquant/monoquant/core/checkpoint/safetensors"
	"github.com/monoquant/monoquant/core/tensor"
)

// Write a file tensor by tensor, then read it back through the mapping.
func Example() {
	dir, _ := os.MkdirTemp("", "st-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "model.safetensors")

	w, err := safetensors.Create(path, []tensor.Info{
		{Name: "fc.weight", DType: tensor.F32, Shape: []int{2, 2}},
		{Name: "fc.bias", DType: tensor.F32, Shape: []int{2}},
	}, map[string]string{"format": "pt"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Abort() // a no-op once committed
	w.Write("fc.weight", tensor.Float32Bytes([]float32{1, 2, 3, 4}))
	w.Write("fc.bias", tensor.Float32Bytes([]float32{0.5, -0.5}))
	if err := w.Commit(); err != nil {
		fmt.Println(err)
		return
	}

	f, err := safetensors.Open(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	for _, e := range f.Entries() {
		t, _ := f.Tensor(e.Name)
		v, _ := t.Float32s()
		fmt.Println(e.Name, e.DType, e.Shape, v)
		f.Release(e.Name)
	}
	fmt.Println(f.Metadata())
	// Output:
	// fc.weight F32 [2 2] [1 2 3 4]
	// fc.bias F32 [2] [0.5 -0.5]
	// map[format:pt]
}

// Errors name the file and the tensor, and wrap ErrInvalid or ErrUnsupported.
func ExampleParseHeader() {
	header := `{"w":{"dtype":"F32","shape":[1000000000000000],"data_offsets":[0,8]}}`
	file := append([]byte{byte(len(header)), 0, 0, 0, 0, 0, 0, 0}, header...)
	file = append(file, make([]byte, 8)...)
	_, err := safetensors.ParseHeader(file)
	fmt.Println(err)
	// Output:
	// invalid safetensors: tensor "w": shape [1000000000000000] of F32 needs 4000000000000000 bytes but data_offsets [0, 8] span 8
}
