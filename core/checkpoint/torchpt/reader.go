// Package torchpt reads and writes PyTorch checkpoints (.pt/.pth/.bin) without running Python
// or any code from the file.
//
// Reading understands torch's zip format (<folder>/data.pkl plus one <folder>/data/<key> record
// per storage) and the legacy format written with _use_new_zipfile_serialization=False (a
// sequence of pickles followed by the raw storages). data.pkl is decoded by the safe unpickler
// in core/checkpoint/pickle; this package gives meaning to torch's globals (storage types,
// _rebuild_tensor_v2 and friends) and walks the result:
//
//   - a state dict, or any nesting of dicts/lists/tuples, yields tensors named by their
//     dotted path ("optimizer.state.0.exp_avg");
//   - a whole pickled nn.Module yields its state_dict names (parameters, persistent buffers,
//     submodules) and ModuleTypes records each module's class by path.
//
// The file is memory-mapped and parsed under mapped.Guard; every tensor is returned as a
// contiguous copy read under the guard, so a file truncated while it is read gives an error
// (mapped.ErrChanged), never a crash. Broadcast views are materialised only within
// tensor.ViewExpansion; deflated records are inflated once per storage, within MaxExpansion.
//
// Writing produces the zip format torch.load(weights_only=True) accepts, see Create.
package torchpt

import (
	"encoding/binary"
	"fmt"
	"math/big"
	"strconv"
	"sync"

	"github.com/monoquant/monoquant/core/checkpoint/mapped"
	"github.com/monoquant/monoquant/core/checkpoint/pickle"
	"github.com/monoquant/monoquant/core/names"
	"github.com/monoquant/monoquant/core/tensor"
	"github.com/nlpodyssey/gopickle/types"
)

// MetadataAttr is the attribute of the saved OrderedDict that holds a monoquant .pt's string
// metadata. Pickle's BUILD sets it in the OrderedDict's __dict__, the same way torch keeps a
// state dict's _metadata, which torch.load(weights_only=True) allows; after loading it is
// sd._monoquant_metadata, a dict of str to str.
const MetadataAttr = "_monoquant_metadata"

// File is an open torch checkpoint. It implements checkpoint.Reader and is safe for concurrent
// use.
type File struct {
	path      string
	m         *mapped.File
	entries   []tensor.Info
	refs      map[string]*tensorRef
	meta      map[string]string
	modules   map[string]string
	bigEndian bool

	mu     sync.RWMutex
	closed bool
}

// Open reads the structure of the checkpoint at path (tensor bytes stay on disk until asked
// for). Files that name a global that could run code are refused with a *pickle.RefusedError.
func Open(path string) (*File, error) {
	m, err := mapped.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open torch checkpoint: %w", err)
	}
	f := &File{path: path, m: m, refs: map[string]*tensorRef{}, meta: map[string]string{}}
	if err := mapped.Guard(path, func() error { return f.parse(m.Bytes()) }); err != nil {
		m.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

func (f *File) parse(b []byte) error {
	switch {
	case len(b) == 0:
		return fmt.Errorf("file is empty")
	case len(b) >= 4 && (string(b[:4]) == "PK\x03\x04" || string(b[:4]) == "PK\x05\x06"):
		return f.parseZip(b)
	case len(b) >= 2 && b[0] == 0x80 && b[1] <= 5:
		return f.parseLegacy(b)
	case len(b) >= 262 && string(b[257:262]) == "ustar":
		return fmt.Errorf("this is torch's pre-1.0 tar checkpoint format, which is not supported: load and re-save it with torch")
	}
	return fmt.Errorf("not a torch checkpoint: neither a zip archive nor a pickle")
}

func (f *File) parseZip(b []byte) error {
	a, err := openZip(b)
	if err != nil {
		return err
	}
	if r := a.get("byteorder"); r != nil {
		bo, err := r.bytes()
		if err != nil {
			return err
		}
		switch string(bo) {
		case "little":
		case "big":
			f.bigEndian = true
		default:
			return fmt.Errorf("byteorder record says %q, want little or big", bo)
		}
	}
	pk, err := a.get("data.pkl").bytes()
	if err != nil {
		return err
	}
	storages := map[string]*storage{}
	load := func(pid any) (any, error) {
		t, ok := pid.(*types.Tuple)
		if !ok || t.Len() < 5 {
			return nil, fmt.Errorf("persistent id %s is not a ('storage', type, key, location, numel) tuple", describe(pid))
		}
		if s, _ := t.Get(0).(string); s != "storage" {
			return nil, fmt.Errorf("persistent id of kind %v is not supported (only storages are)", t.Get(0))
		}
		typ, ok := t.Get(1).(*storageType)
		if !ok {
			return nil, fmt.Errorf("storage type %s is not a torch storage class", describe(t.Get(1)))
		}
		key, ok := t.Get(2).(string)
		if !ok {
			return nil, fmt.Errorf("storage key is a %s, not a string", describe(t.Get(2)))
		}
		numel, err := asInt(t.Get(4))
		if err != nil || numel < 0 {
			return nil, fmt.Errorf("storage %s: element count %v is not a non-negative integer", key, t.Get(4))
		}
		if s, ok := storages[key]; ok {
			if s.typeName != typ.name || s.numel != numel {
				return nil, fmt.Errorf("storage %s is named twice with different types or sizes", key)
			}
			return s, nil
		}
		if !typ.dtype.Valid() && typ.name != "torch.UntypedStorage" && typ.name != "torch.storage.UntypedStorage" {
			return nil, fmt.Errorf("storage %s has type %s, which is not supported", key, typ.name)
		}
		rec := a.get("data/" + key)
		if rec == nil {
			return nil, fmt.Errorf("storage %s: record %s/data/%s is not in the archive", key, a.prefix, key)
		}
		es := int64(1)
		if typ.dtype.Valid() {
			es = int64(typ.dtype.Size())
		}
		if numel > rec.size/es {
			return nil, fmt.Errorf("storage %s claims %d elements of %d bytes but its record has only %d bytes", key, numel, es, rec.size)
		}
		s := &storage{key: key, typeName: typ.name, dtype: typ.dtype, numel: numel, rec: rec}
		storages[key] = s
		return s, nil
	}
	root, _, err := pickle.Unpickle(pk, pickle.Options{Globals: torchGlobals(), PersistentLoad: load})
	if err != nil {
		return fmt.Errorf("data.pkl: %w", err)
	}
	return f.collect(root, len(pk))
}

// legacyMagic is the first pickle of a legacy torch file.
var legacyMagic, _ = new(big.Int).SetString("1950a86a20f9469cfc6c", 16)

func (f *File) parseLegacy(b []byte) error {
	pos := 0
	next := func(what string, opt pickle.Options) (any, error) {
		v, n, err := pickle.Unpickle(b[pos:], opt)
		if err != nil {
			return nil, fmt.Errorf("legacy checkpoint, %s pickle at byte %d: %w", what, pos, err)
		}
		pos += n
		return v, nil
	}
	magic, err := next("magic number", pickle.Options{})
	if err != nil {
		return err
	}
	if m, ok := magic.(*big.Int); !ok || m.Cmp(legacyMagic) != 0 {
		return fmt.Errorf("not a torch checkpoint: a pickle without torch's magic number (a plain pickle file?)")
	}
	proto, err := next("protocol version", pickle.Options{})
	if err != nil {
		return err
	}
	if p, _ := asInt(proto); p != 1001 {
		return fmt.Errorf("legacy checkpoint protocol %v is not supported (want 1001)", proto)
	}
	sysInfo, err := next("sys info", pickle.Options{})
	if err != nil {
		return err
	}
	if d, ok := sysInfo.(*types.Dict); ok {
		if le, ok := d.Get("little_endian"); ok && le == false {
			f.bigEndian = true
		}
	}
	roots := map[string]*storage{}
	var views []*storage
	viewRoots := map[*storage]*storage{}
	load := func(pid any) (any, error) {
		t, ok := pid.(*types.Tuple)
		if !ok || t.Len() < 5 {
			return nil, fmt.Errorf("persistent id %s is not a storage tuple", describe(pid))
		}
		if s, _ := t.Get(0).(string); s != "storage" {
			return nil, fmt.Errorf("persistent id of kind %v is not supported", t.Get(0))
		}
		typ, ok := t.Get(1).(*storageType)
		if !ok || !typ.dtype.Valid() {
			return nil, fmt.Errorf("storage type %s is not supported", describe(t.Get(1)))
		}
		key, ok := t.Get(2).(string)
		if !ok {
			return nil, fmt.Errorf("storage key is a %s", describe(t.Get(2)))
		}
		numel, err := asInt(t.Get(4))
		if err != nil || numel < 0 {
			return nil, fmt.Errorf("storage %s: bad element count %v", key, t.Get(4))
		}
		root, ok := roots[key]
		if !ok {
			root = &storage{key: key, typeName: typ.name, dtype: typ.dtype, numel: numel}
			roots[key] = root
		} else if root.dtype != typ.dtype || root.numel != numel {
			return nil, fmt.Errorf("storage %s is named twice with different types or sizes", key)
		}
		if t.Len() > 5 && t.Get(5) != nil {
			// Pre-1.x view storages: (view_key, offset, size) into the root.
			v := sequence(t.Get(5))
			if len(v) != 3 {
				return nil, fmt.Errorf("storage %s: malformed view metadata", key)
			}
			off, err1 := asInt(v[1])
			size, err2 := asInt(v[2])
			if err1 != nil || err2 != nil || off < 0 || size < 0 || off > numel || size > numel-off {
				return nil, fmt.Errorf("storage %s: view [%v, +%v) lies outside the %d-element storage", key, v[1], v[2], numel)
			}
			vs := &storage{key: key, typeName: typ.name, dtype: typ.dtype, numel: size, viewOffset: off}
			views = append(views, vs)
			viewRoots[vs] = root
			return vs, nil
		}
		return root, nil
	}
	mainAt := pos
	root, err := next("main", pickle.Options{Globals: torchGlobals(), PersistentLoad: load})
	if err != nil {
		return err
	}
	mainLen := pos - mainAt
	keysV, err := next("storage keys", pickle.Options{})
	if err != nil {
		return err
	}
	keys := sequence(keysV)
	if keys == nil && keysV != nil {
		return fmt.Errorf("legacy checkpoint: storage key list is a %s", describe(keysV))
	}
	order := binary.ByteOrder(binary.LittleEndian)
	if f.bigEndian {
		order = binary.BigEndian
	}
	for _, k := range keys {
		key, ok := k.(string)
		if !ok {
			return fmt.Errorf("legacy checkpoint: storage key is a %s", describe(k))
		}
		st := roots[key]
		if st == nil {
			return fmt.Errorf("legacy checkpoint: storage %s is listed but no tensor uses it", key)
		}
		if st.rec != nil {
			return fmt.Errorf("legacy checkpoint: storage %s is listed twice", key)
		}
		if len(b)-pos < 8 {
			return fmt.Errorf("legacy checkpoint is truncated before storage %s", key)
		}
		n := int64(order.Uint64(b[pos:]))
		pos += 8
		es := int64(st.dtype.Size())
		if n != st.numel {
			return fmt.Errorf("legacy checkpoint: storage %s holds %d elements but the pickle says %d", key, n, st.numel)
		}
		if n < 0 || n > int64(len(b)-pos)/es {
			return fmt.Errorf("legacy checkpoint is truncated: storage %s needs %d elements of %d bytes, %d bytes remain", key, n, es, len(b)-pos)
		}
		st.rec = &record{name: "storage " + key, off: int64(pos), data: b[pos : pos+int(n*es) : pos+int(n*es)], size: n * es}
		pos += int(n * es)
	}
	for key, st := range roots {
		if st.rec == nil {
			return fmt.Errorf("legacy checkpoint: storage %s has no data in the file", key)
		}
	}
	for _, v := range views {
		v.rec = viewRoots[v].rec
	}
	return f.collect(root, mainLen)
}

// collect walks the unpickled root, validates every tensor against its storage and records
// entries in walk order.
func (f *File) collect(root any, pickleLen int) error {
	w := &walker{f: f, lim: walkLimits.WithDefaults()}
	// A pickle that shares containers (memo references) describes a DAG whose walk as a tree,
	// and the dotted names it builds, could be exponential in the pickle's size. A real
	// checkpoint visits each container about once and every container costs pickle bytes, so
	// both are bounded linearly in the pickle.
	w.lim.MaxObjects = min(w.lim.MaxObjects, pickleLen+4096)
	w.nameBudget = 16*pickleLen + 1<<20
	if err := w.walk(root, "", 0); err != nil {
		return err
	}
	if od, ok := root.(*types.OrderedDict); ok {
		if md, ok := od.PyDict[MetadataAttr]; ok {
			d, ok := md.(*types.Dict)
			if !ok {
				return fmt.Errorf("%s is a %s, not a dict", MetadataAttr, describe(md))
			}
			for _, e := range *d {
				k, ok1 := e.Key.(string)
				v, ok2 := e.Value.(string)
				if !ok1 || !ok2 {
					return fmt.Errorf("%s holds a %s → %s pair; only strings are allowed", MetadataAttr, describe(e.Key), describe(e.Value))
				}
				if err := names.Check("metadata key", k); err != nil {
					return err
				}
				if err := names.Check("metadata value of "+names.Quote(k)+" is a string that", v); err != nil {
					return err
				}
				f.meta[k] = v
			}
		}
	}
	return nil
}

// walkLimits bound the walk over the unpickled structure (a variable so tests can lower it).
// Real checkpoints nest a few dozen levels and hold well under a million containers; a pickle
// that shares one container many times (a DAG of memo references) could otherwise make the
// walk, and the dotted names it builds, exponential.
var walkLimits = pickle.Limits{MaxDepth: 100, MaxObjects: 1 << 21}

type walker struct {
	f          *File
	lim        pickle.Limits
	visits     int
	nameBudget int // bytes of dotted names the walk may still build
}

// join is the walker's name builder, charged against its name budget.
func (w *walker) join(prefix, name string) (string, error) {
	w.nameBudget -= len(prefix) + 1 + len(name)
	if w.nameBudget < 0 {
		return "", fmt.Errorf("checkpoint structure builds more tensor-name bytes than its pickle could honestly describe (shared references repeated?)")
	}
	return join(prefix, name), nil
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func keyName(k any) (string, bool) {
	switch x := k.(type) {
	case string:
		return x, true
	case int:
		return strconv.Itoa(x), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

func (w *walker) walk(v any, prefix string, depth int) error {
	w.visits++
	if w.visits > w.lim.MaxObjects {
		return fmt.Errorf("checkpoint structure has more than %d containers for its pickle size (shared references repeated?)", w.lim.MaxObjects)
	}
	if depth > w.lim.MaxDepth {
		return fmt.Errorf("checkpoint structure is nested deeper than %d levels at %s (a cycle?)", w.lim.MaxDepth, names.Quote(prefix))
	}
	switch x := v.(type) {
	case *tensorRef:
		return w.add(prefix, x)
	case *types.OrderedDict:
		for e := x.List.Front(); e != nil; e = e.Next() {
			ent := e.Value.(*types.OrderedDictEntry)
			if k, ok := keyName(ent.Key); ok {
				n, err := w.join(prefix, k)
				if err != nil {
					return err
				}
				if err := w.walk(ent.Value, n, depth+1); err != nil {
					return err
				}
			}
		}
	case *types.Dict:
		return w.entries(*x, prefix, depth)
	case *types.List:
		return w.seq(*x, prefix, depth)
	case *types.Tuple:
		return w.seq(*x, prefix, depth)
	case *pickle.Object:
		if isModule(x) {
			return w.module(x, prefix, depth)
		}
		if err := w.entries(x.Items, prefix, depth); err != nil {
			return err
		}
		return w.seq(x.Elems, prefix, depth)
	}
	return nil
}

func (w *walker) entries(es []types.DictEntry, prefix string, depth int) error {
	for _, e := range es {
		if k, ok := keyName(e.Key); ok {
			n, err := w.join(prefix, k)
			if err != nil {
				return err
			}
			if err := w.walk(e.Value, n, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *walker) seq(s []any, prefix string, depth int) error {
	for i, e := range s {
		n, err := w.join(prefix, strconv.Itoa(i))
		if err != nil {
			return err
		}
		if err := w.walk(e, n, depth+1); err != nil {
			return err
		}
	}
	return nil
}

// items lists a dict's or OrderedDict's entries in order (torch ≥ 2.0 keeps a module's
// _parameters/_buffers/_modules in plain dicts, older versions in OrderedDicts).
func items(v any) ([]types.DictEntry, bool) {
	switch d := v.(type) {
	case *types.Dict:
		return *d, true
	case *types.OrderedDict:
		out := make([]types.DictEntry, 0, d.Len())
		for e := d.List.Front(); e != nil; e = e.Next() {
			ent := e.Value.(*types.OrderedDictEntry)
			out = append(out, types.DictEntry{Key: ent.Key, Value: ent.Value})
		}
		return out, true
	}
	return nil, false
}

// isModule recognises a pickled nn.Module by the attributes every Module has.
func isModule(o *pickle.Object) bool {
	_, p := items(o.Attr("_parameters"))
	_, m := items(o.Attr("_modules"))
	return p && m
}

// module adds a module's state_dict entries in torch's order: parameters, persistent buffers,
// then submodules.
func (w *walker) module(o *pickle.Object, prefix string, depth int) error {
	if w.f.modules == nil {
		w.f.modules = map[string]string{}
	}
	w.f.modules[prefix] = o.Class.QualifiedName()
	nonPersistent := map[string]bool{}
	if s, ok := o.Attr("_non_persistent_buffers_set").(*types.Set); ok {
		for k := range *s {
			if name, ok := k.(string); ok {
				nonPersistent[name] = true
			}
		}
	}
	for _, attr := range []string{"_parameters", "_buffers"} {
		ents, _ := items(o.Attr(attr))
		for _, ent := range ents {
			name, ok := ent.Key.(string)
			if !ok || (attr == "_buffers" && nonPersistent[name]) {
				continue
			}
			if t, ok := ent.Value.(*tensorRef); ok {
				n, err := w.join(prefix, name)
				if err != nil {
					return err
				}
				if err := w.add(n, t); err != nil {
					return err
				}
			}
		}
	}
	ents, _ := items(o.Attr("_modules"))
	for _, ent := range ents {
		name, ok := ent.Key.(string)
		if !ok || ent.Value == nil {
			continue
		}
		n, err := w.join(prefix, name)
		if err != nil {
			return err
		}
		if err := w.walk(ent.Value, n, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) add(name string, t *tensorRef) error {
	if err := names.Check("tensor name", name); err != nil {
		return err
	}
	if _, dup := w.f.refs[name]; dup {
		return fmt.Errorf("two tensors are both named %s", names.Quote(name))
	}
	if t.st.rec == nil {
		return fmt.Errorf("tensor %s: its storage %s has no data", names.Quote(name), names.Quote(t.st.key))
	}
	if err := t.checkFits(); err != nil {
		return fmt.Errorf("tensor %s: %w", names.Quote(name), err)
	}
	if t.st.rec.zf != nil {
		t.st.rec.pending++
	}
	w.f.refs[name] = t
	w.f.entries = append(w.f.entries, tensor.Info{Name: name, DType: t.dtype, Shape: append([]int{}, t.shape...)})
	return nil
}

// Entries lists the tensors in the order the file holds them (state_dict order).
func (f *File) Entries() []tensor.Info { return f.entries }

// Metadata returns the string metadata a monoquant .pt carries (see MetadataAttr); empty for
// other files.
func (f *File) Metadata() map[string]string { return f.meta }

// ModuleTypes maps module paths to class names for a whole pickled nn.Module; nil otherwise.
func (f *File) ModuleTypes() map[string]string { return f.modules }

// Aliases maps each tensor that views exactly the same bytes as an earlier one — the same
// storage, offset, dtype, shape and strides, as the two names of a tied parameter do in a
// torch state dict (GPT-2's lm_head.weight and transformer.wte.weight) — to the first name of
// its group, in file order; nil when no tensors share. It implements checkpoint.Aliaser.
func (f *File) Aliases() map[string]string {
	type key struct {
		st            *storage
		offset        int64
		dtype         tensor.DType
		shape, stride string
	}
	first := map[key]string{}
	var out map[string]string
	for _, e := range f.entries {
		t := f.refs[e.Name]
		if t == nil || tensor.NumElements(t.shape) == 0 {
			continue // an empty tensor shares nothing
		}
		k := key{t.st, t.offset, t.dtype, fmt.Sprint(t.shape), fmt.Sprint(t.stride)}
		if name, ok := first[k]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[e.Name] = name
			continue
		}
		first[k] = e.Name
	}
	return out
}

// Tensor returns one tensor, contiguous and little-endian, in a buffer of its own (a file
// truncated while it is read gives an error wrapping mapped.ErrChanged).
func (f *File) Tensor(name string) (*tensor.Tensor, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return nil, fmt.Errorf("%s: file is closed", f.path)
	}
	t, ok := f.refs[name]
	if !ok {
		return nil, fmt.Errorf("%s: no tensor named %s", f.path, names.Quote(name))
	}
	var out *tensor.Tensor
	err := mapped.Guard(f.path, func() (err error) {
		out, err = f.tensor(t)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: tensor %s: %w", f.path, names.Quote(name), err)
	}
	return out, nil
}

// tensor reads t's bytes into a new buffer (under mapped.Guard: stored records are read from
// the mapping, and a file truncated meanwhile must end in an error, not a crash; so nothing
// returned aliases the mapping).
func (f *File) tensor(t *tensorRef) (*tensor.Tensor, error) {
	raw, err := t.st.rec.bytes()
	if err != nil {
		return nil, err
	}
	es := t.dtype.Size()
	base := int(t.st.viewOffset)*t.st.dtype.Size() + int(t.offset)*es
	n := tensor.NumElements(t.shape)
	out := &tensor.Tensor{DType: t.dtype, Shape: append([]int(nil), t.shape...)}
	if n == 0 {
		out.Data = []byte{}
		return out, nil
	}
	if t.contiguous() {
		out.Data = raw[base : base+n*es : base+n*es]
		if t.st.rec.zf == nil || (f.bigEndian && es > 1) {
			// A copy: of the mapping (see above), or to swap bytes without touching the
			// shared inflated record.
			out.Data = append([]byte(nil), out.Data...)
		}
		if f.bigEndian && es > 1 {
			swapInPlace(out.Data, es)
		}
		return out, nil
	}
	out.Data = gather(raw[base:], t.shape, t.stride, es)
	if f.bigEndian && es > 1 {
		swapInPlace(out.Data, es)
	}
	return out, nil
}

// gather copies a strided view into a new contiguous buffer, copying whole rows when the
// innermost stride is 1.
func gather(src []byte, shape, stride []int, es int) []byte {
	n := tensor.NumElements(shape)
	dst := make([]byte, n*es)
	nd := len(shape)
	inner, innerStride := shape[nd-1], stride[nd-1]
	idx := make([]int, nd-1)
	o := 0
	for {
		off := 0
		for i, v := range idx {
			off += v * stride[i]
		}
		if innerStride == 1 {
			copy(dst[o:o+inner*es], src[off*es:(off+inner)*es])
			o += inner * es
		} else {
			for j := 0; j < inner; j++ {
				p := (off + j*innerStride) * es
				copy(dst[o:o+es], src[p:p+es])
				o += es
			}
		}
		i := nd - 2
		for ; i >= 0; i-- {
			idx[i]++
			if idx[i] < shape[i] {
				break
			}
			idx[i] = 0
		}
		if i < 0 {
			return dst
		}
	}
}

func swapped(b []byte, es int) []byte {
	out := append([]byte(nil), b...)
	swapInPlace(out, es)
	return out
}

func swapInPlace(b []byte, es int) {
	for i := 0; i+es <= len(b); i += es {
		for l, r := i, i+es-1; l < r; l, r = l+1, r-1 {
			b[l], b[r] = b[r], b[l]
		}
	}
}

// Release drops the mapped pages of a tensor's storage; its data stays readable (the kernel
// reads it again from disk).
func (f *File) Release(name string) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.closed {
		return
	}
	if t, ok := f.refs[name]; ok {
		if t.st.rec.zf == nil {
			f.m.Release(t.st.rec.off, t.st.rec.size)
		} else {
			t.st.rec.release(t)
		}
	}
}

// Close unmaps the file; tensors returned as views must not be used afterwards. Safe to call
// twice.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	return f.m.Close()
}
