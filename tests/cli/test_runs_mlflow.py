"""`monoquant runs export --format mlflow` read back by MLflow itself (run by `make test-cli-py`).

Two runs of the bundled example go into a fresh run log; the export must open with MLflow's own
client on the file store, with the params, metrics and tags the run log holds.
"""
import json
import os
import subprocess

import pytest
from mlflow.tracking import MlflowClient

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CLI = os.environ.get("MONOQUANT_CLI", os.path.join(ROOT, "build", "monoquant"))


def cli(env, *args):
    p = subprocess.run([CLI, *args], capture_output=True, text=True, env=env)
    assert p.returncode == 0, f"monoquant {' '.join(args)}: exit {p.returncode}: {p.stderr}"
    return p.stdout


@pytest.fixture
def logged(tmp_path):
    env = dict(os.environ, MONOQUANT_HOME=str(tmp_path / "home"), MONOQUANT_LOG="1")
    model = os.path.join(ROOT, "examples", "digits_cnn.pt")
    cli(env, "quantize", "--model", model, "--out", str(tmp_path / "d8.safetensors"), "--quiet")
    cli(env, "quantize", "--model", model, "--bits", "4", "--out", str(tmp_path / "d4.safetensors"), "--quiet")
    cli(env, "runs", "metric", "2", "accuracy", "0.91")
    runs = json.loads(cli(env, "runs", "list", "--json"))
    return env, runs


def test_mlflow_reads_the_export(tmp_path, logged, monkeypatch):
    # MLflow 3.x keeps the file store in maintenance mode behind this switch (older versions
    # ignore it); `mlflow migrate-filestore` turns an export into a database store.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    env, runs = logged
    out = tmp_path / "mlruns"
    cli(env, "runs", "export", "--format", "mlflow", str(out))
    client = MlflowClient(tracking_uri=out.as_uri())
    exp = client.get_experiment_by_name("monoquant")
    assert exp is not None and exp.experiment_id == "0"
    got = {r.info.run_id: r for r in client.search_runs([exp.experiment_id])}
    assert set(got) == {r["uuid"] for r in runs}
    for r in runs:
        m = got[r["uuid"]]
        assert m.info.status == "FINISHED"
        assert m.info.run_name == f"run-{r['id']}"
        assert m.data.params["recipe.rule_1.dtype"] == ("int8" if r["id"] == 1 else "int4")
        assert m.data.metrics["sqnr_db"] == pytest.approx(r["results"]["sqnr_db"])
        assert m.data.metrics["total_bytes_after"] == r["results"]["total_bytes_after"]
        for layer in r["layers"]:
            assert m.data.metrics["layer_sqnr_db/" + layer["name"]] == pytest.approx(layer["sqnr_db"])
        assert m.data.tags["monoquant.output_xxh3"] == r["output"]["xxh3"] and len(r["output"]["xxh3"]) == 32
        assert "monoquant.output_sha256" not in m.data.tags  # not computed: runs show --sha256
        assert m.data.tags["monoquant.entry_point"] == "cli"
    assert got[runs[1]["uuid"]].data.metrics["user/accuracy"] == pytest.approx(0.91)
    assert "user/accuracy" not in got[runs[0]["uuid"]].data.metrics
    # A metric's history is readable too (the file store's line format).
    hist = client.get_metric_history(runs[0]["uuid"], "sqnr_db")
    assert len(hist) == 1 and hist[0].step == 0


def test_csv_and_jsonl_exports_read_back(tmp_path, logged):
    import csv

    env, runs = logged
    cli(env, "runs", "export", "--format", "csv", str(tmp_path / "x"))
    cli(env, "runs", "export", "--format", "jsonl", str(tmp_path / "x"))
    with open(tmp_path / "x" / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["id"] for row in rows] == ["1", "2"]
    assert rows[1]["metrics.accuracy"] == "0.91" and rows[0]["metrics.accuracy"] == ""
    assert float(rows[0]["results.sqnr_db"]) == pytest.approx(runs[0]["results"]["sqnr_db"])
    with open(tmp_path / "x" / "runs.jsonl") as f:
        lines = [json.loads(line) for line in f]
    assert [r["output"]["xxh3"] for r in lines] == [r["output"]["xxh3"] for r in runs]
