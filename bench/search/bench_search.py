"""The search's measured goals (issue #16), on the digits CNN of the Python tests:

  goal     best recipe within 0.3 points of accuracy: its bits per weight, found within 40 trials
  hv       hypervolume of the (accuracy, size) front at 40 trials, median over 5 seeds:
           monoquant.search vs random search vs optuna's NSGAIISampler over the same genes
  dask     a 40-trial search whose trials take >= 1 s: 2 Dask worker processes vs 1 process

usage: bench_search.py [goal] [hv] [dask]   (all three by default)
optuna, dask and distributed are test-only packages of requirements-test.txt.
"""

import math
import os
import statistics
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TESTS = os.path.join(REPO, "bindings", "python", "tests")
sys.path[:0] = [os.path.join(REPO, "bindings", "python"), TESTS]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import monoquant  # noqa: E402
from test_accuracy import DigitsCNN, accuracy  # noqa: E402

warnings.simplefilter("ignore", monoquant.MonoquantWarning)
torch.set_num_threads(1)
TRIALS = 40
SEEDS = range(5)


def train():
    from sklearn import datasets

    d = datasets.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[perm], y[perm]
    torch.manual_seed(0)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(8):
        for i in range(0, 1400, 64):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    return model.eval(), x[1400:], y[1400:]


def weight_bits(model, recipe):
    """Stored bits per weight of the float model's quantizable layers: the bytes the quantized
    model stores for those weights (scales and zero points included, float layers at 32 bits,
    removed hidden units at nothing) over the float model's weight count (as the tests' stored_bits)."""
    layers = {t["layer"]: t for t in monoquant.plan(model).to_dict()["tensors"] if t["action"] == "quantize"}
    params = sum(math.prod(t["shape"]) for t in layers.values())
    q = monoquant.quantize(model, recipe=recipe, progress=False)
    stored = {t["name"]: t["bytes_after"] for t in q.monoquant_report["tensors"]}
    weights = dict(q.named_parameters())
    total = sum(stored.get(t["name"], weights[t["name"]].numel() * 4 if t["name"] in weights else 0) for t in layers.values())
    return 8.0 * total / params


def describe(recipe):
    out = []
    for r in recipe["rules"][:-1]:
        f = "skip" if r.get("skip") else r.get("dtype")
        if r.get("group_size"):
            f += f" g{r['group_size']} {r['scheme'][:4]}"
        if r.get("prune_units"):
            f += f" -{r['prune_units']:.3g} units"
        if r.get("prune"):
            f += f" prune {r['prune']}"
        out.append(f"{r['match']}: {f}")
    return "; ".join(out)


def goal(model, xte, yte):
    base = accuracy(model, xte, yte)
    print(f"== goal: <= 5.0 bits/weight within 0.3 points in {TRIALS} trials (float accuracy {base:.2f}%)")
    for prune in (None, True):
        for seed in SEEDS:
            res = monoquant.search(model, lambda q: accuracy(q, xte, yte), objectives=("metric", "size"), trials=TRIALS, seed=seed, prune=prune)
            ok = [(weight_bits(model, r.recipe), base - r.objectives["metric"], r.trial) for r in res if base - r.objectives["metric"] <= 0.3]
            b = min(ok)
            print(f"prune={prune} seed {seed}: {b[0]:.2f} bits/weight, loss {b[1]:.2f} points, trial {b[2]}; front of {len(res)}; "
                  f"{describe(res.trials[b[2]].recipe)}")


# ---- hypervolume: the same genes for every sampler ----

def genes(model):
    """Per layer: the formats and group sizes the engine's space allows (as core/search does)."""
    out = []
    for t in monoquant.plan(model).to_dict()["tensors"]:
        if t["action"] != "quantize":
            continue
        row = math.prod(t["shape"][1:])
        gs = [g for g in (32, 64, 128) if row % g == 0]
        out.append((t["layer"], ["skip", "fp16", "int8"] + (["int4"] if gs else []), gs))
    return out


def recipe_of(choice, g):
    rules = []
    for name, _, _ in g:
        f, gsz, sc = choice[name + ".format"], choice.get(name + ".group_size"), choice.get(name + ".scheme", "symmetric")
        if f == "skip":
            rules.append({"match": name, "skip": True})
        elif f == "fp16":
            rules.append({"match": name, "bits": 16, "dtype": "fp16"})
        elif f == "int8":
            rules.append({"match": name, "bits": 8, "dtype": "int8", "scheme": sc, "method": "rtn"})
        else:
            rules.append({"match": name, "bits": 4, "dtype": "int4", "scheme": sc, "method": "rtn", "group_size": gsz, "group_fallback": False})
    if all(r.get("skip") for r in rules):
        return None
    return {"rules": rules + [{"match": "*", "skip": True}]}


def measure(model, recipe, xte, yte):
    q = monoquant.quantize(model, recipe=recipe, progress=False)
    return accuracy(q, xte, yte), float(q.monoquant_report["total_bytes_after"])


def hv(points, ref):
    """2-D hypervolume, both minimised (the Go engine's Hypervolume2D, here for the baselines)."""
    pts = sorted(p for p in points if p[0] < ref[0] and p[1] < ref[1])
    total, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            total += (ref[0] - x) * (best_y - y)
            best_y = y
    return total


def optuna_run(model, xte, yte, g, sampler):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    pts = []
    for _ in range(TRIALS):
        t = study.ask()
        choice = {}
        for name, formats, gs in g:
            choice[name + ".format"] = t.suggest_categorical(name + ".format", formats)
            if gs:
                choice[name + ".group_size"] = t.suggest_categorical(name + ".group_size", gs)
            choice[name + ".scheme"] = t.suggest_categorical(name + ".scheme", ["symmetric", "asymmetric"])
        r = recipe_of(choice, g)
        if r is None:
            study.tell(t, state=optuna.trial.TrialState.FAIL)
            continue
        acc, size = measure(model, r, xte, yte)
        study.tell(t, [acc, size])
        pts.append((acc, size))
    return pts


def hypervolume(model, xte, yte):
    import optuna

    base = accuracy(model, xte, yte)
    fsize = float(sum(t.numel() * t.element_size() for t in model.state_dict().values()))
    ref = (-(base - 10.0), fsize)  # (-accuracy, bytes): 10 points below float, the float size
    g = genes(model)
    print(f"== hypervolume of (accuracy %, size / float size) at {TRIALS} trials; reference ({base - 10:.2f}%, 1.0)")
    res = {"monoquant.search": [], "random (optuna RandomSampler)": [], "optuna NSGAIISampler": []}
    for seed in SEEDS:
        s = monoquant.search(model, lambda q: accuracy(q, xte, yte), objectives=("metric", "size"), trials=TRIALS, seed=seed)
        pts = [(t.objectives["metric"], t.objectives["size"]) for t in s.trials if t.status == "done"]
        rnd = optuna_run(model, xte, yte, g, optuna.samplers.RandomSampler(seed=seed))
        nsga = optuna_run(model, xte, yte, g, optuna.samplers.NSGAIISampler(seed=seed, population_size=16))
        for k, p in zip(res, (pts, rnd, nsga)):
            res[k].append(hv([(-a, s_ / fsize) for a, s_ in p], (ref[0], 1.0)))
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in res.items()))
    for k, v in res.items():
        print(f"median {k}: {statistics.median(v):.4f}")


# ---- Dask ----

def slow_accuracy(q, x, y, seconds=1.0):
    """Accuracy, evaluated again and again for at least `seconds` (a trial of >= 1 s of CPU)."""
    t0 = time.perf_counter()
    acc = accuracy(q, x, y)
    while time.perf_counter() - t0 < seconds:
        accuracy(q, x, y)
    return acc


def dask_speedup(model, xte, yte):
    import functools

    import distributed

    os.environ["PYTHONPATH"] = os.pathsep.join([os.path.join(REPO, "bindings", "python"), TESTS, HERE])
    import bench_search  # noqa: F401 (the workers import evaluate from this module by name)

    ev = functools.partial(bench_search.slow_accuracy, x=xte, y=yte)
    print(f"== Dask: a {TRIALS}-trial search, trials of >= 1 s (evaluate repeats inference for 1 s)")
    t0 = time.perf_counter()
    monoquant.search(model, ev, objectives=("metric", "size"), trials=TRIALS, seed=0)
    t1 = time.perf_counter() - t0
    print(f"1 process: {t1:.1f} s")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            client.run(lambda: torch.set_num_threads(1))
            t0 = time.perf_counter()
            monoquant.search(model, ev, objectives=("metric", "size"), trials=TRIALS, seed=0, executor=client.get_executor(),
                             max_in_flight=2)
            t3 = time.perf_counter() - t0
            t0 = time.perf_counter()
            monoquant.search(model, ev, objectives=("metric", "size"), trials=TRIALS, seed=0, executor=client.get_executor())
            t2 = time.perf_counter() - t0
    print(f"2 Dask workers, one trial in flight per worker (max_in_flight=2): {t3:.1f} s; speed-up {t1 / t3:.2f}x")
    print(f"2 Dask workers, default (two trials per worker: one queued): {t2:.1f} s; speed-up {t1 / t2:.2f}x")


if __name__ == "__main__":
    what = sys.argv[1:] or ["goal", "hv", "dask"]
    model, xte, yte = train()
    if "goal" in what:
        goal(model, xte, yte)
    if "hv" in what:
        hypervolume(model, xte, yte)
    if "dask" in what:
        dask_speedup(model, xte, yte)
