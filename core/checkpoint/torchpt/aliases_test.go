package torchpt

import (
	"path/filepath"
	"reflect"
	"testing"
)

// Tied parameters (issue 12): names that view the same storage, offset, shape and strides are
// one tensor; other views of a shared storage are not.
func TestAliases(t *testing.T) {
	tied := map[string]string{"head.weight": "emb.weight", "b.weight": "a.weight"}
	for _, c := range []struct {
		file string
		want map[string]string
	}{
		{"tied.pt", tied},
		{"tied_legacy.pt", tied},
		{"tied_module.pt", tied}, // a pickled nn.Module: its modules' parameters walked
		{"tied_views.pt", nil},   // offset, shape and stride differ: four tensors
		{"views.pt", nil},
		{"model_state.pt", nil},
	} {
		f, err := Open(filepath.Join(fixtures, c.file))
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Aliases(); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Aliases(%s) = %v, want %v", c.file, got, c.want)
		}
		f.Close()
	}
}
