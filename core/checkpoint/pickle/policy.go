package pickle

import (
	"fmt"
	"slices"
	"strings"

	"github.com/monoquant/monoquant/core/names"
)

// RefusedError reports a global that the file names and that could run code if a Python
// unpickler resolved it. Such a file is refused as a whole: a legitimate checkpoint never needs
// one, so its presence means the file is broken or hostile.
type RefusedError struct {
	Global string // "os.system", "builtins.eval", …
	Reason string // "" means "it could run code"
}

func (e *RefusedError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("refusing to unpickle %s: %s", e.Global, e.Reason)
	}
	return fmt.Sprintf("refusing to unpickle %s: it could run code", e.Global)
}

// notAllowed is the RefusedError of a global that is not on the allow-list.
func notAllowed(q, how string) *RefusedError {
	return &RefusedError{Global: names.Summarize(q, names.MaxQuoted), Reason: "it is not a tensor-rebuilding or container global on the allow-list (" + how + "; see SECURITY.md)"}
}

// allowedGlobals are the globals this package itself gives meaning to: containers and plain
// values. Everything else a pickle names must be provided by the caller (Options.Globals, e.g.
// torch's tensor-rebuilding functions) or is refused — the one exception being the class of a
// pickled nn.Module, see Unpickle. Adding a name here is a security decision: the test that
// lists every allowed global must change with it.
var allowedGlobals = map[string]bool{
	"builtins.set": true, "builtins.frozenset": true, "builtins.bytearray": true,
	"builtins.bytes": true, "builtins.complex": true, "builtins.int": true, "builtins.float": true,
	"builtins.str": true, "builtins.bool": true, "builtins.list": true, "builtins.tuple": true,
	"builtins.dict": true, "builtins.slice": true, "builtins.range": true, "builtins.object": true,
	"_codecs.encode":          true, // protocol 2's spelling of bytes
	"collections.OrderedDict": true,
	// Plain value classes that real checkpoints carry (Lightning's hyper-parameters).
	"types.SimpleNamespace": true, "pathlib.Path": true, "pathlib.PosixPath": true,
	"pathlib.WindowsPath": true, "pathlib.PurePath": true, "pathlib.PurePosixPath": true,
	"pathlib.PureWindowsPath": true,
}

// AllowedGlobals lists the globals this package accepts on its own, sorted (for the test that
// pins the allow-list and for SECURITY.md).
func AllowedGlobals() []string {
	out := make([]string, 0, len(allowedGlobals))
	for k := range allowedGlobals {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// py2Modules maps the Python 2 module names that protocol 0–2 pickles written by Python 3 still
// use (pickle's fix_imports) to the Python 3 names, so that one deny-list covers both spellings.
var py2Modules = map[string]string{
	"__builtin__":  "builtins",
	"copy_reg":     "copyreg",
	"cPickle":      "pickle",
	"exceptions":   "builtins",
	"commands":     "subprocess",
	"urllib2":      "urllib",
	"SocketServer": "socketserver",
}

// QualifiedName joins module and name the way Python prints a global, with Python 2 module
// names spelled the Python 3 way.
func QualifiedName(module, name string) string {
	if m, ok := py2Modules[module]; ok {
		module = m
	}
	return module + "." + name
}

// deniedModules are modules any of whose callables can reach the operating system, the
// interpreter or another unpickler. A global inside one of them (or a submodule) is refused.
var deniedModules = []string{
	"os", "posix", "nt", "posixpath", "ntpath", "subprocess", "_posixsubprocess", "_winapi",
	"sys", "importlib", "imp", "zipimport", "runpy", "shutil", "socket", "_socket", "ssl",
	"socketserver", "select", "selectors", "pickle", "_pickle", "pickletools", "marshal", "shelve",
	"dbm", "ctypes", "_ctypes", "cffi", "code", "codeop", "pty", "tty", "webbrowser", "functools",
	"_functools", "operator", "_operator", "types", "copyreg", "multiprocessing", "_multiprocessing",
	"threading", "_thread", "concurrent", "asyncio", "signal", "io", "_io", "pathlib", "tempfile",
	"glob", "fileinput", "urllib", "http", "ftplib", "smtplib", "telnetlib", "xmlrpc", "timeit",
	"cProfile", "profile", "pdb", "bdb", "trace", "doctest", "inspect", "gc", "platform",
	"ensurepip", "pip", "setuptools", "distutils", "pydoc", "site", "sysconfig", "builtins",
	"venv", "dill", "cloudpickle", "joblib", "yaml", "numpy.load", "numpy.lib.npyio",
	"numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "torch.load",
	"torch.serialization", "torch.hub", "torch.jit", "torch.package", "torch.ops", "torch._ops",
	"torch.fx", "torch.utils.cpp_extension", "torch._dynamo", "torch.compile",
	"torch.storage._load_from_bytes", "torch._C", "_codecs.open", "codecs",
}

// harmlessBuiltins are the builtins that only build plain values. Every other builtin
// (eval, exec, getattr, __import__, open, compile, globals, …) is refused.
var harmlessBuiltins = map[string]bool{
	"set": true, "frozenset": true, "bytearray": true, "bytes": true, "complex": true,
	"int": true, "float": true, "str": true, "bool": true, "list": true, "tuple": true,
	"dict": true, "slice": true, "range": true, "object": true,
}

// harmlessInDenied are value classes that live in denied modules but only hold data; real
// checkpoints carry them (Lightning saves hyper-parameters with paths and namespaces).
var harmlessInDenied = map[string]bool{
	"types.SimpleNamespace": true, "pathlib.Path": true, "pathlib.PosixPath": true,
	"pathlib.WindowsPath": true, "pathlib.PurePath": true, "pathlib.PurePosixPath": true,
	"pathlib.PureWindowsPath": true,
}

// Refused reports whether the global module.name is on the deny-list of globals known to reach
// the operating system or the interpreter, with the error that names it. The deny-list only
// gives those a sharper message: a global it does not name is still refused unless it is on the
// allow-list (see Unpickle).
func Refused(module, name string) error {
	q := QualifiedName(module, name)
	m := q[:len(q)-len(name)-1]
	if harmlessInDenied[q] {
		return nil
	}
	if m == "builtins" {
		if harmlessBuiltins[name] {
			return nil
		}
		return &RefusedError{Global: q}
	}
	// Attribute paths ("os.path.join" spelled as module "os", name "path.join") and dotted
	// names are checked as a whole qualified name too, so "torch" + "load" is caught like
	// "torch.load".
	for _, d := range deniedModules {
		if m == d || strings.HasPrefix(m, d+".") || q == d || strings.HasPrefix(q, d+".") {
			return &RefusedError{Global: q}
		}
	}
	// Dunder attributes reach interpreter internals ("f.__globals__", "x.__class__.__base__"),
	// the usual first step of a getattr chain spelled as a dotted global name.
	for _, part := range strings.Split(name, ".") {
		if len(part) > 4 && strings.HasPrefix(part, "__") && strings.HasSuffix(part, "__") {
			return &RefusedError{Global: q}
		}
	}
	return nil
}
