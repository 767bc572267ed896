"""Peak memory of running one model, measured in a fresh process (``monoquant.benchmark``).

Run as ``python -m monoquant._memory MODEL DATA RUNS THREADS``: it loads the inputs (``DATA``,
``torch.save``d) and a first copy of the model (``torch.save``d, the candidate as ``benchmark``
built it), runs that copy once and keeps it, reads the process's anonymous resident memory
(``RssAnon``: the baseline), loads a second copy and reads it again (``resident``: what the
copy holds), resets the kernel's resident high-water mark (``/proc/self/clear_refs`` ← 5,
Linux), runs the second copy ``RUNS`` times on the inputs and prints one JSON line:
``{"peak": resident + (VmHWM - VmRSS at the reset), "resident": ..., "method": ...}`` in bytes.
The peak is what one more instance of the candidate costs a process that already runs one: its
weights as it holds them, plus its forward's activations and workspaces; the once-per-process
costs (imports, kernel initialisation) are in the baseline. The held part counts anonymous
pages only: file pages (the libraries' code) that the kernel drops and maps again under another
process's memory pressure would otherwise move the difference; the rise during the runs is
measured over the runs alone.

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
    base = _status("RssAnon")
    if base is None:  # not Linux: the process's maximum resident size, loading included
        base = _maxrss()
        model = torch.load(model_path, weights_only=False)
        model.eval()
        for _ in range(runs):
            _forward(model, data)
        print(json.dumps({"peak": _maxrss() - base, "resident": None, "method": "ru_maxrss (loading included) minus the one before"}))
        return
    model = torch.load(model_path, weights_only=False)
    model.eval()
    gc.collect()
    resident = _status("RssAnon") - base
    method = "RssAnon held after loading a second copy, plus the rise of VmHWM (reset then) while it runs"
    if not _reset_high_water():
        method = "RssAnon held after loading a second copy, plus the rise of VmHWM while it runs (not reset: loading included)"
    start = _status("VmRSS")
    for _ in range(runs):
        _forward(model, data)
    rise = max(0, _status("VmHWM") - start)
    print(json.dumps({"peak": resident + rise, "resident": resident, "method": method}))


if __name__ == "__main__":
    main(sys.argv[1:])
