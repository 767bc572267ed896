package pickle

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestAllowedGlobalsPinned lists every global this package accepts by name. Adding one is a
// security decision: it must be made here, visibly, and in SECURITY.md.
func TestAllowedGlobalsPinned(t *testing.T) {
	want := []string{
		"_codecs.encode",
		"builtins.bool", "builtins.bytearray", "builtins.bytes", "builtins.complex",
		"builtins.dict", "builtins.float", "builtins.frozenset", "builtins.int", "builtins.list",
		"builtins.object", "builtins.range", "builtins.set", "builtins.slice", "builtins.str",
		"builtins.tuple",
		"collections.OrderedDict",
		"pathlib.Path", "pathlib.PosixPath", "pathlib.PurePath", "pathlib.PurePosixPath",
		"pathlib.PureWindowsPath", "pathlib.WindowsPath",
		"types.SimpleNamespace",
	}
	if got := AllowedGlobals(); !reflect.DeepEqual(got, want) {
		t.Errorf("AllowedGlobals() = %q\nwant %q", got, want)
	}
}

// reduceGlobal is PROTO 2, GLOBAL module.name, ("x",), REDUCE, STOP.
func reduceGlobal(module, name string) string {
	return "\x80\x02c" + module + "\n" + name + "\nX\x01\x00\x00\x00x\x85R."
}

// stackGlobal is the protocol 4 spelling of reduceGlobal, with memoised strings.
func stackGlobal(module, name string) string {
	return "\x80\x04\x8c" + string(rune(len(module))) + module + "\x94\x8c" + string(rune(len(name))) + name + "\x94\x93\x94X\x01\x00\x00\x00x\x85R."
}

// TestGadgetsOutsideTheDenyListAreRefused: globals that run code in Python but that no
// deny-list names must be refused all the same, by name, however the pickle spells them.
func TestGadgetsOutsideTheDenyListAreRefused(t *testing.T) {
	gadgets := [][2]string{
		{"uuid", "_get_command_stdout"}, {"_osx_support", "_read_output"},
		{"imaplib", "IMAP4_stream"}, {"torch.utils.collect_env", "run"},
		{"logging.config", "dictConfig"}, {"typing", "_eval_type"}, {"gzip", "open"},
		{"numpy.core.multiarray", "_reconstruct"}, {"__main__", "Net"},
		{"torch.nn.functional", "relu"}, // allowed as a module's attribute, never called
	}
	for _, g := range gadgets {
		q := g[0] + "." + g[1]
		for spelling, pkl := range map[string]string{"GLOBAL": reduceGlobal(g[0], g[1]), "STACK_GLOBAL": stackGlobal(g[0], g[1])} {
			_, _, err := Unpickle([]byte(pkl), Options{})
			var re *RefusedError
			if !errors.As(err, &re) || re.Global != q || !strings.Contains(err.Error(), q) {
				t.Errorf("%s via %s: error = %v, want a refusal naming it", q, spelling, err)
			}
		}
	}
}

func TestCopyregReconstructorRefused(t *testing.T) {
	for _, pkl := range []string{
		// protocol 0/1 spelling: copy_reg._reconstructor(cls, object, None)
		"\x80\x02ccopy_reg\n_reconstructor\nc__main__\nNet\nc__builtin__\nobject\nN\x87R.",
		"\x80\x02ccopyreg\n_reconstructor\nc__main__\nNet\nc__builtin__\nobject\nN\x87R.",
		"\x80\x04\x8c\x08copy_reg\x8c\x0e_reconstructor\x93c__main__\nNet\nc__builtin__\nobject\nN\x87R.",
	} {
		_, _, err := Unpickle([]byte(pkl), Options{})
		var re *RefusedError
		if !errors.As(err, &re) || re.Global != "copyreg._reconstructor" {
			t.Errorf("Unpickle(%q) error = %v, want a refusal naming copyreg._reconstructor", pkl, err)
		}
	}
}

// A STACK_GLOBAL whose operands are not visibly string literals cannot be checked first, so
// it is refused.
func TestStackGlobalOperandsMustBeLiterals(t *testing.T) {
	pkl := "\x80\x04\x8c\x02os\x8c\x06system]0\x93."
	if _, _, err := Unpickle([]byte(pkl), Options{}); err == nil || !strings.Contains(err.Error(), "STACK_GLOBAL") {
		t.Errorf("Unpickle(STACK_GLOBAL after other opcodes) error = %v, want a STACK_GLOBAL refusal", err)
	}
}

func TestModuleClassOnlyAsModule(t *testing.T) {
	// NEWOBJ of __main__.Net with a state that is not a module's.
	plain := "\x80\x02c__main__\nNet\n)\x81}X\x01\x00\x00\x00aK\x01sb."
	if _, _, err := Unpickle([]byte(plain), Options{}); err == nil || !strings.Contains(err.Error(), "no nn.Module state") {
		t.Errorf("Unpickle(non-module instance) error = %v, want a refusal", err)
	}
	// A bare reference to a class that is never instantiated.
	bare := "\x80\x02c__main__\nNet\n."
	if _, _, err := Unpickle([]byte(bare), Options{}); err == nil || !strings.Contains(err.Error(), "__main__.Net") {
		t.Errorf("Unpickle(bare class) error = %v, want a refusal", err)
	}
}

// One large literal repeated through the memo must not make anything (values, messages) grow
// with the number of repetitions.
func TestRepeatedLiteralBounded(t *testing.T) {
	big := strings.Repeat("A", 1<<16)
	pkl := "\x80\x02(B\x00\x00\x01\x00" + big + "q\x00" + strings.Repeat("h\x00", 10) + "lK\x01\x85R."
	_, _, err := Unpickle([]byte(pkl), Options{})
	if err == nil {
		t.Fatal("REDUCE on a list succeeded")
	}
	if len(err.Error()) > 2048 || strings.Contains(err.Error(), "types.") || strings.Contains(err.Error(), "0x41") {
		t.Errorf("error message %q: want a bounded one without Go values", err)
	}
	bomb := "\x80\x02(B\x00\x00\x01\x00" + big + "q\x00" + strings.Repeat("h\x00", 200) + "l."
	if _, _, err := Unpickle([]byte(bomb), Options{}); err == nil || !strings.Contains(err.Error(), "memory bomb") {
		t.Errorf("Unpickle(one 64 KiB literal referenced 200 times) error = %v, want a refusal", err)
	}
}
