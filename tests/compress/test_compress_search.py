"""``automl compress BEST_PT --search`` (issue 16): the study over compression recipes, its front's
files and table, resuming, the recommendation rule, and bad input (``--trials 0``, a budget nothing
meets, families that cannot be pruned or compressed at all)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

FAST = ["--finetune-epochs", "1", "--warmup", "1", "--repeats", "5", "--threads", "1", "--calib-samples", "64"]


def _invoke(*args: str) -> Any:
    import cli

    return CliRunner().invoke(cli.app, list(args))


@pytest.fixture(scope="module")
def first(digits_best_pt: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """3 trials of a fresh study on the digits best.pt."""
    root = tmp_path_factory.mktemp("csearch")
    best = root / "best.pt"
    shutil.copy(digits_best_pt, best)
    out = root / "cs"
    res = _invoke("compress", str(best), "--search", "--trials", "3", "--out-dir", str(out), "--json", *FAST)
    return SimpleNamespace(best=best, out=out, res=res)


@pytest.fixture(scope="module")
def second(first: SimpleNamespace) -> Any:
    """The same command with 1 more trial: the study is resumed."""
    return _invoke("compress", str(first.best), "--search", "--trials", "1", "--out-dir", str(first.out), "--json",
                   *FAST)


@pytest.fixture(scope="module")
def third(second: Any, first: SimpleNamespace) -> Any:
    """1 more trial under a budget of 1 ns, which nothing meets."""
    return _invoke("compress", str(first.best), "--search", "--trials", "1", "--out-dir", str(first.out), "--json",
                   "--max-latency-ms", "0.000001", *FAST)


def test_front_rows_are_measured_files(first: SimpleNamespace) -> None:
    import torch

    from automl.artifacts import load_checkpoint
    from automl.runtime.ort import make_session as session
    from automl.tasks import DataConfig, get_task
    from compress import bench

    runs = first
    assert runs.res.exit_code == 0, (runs.res.stderr, runs.res.exception)
    rep = json.loads(runs.res.stdout)
    assert rep["n_trials"] == 3 and rep["front"], rep
    assert {"prune_ratio", "quantize", "calibration"} <= set(rep["space"])
    ckpt = load_checkpoint(runs.best)
    task = get_task(ckpt["task"])
    bundle = task.load_data(DataConfig(**ckpt["data"]))
    for row in rep["front"]:
        path = Path(row["path"])
        assert path.is_file() and path.parent == runs.out.resolve() / "front"
        assert row["size_bytes"] == bench.file_size(path)
        assert row["latency_b1_ms"] > 0 and row["latency_b64_ms"] > 0
        sess = session(path, ["CPUExecutionProvider"])
        # the table's figures are the file's: validation for the search, test for the table
        assert bench.ort_metric(sess, bundle.x_val, bundle.y_val, task.metric_fn()) == pytest.approx(
            row["val_accuracy"], abs=1e-6)
        assert bench.ort_metric(sess, bundle.x_test, bundle.y_test, task.metric_fn()) == pytest.approx(
            row["test_accuracy"], abs=1e-6)
        assert 0.0 <= row["test_accuracy"] <= 1.0
    assert max(r["test_accuracy"] for r in rep["front"]) > 0.5  # 10 classes: far above chance
    # the front is non-dominated in (val metric up, batch-1 latency down)
    for a in rep["front"]:
        assert not any(b["val_accuracy"] >= a["val_accuracy"] and b["latency_b1_ms"] <= a["latency_b1_ms"]
                       and (b["val_accuracy"], b["latency_b1_ms"]) != (a["val_accuracy"], a["latency_b1_ms"])
                       for b in rep["front"])
    # without a budget: the fastest member within --max-drop (1 point) of the original's validation accuracy
    ok = [r for r in rep["front"] if r["val_drop"] <= 1.0]
    picked = [r for r in rep["front"] if r["recommended"]]
    assert len(picked) == 1 and rep["recommended"] == picked[0]["path"]
    if ok:
        assert picked[0]["latency_b1_ms"] == min(r["latency_b1_ms"] for r in ok)
    assert json.loads((runs.out / "compress_search.json").read_text())["front"] == rep["front"]
    assert torch.isfinite(torch.tensor(rep["baseline"]["val_accuracy"]))


def test_resume_adds_trials_and_trials_command_reads_it(first: SimpleNamespace, second: Any) -> None:
    import optuna

    assert second.exit_code == 0, (second.stderr, second.exception)
    rep = json.loads(second.stdout)
    assert rep["n_trials"] == 4 and rep["study"] == json.loads(first.res.stdout)["study"]
    study = optuna.load_study(study_name=rep["study"], storage=f"sqlite:///{first.out.resolve() / 'automl.db'}")
    assert len(study.trials) == 4
    # the resumed sampler does not replay the first trials' recipes
    assert study.trials[3].params != study.trials[0].params
    listed = _invoke("trials", "--out-dir", str(first.out), "--pareto", "--json")
    assert listed.exit_code == 0, listed.stderr
    summary = json.loads(listed.stdout)
    assert summary["objectives"] == ["accuracy", "latency"] and summary["front_size"] >= 1
    assert all("latency_ms" in t["costs"] for t in summary["trials"])


def test_budget_nothing_meets_names_the_fastest_and_writes_the_table(first: SimpleNamespace, third: Any) -> None:
    res = third
    assert res.exit_code == 1
    line = res.stderr.strip().splitlines()[-1]
    assert "--max-latency-ms 1e-06" in line and "the fastest found is trial" in line and "ms (batch 1)" in line
    rep = json.loads(res.stdout)  # the table is still printed (and written)
    assert rep["n_trials"] == 5 and rep["recommended"] is None
    fastest = min(rep["front"], key=lambda r: r["latency_b1_ms"])
    assert f"trial {fastest['trial']} " in line
    assert json.loads((first.out / "compress_search.json").read_text())["budget_unmet"] == rep["budget_unmet"]


def test_trials_zero_is_one_line(digits_best_pt: Path, tmp_path: Path) -> None:
    res = _invoke("compress", str(digits_best_pt), "--search", "--trials", "0", "--out-dir", str(tmp_path / "x"))
    assert res.exit_code != 0
    assert res.stderr.strip().count("\n") == 0 and "--trials must be an integer in [1," in res.stderr
    assert not (tmp_path / "x").exists()


def _search_best(root: Path, space: str, data: str) -> str:
    (root / "space.yaml").write_text(space)
    res = _invoke("search", "--task", "tabular", "--data", data, "--space", str(root / "space.yaml"), "--trials",
                  "1", "--epochs", "1", "--out-dir", str(root), "--json")
    assert res.exit_code == 0, (res.stderr, res.exception)
    return json.loads(res.stdout)["best_pt"]


def test_hgb_has_nothing_to_search(tmp_path: Path) -> None:
    best = _search_best(tmp_path, "params:\n  model: hgb\n  hgb_max_iter: 20\n", "breast-cancer")
    res = _invoke("compress", best, "--search", "--trials", "2", *FAST)
    assert res.exit_code == 1
    assert res.stderr.strip().count("\n") == 0 and "nothing to search" in res.stderr and "tree ensemble" in res.stderr


def test_tabm_gets_a_quantization_only_search(tmp_path: Path) -> None:
    space = ("params:\n  model: tabm\n  num_embedding: none\n  depth: 1\n  width: 64\n  ensemble_size: 8\n"
             "  dropout: 0.0\n  activation: relu\n  lr: 0.003\n  batch_size: 64\n  weight_decay: 0.0001\n")
    best = _search_best(tmp_path, space, "wine")
    res = _invoke("compress", best, "--search", "--trials", "2", "--json", "--out-dir", str(tmp_path / "cs"), *FAST)
    assert res.exit_code == 0, (res.stderr, res.exception)
    rep = json.loads(res.stdout)
    assert "prune_ratio" not in rep["space"] and "quantize" in rep["space"]
    assert any(n.startswith("quantization-only search:") for n in rep["notes"])
    assert all((r["recipe"] or {}).get("prune_ratio") == 0.0 for r in rep["front"])
