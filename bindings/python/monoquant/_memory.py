"""Peak memory of running one model, measured in a fresh process (``monoquant.benchmark``).

Run as ``python -m monoquant._memory MODEL DATA RUNS THREADS``: it loads the inputs (``DATA``,
``torch.save``d) and a first copy of the model (``torch.save``d, the candidate as ``benchmark``
built it), runs that copy once and keeps it, reads the process's resident set size
(``VmRSS``: the baseline), loads a second copy, resets the kernel's resident high-water mark
(``/proc/self/clear_refs`` ← 5, Linux), runs the second copy ``RUNS`` times on the inputs and
prints one JSON line: ``{"peak": VmHWM - baseline, "resident": VmRSS after loading - baseline,
"method": ...}`` in bytes. The peak is what one more instance of the candidate costs a process
that already runs one: its weights as it holds them, plus its forward's activations and
workspaces; the once-per-process costs (imports, kernel initialisation) are in the baseline.

Why a fresh process and the kernel's counters: torch's CPU allocator takes large blocks from
``mmap`` and gives them back when freed, small ones from malloc arenas that keep them; a process
that built other candidates before holds pages this one would reuse, so an in-process delta
would under-count, and a tracer (tracemalloc) sees only Python's allocations, not torch's. In a
fresh process the resident memory the candidate adds — its weights (packed for the kernels as
they are when it runs), the activations and workspaces of its forward — is exactly what the
kernel counts. The transient buffers of unpickling are left out by resetting the high-water
mark after loading; where that is not possible (not Linux) the peak includes them and
``method`` says so.
"""

import gc
import json
import os
import resource
import sys


def _status(key):
    """A /proc/self/status field in bytes, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_high_water():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim():
    """Gives the heap's free pages back to the kernel (glibc malloc_trim), so that the copy
    measured cannot reuse what the first copy's run freed."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _maxrss():
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def main(argv):
    model_path, data_path, runs, threads = argv[0], argv[1], int(argv[2]), int(argv[3])
    import torch

    import monoquant  # noqa: F401 (the library loads before the baseline: it is not the candidate's)
    from .search import _forward

    torch.set_num_threads(threads)
    data = torch.load(data_path, weights_only=False)
    # A first copy, loaded and run once and kept: what the process pays once for this kind of
    # model (modules imported, kernels initialised, thread pools and their buffers started) goes
    # into the baseline, and its pages stay in use, so the copy measured cannot reuse them.
    warm = torch.load(model_path, weights_only=False)
    warm.eval()
    _forward(warm, data)
    gc.collect()
    _trim()
    base = _status("VmRSS")
    method = "VmHWM while running a second copy (reset after loading it), minus VmRSS before loading it"
    if base is None:
        base, method = _maxrss(), "ru_maxrss (loading included) minus the one before"
    model = torch.load(model_path, weights_only=False)
    model.eval()
    gc.collect()
    resident = _status("VmRSS")
    if resident is not None and not _reset_high_water():
        method = "VmHWM (loading included) minus VmRSS before loading a second copy"
    for _ in range(runs):
        _forward(model, data)
    peak = _status("VmHWM")
    if peak is None:
        peak = _maxrss()
    print(json.dumps({"peak": peak - base, "resident": None if resident is None else resident - base, "method": method}))


if __name__ == "__main__":
    main(sys.argv[1:])
