"""monoquant: post-training quantization of PyTorch models by the Mono Quant engine.

Quick start::

    import torch, monoquant
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    qmodel = monoquant.quantize(model, bits=8, dynamic=True)     # INT8 weights, dynamic activations
    y = qmodel(torch.randn(4, 64))                               # runs with plain torch ops
    monoquant.report(model, qmodel)                              # sizes and SQNR per layer
    monoquant.save(qmodel, "model.q.safetensors")                # or .pt

The package is a ctypes layer over libmonoquant.so (include/monoquant.h). Tensors go to the
engine by pointer (``data_ptr()``): contiguous CPU float tensors without a copy, anything else
made contiguous on the CPU once. See ``monoquant.quantize`` for the options.
"""

from . import _lib
from ._engine import QTensor, QuantSpec, dequantize_tensor, live_handles, quantize_tensor
from . import _errors
from ._errors import *  # noqa: F401,F403 (the exceptions, listed once in _errors.__all__)
from .api import Plan, Report, defaults, dequantize, dequantize_file, plan, quantize, quantize_file, record_activations, report, sqnr
from .files import QuantizedStateDict, load, save
from ._runlog import Reproduction, Run, compare, log_metric, reproduce, run, runs
from .search import BenchmarkResult, SearchResult, SearchResults, benchmark, search
from .sensitivity import Recipe, SensitivityTable, recipe_for, sensitivity
from .nn import QuantizedConv1D, QuantizedConv2d, QuantizedEmbedding, QuantizedLinear, QuantizedLSTM
from .observers import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    PerChannelMinMaxObserver,
)

#: The version of the loaded engine library, "major.minor.patch".
library_version = ".".join(map(str, _lib.LIBRARY_VERSION))
# One version: the engine's (include/monoquant.h); the wheel's metadata is tested against it.
__version__ = library_version
#: Where the engine library was loaded from.
library_path = _lib.LIBRARY_PATH

__all__ = [
    "runs",
    "run",
    "compare",
    "reproduce",
    "log_metric",
    "Run",
    "Reproduction",
    "sensitivity",
    "recipe_for",
    "SensitivityTable",
    "Recipe",
    "search",
    "SearchResult",
    "SearchResults",
    "benchmark",
    "BenchmarkResult",
    "quantize",
    "quantize_file",
    "plan",
    "Plan",
    "defaults",
    "dequantize",
    "dequantize_file",
    "save",
    "load",
    "report",
    "Report",
    "sqnr",
    "record_activations",
    "quantize_tensor",
    "dequantize_tensor",
    "QTensor",
    "QuantSpec",
    "QuantizedLinear",
    "QuantizedConv2d",
    "QuantizedLSTM",
    "QuantizedConv1D",
    "QuantizedEmbedding",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "HistogramObserver",
    "PerChannelMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver",
    "QuantizedStateDict",
    "live_handles",
    "library_version",
    "library_path",
    *_errors.__all__,
]
