"""Search per-layer recipes toward the Pareto front of your metric, size and latency, and A/B/n
benchmarks of recipes.

``search`` asks the engine's NSGA-II search (``core/search``, the same one the C ABI's
``mq_search_*`` reaches) for candidate recipes, quantizes the model with each, measures it, and
tells the engine the objectives; it returns the non-dominated results. Every decision about the
candidates (genes, limits, selection) is the engine's; this module runs trials and measures.

``benchmark`` measures given recipes side by side, in interleaved order, with bootstrap
confidence intervals, and names a winner only when the difference is significant.

dask/distributed are optional: pass ``executor=client.get_executor()`` (or any
``concurrent.futures.Executor``) to run trials on workers; the package itself needs only torch.
"""

import ctypes
import json
import math
import numbers
import os
import pickle
import random
import statistics
import time
import traceback
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import torch

from . import _lib
from ._errors import MonoquantWarning
from ._lib import check
from ._model import _json_call
from . import _runlog
from .api import _check_executor, plan, quantize

__all__ = ["search", "SearchResult", "SearchResults", "benchmark", "BenchmarkResult", "Search"]

#: How each objective ``search`` knows is measured and which way is better.
OBJECTIVES = {
    "metric": "max",  # evaluate(qmodel), the user's metric (higher is better)
    "size": "min",  # bytes of the quantized tensors (scales and zero points included), the engine's count
    "latency": "min",  # median over interleaved repeats of t(qmodel)/t(float model) on `data`
}


class Search:
    """The engine's ask/tell search (a thin handle over ``mq_search_*``).

    ``Search(space, seed)`` starts one, ``Search.load(state)`` resumes one. ``ask()`` returns
    ``(trial, recipe)``; ``tell(trial, values)`` takes the objectives by name (the space's);
    ``fail(trial, reason)``; ``front()``, ``trials()``, ``save()``. Close it (or use ``with``)."""

    def __init__(self, space, seed=0, _handle=None):
        if _handle is not None:
            self._h = _handle
            self._space = json.loads(self.save())["space"]
            return
        h = _lib.mq_search_p()
        check(_lib.mq_search_new(json.dumps(space).encode(), int(seed) & (2**64 - 1), ctypes.byref(h)), "search")
        self._h = h
        self._space = space

    @classmethod
    def load(cls, state):
        """Resumes the search whose ``save()`` text (or a path to it) is given."""
        if isinstance(state, (str, os.PathLike)) and os.path.isfile(state):
            with open(state, "rb") as f:
                state = f.read()
        if isinstance(state, str):
            state = state.encode()
        h = _lib.mq_search_p()
        check(_lib.mq_search_load(state, ctypes.byref(h)), "search state")
        return cls(None, _handle=h)

    @property
    def objectives(self):
        return [o["name"] for o in self._space["objectives"]]

    def ask(self):
        trial = ctypes.c_int64()
        recipe = _json_call(lambda *a: _lib.mq_search_ask(self._h, ctypes.byref(trial), *a), (), "search ask")
        return trial.value, recipe

    def tell(self, trial, values):
        names = self.objectives
        missing = [n for n in names if n not in values]
        extra = [n for n in values if n not in names]
        if missing or extra:
            raise ValueError(f"trial {trial}: objectives {sorted(values)} do not match the search's {names}")
        arr = (ctypes.c_double * len(names))(*[values[n] for n in names])
        check(_lib.mq_search_tell(self._h, int(trial), arr, len(names)), "search tell")

    def fail(self, trial, reason):
        check(_lib.mq_search_fail(self._h, int(trial), str(reason).encode("utf-8", "replace")), "search fail")

    def front(self):
        return _json_call(_lib.mq_search_front_json, (self._h,), "search front")

    def trials(self):
        return _json_call(_lib.mq_search_trials_json, (self._h,), "search trials")

    def save(self):
        n = ctypes.c_size_t()
        _lib.mq_search_save_json(self._h, None, 0, ctypes.byref(n))
        buf = ctypes.create_string_buffer(n.value + 1)
        check(_lib.mq_search_save_json(self._h, buf, n.value + 1, ctypes.byref(n)), "search save")
        return buf.value.decode()

    def close(self):
        if self._h:
            _lib.mq_search_free(self._h)
            self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class SearchResult:
    """One trial: ``.recipe`` (a dict: ``quantize(model, recipe=r.recipe)``, or ``r.save(path)``
    for the CLI's ``--recipe``), ``.objectives`` (measured values by name), ``.trial``,
    ``.bits_per_weight`` (weights only, over the searched layers), ``.status`` and ``.error``."""

    def __init__(self, d):
        self.trial = d["trial"]
        self.recipe = d["recipe"]
        self.status = d["status"]
        self.objectives = d.get("objectives") or {}
        self.error = d.get("error")
        self.bits_per_weight = d.get("bits_per_weight")

    def save(self, path):
        """Writes the recipe as a JSON file (``monoquant quantize --recipe path``)."""
        with open(path, "w") as f:
            json.dump(self.recipe, f, indent=1)

    def __repr__(self):
        obj = ", ".join(f"{k}={v:.6g}" for k, v in self.objectives.items())
        return f"SearchResult(trial={self.trial}, {self.status}, {obj}, bits/weight={self.bits_per_weight:.2f})"


class SearchResults(list):
    """The Pareto front (a list of SearchResult), plus ``.trials`` (every trial, failed ones
    with their traceback in ``.error``) and ``.state`` (the engine state, for ``resume=``)."""

    trials = ()
    state = None


def _space_layers(model):
    """The layers the engine would quantize by default, with their weight counts and row lengths
    (the engine's rule: mq_search_layers_json over the plan)."""
    p = plan(model).to_dict()
    try:
        return _json_call(_lib.mq_search_layers_json, (json.dumps(p).encode(),), "search")
    except ValueError as e:
        raise ValueError("search: the engine finds no layer to quantize in this model") from e


def _prune_space(model, prune, layers, space):
    """Adds the pruning genes ``prune=`` asks for to the space: ``into``/``units`` on the first
    layer of every coupled pair (torch.fx, or ``prune["couplings"]``), ``unit_fractions`` and the
    unstructured ``prunes``."""
    if prune is True:
        prune = {}
    if not isinstance(prune, dict):
        raise TypeError(f"search: prune={prune!r} must be True or a dict (units, unstructured, couplings)")
    unknown = set(prune) - {"units", "unstructured", "couplings"}
    if unknown:
        raise ValueError(f"search: prune keys {sorted(unknown)} are not among units, unstructured, couplings")
    from ._prune import _pair_ok, coupled_layers

    pairs = prune.get("couplings")
    pairs = coupled_layers(model) if pairs is None else [tuple(p) for p in pairs]
    by_name = {l["name"]: l for l in layers}
    for a, b in pairs:
        try:
            ma, mb = model.get_submodule(a), model.get_submodule(b)
        except AttributeError as e:
            raise ValueError(f"search: prune couplings: {e}") from None
        if not _pair_ok(ma, mb):
            raise ValueError(f"search: prune couplings: {a!r} ({type(ma).__name__}) into {b!r} ({type(mb).__name__}) are not coupled layers")
        if a in by_name:
            by_name[a]["into"], by_name[a]["units"] = b, int(ma.weight.shape[0])
    if prune.get("units") is not None:
        space["unit_fractions"] = [float(f) for f in prune["units"]]
    space["prunes"] = list(prune.get("unstructured", ("none", "2:4", "magnitude:0.5")))


def _forward(model, data):
    with torch.no_grad():
        if isinstance(data, dict):
            return model(**data)
        if isinstance(data, (tuple, list)):
            return model(*data)
        return model(data)


def _relative_latency(model, qmodel, data, repeats):
    """Median of t(qmodel)/t(model), each pair measured back to back, order alternating."""
    _forward(model, data), _forward(qmodel, data)  # warm up
    ratios = []
    for i in range(repeats):
        pair = (model, qmodel) if i % 2 == 0 else (qmodel, model)
        t = {}
        for m in pair:
            t0 = time.perf_counter()
            _forward(m, data)
            t[id(m)] = time.perf_counter() - t0
        ratios.append(t[id(qmodel)] / max(t[id(model)], 1e-9))
    return statistics.median(ratios)


def _run_trial(model, recipe, evaluate, data, objectives, repeats):
    """Runs one trial where it is sent (here or on a worker): quantize, measure. Returns
    ("ok", values) or ("error", traceback text) for an evaluate or quantize that raised."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MonoquantWarning)
            q = quantize(model, recipe=recipe, progress=False, log=False)  # the trial is recorded once told
        values = {}
        if "size" in objectives:
            values["size"] = float(q.monoquant_report["total_bytes_after"])
        if "latency" in objectives:
            values["latency"] = _relative_latency(model, q, data, repeats)
        if "metric" in objectives:
            values["metric"] = evaluate(q)
        return "ok", values
    except Exception:
        return "error", traceback.format_exc()


def _check_metric(trial, value):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"search: trial {trial}: evaluate returned {type(value).__name__} {value!r}, not a number")
    return float(value)


def _check_picklable(model, why="search: the executor needs the model pickled"):
    try:
        pickle.dumps(model)
    except Exception as e:
        culprit = None
        for name, mod in model.named_modules():
            for attr, v in vars(mod).items():
                if attr.startswith("_") and attr not in ("_modules", "_parameters", "_buffers"):
                    continue
                try:
                    pickle.dumps(v)
                except Exception:
                    culprit = f"{name or 'the model'}.{attr} ({type(v).__name__})"
                    break
            if culprit:
                break
        raise TypeError(f"{why}, and it cannot be: {culprit or type(model).__name__}: {e}") from e


def search(model, evaluate, data=None, objectives=None, trials=40, executor=None, seed=0,
           population=None, formats=None, group_sizes=None, schemes=None, limits=None, sensitivity=None,
           resume=None, state_path=None, latency_repeats=7, max_in_flight=None, prune=None):
    """Searches per-layer recipes for the Pareto front of ``objectives``.

    Args:
        model: the float ``nn.Module``; the layers searched are those the engine quantizes by
            default (``monoquant.plan(model)``).
        evaluate: ``evaluate(qmodel) -> float``, your metric, higher is better (accuracy...).
        data: an input for ``model`` (a tensor, a tuple of positional arguments or a dict of
            keyword arguments) for the latency objective.
        objectives: default ("metric", "size", "latency") (a resumed search: its own); names
            among "metric" (maximised), "size" (the quantized tensors' bytes,
            minimised) and "latency" (median over ``latency_repeats`` interleaved runs of the
            quantized model's time over the float model's, minimised).
        trials: how many candidates to evaluate (in total, counting a resumed search's).
        executor: None (trials run here, one after the other) or any
            ``concurrent.futures.Executor``; with Dask's ``client.get_executor()`` the model is
            scattered to the workers once. A worker that dies fails its trial; the search goes on.
        seed: the engine's seed. Without an executor the same seed gives the same trials.
        population, formats, group_sizes, schemes, limits: the engine's space options
            (docs/SEARCH.md); ``limits=[{"match": "classifier.2", "min_bits": 8}]`` keeps the
            last layer at INT8 or above.
        sensitivity: ``{layer name: sensitivity}`` (higher: more sensitive) to seed the first
            generation.
        prune: None (no pruning genes), True, or a dict: ``units`` (the fractions of hidden units
            a coupled pair may lose; default 0, 0.125, 0.25, 0.5), ``unstructured`` (choices
            among "none", "2:4", "magnitude:<sparsity>"; default all three; they never make the
            model smaller, only the metric can tell whether they cost), ``couplings`` (pairs
            ``(first, second)``; default: found with torch.fx, ``monoquant._prune.coupled_layers``).
        resume: the ``.state`` of an earlier SearchResults, or a path to it (``state_path``).
        state_path: write the engine state there after every trial (to resume after a stop).

    Returns:
        SearchResults: the front (each a SearchResult with ``.recipe`` and ``.objectives``),
        with ``.trials`` and ``.state``.

    Raises:
        ValueError: an unknown objective, a space with no valid recipe (named by the engine),
            latency without ``data``.
        NonFiniteError: evaluate returned NaN or an infinity (the message names the objective).
        TypeError: evaluate returned a non-number; an executor that cannot take the model.
    """
    s = Search.load(resume) if resume is not None else None
    if s is not None:
        if objectives is not None and tuple(objectives) != tuple(s.objectives):
            s.close()
            raise ValueError(f"search: objectives {tuple(objectives)} differ from the resumed search's {tuple(s.objectives)}")
        objectives = tuple(s.objectives)
    objectives = tuple(objectives) if objectives is not None else ("metric", "size", "latency")
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown or not objectives:
        raise ValueError(f"search: objectives {unknown or objectives} are not among {sorted(OBJECTIVES)}")
    if "latency" in objectives and data is None:
        raise ValueError("search: the latency objective needs data= (an input for the model)")
    if "metric" in objectives and not callable(evaluate):
        raise TypeError("search: evaluate must be a callable evaluate(qmodel) -> float")
    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"search: trials={trials!r} must be a positive integer")

    if s is None:
        layers = _space_layers(model)
        if sensitivity:
            names = {l["name"] for l in layers}
            for k, v in sensitivity.items():
                if k not in names:
                    raise ValueError(f"search: sensitivity names {k!r}, which is not a layer the engine quantizes ({sorted(names)})")
            for l in layers:
                if l["name"] in sensitivity:
                    l["sensitivity"] = float(sensitivity[l["name"]])
        space = {"layers": layers, "objectives": [{"name": o, "goal": OBJECTIVES[o]} for o in objectives]}
        for k, v in (("population", population), ("formats", formats), ("group_sizes", group_sizes), ("schemes", schemes), ("limits", limits)):
            if v is not None:
                space[k] = list(v) if k != "population" else v
        if prune:
            _prune_space(model, prune, layers, space)
        s = Search(space, seed)

    with s:
        done = len([t for t in s.trials() if t["status"] != "pending"])
        runner = _Runner(model, evaluate, data, objectives, latency_repeats, executor, max_in_flight)
        try:
            inflight = {}
            while done < trials or inflight:
                while done + len(inflight) < trials and len(inflight) < runner.width:
                    trial, recipe = s.ask()
                    inflight[runner.submit(recipe)] = trial
                fut = runner.next_done(list(inflight))
                trial = inflight.pop(fut)
                try:
                    status, payload = fut.result()
                except Exception as e:  # the worker died, or the executor could not run it
                    status, payload = "error", f"the trial did not run: {type(e).__name__}: {e}"
                if status == "ok":
                    if "metric" in payload:
                        payload["metric"] = _check_metric(trial, payload["metric"])
                    s.tell(trial, payload)
                    _runlog.record_search_trial(s._h, trial)  # run log (#15): the trial as a run, objectives as metrics
                else:
                    s.fail(trial, payload)
                    warnings.warn(f"search: trial {trial} failed:\n{payload}", MonoquantWarning, stacklevel=2)
                done += 1
                if state_path:
                    tmp = os.fspath(state_path) + ".tmp"
                    with open(tmp, "w") as f:
                        f.write(s.save())
                    os.replace(tmp, state_path)
        finally:
            runner.close()
        out = SearchResults(SearchResult(d) for d in s.front())
        out.trials = [SearchResult(d) for d in s.trials()]
        out.state = s.save()
    return out


class _Runner:
    """Runs trials here or on an executor; for Dask the model is scattered once."""

    def __init__(self, model, evaluate, data, objectives, repeats, executor, max_in_flight):
        self.executor = executor
        self.args = (evaluate, data, objectives, repeats)
        self.model = model
        self._scattered = None
        if executor is None:
            self.width = 1
            return
        _check_executor(executor, "search")
        if not isinstance(executor, ThreadPoolExecutor):  # threads share the model, others pickle it
            _check_picklable(model)
        client = getattr(executor, "_client", None)  # distributed's ClientExecutor
        if client is not None:
            self._scattered = client.scatter(model, broadcast=True)
            self.model = self._scattered
            workers = client.scheduler_info().get("workers", {})
            # Two trials per worker thread: the second waits on the worker while the first's
            # result travels back and the next candidate is asked, so no worker idles between trials.
            self.width = max_in_flight or 2 * max(1, sum(w.get("nthreads", 1) for w in workers.values()))
        else:
            self.width = max_in_flight or getattr(executor, "_max_workers", None) or os.cpu_count() or 1

    def submit(self, recipe):
        if self.executor is None:
            return _Done(_run_trial(self.model, recipe, *self.args))
        return self.executor.submit(_run_trial, self.model, recipe, *self.args)

    def next_done(self, futures):
        if self.executor is None:
            return futures[0]
        done, _ = wait(futures, return_when=FIRST_COMPLETED)
        # The lowest trial first among those done together keeps the order reproducible.
        return min(done, key=futures.index)

    def close(self):
        if self._scattered is not None:
            try:
                self._scattered.release()
            except Exception:
                pass


class _Done:
    """A finished result standing in for a future when trials run here."""

    def __init__(self, value):
        self._value = value

    def result(self):
        return self._value


# ------------------------------------------------------------------------------------------------
# benchmark


def _decide(objective, stat, goal, samples, seed, n_boot, paired=False):
    """The engine's A/B/n decision (core/abtest through mq_abtest_json) on ``{name: values}``."""
    req = {"objective": objective, "stat": stat, "goal": goal, "seed": int(seed) & (2**64 - 1), "boot": int(n_boot),
           "paired": bool(paired), "samples": [{"name": n, "values": [float(v) for v in vs]} for n, vs in samples.items()]}
    return _json_call(_lib.mq_abtest_json, (json.dumps(req).encode(),), "benchmark")


class BenchmarkResult:
    """What ``benchmark`` measured: ``.rows`` (one dict per candidate: name, latency_median,
    latency_p90, latency_ci (95% bootstrap CI of the median, seconds), size (bytes), metric,
    metric_ci, peak_memory and resident_memory (bytes, or None with ``memory=False``)),
    ``.winner`` (the name, or None), ``.verdict`` (a sentence), ``.decision`` (the engine's
    decision: estimates, differences with their CIs) and ``.memory_method`` (how peak memory was
    measured)."""

    def __init__(self, rows, winner, verdict, decision=None, memory_method=None):
        self.rows, self.winner, self.verdict = rows, winner, verdict
        self.decision, self.memory_method = decision, memory_method

    def __str__(self):
        lines = [f"{'candidate':<20} {'latency median':>15} {'p90':>12} {'95% CI':>25} {'size':>12} {'peak memory':>12} {'metric':>10}"]
        for r in self.rows:
            ci = f"[{r['latency_ci'][0] * 1e3:.3f}, {r['latency_ci'][1] * 1e3:.3f}] ms"
            m = "-" if r["metric"] is None else f"{r['metric']:.4g}"
            pm = "-" if r.get("peak_memory") is None else f"{r['peak_memory'] / 2**20:.1f} MiB"
            lines.append(f"{r['name']:<20} {r['latency_median'] * 1e3:>12.3f} ms {r['latency_p90'] * 1e3:>9.3f} ms {ci:>25} {r['size']:>12} {pm:>12} {m:>10}")
        lines.append(self.verdict)
        return "\n".join(lines)

    __repr__ = __str__


def benchmark(model, candidates, data, metric=None, repeats=30, seed=0, n_boot=2000, objective="latency", memory=True):
    """A/B/n comparison of recipes on ``data``, measured in interleaved (shuffled) order.

    Args:
        model: the float model.
        candidates: ``{name: recipe}`` (a recipe as ``quantize`` takes it, a SearchResult, a
            logged run — a ``Run`` from ``monoquant.run(id)`` or the string "run:ID": the
            resolved recipe it applied, every default filled in (``run.settings["recipe"]``),
            quantized from ``model`` — or None for the float model itself), or a list (named
            "A", "B", ...).
        data: the input (tensor, tuple of positional arguments or dict).
        metric: optional ``metric(qmodel)`` -> a number, or a 1-D tensor/list of per-sample
            scores (then its mean gets a bootstrap CI). Per-sample scores of the same length are
            taken as scores of the same samples, in the same order, for every candidate: their
            differences are resampled paired.
        repeats: timed runs of each candidate; each round runs every candidate once, in a
            shuffled order.
        objective: "latency" (lower median wins) or "metric" (higher mean wins, needs
            per-sample scores).
        memory: measure each candidate's peak memory (below); False skips it.

    Peak memory: each candidate is saved (``torch.save``) and measured in a fresh Python
    process, which loads a first copy and runs it once (the once-per-process costs: imports,
    kernel initialisation), then loads a second copy — ``resident_memory`` is the anonymous
    memory it holds (Linux ``RssAnon``) — and runs it three times on ``data``: ``peak_memory``
    is that plus the rise of the resident high-water mark (``VmHWM``, reset after loading) over
    the runs. That is the candidate's weights as they sit in memory when it runs, plus the
    activations and workspaces of its forward. A fresh process, because torch's allocator keeps
    freed pages of earlier candidates for reuse in the process that made them. The model's class
    must be importable there (a module on ``sys.path``, not ``__main__`` of a script).

    Returns:
        BenchmarkResult. The decision is the engine's (core/abtest, the same as ``monoquant
        bench``): a winner is named only when its 95% bootstrap CI of the difference with every
        other candidate excludes 0; else the verdict says "no significant difference".
    """
    if isinstance(candidates, (list, tuple)):
        candidates = {chr(ord("A") + i) if i < 26 else f"C{i}": c for i, c in enumerate(candidates)}
    if len(candidates) < 2:
        raise ValueError("benchmark: give at least two candidates")
    if objective not in ("latency", "metric"):
        raise ValueError(f"benchmark: objective {objective!r} is not latency or metric")
    if objective == "metric" and metric is None:
        raise ValueError("benchmark: objective='metric' needs metric=")
    if not isinstance(repeats, int) or repeats < 3:
        raise ValueError(f"benchmark: repeats={repeats!r} must be an integer >= 3")
    models, sizes = {}, {}
    for name, rec in candidates.items():
        if isinstance(rec, SearchResult):
            rec = rec.recipe
        rec = _run_recipe(name, rec)
        if rec is None:
            models[name] = model
            sizes[name] = sum(t.numel() * t.element_size() for t in model.state_dict().values())
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MonoquantWarning)
            q = quantize(model, recipe=rec, progress=False)
        models[name] = q
        sizes[name] = int(q.monoquant_report["total_bytes_after"])
    rng = random.Random(seed)
    for m in models.values():
        _forward(m, data)
    times = {n: [] for n in models}
    order = list(models)
    for _ in range(repeats):
        rng.shuffle(order)
        for n in order:
            t0 = time.perf_counter()
            _forward(models[n], data)
            times[n].append(time.perf_counter() - t0)
    scores = {}
    for n, m in models.items():
        if metric is None:
            scores[n] = None
            continue
        v = metric(m)
        if isinstance(v, torch.Tensor):
            v = v.detach().flatten().tolist()
        if isinstance(v, (list, tuple)):
            v = [float(x) for x in v]
        else:
            v = _check_metric(n, v)
        scores[n] = v
    peaks, method = {n: (None, None) for n in models}, None
    if memory:
        peaks, method = _peak_memories(models, data)

    latency = _decide("latency", "median", "min", times, seed, n_boot)
    per_sample = metric is not None and all(isinstance(scores[n], list) and len(scores[n]) > 1 for n in models)
    metric_d = None
    if per_sample:
        paired = len({len(scores[n]) for n in models}) == 1
        metric_d = _decide("metric", "mean", "max", scores, seed, n_boot, paired=paired)
    elif objective == "metric":
        raise ValueError("benchmark: objective='metric' needs per-sample scores from metric (a list or 1-D tensor)")
    rows = []
    for i, n in enumerate(models):
        est = latency["estimates"][i]
        s = scores[n]
        row = {"name": n, "latency_median": est["value"], "latency_p90": est["p90"],
               "latency_ci": (est["ci_low"], est["ci_high"]), "size": sizes[n],
               "metric": None if s is None else (statistics.fmean(s) if isinstance(s, list) else s), "metric_ci": None,
               "peak_memory": peaks[n][0], "resident_memory": peaks[n][1]}
        if metric_d is not None:
            row["metric_ci"] = (metric_d["estimates"][i]["ci_low"], metric_d["estimates"][i]["ci_high"])
        rows.append(row)
    d = latency if objective == "latency" else metric_d
    return BenchmarkResult(rows, d["winner"] or None, d["verdict"], decision=d, memory_method=method)


def _run_recipe(name, rec):
    """A logged run (a ``Run`` or "run:ID") as the resolved recipe it applied; anything else as
    it is."""
    if isinstance(rec, str) and rec.startswith("run:"):
        try:
            run_id = int(rec[4:])
        except ValueError:
            raise ValueError(f"benchmark: candidate {name!r}: {rec!r} is not run:ID") from None
        rec = _runlog.run(run_id)
    if isinstance(rec, _runlog.Run):
        recipe = (rec.settings or {}).get("recipe")
        if not recipe:
            raise ValueError(f"benchmark: candidate {name!r}: run {rec.id} ({rec.entry_point}) stores no recipe")
        return recipe
    return rec


#: Forward runs of each candidate while its peak memory is measured.
_MEMORY_RUNS = 3


def _peak_memories(models, data):
    """{name: (peak, resident)} in bytes, each candidate measured in a fresh process (see
    ``monoquant._memory``), and the method."""
    import subprocess
    import sys
    import tempfile

    out, method = {}, None
    env = dict(os.environ)
    path = [os.getcwd() if p == "" else p for p in sys.path]
    env["PYTHONPATH"] = os.pathsep.join(path)
    # glibc: every block of 128 KiB or more its own mapping, unmapped when freed (no dynamic
    # threshold that would serve a tensor from pages an earlier one freed): each tensor the
    # candidate allocates is counted, whatever ran before it.
    env["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
    with tempfile.TemporaryDirectory(prefix="monoquant-bench-") as tmp:
        data_path = os.path.join(tmp, "data.pt")
        torch.save(data, data_path)
        for n, m in models.items():
            mp = os.path.join(tmp, "candidate.pt")
            try:
                torch.save(m, mp)
            except Exception:
                _check_picklable(m, f"benchmark: peak memory is measured in a fresh process, which needs candidate {n!r} pickled (memory=False skips it)")
                raise
            r = subprocess.run([sys.executable, "-m", "monoquant._memory", mp, data_path, str(_MEMORY_RUNS), str(torch.get_num_threads())],
                               env=env, capture_output=True, text=True)
            if r.returncode != 0:
                last = (r.stderr.strip().splitlines() or ["no message"])[-1]
                raise RuntimeError(f"benchmark: measuring the peak memory of {n!r} in a fresh process failed: {last} "
                                   "(the model's class must be importable there, from a module on sys.path, not __main__; "
                                   "memory=False skips the measurement)")
            got = json.loads(r.stdout.strip().splitlines()[-1])
            out[n] = (int(got["peak"]), None if got["resident"] is None else int(got["resident"]))
            method = got["method"]
    return out, method
