"""Stopping quantize_file: Ctrl-C (SIGINT), a SIGTERM handler that raises, and the engine's cancel
flag (mq_quantize_file_cancelable) stop the run inside a large tensor and leave no output; the
call runs on a worker thread so that the main thread can take the signal. Nothing here is timed
(the time from Ctrl-C to exit is in BENCHMARKS.md)."""

import ctypes
import os
import signal
import threading

import pytest
import torch

import monoquant
from monoquant import _model
from monoquant.api import _config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def big_file(tmp_path):
    """a.weight (small), then b.weight of 64 MiB (8 streamed blocks of 8 MiB), then c.weight."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {
        "a.weight": torch.randn(64, 64, generator=g),
        "b.weight": torch.randn(4096, 4096, generator=g),
        "c.weight": torch.randn(64, 64, generator=g),
    }
    src = tmp_path / "in.safetensors"
    save_file(tensors, str(src))
    return src


def leftovers(folder, src):
    return sorted(p.name for p in folder.iterdir() if p != src)


def test_cancel_flag_set_before_the_call(big_file, tmp_path, no_leaks):
    dst = tmp_path / "q.safetensors"
    cfg = _config(log=False)
    with pytest.raises(monoquant.CanceledError, match="cancel"):
        _model.quantize_file(big_file, dst, cfg, cancel=ctypes.c_int32(1))
    assert leftovers(tmp_path, big_file) == []


def test_cancel_flag_set_by_the_progress_callback(big_file, tmp_path, no_leaks):
    # The flag is set after the first tensor and read at once at the next check (between blocks):
    # the run never reaches the second tensor's end.
    dst = tmp_path / "q.safetensors"
    flag = ctypes.c_int32(0)
    seen = []

    def progress(done, total):
        seen.append(done)
        flag.value = 1

    with pytest.raises(monoquant.CanceledError):
        _model.quantize_file(big_file, dst, _config(log=False), progress=progress, cancel=flag)
    assert seen == [1]
    assert leftovers(tmp_path, big_file) == []


def _interrupt_after_first_tensor(signum, handler, big_file, tmp_path):
    """Runs quantize_file with ``handler`` for ``signum``; the progress callback (on the worker
    thread) sends the signal after the first tensor and waits until the main thread has run the
    handler, so that the cancel lands while the 64 MiB tensor is still ahead."""
    ran = threading.Event()
    seen = []

    def on_signal(*args):
        ran.set()
        handler(*args)

    def progress(done, total, name):
        # The engine runs on a worker thread, so the main thread takes a signal at once, not
        # only when a progress callback returns to Python.
        assert threading.current_thread() is not threading.main_thread()
        seen.append(done)
        if done == 1:
            os.kill(os.getpid(), signum)
            assert ran.wait(30), "the main thread did not run the signal handler"

    old = signal.signal(signum, on_signal)
    try:
        with pytest.raises(BaseException) as exc:
            monoquant.quantize_file(big_file, tmp_path / "q.safetensors", progress=progress, log=False)
    finally:
        signal.signal(signum, old)
    assert leftovers(tmp_path, big_file) == []
    assert 3 not in seen, f"the run went on to the end after the signal: progress {seen}"
    return exc.value


def test_ctrl_c_stops_quantize_file_and_leaves_no_output(big_file, tmp_path, no_leaks):
    def raise_interrupt(*_):
        raise KeyboardInterrupt

    exc = _interrupt_after_first_tensor(signal.SIGINT, raise_interrupt, big_file, tmp_path)
    assert isinstance(exc, KeyboardInterrupt)


def test_sigterm_handler_that_exits_stops_quantize_file(big_file, tmp_path, no_leaks):
    def exit_now(*_):
        raise SystemExit(143)

    exc = _interrupt_after_first_tensor(signal.SIGTERM, exit_now, big_file, tmp_path)
    assert isinstance(exc, SystemExit) and exc.code == 143


def test_progress_exception_still_propagates_from_the_worker_thread(big_file, tmp_path, no_leaks):
    class Stop(Exception):
        pass

    def progress(done, total, name):
        raise Stop("stop here")

    with pytest.raises(Stop, match="stop here"):
        monoquant.quantize_file(big_file, tmp_path / "q.safetensors", progress=progress, log=False)
    assert leftovers(tmp_path, big_file) == []


def test_quantize_file_from_another_thread_and_errors_keep_their_message(big_file, tmp_path, no_leaks):
    # Off the main thread the call runs where it is; on it, on a worker: both give the same
    # file, and an error keeps the engine's message (mq_last_error is per thread).
    out = {}

    def work():
        monoquant.quantize_file(big_file, tmp_path / "t.safetensors", log=False)
        out["ok"] = True

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert out.get("ok")
    monoquant.quantize_file(big_file, tmp_path / "m.safetensors", log=False)
    assert (tmp_path / "t.safetensors").read_bytes() == (tmp_path / "m.safetensors").read_bytes()
    with pytest.raises(monoquant.MonoquantError, match="nope.safetensors"):
        monoquant.quantize_file(tmp_path / "nope.safetensors", tmp_path / "x.safetensors", log=False)
