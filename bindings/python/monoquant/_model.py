"""The engine's model API (mq_model_* in monoquant.h): files and state dicts.

Bound to the header's model section as it lands; until the loaded library exports it, these
functions raise UnsupportedError naming what is missing."""

from . import _lib
from ._errors import UnsupportedError


def _require(*names):
    missing = [n for n in names if not hasattr(_lib, n) or n in _lib.MISSING]
    if missing:
        raise UnsupportedError(f"the loaded libmonoquant ({_lib.LIBRARY_PATH}) has no model API ({', '.join(missing)}); rebuild it with `make lib`")


def write_checkpoint(tensors, metadata, path):
    _require("mq_model_new", "mq_model_save")


def read_checkpoint(path):
    _require("mq_model_load")


def quantize_tensors(sd, **kw):
    _require("mq_model_new", "mq_model_quantize")
