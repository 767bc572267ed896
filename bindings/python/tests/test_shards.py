"""quantize_file(..., executor=...): the shards of a sharded model folder converted in parallel on
workers sharing the filesystem give the same bytes as the sequential run (a ProcessPoolExecutor,
and Dask's LocalCluster with 2 worker processes)."""

import json
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor

import pytest
import torch

import monoquant

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A Hugging Face folder: 3 safetensors shards behind an index, a config and a tokenizer."""
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("sharded")
    g = torch.Generator().manual_seed(0)
    sd = {}
    for i in range(6):
        sd[f"layers.{i}.weight"] = torch.randn(64, 128, generator=g)
        sd[f"layers.{i}.bias"] = torch.randn(64, generator=g)
    names = list(sd)
    wm = {}
    for k, part in enumerate((names[:4], names[4:8], names[8:])):
        fn = f"model-{k + 1:05d}-of-00003.safetensors"
        save_file({n: sd[n] for n in part}, str(d / fn))
        wm.update({n: fn for n in part})
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": wm}))
    (d / "config.json").write_text("{}")
    (d / "tokenizer.json").write_text('{"version": "1.0"}')
    return d


def same_folder(a, b):
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    for n in names:
        with open(os.path.join(a, n), "rb") as fa, open(os.path.join(b, n), "rb") as fb:
            assert fa.read() == fb.read(), f"{n} differs"
    return names


OPTS = dict(bits=4, group_size=32, recipe=[{"match": "layers.5", "bits": 8}, {"match": "*", "bits": 4, "group_size": 32}])


def quiet(fn, *a, **kw):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        return fn(*a, **kw)


def test_process_pool_is_byte_identical(sharded, tmp_path):
    seq = quiet(monoquant.quantize_file, sharded, tmp_path / "seq", progress=False, log=False, **OPTS)
    # A pool that forks would hang in the engine's Go runtime: refused, saying what to use.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as ex:
        with pytest.raises(ValueError, match="forks its workers.*get_context\\('spawn'\\)"):
            monoquant.quantize_file(sharded, tmp_path / "fork", executor=ex, **OPTS)
    assert not (tmp_path / "fork").exists()
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor"):
        monoquant.quantize_file(sharded, tmp_path / "x", executor=object(), **OPTS)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        par = quiet(monoquant.quantize_file, sharded, tmp_path / "par", progress=False, log=False, validate=True, executor=ex, **OPTS)
    names = same_folder(tmp_path / "seq", tmp_path / "par")
    assert names == ["config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                     "model-00003-of-00003.safetensors", "model.safetensors.index.json", "tokenizer.json"]
    assert par["total_bytes_after"] == seq["total_bytes_after"] and par["tensors_quantized"] == seq["tensors_quantized"] == 6
    assert par["sqnr_db"] == pytest.approx(seq["sqnr_db"]) and "validation" in par


def test_dask_two_workers_is_byte_identical(sharded, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]))
    quiet(monoquant.quantize_file, sharded, tmp_path / "seq", progress=False, log=False, **OPTS)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            quiet(monoquant.quantize_file, sharded, tmp_path / "dask", progress=False, log=False, executor=client.get_executor(), **OPTS)
            pids = set(client.run(os.getpid).values())
    assert len(pids) == 2
    same_folder(tmp_path / "seq", tmp_path / "dask")


class FailingExecutor(ThreadPoolExecutor):
    """Runs shard 0 and fails every other one, as a worker that died would."""

    def submit(self, fn, *args, **kw):
        if args[-1] == 0:
            return super().submit(fn, *args, **kw)
        f = Future()
        f.set_exception(OSError("worker lost"))
        return f


def test_a_failed_shard_names_it_and_leaves_nothing(sharded, tmp_path):
    with FailingExecutor(1) as ex:
        with pytest.raises(RuntimeError, match=r"shard 1 \(model-00002-of-00003.safetensors\) failed on the executor: OSError: worker lost"):
            quiet(monoquant.quantize_file, sharded, tmp_path / "out", progress=False, log=False, executor=ex, **OPTS)
    assert not (tmp_path / "out").exists()
    # An input that is not a sharded folder is converted here, with or without an executor.
    one = tmp_path / "one.safetensors"
    from safetensors.torch import save_file

    save_file({"fc.weight": torch.randn(8, 32)}, str(one))
    with ThreadPoolExecutor(1) as ex:
        a = quiet(monoquant.quantize_file, one, tmp_path / "a.safetensors", progress=False, log=False, executor=ex)
    b = quiet(monoquant.quantize_file, one, tmp_path / "b.safetensors", progress=False, log=False)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert a["total_bytes_after"] == b["total_bytes_after"]
