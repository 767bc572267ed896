package torchpt

import (
	"reflect"
	"testing"
)

// TestAllowedGlobalsPinned lists every global a torch checkpoint may name. Adding one (to
// torchGlobals or to the pickle package's containers) is a security decision: it must be made
// here, visibly, and in SECURITY.md.
func TestAllowedGlobalsPinned(t *testing.T) {
	want := []string{
		"torch.BFloat16Storage", "torch.BoolStorage", "torch.ByteStorage", "torch.CharStorage",
		"torch.ComplexDoubleStorage", "torch.ComplexFloatStorage", "torch.DoubleStorage",
		"torch.FloatStorage", "torch.HalfStorage", "torch.IntStorage", "torch.LongStorage",
		"torch.QInt32Storage", "torch.QInt8Storage", "torch.QUInt2x4Storage", "torch.QUInt4x2Storage",
		"torch.QUInt8Storage", "torch.ShortStorage", "torch.Size", "torch.Tensor", "torch.UntypedStorage",
		"torch._tensor._rebuild_from_type_v2", "torch._utils._rebuild_device_tensor_from_cpu_tensor",
		"torch._utils._rebuild_device_tensor_from_numpy",
		"torch._utils._rebuild_meta_tensor_no_storage", "torch._utils._rebuild_mtia_tensor",
		"torch._utils._rebuild_nested_tensor", "torch._utils._rebuild_parameter",
		"torch._utils._rebuild_parameter_with_state", "torch._utils._rebuild_qtensor",
		"torch._utils._rebuild_sparse_csr", "torch._utils._rebuild_sparse_tensor",
		"torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
		"torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_wrapper_subclass",
		"torch._utils._rebuild_xla_tensor", "torch.bfloat16", "torch.bool", "torch.cdouble",
		"torch.cfloat", "torch.chalf", "torch.complex128", "torch.complex32", "torch.complex64",
		"torch.cuda.BFloat16Storage", "torch.cuda.BoolStorage", "torch.cuda.ByteStorage",
		"torch.cuda.CharStorage", "torch.cuda.DoubleStorage", "torch.cuda.FloatStorage",
		"torch.cuda.HalfStorage", "torch.cuda.IntStorage", "torch.cuda.LongStorage",
		"torch.cuda.ShortStorage", "torch.double", "torch.float", "torch.float16", "torch.float32",
		"torch.float64", "torch.float8_e4m3fn", "torch.float8_e4m3fnuz", "torch.float8_e5m2",
		"torch.float8_e5m2fnuz", "torch.half", "torch.int", "torch.int16", "torch.int32",
		"torch.int64", "torch.int8", "torch.long", "torch.nn.parameter.Buffer", "torch.nn.parameter.Parameter", "torch.qint32", "torch.qint8", "torch.quint4x2",
		"torch.quint8", "torch.short", "torch.storage.UntypedStorage", "torch.uint16", "torch.uint32",
		"torch.uint64", "torch.uint8", "_codecs.encode", "builtins.bool", "builtins.bytearray",
		"builtins.bytes", "builtins.complex", "builtins.dict", "builtins.float", "builtins.frozenset",
		"builtins.int", "builtins.list", "builtins.object", "builtins.range", "builtins.set",
		"builtins.slice", "builtins.str", "builtins.tuple", "collections.OrderedDict", "pathlib.Path",
		"pathlib.PosixPath", "pathlib.PurePath", "pathlib.PurePosixPath", "pathlib.PureWindowsPath",
		"pathlib.WindowsPath", "types.SimpleNamespace",
	}
	if got := AllowedGlobals(); !reflect.DeepEqual(got, want) {
		t.Errorf("AllowedGlobals() = %q\nwant %q", got, want)
	}
}
