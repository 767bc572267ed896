"""monoquant.search and monoquant.benchmark on a real model: the small CNN of test_accuracy,
trained here on scikit-learn's digits; trials here and on a Dask LocalCluster of 2 processes."""

import json
import math
import os
import pickle
import warnings

import pytest
import torch

import monoquant
from test_accuracy import DigitsCNN, accuracy, trained  # noqa: F401 (the fixture)

HERE = os.path.dirname(os.path.abspath(__file__))


def weight_bits(model, recipe):
    """Average stored bits per weight of the quantizable layers (scales and zero points
    included, skipped layers at 32), from the engine's plan of the recipe."""
    base = {t["layer"]: t for t in monoquant.plan(model).to_dict()["tensors"] if t["action"] == "quantize"}
    p = monoquant.plan(model, recipe=recipe).to_dict()
    params = sum(math.prod(t["shape"]) for t in base.values())
    stored = sum(t["bytes_after"] for t in p["tensors"] if t["layer"] in base and t["name"] == base[t["layer"]]["name"])
    return 8.0 * stored / params


def test_search_on_the_cnn(trained):
    """40 trials on the trained CNN: every trial done, and the front's best small recipe is one
    quantize() takes and that gives its accuracy again. (The issue's goal, <= 5.0 bits per weight
    losing <= 0.3 points, is measured by `make bench-search`, not asserted here.)"""
    model, _, (xte, yte) = trained
    base = accuracy(model, xte, yte)
    res = monoquant.search(model, lambda q: accuracy(q, xte, yte), objectives=("metric", "size"), trials=40, seed=0)
    assert len(res.trials) == 40 and all(t.status == "done" for t in res.trials)
    ok = [(weight_bits(model, r.recipe), base - r.objectives["metric"], r) for r in res]
    best = min(ok, key=lambda o: o[0] if o[1] <= 0.3 else math.inf)
    print(f"float {base:.2f}%; best within 0.3 points: {best[0]:.2f} bits/weight, loss {best[1]:.2f}, trial {best[2].trial}")
    assert best[1] <= 0.3 and best[0] < 8.0, f"no recipe smaller than INT8 within 0.3 points: {[(b, l) for b, l, _ in ok]}"
    # The result's recipe is one quantize() takes, and gives the same accuracy again.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        q = monoquant.quantize(model, recipe=best[2].recipe)
    assert accuracy(q, xte, yte) == best[2].objectives["metric"]


def stored_bits(model, result):
    """Stored bits per weight of the float model's quantizable layers: the bytes the trial's
    quantized model stores for those weights (scales and zero points included, float layers at
    32 bits, removed hidden units at nothing), over the float model's weight count."""
    layers = {t["layer"]: t for t in monoquant.plan(model).to_dict()["tensors"] if t["action"] == "quantize"}
    params = sum(math.prod(t["shape"]) for t in layers.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        q = monoquant.quantize(model, recipe=result.recipe, progress=False)
    stored = {t["name"]: t["bytes_after"] for t in q.monoquant_report["tensors"]}
    weights = dict(q.named_parameters())
    total = sum(stored.get(t["name"], weights.get(t["name"], torch.empty(0)).numel() * 4) for t in layers.values())
    return 8.0 * total / params


@pytest.mark.parametrize("prune", [None, True], ids=["quantization", "with-pruning"])
def test_goal_on_the_cnn(trained, prune):
    """The issue's goal: within 40 trials, a recipe of <= 5.0 stored bits per weight that loses
    <= 0.3 points of accuracy (one test image is 0.25 points); with pruning genes, hidden units
    removed between classifier.1 and classifier.3 (found by torch.fx) take it lower."""
    model, _, (xte, yte) = trained
    base = accuracy(model, xte, yte)
    res = monoquant.search(model, lambda q: accuracy(q, xte, yte), objectives=("metric", "size"), trials=40, seed=0, prune=prune)
    ok = sorted((stored_bits(model, r), base - r.objectives["metric"], r.trial) for r in res if base - r.objectives["metric"] <= 0.3)
    print(f"prune={prune}: float {base:.2f}%; best within 0.3 points: {ok[0][0]:.2f} bits/weight, loss {ok[0][1]:.2f}, trial {ok[0][2]}")
    assert ok and ok[0][0] <= 5.0, ok
    if prune:
        best = res.trials[ok[0][2]]
        assert any(r.get("prune_units") for r in best.recipe["rules"]), best.recipe
        assert ok[0][0] < 4.5, ok


def test_front_is_non_dominated_and_deterministic(trained):
    model, _, (xte, yte) = trained
    ev = lambda q: accuracy(q, xte, yte)  # noqa: E731
    a = monoquant.search(model, ev, objectives=("metric", "size"), trials=12, seed=3, population=6)
    b = monoquant.search(model, ev, objectives=("metric", "size"), trials=12, seed=3, population=6)
    c = monoquant.search(model, ev, objectives=("metric", "size"), trials=12, seed=4, population=6)
    key = lambda res: [(t.recipe, t.objectives) for t in res.trials]  # noqa: E731
    assert key(a) == key(b)
    assert key(a) != key(c)
    for r in a:
        for t in a.trials:
            better = t.objectives["metric"] >= r.objectives["metric"] and t.objectives["size"] <= r.objectives["size"]
            strictly = t.objectives["metric"] > r.objectives["metric"] or t.objectives["size"] < r.objectives["size"]
            assert not (better and strictly), f"trial {t.trial} dominates front member {r.trial}"


def test_latency_objective(trained):
    model, _, (xte, yte) = trained
    res = monoquant.search(model, lambda q: accuracy(q, xte, yte), data=xte[:64], trials=6, population=4, latency_repeats=3)
    for t in res.trials:
        assert t.objectives["latency"] > 0 and set(t.objectives) == {"metric", "size", "latency"}
    with pytest.raises(ValueError, match="latency objective needs data"):
        monoquant.search(model, lambda q: 1.0, trials=2)


def test_resume_from_state(trained, tmp_path):
    model, _, (xte, yte) = trained
    ev = lambda q: accuracy(q, xte, yte)  # noqa: E731
    whole = monoquant.search(model, ev, objectives=("metric", "size"), trials=14, seed=1, population=4)
    path = tmp_path / "search.json"
    monoquant.search(model, ev, objectives=("metric", "size"), trials=6, seed=1, population=4, state_path=path)
    assert json.loads(path.read_text())["version"] == 1
    resumed = monoquant.search(model, ev, trials=14, resume=path)
    assert [(t.recipe, t.objectives) for t in resumed.trials] == [(t.recipe, t.objectives) for t in whole.trials]


def test_evaluate_raising_fails_the_trial_and_the_search_goes_on(trained):
    model, _, (xte, yte) = trained
    calls = []

    def ev(q):
        calls.append(1)
        if len(calls) % 3 == 0:
            raise RuntimeError(f"evaluation {len(calls)} broke")
        return accuracy(q, xte, yte)

    with pytest.warns(monoquant.MonoquantWarning, match=r"trial \d+ failed"):
        res = monoquant.search(model, ev, objectives=("metric", "size"), trials=9, population=4)
    failed = [t for t in res.trials if t.status == "failed"]
    assert [t.trial for t in failed] == [2, 5, 8]
    assert "RuntimeError: evaluation 3 broke" in failed[0].error and "Traceback" in failed[0].error
    assert len(res) > 0 and all(r.status == "done" for r in res)


def test_bad_metrics_and_spaces(trained):
    model, _, _ = trained
    with pytest.raises(monoquant.NonFiniteError, match='objective "metric" is NaN'):
        monoquant.search(model, lambda q: float("nan"), objectives=("metric", "size"), trials=3)
    with pytest.raises(TypeError, match="evaluate returned str 'good', not a number"):
        monoquant.search(model, lambda q: "good", objectives=("metric", "size"), trials=3)
    with pytest.raises(ValueError, match=r'no valid recipe: layer "classifier.3"'):
        monoquant.search(model, lambda q: 1.0, objectives=("metric", "size"), trials=3, formats=["int8", "int4"],
                         limits=[{"match": "classifier.3", "formats": ["fp16"]}])
    with pytest.raises(ValueError, match=r'no valid recipe: layer "features.0" has no format left .* row of 9 values'):
        monoquant.search(model, lambda q: 1.0, objectives=("metric", "size"), trials=3, formats=["int4"])
    with pytest.raises(ValueError, match="speed"):
        monoquant.search(model, lambda q: 1.0, objectives=("metric", "speed"))
    with pytest.raises(ValueError, match="'conv9'.* not a layer"):
        monoquant.search(model, lambda q: 1.0, objectives=("metric", "size"), sensitivity={"conv9": 1.0})


def test_limits_are_kept(trained):
    model, _, (xte, yte) = trained
    res = monoquant.search(model, lambda q: accuracy(q, xte, yte), objectives=("metric", "size"), trials=10, population=4,
                           limits=[{"match": "classifier.3", "min_bits": 8}])
    for t in res.trials:
        rule = next(r for r in t.recipe["rules"] if r["match"] == "classifier.3")
        assert rule.get("bits") != 4, rule


class Unpicklable(DigitsCNN):
    def __init__(self):
        super().__init__()
        self.hook = lambda x: x


def test_unpicklable_model_names_the_object(trained):
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    import multiprocessing

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as ex:
        with pytest.raises(ValueError, match="forks its workers"):
            monoquant.search(DigitsCNN(), lambda q: 1.0, objectives=("metric", "size"), trials=2, executor=ex)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
        with pytest.raises(TypeError, match=r"cannot be: the model.hook \(function\)"):
            monoquant.search(Unpicklable(), lambda q: 1.0, objectives=("metric", "size"), trials=2, executor=ex)
    # Threads share the model: no pickling, and trials run two at a time.
    model, _, (xte, yte) = trained
    m = Unpicklable()
    m.load_state_dict(model.state_dict())
    # (warnings.catch_warnings is process-wide, not per thread: the trials' engine warnings are
    # silenced here rather than in each thread.)
    with ThreadPoolExecutor(2) as ex, warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        res = monoquant.search(m.eval(), lambda q: accuracy(q, xte, yte), objectives=("metric", "size"), trials=6, population=4, executor=ex)
    assert [t.status for t in res.trials] == ["done"] * 6


# ---- Dask ----

PICKLES = os.path.join(HERE, ".pickles")


class CountingCNN(DigitsCNN):
    """Logs each pickling (or deepcopy) with the process id, to count those of the test process."""

    def __reduce_ex__(self, protocol):
        with open(os.environ["MQ_TEST_PICKLE_LOG"], "a") as f:
            f.write(f"{os.getpid()}\n")
        return super().__reduce_ex__(protocol)


def dying_accuracy(q, x, y, marker):
    """Accuracy, except that the worker process running the first call to see no marker dies."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return accuracy(q, x, y)
    os.close(fd)
    os._exit(1)


def test_dask_two_workers(trained, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    import dask
    import functools

    model, _, (xte, yte) = trained
    m = CountingCNN()
    m.load_state_dict(model.state_dict())
    m.eval()
    log = tmp_path / "pickles"
    monkeypatch.setenv("MQ_TEST_PICKLE_LOG", str(log))
    # The workers import monoquant and this module (for the model class and evaluate).
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([os.path.dirname(HERE), HERE, os.environ.get("PYTHONPATH", "")]))
    ev = functools.partial(dying_accuracy, x=xte, y=yte, marker=str(tmp_path / "died"))
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            with distributed.Client(cluster) as client:
                with pytest.warns(monoquant.MonoquantWarning, match="did not run"):
                    res = monoquant.search(m, ev, objectives=("metric", "size"), trials=8, population=4,
                                           executor=client.get_executor())
    # The dead worker's trials fail (the one it ran, and with allowed-failures 0 the one queued
    # behind it); every other trial is done.
    failed = [t for t in res.trials if t.status == "failed"]
    assert 1 <= len(failed) <= 2 and all("KilledWorker" in t.error for t in failed), [t.error for t in failed]
    assert sum(t.status == "done" for t in res.trials) == 8 - len(failed)
    assert len(res) > 0
    # The model left this process a bounded number of times (the pickle check, the scatter),
    # not once per trial (the workers' own copies, quantize's deepcopy, are theirs).
    here = log.read_text().split().count(str(os.getpid()))
    assert 1 <= here <= 3, f"the model was pickled {here} times in the test process for 8 trials"


# ---- benchmark ----


def test_benchmark(trained):
    model, _, (xte, yte) = trained
    int8 = {"rules": [{"match": "*", "bits": 8}]}
    per_sample = lambda q: (q(xte).argmax(1) == yte).float()  # noqa: E731
    # The same recipe twice: the same per-sample scores, never a significant difference.
    r = monoquant.benchmark(model, {"A": int8, "A again": int8}, xte[:64], metric=per_sample, repeats=10, objective="metric", memory=False)
    assert r.winner is None and "no significant difference in metric" in r.verdict
    # Latency (the default objective): the figures are consistent whoever wins.
    r = monoquant.benchmark(model, {"A": int8, "A again": int8}, xte[:64], metric=per_sample, repeats=10, memory=False)
    assert (r.winner is None) == r.verdict.startswith("no significant difference")
    assert [row["name"] for row in r.rows] == ["A", "A again"]
    for row in r.rows:
        lo, hi = row["latency_ci"]
        assert lo <= row["latency_median"] <= hi and row["latency_p90"] >= row["latency_median"]
        assert row["size"] > 0 and 0 <= row["metric"] <= 1
    assert "latency median" in str(r)

    # A metric that tells the float model apart from any quantized one: significant.
    float_wins = lambda q: torch.ones(200) if q is model else torch.cat([torch.ones(100), torch.zeros(100)])  # noqa: E731
    r = monoquant.benchmark(model, {"float": None, "int8": int8}, xte[:64], metric=float_wins, repeats=5, objective="metric", memory=False)
    assert r.winner == "float" and r.verdict.startswith("winner: float")
    with pytest.raises(ValueError, match="at least two"):
        monoquant.benchmark(model, [int8], xte[:8])


def test_a_layer_of_several_weights_is_one_gene():
    """An LSTM's weights (rows of 32 and 64 values) are one layer of the space."""

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(32, 64, batch_first=True)
            self.fc = torch.nn.Linear(64, 4)

        def forward(self, x):
            return self.fc(self.lstm(x)[0][:, -1])

    m = M().eval()
    res = monoquant.search(m, lambda q: 1.0, objectives=("metric", "size"), trials=6, population=4, group_sizes=[32, 64])
    assert all(t.status == "done" for t in res.trials)
    assert [r["match"] for r in res.trials[0].recipe["rules"]] == ["lstm", "fc", "*"]
    for t in res.trials:
        lstm = t.recipe["rules"][0]
        assert lstm.get("group_size") in (None, 32), lstm  # 64 does not divide the input rows


class Wide(torch.nn.Module):
    """Two 1024-wide layers: 4.2 MB of float32 weights, 1.05 MB in INT8, ~0.6 MB in INT4."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(1024, 1024)
        self.fc2 = torch.nn.Linear(1024, 8)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def test_benchmark_peak_memory():
    """Peak memory is measured per candidate in a fresh process: the float model holds 4 bytes a
    weight, INT8 about 1 and INT4 about half of one; each reports at least what its stored
    tensors take, and a larger candidate more than a smaller one, by about the weights'
    difference (not noise)."""
    torch.manual_seed(0)
    model = Wide().eval()
    cands = {"float": None, "int8": {"rules": [{"match": "*", "bits": 8}]},
             "int4": {"rules": [{"match": "*", "bits": 4, "group_size": 64}]}}
    r = monoquant.benchmark(model, cands, torch.randn(8, 1024), repeats=3)
    rows = {row["name"]: row for row in r.rows}
    print({n: (row["size"], row["resident_memory"], row["peak_memory"]) for n, row in rows.items()}, r.memory_method)
    for row in rows.values():
        assert row["peak_memory"] >= row["resident_memory"] >= 0.9 * row["size"], row
    f, q8, q4 = rows["float"], rows["int8"], rows["int4"]
    assert f["peak_memory"] - q8["peak_memory"] >= 0.5 * (f["size"] - q8["size"]), (f, q8)
    assert f["peak_memory"] - q4["peak_memory"] >= 0.5 * (f["size"] - q4["size"]), (f, q4)
    assert "VmHWM" in r.memory_method and "MiB" in str(r)
    # memory=False skips it.
    r = monoquant.benchmark(model, cands, torch.randn(8, 1024), repeats=3, memory=False)
    assert all(row["peak_memory"] is None for row in r.rows)


def test_benchmark_memory_needs_an_importable_model():
    class Local(torch.nn.Module):  # a class the fresh process cannot import
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 64)

        def forward(self, x):
            return self.fc(x)

    model = Local()
    with pytest.raises((TypeError, RuntimeError), match="peak memory .* fresh process"):
        monoquant.benchmark(model, {"float": None, "int8": {"rules": [{"match": "*", "bits": 8}]}}, torch.randn(2, 64), repeats=3)


def test_benchmark_logged_runs(tmp_path, monkeypatch):
    """A logged run is a candidate: the resolved recipe it applied, quantized again from the
    model, gives the run's size and outputs; "run:ID" names one; a run id the log lacks is an
    error naming it."""
    monkeypatch.setenv("MONOQUANT_HOME", str(tmp_path))
    monkeypatch.setenv("MONOQUANT_LOG", "1")
    torch.manual_seed(0)
    model = Wide().eval()
    mixed = {"rules": [{"match": "fc1", "bits": 4, "group_size": 64}, {"match": "*", "bits": 8}]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", monoquant.MonoquantWarning)
        q = monoquant.quantize(model, recipe=mixed, progress=False)
    run = monoquant.runs()[-1]
    x = torch.randn(8, 1024)
    same = lambda m: (m(x) - q(x)).abs().flatten()  # noqa: E731: 0 for q's own recipe, per output
    r = monoquant.benchmark(model, {"recipe": mixed, "run": run, "by id": f"run:{run.id}", "int8": {"rules": [{"match": "*", "bits": 8}]}},
                            x, metric=same, repeats=3, memory=False)
    rows = {row["name"]: row for row in r.rows}
    assert rows["run"]["size"] == rows["recipe"]["size"] == rows["by id"]["size"] == run.results["total_bytes_after"]
    assert rows["run"]["metric"] == rows["by id"]["metric"] == 0.0 and rows["int8"]["metric"] > 0
    with pytest.raises(ValueError, match="run 999"):
        monoquant.benchmark(model, {"a": "run:999", "b": None}, x, repeats=3, memory=False)
    with pytest.raises(ValueError, match="is not run:ID"):
        monoquant.benchmark(model, {"a": "run:x", "b": None}, x, repeats=3, memory=False)
