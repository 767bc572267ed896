package pickle

import (
	"fmt"
	"strings"
)

// RefusedError reports a global that the file names and that could run code if a Python
// unpickler resolved it. Such a file is refused as a whole: a legitimate checkpoint never needs
// one, so its presence means the file is broken or hostile.
type RefusedError struct {
	Global string // "os.system", "builtins.eval", …
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("refusing to unpickle %s: it could run code", e.Global)
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

// Refused reports whether the global module.name must never be resolved, with the error that
// names it; nil means the global may be resolved or kept inert.
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
