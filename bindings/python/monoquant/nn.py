"""Quantized modules that run on the CPU with torch's own ops.

``QuantizedLinear``, ``QuantizedConv2d`` and ``QuantizedLSTM`` hold their weights as stored by
the engine. For the integer formats that is int8 values (int4: two per byte), float32 scales and
int32 zero points; for FP16/BF16 it is the float16/bfloat16 values. ``kernel`` says what each
call runs:

* ``QuantizedLinear`` uses torch's quantized CPU kernels, one per layer: fbgemm's int8 GEMM for
  dynamic and static INT8 (``torch._int_mm`` on the stored integers for a head tied to an
  embedding, ``intmm_dynamic``/``intmm_static``, so the table is held once), ``torch._weight_int8pack_mm`` /
  ``torch._weight_int4pack_mm_for_cpu`` for weight-only INT8/INT4. The packed form is the only
  resident copy of the weight.
  docs/kernels.md has the table and the measurements behind it.
* ``QuantizedConv2d`` runs static INT8 on oneDNN's int8 convolution (``onednn_static``:
  quantize with the calibrated input qparams → int8 conv, ReLU fused when folded → float32), and
  ``QuantizedLSTM`` runs dynamic INT8 on torch's dynamic quantized LSTM (``fbgemm_dynamic``,
  what ``torch.ao.nn.quantized.dynamic.LSTM`` runs). Other formats and modes (``dequant``)
  dequantize their weights inside each call and use ``F.conv2d`` / torch's LSTM kernel.
* ``QuantizedConv1D`` stands in for transformers' ``Conv1D`` (GPT-2; weight stored [in, out],
  quantized along axis 1) and runs on QuantizedLinear's kernels from a transposed copy;
  ``QuantizedEmbedding`` (opt-in) looks up int8 rows and scales them (docs/models.md).

``activation`` says what happens to the module's input:

* ``"dynamic"``: rounded to quint8 per tensor with qparams from each batch's own min/max, as in
  torch's dynamic quantization;
* ``"static"``: rounded with the qparams calibrated ahead of time (the ``input_scale`` and
  ``input_zero_point`` buffers);
* ``"none"``: weight-only; the input stays float. ``None`` is an alias.

Gradients flow to the input through every quantized module. The weights are frozen, and
activation rounding is passed straight through.

State dicts follow the quantized checkpoint format (docs/FORMAT.md):

* ``<layer>.weight`` holds the stored values;
* ``<layer>.weight.scale`` holds the scales, and ``<layer>.weight.zero_point`` the zero points
  when the scheme needs them;
* static layers add ``<layer>.input_scale`` and ``<layer>.input_zero_point``.

The ``weight`` attribute of a quantized module is the dequantized float32 weight, built on each
access and never cached. So code that reads ``module.weight`` keeps working; for example,
nn.MultiheadAttention reads ``out_proj.weight``. On a BF16 or FP16 input the module computes in
that dtype, as the float model it came from did.
"""

import weakref

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import PackedSequence

from . import _kernels, _model
from ._engine import QTensor, QuantSpec, dequantize_tensor, quantize_tensor, quantize_with_params

__all__ = ["QuantizedLinear", "QuantizedConv2d", "QuantizedLSTM", "QuantizedConv1D", "QuantizedEmbedding", "ACTIVATION_SPEC"]

# Activations: quint8 per tensor, affine (torch's default activation dtype and scheme).
ACTIVATION_SPEC = QuantSpec("int8", scheme="asymmetric", granularity="per_tensor", qdtype="quint8")

_ACT_MODES = ("none", "dynamic", "static")


class _QuantizedWeights(nn.Module):
    """Shared machinery: quantized weight storage, activation quantization, state dict naming."""

    #: The kernel each call runs (docs/kernels.md); QuantizedLinear picks one per layer.
    kernel = "dequant"

    def _init_quant(self, activation, input_qparams=None):
        if activation is None:
            activation = "none"  # the old spelling of weight-only
        if activation not in _ACT_MODES:
            raise ValueError(f"activation must be 'none' (weight-only; None is an alias), 'dynamic' or 'static', got {activation!r}")
        self.activation = activation
        self._qweights = {}  # weight name -> (spec, shape, quant_shape)
        if activation == "static":
            if input_qparams is None:
                raise ValueError("static activation quantization needs calibrated input qparams (scale, zero_point)")
            s, z = input_qparams
            self.register_buffer("input_scale", torch.as_tensor(s, dtype=torch.float32).reshape(1).clone())
            self.register_buffer("input_zero_point", torch.as_tensor(z, dtype=torch.int32).reshape(1).clone())

    def _add_weight(self, name, qt, shape):
        """Registers the stored values/qparams of weight `name` from a QTensor made from the
        (possibly 2-D reshaped) float weight of original shape `shape`."""
        self._qweights[name] = (qt.spec, tuple(shape), tuple(qt.shape))
        self.register_buffer(name + "_q", qt.data.reshape(qt.spec.data_shape(tuple(shape))))
        self.register_buffer(name + "_scale", qt.scale)
        self.register_buffer(name + "_zero_point", qt.zero_point)

    def _apply(self, fn, recurse=True):
        # .to(dtype)/.half()/.bfloat16()/.float(): the stored values and qparams keep their
        # dtypes and only move between devices; every other buffer (biases, float weights a
        # rule left alone) takes whatever fn does. The compute dtype follows the input's.
        dev = fn(torch.empty(0)).device
        keep = {n + s for n in self._qweights for s in ("_q", "_scale", "_zero_point")} | {"input_scale", "input_zero_point"}
        for name, b in list(self._buffers.items()):
            if b is not None:
                self._buffers[name] = b.to(dev) if name in keep else fn(b)
        return self

    def qtensor(self, name="weight"):
        """The QTensor of a quantized weight (views of this module's buffers, no copy)."""
        spec, _shape, qshape = self._qweights[name]
        return QTensor(getattr(self, name + "_q"), getattr(self, name + "_scale"), getattr(self, name + "_zero_point"), qshape, spec)

    def dequantized(self, name="weight"):
        """The float32 weight, dequantized by the engine."""
        _spec, shape, _ = self._qweights[name]
        return dequantize_tensor(self.qtensor(name)).reshape(shape)

    def weight_spec(self, name="weight"):
        return self._qweights[name][0]

    def _quant_input(self, x):
        """The input rounded to quint8 levels (per batch, or with the calibrated qparams); the
        gradient passes straight through (the rounding is treated as identity)."""
        if self.activation == "none" or x.device.type == "meta":
            return x  # a meta tensor has no values to round: shapes only
        src = x.detach()
        if src.dtype != torch.float32:
            src = src.float()
        if self.activation == "dynamic":
            q = quantize_tensor(src, ACTIVATION_SPEC, what=f"input of {type(self).__name__}")
        else:
            data = quantize_with_params(src, ACTIVATION_SPEC, self.input_scale, self.input_zero_point, what=f"input of {type(self).__name__}")
            q = QTensor(data, self.input_scale, self.input_zero_point, tuple(src.shape), ACTIVATION_SPEC)
        xq = dequantize_tensor(q).to(device=x.device, dtype=x.dtype if x.is_floating_point() else torch.float32)
        if x.requires_grad:
            return x + (xq - x).detach()
        return xq

    # State dict: names as in the quantized checkpoint format.
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        for name, (spec, _shape, _q) in self._qweights.items():
            destination[prefix + name] = getattr(self, name + "_q")
            if spec.is_integer:
                destination[prefix + name + _model.SCALE] = getattr(self, name + "_scale")
                if spec.stores_zero_point:
                    destination[prefix + name + _model.ZERO_POINT] = getattr(self, name + "_zero_point")
        skip = {n + s for n in self._qweights for s in ("_q", "_scale", "_zero_point")}
        for name, buf in self._buffers.items():
            if buf is not None and name not in skip and name not in self._non_persistent_buffers_set:
                destination[prefix + _STATE_KEYS.get(name, name)] = buf if keep_vars else buf.detach()
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else p.detach()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        expected = set()
        for name, (spec, shape, _q) in self._qweights.items():
            pairs = [(name, name + "_q")]
            if spec.is_integer:
                pairs.append((name + _model.SCALE, name + "_scale"))
                if spec.stores_zero_point:
                    pairs.append((name + _model.ZERO_POINT, name + "_zero_point"))
            for key, attr in pairs:
                expected.add(prefix + key)
                if prefix + key not in state_dict:
                    missing_keys.append(prefix + key)
                    continue
                src = state_dict[prefix + key]
                cur = getattr(self, attr)
                if cur.device.type == "meta" and src.dtype == cur.dtype and src.numel() == cur.numel():
                    if attr in self._buffers:  # a skeleton on the meta device: take the loaded values
                        self._buffers[attr] = src.detach().reshape(cur.shape).clone()
                    continue
                if src.dtype != cur.dtype or src.numel() != cur.numel():
                    error_msgs.append(f"{prefix + key}: got {src.dtype} {list(src.shape)}, expected {cur.dtype} {list(cur.shape)}")
                    continue
                with torch.no_grad():
                    cur.copy_(src.reshape(cur.shape))
            if spec.is_integer and not spec.stores_zero_point:
                getattr(self, name + "_zero_point").zero_()
        skip = {n + s for n in self._qweights for s in ("_q", "_scale", "_zero_point")}
        for name in list(self._buffers) + list(self._parameters):
            if name in skip or name in self._non_persistent_buffers_set:
                continue
            t = self._buffers.get(name, self._parameters.get(name))
            if t is None:
                continue
            key = prefix + _STATE_KEYS.get(name, name)
            expected.add(key)
            if key not in state_dict:
                missing_keys.append(key)
                continue
            src = state_dict[key]
            if src.shape != t.shape:
                error_msgs.append(f"{key}: shape {list(src.shape)} does not match {list(t.shape)}")
                continue
            if t.device.type == "meta":  # a skeleton on the meta device: take the loaded values
                self._buffers[name] = src.detach().clone()
                continue
            with torch.no_grad():
                t.copy_(src)
        if strict:
            # These modules have no children: every key under the prefix is theirs.
            unexpected_keys.extend(k for k in state_dict if k.startswith(prefix) and k not in expected)

    def _format_extra(self):
        specs = {spec.format for spec, _, _ in self._qweights.values()}
        s = "weights=" + ",".join(sorted(specs))
        spec = next(iter(self._qweights.values()))[0]
        if spec.is_integer:
            s += f", scheme={spec.scheme}, granularity={spec.granularity}"
            if spec.granularity == "per_group":
                s += f", group_size={spec.group_size}"
        return s + f", activation={self.activation}, kernel={self.kernel}"


# Buffers stored under another name in the checkpoint format (docs/FORMAT.md): a Linear's
# calibrated LLM.int8() outlier columns.
_STATE_KEYS = {"weight_outlier_columns": "weight" + _model.OUTLIER_COLUMNS, "weight_outlier_weight": "weight" + _model.OUTLIER_WEIGHT}


def _like(x, t):
    """``t`` (a float32 weight or bias, or None) in the floating dtype of the input ``x``, so that a
    BF16/FP16 model keeps running in its own dtype: torch's kernels want one dtype throughout."""
    if t is None or not x.is_floating_point() or t.dtype == x.dtype:
        return t
    return t.to(x.dtype)


def _bias_buffer(mod, b):
    # The bias keeps its dtype (a BF16 model's bias stays BF16, as in its files); the kernels cast.
    mod.register_buffer("bias", None if b is None else b.detach().clone())


# ------------------------------------------------------------------------------------------------
# Linear on torch's own quantized kernels (monoquant/_kernels.py).
#
# The kernels run inside one torch.library custom op, ``monoquant::linear(x, handle,
# out_features)``, so that autograd (a backward through the dequantized weight, built on demand),
# torch.compile and torch.export see one opaque, shape-known op. ``handle`` names the live
# QuantizedLinear holding the packed weight (packed objects are not tensors and cannot be op
# arguments); an exported graph therefore runs in the process that holds the model.

_LIVE = weakref.WeakValueDictionary()


def _live(handle):
    m = _LIVE.get(handle)
    if m is None:
        raise RuntimeError("monoquant::linear: the QuantizedLinear this call was traced from no longer exists")
    return m


@torch.library.custom_op("monoquant::linear", mutates_args=())
def _linear_op(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    return _live(handle)._kernel_forward(x)


@_linear_op.register_fake
def _(x, handle, out_features):
    return x.new_empty((*x.shape[:-1], out_features))


@torch.library.custom_op("monoquant::linear_input_grad", mutates_args=())
def _linear_input_grad_op(grad: torch.Tensor, handle: int, in_features: int) -> torch.Tensor:
    w = _live(handle).float_weight(grad.dtype)
    return torch.matmul(grad, w)


@_linear_input_grad_op.register_fake
def _(grad, handle, in_features):
    return grad.new_empty((*grad.shape[:-1], in_features))


def _linear_setup(ctx, inputs, output):
    ctx.handle = inputs[1]
    ctx.in_features = _live(inputs[1]).in_features


def _linear_backward(ctx, grad):
    # d(x @ W.t())/dx = grad @ W: the weight is frozen; activation rounding passes straight through.
    return torch.ops.monoquant.linear_input_grad(grad, ctx.handle, ctx.in_features), None, None


_linear_op.register_autograd(_linear_backward, setup_context=_linear_setup)

# Buffers that hold a kernel's working form; rebuilt from the stored integers, never saved.
_KERNEL_BUFFERS = ("_stored_q", "_int4_packed", "_kernel_scales", "_kernel_row_sums")


class QuantizedLinear(_QuantizedWeights):
    """nn.Linear with a quantized weight, running on torch's own quantized CPU kernels.

    Build one with ``QuantizedLinear.from_float(linear, spec, activation=...)``; the weight is
    quantized by the engine (INT8 per-channel along the output dimension, INT4 group-wise along
    the input dimension, or an FP16/BF16 cast, as ``spec`` says).

    ``kernel`` names what each call runs (docs/kernels.md has the table):
    ``fbgemm_dynamic`` (INT8, activation "dynamic", as torch.ao ``quantize_dynamic``),
    ``intmm_dynamic`` (INT8, "dynamic", when the weight is also a tied embedding's table:
    ``torch._int_mm`` on the stored integers with the input quantized as fbgemm does, so the
    embedding shares the one int8 table; ``tied_table``),
    ``fbgemm_static`` (INT8, "static": quantize with the calibrated qparams → int8 GEMM → float),
    ``intmm_static`` (INT8, "static", when the weight is also a tied embedding's table: the same
    numbers from ``torch._int_mm`` on the stored integers, so the embedding shares the table),
    ``int8pack`` (INT8 symmetric, "none": ``torch._weight_int8pack_mm``, bfloat16 activations),
    ``int4pack`` (INT4 g32–256: ``torch._weight_int4pack_mm_for_cpu``, bfloat16 activations;
    with "dynamic"/"static" the input is first rounded to quint8 levels as those modes say —
    torch has no int4×int8 CPU kernel) or ``dequant`` (everything else: the weight is
    dequantized inside the call with torch ops and ``F.linear`` runs in the input's dtype).

    The packed (or stored) integers are the only resident copy of the weight: ``weight``
    dequantizes on demand and nothing caches it. Gradients flow to the input (and through it
    to every float parameter before the layer); the weight and bias are frozen buffers.

    LLM.int8() outliers (``outlier_threshold``, from the engine's ``outliers`` option; INT8
    with dynamic or static activations; docs/methods.md): input features whose magnitude
    reaches the threshold go through the matmul in float and the rest through the INT8 kernel
    above with those features set to 0, ``y = int8(x_rest) + x_out @ W_out.t()``. Static layers
    use the features calibration found, stored with their float weight columns
    (``outliers=(columns, weight)``, the ``weight.outlier_columns`` / ``weight.outlier_weight``
    entries of the state dict; those columns of the integers are 0). Dynamic layers find them
    in each batch, as bitsandbytes does (every column where some ``|x| >= threshold``), and
    read those columns of the INT8 weight back in float.
    ``.to(device)``/``.half()``/``.to(dtype)`` keep the integers (the meta device too),
    move or cast the bias, and repack for the kernel of the new place; ``state_dict``,
    pickling and ``deepcopy`` carry the stored integers of docs/FORMAT.md, never a packed layout.
    """

    def __init__(self, in_features, out_features, qweight, bias=None, activation="dynamic", input_qparams=None,
                 outlier_threshold=None, outliers=None, tied_table=False):
        super().__init__()
        #: The weight is also a tied embedding's table (set by load/quantize, or _tie_table):
        #: dynamic/static INT8 then runs ``intmm_dynamic``/``intmm_static`` on the stored
        #: integers (docs/kernels.md).
        self.tied_table = bool(tied_table)
        self.in_features = in_features
        self.out_features = out_features
        self._init_quant(activation, input_qparams)
        self._init_outliers(outlier_threshold, outliers)
        self._qweights["weight"] = (qweight.spec, (out_features, in_features), tuple(qweight.shape))
        self.register_buffer("weight_scale", qweight.scale)
        self.register_buffer("weight_zero_point", qweight.zero_point)
        _bias_buffer(self, bias)
        self._register()
        self._set_stored(qweight.data.reshape(qweight.spec.data_shape((out_features, in_features))))

    @classmethod
    def from_float(cls, mod, spec, activation="dynamic", input_qparams=None):
        """Quantizes ``mod.weight`` (an nn.Linear) with ``spec``; keeps the bias in float32."""
        qt = quantize_tensor(mod.weight.detach(), spec, what="weight")
        return cls(mod.in_features, mod.out_features, qt, mod.bias, activation, input_qparams)

    # -- LLM.int8() outliers ----------------------------------------------------------------------

    def _init_outliers(self, threshold, outliers):
        self.outlier_threshold = None
        if threshold is None or self.activation == "none":
            if outliers is not None:
                raise ValueError("outlier columns need an outlier_threshold and dynamic or static activations")
            return
        threshold = float(threshold)
        if not threshold > 0 or threshold == float("inf"):
            raise ValueError(f"outlier_threshold must be a finite number > 0, got {threshold}")
        self.outlier_threshold = threshold
        if outliers is not None:
            if self.activation != "static":
                raise ValueError("stored outlier columns belong to static layers; dynamic layers find theirs per batch")
            cols, w = outliers
            cols = torch.as_tensor(cols).reshape(-1).to(torch.int64)
            if w.shape != (self.out_features, cols.numel()):
                raise ValueError(f"outlier weight has shape {list(w.shape)}, expected [{self.out_features}, {cols.numel()}]")
            self.register_buffer("weight_outlier_columns", cols.clone())
            self.register_buffer("weight_outlier_weight", w.detach().clone())

    def _outlier_columns(self, x):
        """The input features that go through the matmul in float: the stored ones (static), or
        this batch's columns with some |x| >= threshold (dynamic, as bitsandbytes)."""
        cols = self._buffers.get("weight_outlier_columns")
        if self.activation == "static":
            return cols if cols is not None else torch.empty(0, dtype=torch.int64, device=x.device)
        x2, t = x.detach().reshape(-1, self.in_features), self.outlier_threshold
        if x2.shape[0] == 0:
            return torch.empty(0, dtype=torch.int64, device=x.device)
        # some |x| >= t in the column: its max >= t or its min <= -t (two reductions, no temporary)
        return ((x2.amax(dim=0) >= t) | (x2.amin(dim=0) <= -t)).nonzero().reshape(-1)

    def _outlier_weight(self, cols):
        """W[:, cols] in float32: the stored float columns (static), else read back from the INT8
        weight (through the packed kernel itself when it holds the only copy)."""
        w = self._buffers.get("weight_outlier_weight")
        if self.activation == "static" and w is not None:
            return w.to(torch.float32)
        # Outlier features are systematic (the same few in nearly every batch): the columns of
        # the last set are kept (k·out floats) until the set or the weight changes.
        last = self.__dict__.get("_outlier_cache")
        if last is not None and last[0].shape == cols.shape and torch.equal(last[0], cols):
            return last[1]
        if self._packed is not None:
            w = self._packed.columns(cols.cpu(), self.in_features, self.bias)
        else:
            w = self.float_weight().index_select(1, cols.to(self.weight_scale.device))
        self.__dict__["_outlier_cache"] = (cols.clone(), w)
        return w

    def _with_outliers(self, w):
        """A dequantized weight [out, in] with the stored outlier columns put back."""
        cols = self._buffers.get("weight_outlier_columns")
        if cols is not None and cols.numel() > 0:
            w = w.clone()
            w[:, cols.to(w.device)] = self.weight_outlier_weight.to(device=w.device, dtype=w.dtype)
        return w

    # -- the stored integers and the kernel's form of them ----------------------------------------

    def _register(self):
        self._handle = id(self)
        _LIVE[self._handle] = self

    def _clear_kernel(self):
        self._packed = None
        self.__dict__.pop("_outlier_cache", None)
        for n in _KERNEL_BUFFERS:
            self._buffers.pop(n, None)
            self._non_persistent_buffers_set.discard(n)

    def _kbuf(self, name, t):
        self.register_buffer(name, t, persistent=False)

    def _set_stored(self, data):
        """Makes `data` (the stored values, docs/FORMAT.md layout) this layer's weight: picks the
        kernel for its device and builds the kernel's form, which replaces the stored form."""
        spec = self._qweights["weight"][0]
        n, k = self.out_features, self.in_features
        self._clear_kernel()
        self.kernel, self.kernel_reason = _kernels.choose(spec, self.activation, n, k, data.device, getattr(self, "tied_table", False))
        scale, zp = self.weight_scale, self.weight_zero_point
        if self.kernel.startswith("fbgemm"):
            # fbgemm adds the bias in its output pass (as torch.ao's layers do): pack it in.
            b = None if self.bias is None or self.bias.device.type == "meta" else self.bias.detach().to(torch.float32)
            self._packed = _kernels.PackedInt8(data.reshape(n, k), scale, zp, spec.granularity == "per_channel", b)
        elif self.kernel == "intmm_dynamic":
            self._kbuf("_stored_q", data.reshape(n, k))  # the kernel's operand as stored
        elif self.kernel == "intmm_static":
            self._kbuf("_stored_q", data.reshape(n, k))
            self._kbuf("_kernel_row_sums", _kernels.row_sums(self._stored_q))  # [n] int32
        elif self.kernel == "int8pack":
            self._kbuf("_stored_q", data.reshape(n, k))
            self._kbuf("_kernel_scales", scale.reshape(-1).to(torch.bfloat16))
        elif self.kernel == "int4pack":
            self._kbuf("_int4_packed", _kernels.pack_stored_int4(data, n, k, spec.qdtype == "qint4"))
            self._kbuf("_kernel_scales", _kernels.int4_scales_and_zeros(scale.reshape(n, -1), zp.reshape(n, -1), spec.qdtype == "qint4"))
        else:
            self._kbuf("_stored_q", data)

    def _tie_table(self):
        """Marks the weight as a tied embedding's table and rebuilds the kernel's form when that
        changes the kernel (dynamic INT8: fbgemm's packing → the stored integers)."""
        if not self.tied_table:
            data = self.weight_q
            self.tied_table = True
            self._set_stored(data)

    @property
    def weight_q(self):
        """The stored values as docs/FORMAT.md lays them out (unpacked from the kernel's form
        on demand when the kernel keeps its own layout)."""
        spec = self._qweights["weight"][0]
        if self._packed is not None:
            return self._packed.unpack()
        if self.kernel == "int4pack":
            u = _kernels.unpack_int4(self._int4_packed, self.out_features, self.in_features)
            return _kernels.uint_to_nibbles(u, spec.qdtype == "qint4", spec.data_shape((self.out_features, self.in_features)))
        return self._stored_q

    def float_weight(self, dtype=torch.float32):
        """The dequantized weight [out, in], (q − zero_point)·scale in float32 with torch ops on
        the weight's own device, then cast to ``dtype``. Built on each call, never kept."""
        spec = self._qweights["weight"][0]
        n, k = self.out_features, self.in_features
        q = self.weight_q
        s, z = self.weight_scale, self.weight_zero_point
        if spec.format == "int8":
            q = q.reshape(n, k).to(torch.float32)
            if spec.granularity == "per_channel":
                w = (q - z.reshape(n, 1)) * s.reshape(n, 1)
            else:
                w = (q - z.reshape(())) * s.reshape(())
        elif spec.format == "int4":
            u = _kernels.nibbles_to_uint(q, n, k, spec.qdtype == "qint4").to(torch.float32)
            v = u - 8 if spec.qdtype == "qint4" else u
            if spec.granularity == "per_group":
                g = k // s.reshape(n, -1).shape[1]
                w = (v.reshape(n, -1, g) - z.reshape(n, -1, 1)) * s.reshape(n, -1, 1)
            elif spec.granularity == "per_channel":
                w = (v - z.reshape(n, 1)) * s.reshape(n, 1)
            else:
                w = (v - z.reshape(())) * s.reshape(())
            w = w.reshape(n, k)
        else:
            w = q.reshape(n, k).to(torch.float32)
        return self._with_outliers(w).to(dtype)

    def dequantized(self, name="weight"):
        """The float32 weight, dequantized by the engine (CPU), or by torch ops elsewhere."""
        if self.weight_q.device.type != "cpu":
            return self.float_weight()
        return self._with_outliers(super().dequantized(name))

    @property
    def weight(self):
        """The dequantized float32 weight [out_features, in_features] (built on each access)."""
        return self.dequantized("weight")

    # -- running ---------------------------------------------------------------------------------

    def _kernel_forward(self, x):
        """The kernel on x (any float dtype, [..., in_features]); the result in x's dtype."""
        x2 = x.reshape(-1, self.in_features)
        k = self.kernel
        if k == "fbgemm_dynamic":
            y = self._packed.dynamic(x2.to(torch.float32).contiguous())
        elif k == "intmm_dynamic":
            y = _kernels.intmm_dynamic(x2.to(torch.float32).contiguous(), self._stored_q, self.weight_scale, self.weight_zero_point)
        elif k == "intmm_static":
            y = _kernels.intmm_static(x2.to(torch.float32).contiguous(), self._stored_q, self.weight_scale, self.weight_zero_point,
                                      self.input_scale, self.input_zero_point, self._kernel_row_sums)
        elif k == "fbgemm_static":
            y = self._packed.static(x2.to(torch.float32).contiguous(), self.input_scale, self.input_zero_point)
        elif k == "int8pack":
            y = torch._weight_int8pack_mm(x2.to(torch.bfloat16).contiguous(), self._stored_q, self._kernel_scales)
        elif k == "int4pack":
            g = self.in_features // (self._kernel_scales.shape[0])
            y = torch._weight_int4pack_mm_for_cpu(x2.to(torch.bfloat16).contiguous(), self._int4_packed, g, self._kernel_scales)
        else:
            raise RuntimeError(f"monoquant::linear: kernel {k!r} does not run through the op")
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"QuantizedLinear: input has {x.shape[-1]} features, expected {self.in_features}")
        if self.outlier_threshold is not None and x.device.type != "meta":
            cols = self._outlier_columns(x)
            if cols.numel() > 0:
                # LLM.int8(): the outlier features in float, the rest through the INT8 kernel
                cols = cols.to(x.device)
                y = self._forward_int8(x.index_fill(-1, cols, 0))
                w_out = self._outlier_weight(cols).to(device=y.device, dtype=y.dtype)
                return y + F.linear(x.index_select(-1, cols).to(y.dtype), w_out)
        return self._forward_int8(x)

    def _forward_int8(self, x):
        if self.kernel == "dequant":
            x = self._quant_input(x)
            return F.linear(x, self.float_weight(x.dtype), _like(x, self.bias))
        if self.kernel == "int4pack":
            x = self._quant_input(x)
        if type(x) is torch.Tensor and not (x.requires_grad and torch.is_grad_enabled()) and not torch.compiler.is_compiling():
            y = self._kernel_forward(x)  # plain eager inference: skip the op dispatcher
        else:
            y = torch.ops.monoquant.linear(x, self._handle, self.out_features)
        if self.bias is not None and self._packed is None:
            y = y + self.bias.to(y.dtype)
        return y

    # -- moves, copies, state dicts --------------------------------------------------------------

    def _apply(self, fn, recurse=True):
        # The integers and qparams move between devices but keep their dtypes; the bias takes
        # whatever fn does to a float tensor (a device move and/or a cast).
        probe = fn(torch.empty(0))
        dev = probe.device
        def move(t):
            if t.device.type == "meta" and dev.type != "meta":
                return torch.empty_like(t, device=dev)  # as to_empty(): no values to copy
            return t.to(dev)

        data = self.weight_q
        self._clear_kernel()
        for name, b in list(self._buffers.items()):
            if b is not None:
                self._buffers[name] = fn(b) if name == "bias" else move(b)
        if dev.type == "cpu" and data.device.type == "meta":
            data = torch.zeros_like(data, device=dev)  # defined values until a state dict is loaded
        self._set_stored(move(data))
        return self

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_mq_weight_q"] = self.weight_q
        state["_packed"] = None
        state.pop("_outlier_cache", None)
        state["_buffers"] = {k: v for k, v in self._buffers.items() if k not in _KERNEL_BUFFERS}
        state["_non_persistent_buffers_set"] = set(self._non_persistent_buffers_set) - set(_KERNEL_BUFFERS)
        return state

    def __setstate__(self, state):
        data = state.pop("_mq_weight_q")
        super().__setstate__(state)
        self._register()
        self._set_stored(data)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        before = len(error_msgs)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        key = prefix + "weight"
        if key in state_dict and len(error_msgs) == before:
            spec = self._qweights["weight"][0]
            shape = spec.data_shape((self.out_features, self.in_features))
            dev = self.weight_q.device
            src = state_dict[key].detach()
            self._set_stored(src.reshape(shape).to(src.device if dev.type == "meta" else dev).clone())

    def extra_repr(self):
        s = (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
             + self._format_extra())
        if self.outlier_threshold is not None:
            cols = self._buffers.get("weight_outlier_columns")
            s += f", outlier_threshold={self.outlier_threshold:g}"
            s += f", outlier_columns={cols.numel() if cols is not None else 0}" if self.activation == "static" else ", outlier_columns=per batch"
        return s


# ------------------------------------------------------------------------------------------------
# Conv2d and LSTM on torch's quantized kernels (monoquant/_kernels.py): oneDNN's int8 conv for
# static INT8 Conv2d, torch's dynamic quantized LSTM for dynamic INT8 LSTMs. As for Linear, the
# kernel's packed form replaces the stored ``<name>_q`` buffers (the only resident copy), and
# state dicts, pickles and copies carry the stored integers.

_QUANT_BUFFER_SUFFIXES = ("_q", "_scale", "_zero_point")


class _PackedForm:
    """Mixin for QuantizedConv2d and QuantizedLSTM: a kernel that keeps its own form of the stored
    integers (``self._packed``) in place of the ``<name>_q`` buffers. Subclasses define
    ``_build_kernel()`` (choose the kernel from the buffers; pack and drop the ``_q`` buffers
    it packs) and ``_unpack_weight(name)``."""

    _packed = None
    kernel_reason = ""

    def _register(self):
        self._handle = id(self)
        _LIVE[self._handle] = self

    def _stored(self):
        """{weight name: stored values (docs/FORMAT.md layout)}, unpacked where packed."""
        return {n: getattr(self, n + "_q") for n in self._qweights}

    def dequantized(self, name="weight"):
        """The float32 weight, dequantized by the engine on the CPU copy of the stored values,
        on the weight's own device (meta: an empty tensor of the shape)."""
        spec, shape, qshape = self._qweights[name]
        q = getattr(self, name + "_q")
        if q.device.type == "cpu":
            return super().dequantized(name)
        if q.device.type == "meta":
            return torch.empty(shape, dtype=torch.float32, device="meta")
        s, z = getattr(self, name + "_scale"), getattr(self, name + "_zero_point")
        qt = QTensor(q.cpu(), s.cpu(), z.cpu(), qshape, spec)
        return dequantize_tensor(qt).reshape(shape).to(q.device)

    def _unpack_all(self):
        """Puts the stored values back into the ``_q`` buffers and drops the packed form."""
        stored = self._stored()
        self._packed = None
        for n, t in stored.items():
            self._buffers[n + "_q"] = t
        self.kernel, self.kernel_reason = "dequant", ""

    def __getattr__(self, name):
        if name.endswith("_q") and self.__dict__.get("_packed") is not None:
            q = self.__dict__.get("_qweights")
            if q is not None and name[:-2] in q and name not in self.__dict__["_buffers"]:
                return self._unpack_weight(name[:-2])
        return super().__getattr__(name)

    def _apply(self, fn, recurse=True):
        # The integers and qparams move between devices and keep their dtypes; float buffers
        # (biases, weights left in float) take whatever fn does (a move and/or a cast).
        dev = fn(torch.empty(0)).device
        self._unpack_all()
        for name, b in list(self._buffers.items()):
            if b is None:
                continue
            if name.endswith(_QUANT_BUFFER_SUFFIXES):
                if b.device.type == "meta" and dev.type != "meta":
                    # as to_empty(): no values to copy; defined ones until a state dict is loaded
                    b = torch.ones_like(b, device=dev) if name.endswith("_scale") else torch.zeros_like(b, device=dev)
                self._buffers[name] = b.to(dev)
            else:
                self._buffers[name] = fn(b)
        self._build_kernel()
        return self

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_mq_stored"] = self._stored()
        state["_packed"] = None
        return state

    def __setstate__(self, state):
        stored = state.pop("_mq_stored")
        super().__setstate__(state)
        for n, t in stored.items():
            self._buffers[n + "_q"] = t
        self._register()
        self._build_kernel()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        self._unpack_all()
        try:
            super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        finally:
            self._build_kernel()  # repack from the loaded integers (and input qparams)


@torch.library.custom_op("monoquant::conv2d", mutates_args=())
def _conv2d_op(x: torch.Tensor, handle: int) -> torch.Tensor:
    return _live(handle)._kernel_forward(x)


@_conv2d_op.register_fake
def _(x, handle):
    return x.new_empty(_live(handle)._out_shape(x.shape))


@torch.library.custom_op("monoquant::conv2d_input_grad", mutates_args=())
def _conv2d_input_grad_op(grad: torch.Tensor, handle: int, input_shape: list[int]) -> torch.Tensor:
    m = _live(handle)
    pad = m._op_padding()
    return torch.nn.grad.conv2d_input(input_shape, m.float_weight(grad.dtype), grad, m.stride, pad, m.dilation, m.groups)


@_conv2d_input_grad_op.register_fake
def _(grad, handle, input_shape):
    return grad.new_empty(input_shape)


def _conv2d_setup(ctx, inputs, output):
    ctx.handle = inputs[1]
    ctx.input_shape = list(inputs[0].shape)
    ctx.relu = _live(inputs[1]).relu
    ctx.save_for_backward(output if ctx.relu else None)


def _conv2d_backward(ctx, grad):
    # The weight is frozen; input rounding passes straight through; a fused ReLU masks the grad.
    (out,) = ctx.saved_tensors
    if ctx.relu:
        grad = grad * (out > 0).to(grad.dtype)
    return torch.ops.monoquant.conv2d_input_grad(grad, ctx.handle, ctx.input_shape), None


_conv2d_op.register_autograd(_conv2d_backward, setup_context=_conv2d_setup)


class QuantizedConv2d(_PackedForm, _QuantizedWeights):
    """nn.Conv2d with a quantized weight; supports stride, padding (numbers, 'same', 'valid'),
    dilation, groups and every padding mode.

    ``kernel`` names what each call runs (docs/kernels.md):

    * ``onednn_static``: INT8 symmetric weights with static activations, on the CPU. The input
      is quantized with the calibrated ``input_scale``/``input_zero_point`` to uint8, oneDNN's
      int8 convolution (``onednn::qconv2d_pointwise``, the op torch's own x86 lowering of a
      static quantized conv uses) runs on the weight packed once from the stored integers, and
      the output comes back in float32: quantize → int8 conv → float at the layer boundary, so
      an eager model needs no stubs. A fused ReLU (``relu=True``, set by Conv-BN-ReLU folding,
      docs/folding.md) runs inside the same op.
    * ``dequant``: everything else; the weight is dequantized inside each call and F.conv2d runs
      in the input's dtype.

    INT4 groups run along the flattened [in_channels/groups · kh · kw] dimension of each output
    channel (the engine sees the weight as a 2-D [out_channels, rest] matrix).
    Gradients flow to the input; ``torch.compile`` and ``torch.export`` see one custom op,
    ``monoquant::conv2d``.
    """

    def __init__(self, conv, qweight, activation="dynamic", input_qparams=None, relu=False):
        super().__init__()
        for k in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"):
            setattr(self, k, getattr(conv, k))
        self._reversed_padding_repeated_twice = list(getattr(conv, "_reversed_padding_repeated_twice", []))
        self.relu = bool(relu)
        self._init_quant(activation, input_qparams)
        self._add_weight("weight", qweight, tuple(conv.weight.shape))
        _bias_buffer(self, conv.bias)
        self._register()
        self._build_kernel()

    @classmethod
    def from_float(cls, mod, spec, activation="dynamic", input_qparams=None, relu=False):
        """Quantizes ``mod.weight`` (an nn.Conv2d) with ``spec``; ``relu=True`` fuses a ReLU
        after the convolution."""
        w = mod.weight.detach()
        if spec.format == "int4":
            w = w.reshape(w.shape[0], -1)
        qt = quantize_tensor(w, spec, what="weight")
        return cls(mod, qt, activation, input_qparams, relu)

    def _op_padding(self):
        """The padding the kernel applies: (0, 0) when forward pads first with F.pad (padding
        modes other than zeros, and an asymmetric 'same')."""
        if self.padding_mode != "zeros":
            return (0, 0)
        return _kernels._conv_padding(self.padding, self.kernel_size, self.dilation) or (0, 0)

    def _pad(self, x):
        """x padded ahead of the kernel where the kernel cannot pad itself."""
        if self.padding_mode != "zeros":
            return F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        if _kernels._conv_padding(self.padding, self.kernel_size, self.dilation) is None:
            # asymmetric 'same' (an even effective kernel): the extra column/row goes last, as in torch
            pads = []
            for k, d in zip(reversed(self.kernel_size), reversed(self.dilation)):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return F.pad(x, pads)
        return x

    def _build_kernel(self):
        if self._packed is not None:
            self._unpack_all()
        spec = self._qweights["weight"][0]
        data = self._buffers["weight_q"]
        self.kernel, self.kernel_reason = _kernels.choose_conv2d(spec, self.activation, self.padding, self.kernel_size, self.dilation, data.device)
        if self.kernel == "onednn_static":
            self._packed = _kernels.PackedConv2d(data, self.weight_scale, self.bias, self.stride, self._op_padding(), self.dilation, self.groups,
                                                 self.input_scale, self.input_zero_point)
            del self._buffers["weight_q"]

    def _unpack_weight(self, name):
        return self._packed.unpack()

    def _out_shape(self, shape):
        pad = self._op_padding()
        hw = [(shape[-2 + i] + 2 * pad[i] - self.dilation[i] * (self.kernel_size[i] - 1) - 1) // self.stride[i] + 1 for i in range(2)]
        return (*shape[:-3], self.out_channels, *hw)

    def float_weight(self, dtype=torch.float32):
        """The dequantized weight [out, in/groups, kh, kw] in ``dtype``, built on each call."""
        return self.dequantized("weight").to(dtype)

    @property
    def weight(self):
        """The dequantized float32 weight [out, in/groups, kh, kw]."""
        return self.dequantized("weight")

    def _kernel_forward(self, x):
        """The kernel on an (already padded) [N, C, H, W] input; the result in x's dtype."""
        if self._packed is not None:
            return self._packed.run(x, relu=self.relu).to(x.dtype)
        x = self._quant_input(x)
        y = F.conv2d(x, _like(x, self.weight), _like(x, self.bias), self.stride, self._op_padding(), self.dilation, self.groups)
        return F.relu(y) if self.relu else y

    def forward(self, x):
        if x.dim() not in (3, 4) or x.shape[-3] != self.in_channels:
            raise ValueError(f"QuantizedConv2d: expected a [N, {self.in_channels}, H, W] input, got {list(x.shape)}")
        x = self._pad(x)
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        if type(x) is torch.Tensor and not (x.requires_grad and torch.is_grad_enabled()) and not torch.compiler.is_compiling():
            y = self._kernel_forward(x)  # plain eager inference: skip the op dispatcher
        else:
            y = torch.ops.monoquant.conv2d(x, self._handle)
        return y.squeeze(0) if unbatched else y

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        if self.relu:
            s += ", relu=True"
        return s + ", " + self._format_extra()


@torch.library.custom_op("monoquant::lstm", mutates_args=())
def _lstm_op(x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor, handle: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    out, h, c = _live(handle)._kernel_forward(x, (h0, c0))
    return out, h, c


@_lstm_op.register_fake
def _(x, h0, c0, handle):
    m = _live(handle)
    num_dir = 2 if m.bidirectional else 1
    return x.new_empty((*x.shape[:-1], num_dir * (m.proj_size or m.hidden_size))), h0.new_empty(h0.shape), c0.new_empty(c0.shape)


def _lstm_setup(ctx, inputs, output):
    ctx.handle = inputs[3]
    ctx.save_for_backward(inputs[0], inputs[1], inputs[2])


def _lstm_backward(ctx, go, gh, gc):
    # The gradient of the float LSTM with the dequantized (frozen) weights, by recomputing it:
    # activation rounding passes straight through.
    x, h0, c0 = ctx.saved_tensors
    m = _live(ctx.handle)
    with torch.enable_grad():
        xs, hs, cs = (t.detach().requires_grad_(True) for t in (x, h0, c0))
        out, h, c = m._float_lstm(xs, (hs, cs))
        outs, grads = [], []
        for o, g in ((out, go), (h, gh), (c, gc)):
            if g is not None:
                outs.append(o)
                grads.append(g)
        return (*torch.autograd.grad(outs, (xs, hs, cs), grads, allow_unused=True), None)


_lstm_op.register_autograd(_lstm_backward, setup_context=_lstm_setup)


class QuantizedLSTM(_PackedForm, _QuantizedWeights):
    """nn.LSTM with quantized weights (every ``weight_*`` of every layer and direction; biases
    stay float32). Multi-layer, bidirectional, batch_first, proj_size and PackedSequence inputs
    work as in nn.LSTM.

    ``kernel`` names what each call runs (docs/kernels.md):

    * ``fbgemm_dynamic``: INT8 (qint8) weights with dynamic activations, biases and no
      projection: torch's dynamic quantized LSTM (``torch.quantized_lstm``, what
      ``torch.ao.nn.quantized.dynamic.LSTM`` runs) on weights packed once for fbgemm from the
      stored integers. Every gate matmul quantizes its input — the layer input and the hidden
      state of each step — per call (quint8, reduce_range), as ``quantize_dynamic`` does.
    * ``dequant``: everything else; the weights are dequantized inside each call and torch's
      float LSTM runs. The input sequence is quantized as a whole (per tensor) for "dynamic" and
      "static"; the hidden state is not.

    Gradients flow to the input and the initial state (the float LSTM's gradient with the
    dequantized weights); ``torch.compile`` and ``torch.export`` see one custom op,
    ``monoquant::lstm``, for tensor inputs.
    """

    def __init__(self, lstm, qweights, activation="dynamic", input_qparams=None):
        super().__init__()
        for k in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional", "proj_size"):
            setattr(self, k, getattr(lstm, k))
        self._init_quant(activation, input_qparams)
        self._flat_names = list(lstm._flat_weights_names)
        for name in self._flat_names:
            p = getattr(lstm, name)
            if name in qweights:
                self._add_weight(name, qweights[name], tuple(p.shape))
            else:  # biases, and weights a skip or a rule left in float
                self.register_buffer(name, p.detach().clone())
        self._register()
        self._build_kernel()

    @classmethod
    def from_float(cls, mod, spec, activation="dynamic", input_qparams=None):
        """Quantizes every weight matrix of ``mod`` (an nn.LSTM) with ``spec``."""
        qw = {}
        for name in mod._flat_weights_names:
            if name.startswith("weight"):
                qw[name] = quantize_tensor(getattr(mod, name).detach(), spec, what=name)
        return cls(mod, qw, activation, input_qparams)

    def _build_kernel(self):
        if self._packed is not None:
            self._unpack_all()
        all_q = all(n in self._qweights for n in self._flat_names if n.startswith("weight"))
        specs = [self._qweights[n][0] for n in self._flat_names if n in self._qweights]
        dev = next(iter(self._buffers.values())).device
        if not all_q:
            self.kernel, self.kernel_reason = "dequant", "weights left in float"
        else:
            self.kernel, self.kernel_reason = _kernels.choose_lstm(specs, self.activation, self.proj_size, self.bias, dev)
        if self.kernel != "fbgemm_dynamic":
            return
        layers, stride = [], 4  # weight_ih, weight_hh, bias_ih, bias_hh per layer and direction
        names = self._flat_names
        for i in range(0, len(names), stride):
            mats = []
            for n in names[i:i + 2]:
                spec = self._qweights[n][0]
                mats.append((self._buffers[n + "_q"], getattr(self, n + "_scale"), getattr(self, n + "_zero_point"), spec.granularity == "per_channel"))
            b_ih, b_hh = (getattr(self, n).detach().to(torch.float32) for n in names[i + 2:i + 4])
            layers.append((mats[0], mats[1], b_ih, b_hh))
        self._packed = _kernels.PackedLSTM(layers)
        self._packed_index = {n: 2 * (i // stride) + (i % stride) for i, n in enumerate(names) if i % stride < 2}
        for n in self._packed_index:
            del self._buffers[n + "_q"]

    def _unpack_weight(self, name):
        return self._packed.mats[self._packed_index[name]].unpack()

    def flat_weights(self):
        """The weights in nn.LSTM's order, dequantized to float32."""
        return [self.dequantized(n) if n in self._qweights else getattr(self, n) for n in self._flat_names]

    def __getattr__(self, name):
        # nn.LSTM exposes weight_ih_l0 & co. as attributes; give the dequantized values.
        if name.startswith("weight_") and not name.endswith(_QUANT_BUFFER_SUFFIXES):
            q = self.__dict__.get("_qweights")
            if q is not None and name in q:
                return self.dequantized(name)
        return super().__getattr__(name)

    def _float_lstm(self, input, hx):
        """torch's float LSTM on the dequantized weights (tensor input, hx given)."""
        weights = [_like(input, w) for w in self.flat_weights()]
        out = torch._VF.lstm(input, hx, weights, self.bias, self.num_layers, self.dropout, self.training, self.bidirectional, self.batch_first)
        return out[0], out[1], out[2]

    def _kernel_forward(self, input, hx, batch_sizes=None):
        """The kernel on a float input (any float dtype); results in the input's dtype."""
        if self._packed is None:  # dequant: tensor inputs only (PackedSequence runs in forward)
            return self._float_lstm(self._quant_input(input), hx)
        dt = input.dtype
        f32 = (input.to(torch.float32), (hx[0].to(torch.float32), hx[1].to(torch.float32)))
        out = self._packed.run(f32[0], f32[1], self.num_layers, self.dropout, self.training, self.bidirectional, self.batch_first, batch_sizes)
        return tuple(t.to(dt) for t in out[:3])

    def forward(self, input, hx=None):
        orig = input
        num_dir = 2 if self.bidirectional else 1
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        if isinstance(orig, PackedSequence):
            data, batch_sizes, sorted_indices, unsorted_indices = orig
            max_batch = int(batch_sizes[0])
            if hx is None:
                hx = self._zeros(num_dir, max_batch, real_hidden, data)
            elif sorted_indices is not None:
                hx = (hx[0].index_select(1, sorted_indices), hx[1].index_select(1, sorted_indices))
            if self.kernel == "fbgemm_dynamic":
                out = self._kernel_forward(data, hx, batch_sizes)
            else:
                data = self._quant_input(data)
                weights = [_like(data, w) for w in self.flat_weights()]
                out = torch._VF.lstm(data, batch_sizes, hx, weights, self.bias, self.num_layers, self.dropout, self.training, self.bidirectional)
            output = PackedSequence(out[0], batch_sizes, sorted_indices, unsorted_indices)
            h = out[1:]
            if unsorted_indices is not None:
                h = (h[0].index_select(1, unsorted_indices), h[1].index_select(1, unsorted_indices))
            return output, tuple(h)
        if input.dim() not in (2, 3):
            raise ValueError(f"QuantizedLSTM: expected a 2-D or 3-D input, got {input.dim()}-D")
        batched = input.dim() == 3
        batch_dim = 0 if self.batch_first else 1
        if not batched:
            input = input.unsqueeze(batch_dim)
            if hx is not None:
                hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        if input.shape[-1] != self.input_size:
            raise ValueError(f"QuantizedLSTM: input has {input.shape[-1]} features, expected {self.input_size}")
        if hx is None:
            hx = self._zeros(num_dir, input.size(batch_dim), real_hidden, input)
        plain = all(type(t) is torch.Tensor for t in (input, *hx))
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (input, *hx))
        if plain and not grad and not torch.compiler.is_compiling():
            output, *h = self._kernel_forward(input, hx)  # plain eager inference
        else:
            output, *h = torch.ops.monoquant.lstm(input, hx[0], hx[1], self._handle)
        h = tuple(h)
        if not batched:
            output = output.squeeze(batch_dim)
            h = (h[0].squeeze(1), h[1].squeeze(1))
        return output, h

    def _zeros(self, num_dir, batch, real_hidden, like):
        h = torch.zeros(self.num_layers * num_dir, batch, real_hidden, dtype=like.dtype, device=like.device)
        c = torch.zeros(self.num_layers * num_dir, batch, self.hidden_size, dtype=like.dtype, device=like.device)
        return h, c

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.batch_first:
            s += ", batch_first=True"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        return s + ", " + self._format_extra()


# ------------------------------------------------------------------------------------------------
# Hugging Face's Conv1D (GPT-2) and nn.Embedding.

def is_hf_conv1d(mod):
    """Whether ``mod`` is transformers' ``Conv1D`` (GPT-2 family: ``y = x @ weight + bias`` with
    ``weight`` stored [in, out]), told by its class name and structure so that transformers is
    never imported."""
    return (any(c.__name__ == "Conv1D" for c in type(mod).__mro__) and isinstance(getattr(mod, "nf", None), int)
            and isinstance(getattr(mod, "weight", None), torch.Tensor) and mod.weight.dim() == 2
            and tuple(mod.weight.shape)[1] == mod.nf)


def _transposable(spec):
    """Whether a weight stored [in, out] with this spec is, transposed, a weight [out, in] of the
    same spec along axis 0 (so QuantizedLinear's kernels run it as is)."""
    if not spec.is_integer:
        return True
    if spec.format != "int8":
        return False
    return spec.granularity == "per_tensor" or (spec.granularity == "per_channel" and spec.axis in (1, -1))


def _axis0(spec):
    if not spec.is_integer:
        return spec
    return QuantSpec(spec.format, spec.scheme, spec.granularity, axis=0, qdtype=spec.qdtype,
                     reduce_range=spec.reduce_range, quant_range=spec.quant_range)


class QuantizedConv1D(QuantizedLinear):
    """transformers' ``Conv1D`` (GPT-2's attention and MLP layers) with a quantized weight.

    The weight is stored ``[in, out]`` as in the float module, so the engine quantizes it along
    axis 1, the true output channel (docs/FORMAT.md); ``state_dict`` and files keep that layout.
    In memory an INT8 per-channel, per-tensor or FP16/BF16 weight is held transposed,
    ``[out, in]`` along axis 0, and runs on QuantizedLinear's kernels (fbgemm, int8pack): the
    transpose of a per-output-channel quantization is exact. Other layouts (group-wise INT4,
    whose groups the engine lays along the stored rows) run with ``kernel="dequant"``.
    ``weight`` is the dequantized float32 weight ``[in, out]``, as ``Conv1D.weight`` is.
    """

    def __init__(self, nx, nf, qweight, bias=None, activation="dynamic", input_qparams=None):
        self.nx, self.nf = nx, nf
        spec = qweight.spec
        self._file_spec = spec
        self._file_qshape = tuple(qweight.shape)
        self._as_linear = _transposable(spec)
        if self._as_linear:
            data = qweight.data.reshape(nx, nf).t().contiguous()
            qweight = QTensor(data, qweight.scale, qweight.zero_point, (nf, nx), _axis0(spec))
        super().__init__(nx, nf, qweight, bias, activation, input_qparams)
        if not self._as_linear:
            self._qweights["weight"] = (spec, (nx, nf), self._file_qshape)

    @classmethod
    def from_float(cls, mod, spec, activation="dynamic", input_qparams=None):
        """Quantizes ``mod.weight`` ([in, out]) with ``spec`` along the output axis (1)."""
        qt = quantize_tensor(mod.weight.detach(), spec, what="weight")
        return cls(mod.weight.shape[0], mod.nf, qt, mod.bias, activation, input_qparams)

    def _set_stored(self, data):
        if self._as_linear:
            return super()._set_stored(data)
        self._clear_kernel()
        self.kernel, self.kernel_reason = "dequant", f"{self._file_spec.format} {self._file_spec.granularity} weight stored [in, out]"
        self._kbuf("_stored_q", data)

    def _file_q(self):
        """The stored values in the file's layout, [in, out]."""
        q = self.weight_q
        if self._as_linear:
            return q.reshape(self.nf, self.nx).t().contiguous()
        return q.reshape(self._file_spec.data_shape((self.nx, self.nf)))

    def float_weight(self, dtype=torch.float32):
        """The dequantized weight as the kernel sees it, [out, in], in ``dtype``."""
        if self._as_linear:
            return super().float_weight(dtype)
        qt = QTensor(self._stored_q.cpu(), self.weight_scale.cpu(), self.weight_zero_point.cpu(), self._file_qshape, self._file_spec)
        return dequantize_tensor(qt).reshape(self.nx, self.nf).t().to(device=self._stored_q.device, dtype=dtype)

    def dequantized(self, name="weight"):
        """The float32 weight [in, out], dequantized by the engine (CPU) or by torch ops."""
        if self.weight_q.device.type != "cpu":
            return self.float_weight().t().contiguous()
        return dequantize_tensor(self.qtensor()).reshape(self.nx, self.nf)

    def qtensor(self, name="weight"):
        """The QTensor of the weight as stored in files, [in, out] along axis 1."""
        return QTensor(self._file_q(), self.weight_scale, self.weight_zero_point, self._file_qshape, self._file_spec)

    def weight_spec(self, name="weight"):
        return self._file_spec

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = self._file_q()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        key = prefix + "weight"
        src = state_dict.get(key) if self._as_linear else None
        if src is None:
            return super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        if src.numel() != self.nx * self.nf:
            error_msgs.append(f"{key}: got {src.dtype} {list(src.shape)}, expected {self._file_spec.storage_dtype()} {[self.nx, self.nf]}")
            return None
        state_dict[key] = src.reshape(self.nx, self.nf).t().contiguous()  # the kernel's layout, [out, in]
        try:
            return super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)
        finally:
            state_dict[key] = src

    @property
    def weight(self):
        """The dequantized float32 weight [in, out] (built on each access), as Conv1D's."""
        return self.dequantized("weight")

    def extra_repr(self):
        return f"nf={self.nf}, nx={self.nx}, bias={self.bias is not None}, " + self._format_extra()

    def _format_extra(self):
        s = super()._format_extra()
        return s if self._as_linear else s.replace(f"weights={self._qweights['weight'][0].format}", f"weights={self._file_spec.format}")


class QuantizedEmbedding(_QuantizedWeights):
    """nn.Embedding with a quantized table (opt-in: ``layers=[nn.Linear, nn.Embedding]`` or a
    recipe rule naming the layer). INT8 per-row tables (per channel along axis 0, the engine's
    choice for embeddings) look up the int8 rows and scale only those; other formats dequantize
    the table inside the call. ``max_norm`` renormalizes the looked-up rows without writing
    back into the table. The output is float32 (the table's original dtype after ``.to``).

    A table tied to a head (GPT-2's wte and lm_head) is held once when the head's kernel keeps
    the table in a form rows can be read from: ``monoquant.load``/``quantize`` let the embedding
    read its rows from the head (``_share_rows_with``). INT4 on int4pack: from the head's packed
    tensor (``weight_q`` unpacks the whole table on demand). Dynamic or static INT8 on
    ``intmm_dynamic``/``intmm_static``: from the head's stored int8 matrix itself (one tensor,
    one ``data_ptr``)."""

    kernel = "rows"

    def __init__(self, emb, qweight, activation="none", input_qparams=None):
        super().__init__()
        for k in ("num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type", "scale_grad_by_freq", "sparse"):
            setattr(self, k, getattr(emb, k))
        self._init_quant("none")
        self._add_weight("weight", qweight, tuple(emb.weight.shape))
        spec = qweight.spec
        self.kernel = "rows" if spec.format == "int8" and spec.granularity == "per_channel" and spec.axis == 0 else "dequant"
        self.out_dtype = torch.float32

    @classmethod
    def from_float(cls, mod, spec, activation="none", input_qparams=None):
        return cls(mod, quantize_tensor(mod.weight.detach(), spec, what="weight"))

    @property
    def weight(self):
        """The dequantized float32 table [num_embeddings, embedding_dim]."""
        return self.dequantized("weight")

    # -- a tied INT4 head's packed table read by rows (the table held once) ----------------------

    def _share_rows_with(self, head):
        """Drops this table's own stored values and reads them from ``head`` (a QuantizedLinear
        holding the same stored tensor: a tied embedding and head): the table is then resident
        once. On int4pack, rows are looked up by unpacking only the 64-row blocks of the packed
        tensor that the indices touch, and ``weight_q`` (state dicts, save) unpacks the whole
        table on demand; on intmm_dynamic/intmm_static, ``weight_q`` is the head's int8 matrix itself."""
        self._buffers.pop("weight_q", None)
        self.__dict__["_rows_from"] = head

    def _unshare(self):
        """Takes back a table of its own (before a state dict is loaded into it, or a move)."""
        head = self.__dict__.pop("_rows_from", None)
        if head is not None:
            # a copy: a state dict loaded into this table must not write into the head's
            self._buffers["weight_q"] = head.weight_q.reshape(self._qweights["weight"][0].data_shape(self._qweights["weight"][1])).clone()

    def __getattr__(self, name):
        if name == "weight_q":
            head = self.__dict__.get("_rows_from")
            if head is not None:
                return head.weight_q.reshape(self._qweights["weight"][0].data_shape(self._qweights["weight"][1]))
        return super().__getattr__(name)

    def _shared_rows(self, idx):
        """Float32 rows idx of the table from the head's int4pack tensor (64-row blocks)."""
        head = self.__dict__["_rows_from"]
        spec = self._qweights["weight"][0]
        n, k = self.num_embeddings, self.embedding_dim
        flat = idx.reshape(-1)
        blocks, where = torch.unique(flat // _kernels._BLOCK, return_inverse=True)
        u = torch.empty(blocks.numel(), _kernels._BLOCK, k, dtype=torch.int32)
        for i, b in enumerate(blocks.tolist()):
            r0 = b * _kernels._BLOCK
            r1 = min(n, r0 + _kernels._BLOCK)
            u[i, : r1 - r0] = _kernels.unpack_int4(head._int4_packed[r0:r1], r1 - r0, k)
        v = u[where, flat % _kernels._BLOCK].to(torch.float32)
        if spec.qdtype == "qint4":
            v -= 8
        s = self.weight_scale.reshape(n, -1).index_select(0, flat)
        z = self.weight_zero_point.reshape(n, -1).index_select(0, flat).to(torch.float32)
        g = k // s.shape[1]
        return ((v.reshape(-1, s.shape[1], g) - z.unsqueeze(-1)) * s.unsqueeze(-1)).reshape(*idx.shape, k)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kw):
        if prefix + "weight" in state_dict:
            self._unshare()  # new values for this table: it is its own again
        return super()._load_from_state_dict(state_dict, prefix, *args, **kw)

    def forward(self, idx):
        if "_rows_from" in self.__dict__ and self.__dict__["_rows_from"].kernel == "int4pack" and idx.device.type == "cpu":
            out = self._shared_rows(idx)
        elif self.kernel == "rows":
            q = self.weight_q.index_select(0, idx.reshape(-1)).to(torch.float32)
            s = self.weight_scale.index_select(0, idx.reshape(-1)).unsqueeze(1)
            z = self.weight_zero_point.index_select(0, idx.reshape(-1)).unsqueeze(1)
            out = ((q - z) * s).reshape(*idx.shape, self.embedding_dim)
        else:
            out = F.embedding(idx, self.dequantized("weight").to(self.weight_q.device))
        if self.max_norm is not None:
            n = out.norm(p=self.norm_type, dim=-1, keepdim=True)
            out = out * torch.where(n > self.max_norm, self.max_norm / (n + 1e-7), torch.ones_like(n))
        return out.to(self.out_dtype)

    def _apply(self, fn, recurse=True):
        # Integers and qparams keep their dtypes; a float cast moves the output dtype only.
        probe = fn(torch.empty(0))
        if probe.device != self.weight_scale.device:
            self._unshare()
        for name, b in list(self._buffers.items()):
            if b is not None:
                self._buffers[name] = b.to(probe.device)
        if probe.is_floating_point():
            self.out_dtype = probe.dtype
        return self

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}, " + self._format_extra()


QUANTIZED_TYPES = (QuantizedLinear, QuantizedConv2d, QuantizedLSTM, QuantizedEmbedding)
# The engine's layer types this package runs, and the torch class whose modules it replaces.
RUNNABLE = {"linear": nn.Linear, "conv2d": nn.Conv2d, "lstm": nn.LSTM}
# The module classes this package runs once quantized, as the engine's runtime_classes option
# names them (the last dotted component is the class; transformers is never imported).
RUNTIME_CLASSES = ("torch.nn.modules.linear.Linear", "torch.nn.modules.conv.Conv2d", "torch.nn.modules.rnn.LSTM",
                   "torch.nn.modules.sparse.Embedding", "transformers.pytorch_utils.Conv1D")


def quantized_class_for(mod):
    """The quantized module class that stands in for ``mod`` (None when there is none)."""
    if is_hf_conv1d(mod):
        return QuantizedConv1D
    if isinstance(mod, nn.Embedding):
        return QuantizedEmbedding
    for cls, q in ((nn.Linear, QuantizedLinear), (nn.Conv2d, QuantizedConv2d), (nn.LSTM, QuantizedLSTM)):
        if isinstance(mod, cls):
            return q
    return None
