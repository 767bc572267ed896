package pickle

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/nlpodyssey/gopickle/types"
)

func TestRefused(t *testing.T) {
	tests := []struct {
		module, name string
		want         string // "" = allowed
	}{
		{"os", "system", "os.system"},
		{"posix", "system", "posix.system"},
		{"nt", "system", "nt.system"},
		{"subprocess", "Popen", "subprocess.Popen"},
		{"__builtin__", "eval", "builtins.eval"},
		{"builtins", "exec", "builtins.exec"},
		{"builtins", "getattr", "builtins.getattr"},
		{"builtins", "__import__", "builtins.__import__"},
		{"builtins", "open", "builtins.open"},
		{"sys", "modules", "sys.modules"},
		{"importlib.util", "find_spec", "importlib.util.find_spec"},
		{"torch", "load", "torch.load"},
		{"torch.serialization", "load", "torch.serialization.load"},
		{"numpy", "load", "numpy.load"},
		{"functools", "partial", "functools.partial"},
		{"copy_reg", "_reconstructor", "copyreg._reconstructor"},
		{"some.module", "Cls.__init__", "some.module.Cls.__init__"},
		{"torch.nn.modules.linear", "Linear", ""},
		{"__main__", "TinyNet", ""},
		{"collections", "OrderedDict", ""},
		{"builtins", "set", ""},
		{"__builtin__", "bytearray", ""},
		{"numpy.core.multiarray", "_reconstruct", ""},
		{"torch._utils", "_rebuild_tensor_v2", ""},
		{"osmosis", "Thing", ""}, // a prefix of a name is not the module "os"
		{"pathlib", "PosixPath", ""},
		{"types", "SimpleNamespace", ""},
		{"types", "FunctionType", "types.FunctionType"},
		{"pathlib", "Path.write_text", "pathlib.Path.write_text"},
	}
	for _, tt := range tests {
		err := Refused(tt.module, tt.name)
		var re *RefusedError
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("Refused(%q, %q) = %v, want nil", tt.module, tt.name, err)
		case tt.want != "" && !errors.As(err, &re):
			t.Errorf("Refused(%q, %q) = %v, want a RefusedError for %s", tt.module, tt.name, err, tt.want)
		case tt.want != "" && re.Global != tt.want:
			t.Errorf("Refused(%q, %q) names %q, want %q", tt.module, tt.name, re.Global, tt.want)
		case tt.want != "" && err.Error() != "refusing to unpickle "+tt.want+": it could run code":
			t.Errorf("Refused(%q, %q) message %q", tt.module, tt.name, err)
		}
	}
}

func u32(n uint32) string { return string(binary.LittleEndian.AppendUint32(nil, n)) }

func TestScanRejects(t *testing.T) {
	tests := []struct {
		name, pkl, want string
	}{
		{"empty", "", "truncated"},
		{"no stop", "\x80\x02K\x01", "truncated"},
		{"unknown opcode", "\x80\x02\xff.", "unknown opcode 0xff"},
		{"lying BINUNICODE", "\x80\x02X" + u32(1<<31-1) + "ab.", "claims 2147483647 bytes"},
		{"lying BINBYTES8", "\x80\x02\x8e" + u32(0xffffffff) + u32(0xffffffff) + ".", "claims 18446744073709551615 bytes"},
		{"lying FRAME", "\x80\x04\x95" + u32(1000) + u32(0) + "K\x01.", "FRAME at byte 2 claims 1000"},
		{"negative BINSTRING", "\x80\x02T" + u32(0xfffffff0) + ".", "negative length"},
		{"memo read before write", "\x80\x02h\x05.", "memo slot 5, which was never filled"},
		{"APPENDS without MARK", "\x80\x02]e.", "no MARK"},
		{"huge LONG4", "\x80\x02\x8b" + u32(100) + strings.Repeat("\x01", 100) + ".", "100 bytes long"},
		{"zero-length LONG1", "\x80\x02\x8a\x00.", "LONG1"},
		{"protocol 6", "\x80\x06N.", "protocol 6"},
		{"unterminated GLOBAL", "\x80\x02cos\nsystem", "unterminated"},
		{"extension registry", "\x80\x02\x82\x01.", "extension registry"},
		{"out-of-band buffer", "\x80\x05\x97.", "NEXT_BUFFER"},
	}
	for _, tt := range tests {
		_, err := Scan([]byte(tt.pkl), Limits{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Scan(%q) error = %v, want one containing %q", tt.name, tt.pkl, err, tt.want)
		}
	}
}

func TestScanLimits(t *testing.T) {
	marks := "\x80\x02" + strings.Repeat("(", 20) + "."
	if _, err := Scan([]byte(marks), Limits{MaxMarkNest: 10}); err == nil || !strings.Contains(err.Error(), "more than 10 MARKs") {
		t.Errorf("20 nested MARKs with limit 10: error = %v", err)
	}
	ops := "\x80\x02" + strings.Repeat("N0", 50) + "N."
	if _, err := Scan([]byte(ops), Limits{MaxOps: 20}); err == nil || !strings.Contains(err.Error(), "more than 20 opcodes") {
		t.Errorf("100 opcodes with limit 20: error = %v", err)
	}
	memo := "\x80\x02N" + strings.Repeat("\x94", 30) + "."
	if _, err := Scan([]byte(memo), Limits{MaxMemo: 10}); err == nil || !strings.Contains(err.Error(), "more than 10 entries") {
		t.Errorf("30 memo entries with limit 10: error = %v", err)
	}
}

func TestUnpickleInertObjects(t *testing.T) {
	// An instance of a model class: NEWOBJ, then BUILD with its __dict__.
	pkl := "\x80\x02c__main__\nNet\nq\x00)\x81q\x01}q\x02(X\x04\x00\x00\x00sizeK\x07X\x04\x00\x00\x00nameX\x02\x00\x00\x00hi" +
		"X\x0b\x00\x00\x00_parameters}X\x08\x00\x00\x00_modules}ub."
	v, n, err := Unpickle([]byte(pkl+"trailing"), Options{})
	if err != nil {
		t.Fatalf("Unpickle(module pickle) error: %v", err)
	}
	if n != len(pkl) {
		t.Errorf("Unpickle length = %d, want %d (trailing bytes are not part of the pickle)", n, len(pkl))
	}
	o, ok := v.(*Object)
	if !ok {
		t.Fatalf("Unpickle = %T, want *Object", v)
	}
	if got := o.Class.QualifiedName(); got != "__main__.Net" {
		t.Errorf("class = %q, want __main__.Net", got)
	}
	if got := o.Attr("size"); got != 7 {
		t.Errorf("Attr(size) = %v, want 7", got)
	}
	if got := o.Attr("name"); got != "hi" {
		t.Errorf("Attr(name) = %v, want hi", got)
	}
}

func TestUnpickleRefusesBeforeCalling(t *testing.T) {
	called := false
	pkl := "\x80\x02cposix\nsystem\nX\x04\x00\x00\x00echo\x85R."
	_, _, err := Unpickle([]byte(pkl), Options{Globals: map[string]any{
		// Even a caller-provided value cannot un-refuse a dangerous global.
		"posix.system": &recorder{called: &called},
	}})
	var re *RefusedError
	if !errors.As(err, &re) || re.Global != "posix.system" {
		t.Fatalf("Unpickle(posix.system REDUCE) error = %v, want RefusedError naming posix.system", err)
	}
	if called {
		t.Errorf("the refused global was called")
	}
}

type recorder struct{ called *bool }

func (r *recorder) Call(args ...any) (any, error) { *r.called = true; return nil, nil }

func TestUnpickleProvidedGlobal(t *testing.T) {
	called := false
	pkl := "\x80\x02cmy.mod\nf\nK\x01\x85R."
	if _, _, err := Unpickle([]byte(pkl), Options{Globals: map[string]any{"my.mod.f": &recorder{called: &called}}}); err != nil {
		t.Fatalf("Unpickle error: %v", err)
	}
	if !called {
		t.Errorf("provided global my.mod.f was not called by REDUCE")
	}
}

func TestUnpickleBuiltins(t *testing.T) {
	// set([1, 2]) as protocol 2 writes it, and bytes via _codecs.encode.
	pkl := "\x80\x02(c__builtin__\nset\n]q\x00(K\x01K\x02e\x85Rc_codecs\nencode\nX\x02\x00\x00\x00\xc3\xbfX\x06\x00\x00\x00latin1\x86Rt."
	v, _, err := Unpickle([]byte(pkl), Options{})
	if err != nil {
		t.Fatalf("Unpickle error: %v", err)
	}
	tup := *v.(*types.Tuple)
	if s, ok := tup[0].(*types.Set); !ok || s.Len() != 2 || !s.Has(1) || !s.Has(2) {
		t.Errorf("set([1,2]) = %#v", tup[0])
	}
	if b, ok := tup[1].([]byte); !ok || string(b) != "\xff" {
		t.Errorf("_codecs.encode('ÿ', 'latin1') = %#v, want []byte{0xff}", tup[1])
	}
}

func TestUnpickleMalformedIsError(t *testing.T) {
	tests := []struct{ name, pkl string }{
		{"odd SETITEMS", "\x80\x02}(K\x01u."},
		{"unhashable key", "\x80\x02ccollections\nOrderedDict\n)RC\x01aK\x01s."},
		{"pop empty stack", "\x80\x020."},
		{"REDUCE on int", "\x80\x02K\x01)R."},
		{"persistent id without loader", "\x80\x02K\x01Q."},
	}
	for _, tt := range tests {
		_, _, err := Unpickle([]byte(tt.pkl), Options{})
		if err == nil {
			t.Errorf("%s: Unpickle(%q) succeeded, want an error", tt.name, tt.pkl)
		}
	}
}

// TestEveryWayToNameAGlobal: GLOBAL, STACK_GLOBAL (protocol 4+) and INST (protocol 0) all go
// through the same refusal.
func TestEveryWayToNameAGlobal(t *testing.T) {
	tests := []struct{ name, pkl, want string }{
		{"GLOBAL", "\x80\x02cos\nsystem\nX\x04\x00\x00\x00echo\x85R.", "os.system"},
		{"STACK_GLOBAL", "\x80\x04\x8c\x02os\x8c\x06system\x93\x8c\x04echo\x85R.", "os.system"},
		{"INST", "(S'echo'\nios\nsystem\n.", "os.system"},
		{"OBJ with refused class", "(c__builtin__\neval\nS'1'\no.", "builtins.eval"},
		{"NEWOBJ", "\x80\x02csubprocess\nPopen\n)\x81.", "subprocess.Popen"},
	}
	for _, tt := range tests {
		_, _, err := Unpickle([]byte(tt.pkl), Options{})
		var re *RefusedError
		if !errors.As(err, &re) || re.Global != tt.want {
			t.Errorf("%s: Unpickle(%q) error = %v, want a refusal naming %s", tt.name, tt.pkl, err, tt.want)
		}
	}
}
