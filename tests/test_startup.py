"""Start-up costs kept off a search's path: digits read without scikit-learn, optimizers stepped
without importing torch._dynamo (with the same update), and a whole digits search in a fresh
interpreter that imports neither."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import automl.optim_step as optim_step
import automl.train as train
from automl.data import images
from automl.optim_step import optimizer_step
from automl.train import OPTIMIZERS, SCHEDULES, TrainConfig, make_optimizer, make_scheduler

REPO = Path(__file__).resolve().parents[1]


def test_digits_read_from_the_shipped_file_equal_scikit_learns() -> None:
    from sklearn.datasets import load_digits as sk_load

    assert images._read_digits_csv() is not None  # the fast path is the one taken here
    ours, ref = images.load_digits(), sk_load()
    assert ours.x.shape == (1797, 1, 8, 8) and ours.x.dtype == np.float32
    np.testing.assert_array_equal(ours.x, (ref.images.astype(np.float32) / 16.0)[:, None])
    np.testing.assert_array_equal(ours.y, ref.target)
    assert ours.classes == [str(c) for c in ref.target_names]


def test_digits_fall_back_to_scikit_learn_when_the_file_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = images.load_digits()
    monkeypatch.setattr(images, "_read_digits_csv", lambda: None)
    slow = images.load_digits()
    np.testing.assert_array_equal(fast.x, slow.x)
    np.testing.assert_array_equal(fast.y, slow.y)
    assert fast.classes == slow.classes


def _train(cfg: TrainConfig, eager: bool, steps: int = 6) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, steps)
    gen = torch.Generator().manual_seed(1)
    params = [p for g in opt.param_groups for p in g["params"]]
    for _ in range(steps):
        x, y = torch.randn(16, 5, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        if eager:
            optim_step.zero_grad(params)
        else:
            opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        if eager:
            optimizer_step(opt)
        else:
            opt.step()
        if sched is not None and sched.last_epoch < train.sched_total(sched):
            sched.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_optimizer_step_without_dynamo_is_torchs_step(
    optimizer: str, schedule: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = TrainConfig(optimizer=optimizer, schedule=schedule, lr=0.05, weight_decay=0.01, momentum=0.9)
    reference = _train(cfg, eager=False)
    monkeypatch.setattr(optim_step, "_dynamo_loaded", lambda: False)  # the path a fresh process takes
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
        eager = _train(cfg, eager=True)
    assert all(torch.equal(a, b) for a, b in zip(reference, eager, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(reference, _untrained(), strict=True))


def _untrained() -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3))
    return [p.detach().clone() for p in model.parameters()]


CHILD = r"""
import sys
from typer.testing import CliRunner
import cli
heavy = ("torch", "sklearn", "torch._dynamo", "onnx", "onnxruntime", "pandas", "optuna")
print("AFTER_IMPORT", [m for m in heavy if m in sys.modules])
r = CliRunner().invoke(cli.app, ["search", "--task", "image", "--trials", "1", "--epochs", "1",
                                 "--out", sys.argv[1], "--json"])
assert r.exit_code == 0, r.output
print("AFTER_SEARCH", [m for m in ("sklearn", "torch._dynamo", "onnx", "onnxruntime", "pandas") if m in sys.modules])
"""


def test_a_digits_search_imports_neither_scikit_learn_nor_dynamo(tmp_path: Path) -> None:
    """One fresh interpreter (the test process has imported both long ago): ``import cli`` imports
    no heavy library, and a whole digits search (trial, best.pt, test score) neither scikit-learn
    (4-6 s on a loaded 2-core machine) nor torch._dynamo (8-9 s)."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "runs")], cwd=REPO, capture_output=True,
                         text=True, timeout=600, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith("AFTER_"))
    assert lines["AFTER_IMPORT"] == "[]"
    assert lines["AFTER_SEARCH"] == "[]"


def test_a_sqlite_study_commits_to_a_write_ahead_log(tmp_path: Path) -> None:
    """Each connection of a SQLite study storage: journal_mode WAL, synchronous NORMAL (1): a commit
    then needs no fsync (about 30 commits a trial)."""
    import optuna

    from automl.study import open_storage

    storage = open_storage(f"sqlite:///{tmp_path / 'automl.db'}")
    optuna.create_study(storage=storage, study_name="s").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    with storage.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    again = open_storage(f"sqlite:///{tmp_path / 'automl.db'}")  # a second process's view
    assert len(optuna.load_study(study_name="s", storage=again).trials) == 2
