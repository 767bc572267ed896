// Package pickle reads Python pickles without running any code from them.
//
// A pickle is a small program: GLOBAL names a Python callable, REDUCE calls it. A normal
// unpickler imports and calls whatever the file names, which is how a .pt file runs
// os.system. This package never calls anything the file names, and accepts only globals on an
// allow-list, as torch.load(weights_only=True) does:
//
//   - provided: the caller passes Go values for the globals it understands (torch's tensor
//     rebuild functions, storage types, …) in Options.Globals; those implement gopickle's
//     types.Callable / types.PyNewable in Go.
//   - allowed: containers and plain values this package builds itself (AllowedGlobals).
//   - module classes: any other class is accepted only as the class of a pickled nn.Module —
//     instantiated by NEWOBJ without arguments (cls.__new__, no __init__) into an object whose
//     state has _parameters and _modules — and becomes an inert *Object; a torch.nn.functional
//     function is accepted only as a value (a module's activation attribute).
//   - refused: everything else, with a *RefusedError naming the global: any call of a global
//     that is not provided or allowed, copyreg._reconstructor in any spelling, and the
//     deny-list of globals known to reach the operating system (Refused), which no caller can
//     provide.
//
// Before the unpickler runs, Scan checks every opcode and length against the bytes present, so
// no buffer is ever sized by a claim in the file, and Limits bound the opcode count, MARK
// nesting and memo. The opcode engine is github.com/nlpodyssey/gopickle's Unpickler.
package pickle

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/monoquant/monoquant/core/names"
	gopickle "github.com/nlpodyssey/gopickle/pickle"
	"github.com/nlpodyssey/gopickle/types"
)

// Options configure Unpickle.
type Options struct {
	// Globals maps qualified names ("torch._utils._rebuild_tensor_v2") to Go values that stand
	// for them. Refused globals cannot be provided.
	Globals map[string]any
	// PersistentLoad resolves persistent ids (torch uses them for storages). Nil refuses them.
	PersistentLoad func(pid any) (any, error)
	Limits         Limits
}

// Class is a global kept by name only: an allowed plain value class, or the class of a pickled
// nn.Module (see Unpickle), which is never imported or run.
type Class struct {
	Module, Name string
	// moduleOnly marks a class that is not on the allow-list: it may only be instantiated
	// with NEWOBJ into an object with nn.Module state; calling it is refused.
	moduleOnly bool
	instances  []*Object
	// refOnly marks a torch function a module keeps as an attribute (an activation such as
	// torch.nn.functional.relu): allowed as a value, refused if the pickle calls it.
	refOnly bool
}

// QualifiedName is "module.Name", e.g. "torch.nn.modules.linear.Linear".
func (c *Class) QualifiedName() string { return QualifiedName(c.Module, c.Name) }

// PyNew records an instantiation (NEWOBJ: cls.__new__(cls), which runs no __init__) without
// running anything.
func (c *Class) PyNew(args ...any) (any, error) {
	if c.refOnly {
		return nil, notAllowed(c.QualifiedName(), "the pickle instantiates it")
	}
	o := &Object{Class: c, Args: args}
	if c.moduleOnly {
		if len(args) > 0 {
			return nil, notAllowed(c.QualifiedName(), "NEWOBJ passes it arguments, which an nn.Module never takes")
		}
		c.instances = append(c.instances, o)
	}
	return o, nil
}

// Call records a REDUCE (or INST/OBJ) of an allowed global; nothing is called. A class that is
// not on the allow-list is refused: in Python this would call it.
func (c *Class) Call(args ...any) (any, error) {
	if c.moduleOnly || c.refOnly {
		return nil, notAllowed(c.QualifiedName(), "the pickle calls it")
	}
	return &Object{Class: c, Args: args}, nil
}

// IsModule reports whether o has the state every torch nn.Module pickles: _parameters and
// _modules dicts.
func IsModule(o *Object) bool {
	isDict := func(v any) bool {
		switch v.(type) {
		case *types.Dict, *types.OrderedDict:
			return true
		}
		return false
	}
	return isDict(o.Attr("_parameters")) && isDict(o.Attr("_modules"))
}

// Object is an inert instance of a Class: the constructor arguments and whatever state the
// pickle set on it.
type Object struct {
	Class *Class
	Args  []any
	// State is the BUILD argument (for plain classes the __dict__ as a *types.Dict).
	State any
	// Items are key/value pairs added by SETITEM(S) (dict subclasses such as defaultdict).
	Items []types.DictEntry
	// Elems are values added by APPEND(S) (list subclasses).
	Elems []any
}

// PySetState records BUILD's state.
func (o *Object) PySetState(state any) error {
	o.State = state
	return nil
}

// Set records a SETITEM on a dict-like object.
func (o *Object) Set(k, v any) { o.Items = append(o.Items, types.DictEntry{Key: k, Value: v}) }

// Append records an APPEND on a list-like object.
func (o *Object) Append(v any) { o.Elems = append(o.Elems, v) }

// Attr returns a key of the object's __dict__ state, or nil.
func (o *Object) Attr(name string) any {
	switch s := o.State.(type) {
	case *types.Dict:
		for _, e := range *s {
			if k, ok := e.Key.(string); ok && k == name {
				return e.Value
			}
		}
	case *types.Tuple:
		// (state, slotstate) form.
		if s.Len() == 2 {
			if d, ok := s.Get(0).(*types.Dict); ok {
				return (&Object{State: d}).Attr(name)
			}
		}
	}
	return nil
}

// builtinValue builds the plain values Python pickles through harmless builtins.
type builtinValue struct{ name string }

func (b *builtinValue) Call(args ...any) (any, error) {
	switch b.name {
	case "builtins.set", "builtins.frozenset":
		s := types.NewSet()
		if len(args) == 1 {
			for _, v := range sequence(args[0]) {
				if !hashable(v) {
					return nil, fmt.Errorf("%s: element of type %T cannot be a set member", b.name, v)
				}
				s.Add(v)
			}
		}
		return s, nil
	case "_codecs.encode":
		// Protocol 2 spells bytes as _codecs.encode(text, "latin1").
		if len(args) >= 1 {
			if s, ok := args[0].(string); ok {
				out := make([]byte, 0, len(s))
				for _, r := range s {
					if r > 0xff {
						return nil, fmt.Errorf("_codecs.encode: character %U is not latin-1", r)
					}
					out = append(out, byte(r))
				}
				return out, nil
			}
		}
		return nil, fmt.Errorf("_codecs.encode: unexpected arguments")
	}
	return &Object{Class: &Class{Module: "builtins", Name: b.name[len("builtins."):]}, Args: args}, nil
}

// PyNew serves object.__new__(cls) (copyreg._reconstructor's base argument): the instance is
// of cls, not of object.
func (b *builtinValue) PyNew(args ...any) (any, error) {
	if b.name == "builtins.object" && len(args) > 0 {
		if cls, ok := args[0].(types.PyNewable); ok {
			return cls.PyNew()
		}
	}
	return b.Call(args...)
}

func sequence(v any) []any {
	switch s := v.(type) {
	case *types.List:
		return *s
	case *types.Tuple:
		return *s
	}
	return nil
}

func hashable(v any) bool {
	switch v.(type) {
	case []byte, *types.Set, *types.FrozenSet:
		return false
	}
	return true
}

// Unpickle decodes one pickle that starts at data[0] and returns its value and its length in
// bytes (pickles can be followed by more data, as in torch's legacy format).
func Unpickle(data []byte, opt Options) (value any, n int, err error) {
	lim := opt.Limits.WithDefaults()
	n, err = Scan(data, lim)
	if err != nil {
		return nil, 0, err
	}
	u := gopickle.NewUnpickler(bytes.NewReader(data[:n]))
	var moduleClasses []*Class
	u.FindClass = func(module, name string) (any, error) {
		if err := checkGlobal(module, name); err != nil {
			return nil, err
		}
		q := QualifiedName(module, name)
		if v, ok := opt.Globals[q]; ok {
			return v, nil
		}
		if allowedGlobals[q] {
			if q == "_codecs.encode" || strings.HasPrefix(q, "builtins.") {
				return &builtinValue{name: q}, nil
			}
			return &Class{Module: module, Name: name}, nil
		}
		if fn, ok := strings.CutPrefix(q, "torch.nn.functional."); ok && isIdentifier(fn) && !strings.HasPrefix(fn, "_") {
			return &Class{Module: module, Name: name, refOnly: true}, nil
		}
		// Not on the allow-list: acceptable only as the class of a pickled nn.Module, checked
		// once the whole pickle is read.
		c := &Class{Module: module, Name: name, moduleOnly: true}
		moduleClasses = append(moduleClasses, c)
		return c, nil
	}
	if opt.PersistentLoad != nil {
		u.PersistentLoad = opt.PersistentLoad
	} else {
		u.PersistentLoad = func(any) (any, error) {
			return nil, errors.New("pickle uses persistent ids, which this file type does not allow")
		}
	}
	u.GetExtension = func(int) (any, error) { return nil, errors.New("pickle uses the extension registry") }
	defer func() {
		// gopickle trusts the stream in a few places (odd SETITEMS, unhashable dict keys);
		// Scan removes the allocation hazards, this turns the rest into errors.
		if r := recover(); r != nil {
			value, n, err = nil, 0, fmt.Errorf("malformed pickle: %s", names.Message(fmt.Sprint(r)))
		}
	}()
	value, err = u.Load()
	if err != nil {
		// Errors come from the caller's globals (already specific), from FindClass
		// (*RefusedError) or from gopickle's own checks, which name the opcode but may quote
		// values at length: those are bounded.
		var re *RefusedError
		if errors.As(err, &re) {
			return nil, 0, err
		}
		return nil, 0, errors.New(names.Message("malformed pickle: " + withoutGoValues(err.Error())))
	}
	for _, c := range moduleClasses {
		if len(c.instances) == 0 {
			return nil, 0, notAllowed(c.QualifiedName(), "it is named but is not the class of a pickled nn.Module")
		}
		for _, o := range c.instances {
			if !IsModule(o) {
				return nil, 0, notAllowed(c.QualifiedName(), "an instance of it has no nn.Module state (_parameters, _modules)")
			}
		}
	}
	return value, n, nil
}

// isIdentifier reports whether s is one Python identifier (no dots, no spaces).
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// withoutGoValues drops the Go rendering of a value that the unpickler engine appends to some
// of its errors ("REDUCE requires a Callable object: &types.List{…}"): it means nothing to the
// user and can be as large as the pickle.
func withoutGoValues(msg string) string {
	for _, mark := range []string{": &", ": []", ": map[", ": types.", ": (*", ": %!"} {
		if i := strings.Index(msg, mark); i >= 0 {
			return msg[:i] + " (the value is not shown)"
		}
	}
	return msg
}
