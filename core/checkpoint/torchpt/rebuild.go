package torchpt

import (
	"fmt"
	"math"
	"math/big"
	"slices"

	"github.com/monoquant/monoquant/core/checkpoint/pickle"
	"github.com/monoquant/monoquant/core/tensor"
	"github.com/nlpodyssey/gopickle/types"
)

// maxDims bounds a tensor's rank; torch itself caps it at 64 (c10's kMaxDims is smaller still
// for most kernels).
const maxDims = 64

// storageType is torch's legacy storage class named in a persistent id (torch.FloatStorage…),
// or torch.UntypedStorage (dtype Invalid, counted in bytes).
type storageType struct {
	name  string
	dtype tensor.DType
}

func (s *storageType) PyNew(args ...any) (any, error) {
	return nil, fmt.Errorf("%s cannot be instantiated from a pickle", s.name)
}

// tensorClass is a torch tensor class named as data (the new_type of _rebuild_from_type_v2).
type tensorClass struct{ name string }

func (c *tensorClass) Call(args ...any) (any, error) {
	return nil, fmt.Errorf("%s cannot be called from a pickle", c.name)
}

// dtypeValue is a torch dtype global (torch.float32…), as _rebuild_tensor_v3 receives it.
type dtypeValue struct {
	name  string
	dtype tensor.DType // Invalid for dtypes torch has and we do not read (complex, float8…)
}

// storage is one storage record: raw bytes of numel elements of dtype.
type storage struct {
	key      string
	typeName string
	dtype    tensor.DType // Invalid for an untyped storage (bytes)
	numel    int64        // elements (bytes when untyped)
	rec      *record      // filled in by the container (zip entry or legacy section)
	// Legacy view storages (pre-1.0 files) are a window onto a root storage.
	viewOffset int64
}

// tensorRef is a tensor the pickle built: a strided view of a storage.
type tensorRef struct {
	st     *storage
	dtype  tensor.DType
	offset int64
	shape  []int
	stride []int
}

// unsupportedRebuild stands for torch rebuild functions of tensor kinds that have no plain
// dense representation here (quantized, sparse, nested, meta…): reading such a file is an
// error that names the kind, never silently dropped tensors.
type unsupportedRebuild struct{ name string }

func (u *unsupportedRebuild) Call(args ...any) (any, error) {
	return nil, fmt.Errorf("the file holds a tensor built by %s, which is not supported (only dense CPU tensors are)", u.name)
}

type rebuildFunc struct {
	name string
	fn   func(args []any) (any, error)
}

func (r *rebuildFunc) Call(args ...any) (any, error) {
	v, err := r.fn(args)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.name, err)
	}
	return v, nil
}

// storageTypes maps torch's legacy storage class names to dtypes.
var storageTypes = map[string]tensor.DType{
	"FloatStorage": tensor.F32, "DoubleStorage": tensor.F64, "HalfStorage": tensor.F16,
	"BFloat16Storage": tensor.BF16, "CharStorage": tensor.I8, "ByteStorage": tensor.U8,
	"ShortStorage": tensor.I16, "IntStorage": tensor.I32, "LongStorage": tensor.I64,
	"BoolStorage": tensor.Bool,
}

// storageTypeNames is the reverse map, used by the writer.
var storageTypeNames = func() map[tensor.DType]string {
	m := make(map[tensor.DType]string)
	for k, v := range storageTypes {
		m[v] = k
	}
	return m
}()

var dtypeNames = map[string]tensor.DType{
	"float32": tensor.F32, "float": tensor.F32, "float64": tensor.F64, "double": tensor.F64,
	"float16": tensor.F16, "half": tensor.F16, "bfloat16": tensor.BF16, "int8": tensor.I8,
	"uint8": tensor.U8, "int16": tensor.I16, "short": tensor.I16, "int32": tensor.I32,
	"int": tensor.I32, "int64": tensor.I64, "long": tensor.I64, "bool": tensor.Bool,
}

// torchGlobals are the globals a torch checkpoint may name that we give meaning to. Anything
// else not refused by the pickle layer stays inert.
func torchGlobals() map[string]any {
	g := map[string]any{}
	for name, dt := range storageTypes {
		g["torch."+name] = &storageType{name: "torch." + name, dtype: dt}
		g["torch.cuda."+name] = &storageType{name: "torch.cuda." + name, dtype: dt}
	}
	for _, name := range []string{"ComplexFloatStorage", "ComplexDoubleStorage", "QInt8Storage",
		"QUInt8Storage", "QInt32Storage", "QUInt4x2Storage", "QUInt2x4Storage"} {
		g["torch."+name] = &storageType{name: "torch." + name}
	}
	g["torch.UntypedStorage"] = &storageType{name: "torch.UntypedStorage"}
	g["torch.storage.UntypedStorage"] = &storageType{name: "torch.storage.UntypedStorage"}
	for name, dt := range dtypeNames {
		g["torch."+name] = &dtypeValue{name: "torch." + name, dtype: dt}
	}
	for _, name := range []string{"complex64", "complex128", "cfloat", "cdouble", "chalf",
		"complex32", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
		"uint16", "uint32", "uint64", "qint8", "quint8", "qint32", "quint4x2"} {
		g["torch."+name] = &dtypeValue{name: "torch." + name}
	}
	g["torch._utils._rebuild_tensor"] = &rebuildFunc{"torch._utils._rebuild_tensor", func(a []any) (any, error) {
		return rebuildTensor(a, 4, -1)
	}}
	g["torch._utils._rebuild_tensor_v2"] = &rebuildFunc{"torch._utils._rebuild_tensor_v2", func(a []any) (any, error) {
		return rebuildTensor(a, 6, -1)
	}}
	g["torch._utils._rebuild_tensor_v3"] = &rebuildFunc{"torch._utils._rebuild_tensor_v3", func(a []any) (any, error) {
		return rebuildTensor(a, 7, 6)
	}}
	param := func(a []any) (any, error) {
		if len(a) < 1 {
			return nil, fmt.Errorf("no arguments")
		}
		t, ok := a[0].(*tensorRef)
		if !ok {
			return nil, fmt.Errorf("data is a %s, not a tensor", describe(a[0]))
		}
		return t, nil
	}
	g["torch._utils._rebuild_parameter"] = &rebuildFunc{"torch._utils._rebuild_parameter", param}
	g["torch._utils._rebuild_parameter_with_state"] = &rebuildFunc{"torch._utils._rebuild_parameter_with_state", param}
	g["torch._tensor._rebuild_from_type_v2"] = &rebuildFunc{"torch._tensor._rebuild_from_type_v2", func(a []any) (any, error) {
		// (func, new_type, args, state): a tensor subclass (Parameter, …) rebuilt by func.
		if len(a) < 3 {
			return nil, fmt.Errorf("expected 4 arguments, got %d", len(a))
		}
		fn, ok := a[0].(types.Callable)
		if !ok {
			return nil, fmt.Errorf("rebuild function is a %s", describe(a[0]))
		}
		if _, isTorch := a[0].(*rebuildFunc); !isTorch {
			return nil, fmt.Errorf("rebuild function %s is not a tensor rebuild function", describe(a[0]))
		}
		args, ok := a[2].(*types.Tuple)
		if !ok {
			return nil, fmt.Errorf("arguments are a %s, not a tuple", describe(a[2]))
		}
		return fn.Call(*args...)
	}}
	for _, name := range []string{"_rebuild_qtensor", "_rebuild_sparse_tensor", "_rebuild_sparse_csr",
		"_rebuild_meta_tensor_no_storage", "_rebuild_wrapper_subclass", "_rebuild_nested_tensor",
		"_rebuild_device_tensor_from_numpy", "_rebuild_device_tensor_from_cpu_tensor", "_rebuild_xla_tensor",
		"_rebuild_mtia_tensor"} {
		g["torch._utils."+name] = &unsupportedRebuild{"torch._utils." + name}
	}
	// The tensor classes _rebuild_from_type_v2 names as new_type (a tensor with Python
	// attributes, a Parameter): markers only, the rebuilt value is the plain tensor.
	for _, name := range []string{"torch.Tensor", "torch.nn.parameter.Parameter", "torch.nn.parameter.Buffer"} {
		g[name] = &tensorClass{name: name}
	}
	g["torch.Size"] = &rebuildFunc{"torch.Size", func(a []any) (any, error) {
		if len(a) != 1 {
			return nil, fmt.Errorf("expected 1 argument, got %d", len(a))
		}
		s := sequence(a[0])
		if s == nil {
			return nil, fmt.Errorf("argument is a %s, not a tuple", describe(a[0]))
		}
		return types.NewTupleFromSlice(append([]any(nil), s...)), nil
	}}
	return g
}

// rebuildTensor implements _rebuild_tensor (4 args), _v2 (6, +metadata) and _v3 (7, dtype at
// dtypeArg, +metadata). Nothing is allocated from the claimed sizes: shapes are checked against
// the storage later, when the storage's record size is known.
func rebuildTensor(a []any, min, dtypeArg int) (any, error) {
	if len(a) < min {
		return nil, fmt.Errorf("expected at least %d arguments, got %d", min, len(a))
	}
	st, ok := a[0].(*storage)
	if !ok {
		return nil, fmt.Errorf("storage is a %s, not a storage", describe(a[0]))
	}
	off, err := asInt(a[1])
	if err != nil || off < 0 {
		return nil, fmt.Errorf("storage offset %v is not a non-negative integer", a[1])
	}
	shape, err := intTuple(a[2], "size")
	if err != nil {
		return nil, err
	}
	stride, err := intTuple(a[3], "stride")
	if err != nil {
		return nil, err
	}
	if len(shape) != len(stride) {
		return nil, fmt.Errorf("size %v and stride %v have different lengths", shape, stride)
	}
	dt := st.dtype
	if dtypeArg >= 0 {
		d, ok := a[dtypeArg].(*dtypeValue)
		if !ok {
			return nil, fmt.Errorf("dtype is a %s", describe(a[dtypeArg]))
		}
		if !d.dtype.Valid() {
			return nil, fmt.Errorf("tensor dtype %s is not supported", d.name)
		}
		if st.dtype.Valid() && st.dtype != d.dtype {
			return nil, fmt.Errorf("tensor dtype %s differs from its storage's %v", d.name, st.dtype)
		}
		dt = d.dtype
	}
	if !dt.Valid() {
		return nil, fmt.Errorf("storage %s (%s) has no supported dtype", st.key, st.typeName)
	}
	return &tensorRef{st: st, dtype: dt, offset: off, shape: shape, stride: stride}, nil
}

func intTuple(v any, what string) ([]int, error) {
	s := sequence(v)
	if s == nil {
		return nil, fmt.Errorf("%s is a %s, not a tuple", what, describe(v))
	}
	if len(s) > maxDims {
		return nil, fmt.Errorf("%s has %d dimensions (limit %d)", what, len(s), maxDims)
	}
	out := make([]int, len(s))
	for i, e := range s {
		n, err := asInt(e)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%s %v: element %d is not a non-negative integer", what, s, i)
		}
		out[i] = int(n)
	}
	return out, nil
}

func sequence(v any) []any {
	switch s := v.(type) {
	case *types.Tuple:
		return *s
	case *types.List:
		return *s
	}
	return nil
}

func asInt(v any) (int64, error) {
	switch n := v.(type) {
	case int:
		return int64(n), nil
	case bool:
		if n {
			return 1, nil
		}
		return 0, nil
	case *big.Int:
		if n.IsInt64() {
			return n.Int64(), nil
		}
		return 0, fmt.Errorf("integer %v does not fit 64 bits", n)
	}
	return 0, fmt.Errorf("%s is not an integer", describe(v))
}

// describe names a pickled value's type for error messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case *pickle.Object:
		return x.Class.QualifiedName() + " object"
	case *pickle.Class:
		return x.QualifiedName()
	case *rebuildFunc:
		return x.name
	case *tensorRef:
		return "tensor"
	case *storage:
		return "storage"
	case string:
		return "string"
	case int, *big.Int:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "bool"
	case []byte:
		return "bytes"
	case *types.Dict:
		return "dict"
	case *types.OrderedDict:
		return "OrderedDict"
	case *types.List:
		return "list"
	case *types.Tuple:
		return "tuple"
	case *types.Set:
		return "set"
	case *types.FrozenSet:
		return "frozenset"
	case *storageType:
		return x.name
	case *dtypeValue:
		return x.name
	case *tensorClass:
		return x.name
	}
	// Never a Go type name: the message is for someone who knows the file, not this code.
	return "value of another kind"
}

// checkFits verifies that every element the view addresses lies inside its storage, with
// overflow-safe arithmetic, so a claimed shape of 10^15 elements on a small record fails here
// instead of allocating.
func (t *tensorRef) checkFits() error {
	n := tensor.NumElements(t.shape)
	if n < 0 {
		return fmt.Errorf("shape %v overflows", t.shape)
	}
	es := int64(t.dtype.Size())
	avail := t.st.numel
	if !t.st.dtype.Valid() {
		avail = t.st.numel / es // untyped storage counted in bytes
	}
	if n == 0 {
		if t.offset > avail {
			return fmt.Errorf("storage offset %d lies beyond the %d-element storage", t.offset, avail)
		}
		return nil
	}
	stride := make([]int64, len(t.stride))
	for i, v := range t.stride {
		stride[i] = int64(v)
	}
	span, err := tensor.ViewSpan(t.shape, stride)
	if err != nil {
		return err
	}
	if span > math.MaxInt64-t.offset || t.offset+span > avail {
		return fmt.Errorf("shape %v with strides %v at offset %d needs %d elements but its storage has %d", t.shape, t.stride, t.offset, uint64(t.offset)+uint64(span), avail)
	}
	if !t.contiguous() {
		// A broadcast view (stride 0) would be materialised at its logical size: bounded by
		// the bytes it spans (tensor.ViewExpansion).
		if err := tensor.CheckMaterialize("the view", n, int(es), span); err != nil {
			return err
		}
	}
	return nil
}

// contiguous reports whether the view is row-major without gaps, so its bytes are one slice.
func (t *tensorRef) contiguous() bool {
	expect := 1
	for i := len(t.shape) - 1; i >= 0; i-- {
		if t.shape[i] != 1 && t.stride[i] != expect {
			return false
		}
		expect *= t.shape[i]
	}
	return true
}

// AllowedGlobals lists, sorted, every global a torch checkpoint may name: the torch storage
// types, dtypes and tensor-rebuilding functions this package gives meaning to (the rebuild
// functions of unsupported tensor kinds are listed too: naming one is an error that says which
// kind), followed by the containers and plain values of pickle.AllowedGlobals. Any other global
// is refused, except the class of a pickled nn.Module and a torch.nn.functional function kept
// as a module attribute (see package pickle).
func AllowedGlobals() []string {
	var out []string
	for k := range torchGlobals() {
		out = append(out, k)
	}
	slices.Sort(out)
	return append(out, pickle.AllowedGlobals()...)
}
