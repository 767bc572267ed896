"""Exceptions and warnings of the monoquant package.

Every failing library call becomes one of the exceptions below, chosen by the status code the C
function returned (see include/monoquant.h) and carrying the library's own message from
``mq_last_error()``. Each class also derives from the closest built-in exception, so code that
catches ``ValueError`` or ``TypeError`` keeps working.
"""

__all__ = [
    "MonoquantError",
    "InvalidArgumentError",
    "InvalidHandleError",
    "DTypeError",
    "ShapeError",
    "BufferTooSmallError",
    "NonFiniteError",
    "MonoquantIOError",
    "FormatError",
    "UnsupportedError",
    "InternalError",
    "EnginePanicError",
    "CanceledError",
    "MonoquantWarning",
]


class MonoquantError(RuntimeError):
    """Base class of every error raised from a libmonoquant status code.

    Attributes:
        status: the negative MQ_E* code the C function returned.
        function: the C function that failed.
    """

    status = None

    def __init__(self, message, status=None, function=None):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.function = function


class InvalidArgumentError(MonoquantError, ValueError):
    """MQ_EINVAL: a NULL pointer, a bad config value or options torch would refuse."""

    status = -1


class InvalidHandleError(MonoquantError, ValueError):
    """MQ_EHANDLE: the handle is NULL, stale, freed (for example after ``close()``) or foreign."""

    status = -2


class DTypeError(MonoquantError, TypeError):
    """MQ_EDTYPE: an element type the function does not accept."""

    status = -3


class ShapeError(MonoquantError, ValueError):
    """MQ_ESHAPE: a bad number of dimensions, a negative dimension or mismatched shapes."""

    status = -4


class BufferTooSmallError(MonoquantError, ValueError):
    """MQ_EBUFFER: an output buffer is too short (a bug in this package if it ever escapes)."""

    status = -5


class NonFiniteError(MonoquantError, ValueError):
    """MQ_ENONFINITE: the input holds NaN or ±Inf."""

    status = -6


class MonoquantIOError(MonoquantError, OSError):
    """MQ_EIO: reading or writing a file failed."""

    status = -7


class FormatError(MonoquantError, ValueError):
    """MQ_EFORMAT: a file or byte stream is corrupt or not in the expected format."""

    status = -8


class UnsupportedError(MonoquantError, NotImplementedError):
    """MQ_EUNSUPPORTED: a valid request the library does not support."""

    status = -9


class InternalError(MonoquantError):
    """MQ_EINTERNAL: an unexpected engine error (a bug; please report the message)."""

    status = -10


class EnginePanicError(MonoquantError):
    """MQ_EPANIC: the engine panicked; the call was abandoned and the message says why."""

    status = -11


_BY_STATUS = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        InvalidHandleError,
        DTypeError,
        ShapeError,
        BufferTooSmallError,
        NonFiniteError,
        MonoquantIOError,
        FormatError,
        UnsupportedError,
        InternalError,
        EnginePanicError,
    )
}


# The C library's advice for NaN/Inf input names its config field (capi/errors.go); in Python
# the option is QuantSpec(clamp_nonfinite=True) for tensor functions and nonfinite="clamp" for
# models and files.
_NONFINITE_HINT_C = 'set nonfinite = MQ_NONFINITE_CLAMP in the config, or "nonfinite": "clamp" in options JSON, to quantize anyway'


def error_for_status(status, message, function=None):
    """Returns the exception instance for a negative status code (MonoquantError if unknown)."""
    cls = _BY_STATUS.get(status, MonoquantError)
    if status == -6 and _NONFINITE_HINT_C in message:
        tensor_level = (function or "").startswith(("mq_quantize_tensor", "mq_observer"))
        hint = "pass QuantSpec(..., clamp_nonfinite=True) to quantize anyway" if tensor_level else 'pass nonfinite="clamp" to quantize anyway'
        message = message.replace(_NONFINITE_HINT_C, hint)
    text = f"{function}: {message}" if function else message
    return cls(text, status=status, function=function)


class CanceledError(MonoquantError):
    """MQ_ECANCELED: a progress callback asked to stop; nothing was produced."""

    status = -12


_BY_STATUS[CanceledError.status] = CanceledError


class MonoquantWarning(UserWarning):
    """Issued when a quantization choice is likely to cost accuracy.

    Raised (with ``warnings.warn``) when every layer is quantized including the first and last,
    when a layer's weight SQNR falls below ``monoquant.SQNR_WARN_DB`` for its bit width, when INT4
    is applied to a small layer, when static calibration sees activations with heavy outliers,
    and when there is too little calibration data. Silence them with
    ``warnings.simplefilter("ignore", monoquant.MonoquantWarning)``.
    """
