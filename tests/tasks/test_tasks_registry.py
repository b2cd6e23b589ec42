"""Every registered task gets the same tests (the timm pattern): its default search space fits it and
builds, and a tiny search end to end gives a best.pt that loads with ``weights_only``, rebuilds,
scores what it reported, clears a floor, and exports to ONNX with matching outputs.

A new task needs one entry in ``CASES`` (a tiny data set it can build offline); the test fails
loudly until it has one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from automl.tasks import DataConfig, get_task, list_tasks
from tests.tasks.test_anomaly import make_anomaly_csv
from tests.tasks.test_tabular import make_tabular_csv
from tests.tasks.test_text import make_text_tsv


@dataclass(frozen=True)
class Case:
    """A tiny data source for a task, a quick search space (YAML text), and the floor its test metric
    must clear (a ceiling for tasks that minimize)."""

    data: Callable[[Path], str]
    space: str
    floor: float
    epochs: int = 4
    trials: int = 2
    sampler: str = "random"
    extra: dict = field(default_factory=dict)


CASES: dict[str, Case] = {
    "image": Case(
        data=lambda tmp: "digits",
        space="params:\n  depth: 2\n  width: 32\n  lr: 0.01\n  batch_size: 64\n  optimizer: adamw\n",
        floor=0.7, epochs=3, trials=1,
    ),
    "anomaly": Case(  # test AUROC of an autoencoder on rows off a plane in 6-D
        data=lambda tmp: str(make_anomaly_csv(tmp / "anomaly.csv")),
        space="params:\n  model: ae\n  depth: 1\n  width: 32\n  bottleneck: 2\n  lr: 0.01\n  batch_size: 32\n"
              "  optimizer: adamw\n",
        floor=0.9, epochs=8, trials=1, extra={"target": "label"},
    ),
    "tabular": Case(
        data=lambda tmp: str(make_tabular_csv(tmp / "table.csv")),
        space="params:\n  depth: 2\n  width: 64\n  lr: 0.01\n  batch_size: 32\n  optimizer: adamw\n"
              "  batch_norm: {type: categorical, choices: [true, false]}\n",
        floor=0.75, epochs=6, sampler="grid",
    ),
    "text": Case(
        data=lambda tmp: str(make_text_tsv(tmp / "texts.tsv")),
        space="params:\n  model: {type: categorical, choices: [textcnn, gru]}\n  embed_dim: 16\n  filters: 16\n"
              "  kernel_sizes: '2-3'\n  hidden: 16\n  dropout: 0.2\n  lr: 0.01\n  batch_size: 32\n  optimizer: adamw\n",
        floor=0.85, epochs=6, sampler="grid",  # grid over 'model': TextCNN and the GRU both train
    ),
}


def _case(name: str) -> Case:
    if name not in CASES:
        pytest.fail(f"task {name!r} has no tiny data case in tests/tasks/test_tasks_registry.py::CASES; add one")
    return CASES[name]


def output_shape(meta: dict) -> tuple[int, ...]:
    """A sample's model output: one value per class, or the task's own shape (anomaly: a score, ())."""
    return tuple(meta.get("output_shape", [meta["num_classes"]]))


def _meets(value: float, floor: float, direction: str) -> bool:
    return value >= floor if direction == "maximize" else value <= floor


@pytest.mark.parametrize("name", list_tasks())
def test_default_space_fits_and_builds(name: str, tmp_path: Path) -> None:
    """The task's shipped space only names parameters it uses, and random samples of it build models
    whose output has one column per class (one for regression) on the task's example input."""
    import optuna

    from automl.search.space import resolve_space, sample
    from automl.study import check_space_fits_task

    task = get_task(name)
    space = resolve_space(None, name)
    check_space_fits_task(space, task)
    bundle = task.load_data(DataConfig(source=_case(name).data(tmp_path), seed=0))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        params = sample(study.ask(), space)
        model = task.build_model(params, bundle.meta).eval()
        with torch.no_grad():
            out = model(task.example_input(bundle.meta, 3))
        assert out.shape == (3, *output_shape(bundle.meta)), params


@pytest.mark.parametrize("name", list_tasks())
def test_task_end_to_end(name: str, tmp_path: Path) -> None:
    import automl
    from automl.runtime.export import export_onnx, max_abs_diff
    from automl.runtime.onnx_meta import metadata_from_checkpoint
    from automl.study import SearchSettings, run_search
    from automl.train import evaluate

    case = _case(name)
    space = tmp_path / "space.yaml"
    space.write_text(case.space)
    result = run_search(SearchSettings(
        task=name, data=case.data(tmp_path), space=str(space), trials=case.trials, epochs=case.epochs,
        pruner="none", sampler=case.sampler, out=str(tmp_path / "runs"), device="cpu", seed=0, **case.extra,
    ))
    ckpt = torch.load(result.best_pt, map_location="cpu", weights_only=True)  # plain types and tensors only
    assert ckpt["task"] == name and ckpt["preprocess"]["kind"] == ckpt["preprocess"].get("kind")
    model = automl.load_model(result.best_pt)
    task = get_task(name)
    bundle = task.load_data(DataConfig(**ckpt["data"]))
    _, metric = evaluate(model, bundle.x_test, bundle.y_test, task.loss_fn(0.0), task.metric_fn())
    assert metric == pytest.approx(result.test_metric, abs=1e-6)  # the reported figure is real
    assert _meets(metric, case.floor, task.direction), f"{name}: test {task.metric} {metric:.4f} vs floor {case.floor}"
    path = export_onnx(model, task.example_input(bundle.meta, 2), tmp_path / "model.onnx",
                       metadata_from_checkpoint(ckpt))
    assert max_abs_diff(model, path, bundle.x_test[:64]) < 1e-4
