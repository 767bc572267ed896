package pickle

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzUnpickle feeds arbitrary bytes to the safe unpickler: it must return a value or an error,
// never panic, hang or allocate by a claimed size. Seeds: testdata/fuzz/FuzzUnpickle plus the
// data.pkl-shaped pickles below.
func FuzzUnpickle(f *testing.F) {
	for _, s := range []string{
		"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01.",
		"\x80\x02c__main__\nNet\nq\x00)\x81q\x01}q\x02(X\x04\x00\x00\x00sizeK\x07ub.",
		"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echo\x85R.",
		"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x01a\x94\x8c\x01b\x94\x86\x94.",
		"\x80\x02(c__builtin__\nset\n]q\x00(K\x01K\x02e\x85Rt.",
	} {
		f.Add([]byte(s))
	}
	if seeds, _ := filepath.Glob("testdata/*.pkl"); len(seeds) > 0 {
		for _, p := range seeds {
			if b, err := os.ReadFile(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lim := Limits{MaxOps: 1 << 16, MaxMemo: 1 << 12, MaxMarkNest: 64}
		v, n, err := Unpickle(data, Options{Limits: lim, PersistentLoad: func(pid any) (any, error) { return pid, nil }})
		if err == nil && (n <= 0 || n > len(data)) {
			t.Fatalf("Unpickle returned %T with length %d for %d bytes", v, n, len(data))
		}
	})
}
