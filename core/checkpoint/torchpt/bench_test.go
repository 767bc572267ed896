package torchpt

import (
	"path/filepath"
	"strconv"
	"testing"

	"github.com/monoquant/monoquant/core/tensor"
)

// benchModel is 16 float32 tensors of 1M elements (64 MiB in all).
func benchModel() ([]tensor.Info, []byte) {
	infos := make([]tensor.Info, 16)
	for i := range infos {
		infos[i] = tensor.Info{Name: "layer." + strconv.Itoa(i) + ".weight", DType: tensor.F32, Shape: []int{1024, 1024}}
	}
	return infos, make([]byte, 4<<20)
}

func writeBench(b *testing.B, path string) {
	infos, data := benchModel()
	w, err := Create(path, infos, map[string]string{"k": "v"})
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range infos {
		if err := w.Write(e.Name, data); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkWrite64MiB(b *testing.B) {
	p := filepath.Join(b.TempDir(), "bench.pt")
	b.SetBytes(64 << 20)
	for i := 0; i < b.N; i++ {
		writeBench(b, p)
	}
}

func BenchmarkOpenRead64MiB(b *testing.B) {
	p := filepath.Join(b.TempDir(), "bench.pt")
	writeBench(b, p)
	b.SetBytes(64 << 20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := Open(p)
		if err != nil {
			b.Fatal(err)
		}
		var sum byte
		for _, e := range f.Entries() {
			t, err := f.Tensor(e.Name)
			if err != nil {
				b.Fatal(err)
			}
			for j := 0; j < len(t.Data); j += 4096 {
				sum += t.Data[j] // touch every page: the data really comes off the mapping
			}
			f.Release(e.Name)
		}
		f.Close()
		_ = sum
	}
}
