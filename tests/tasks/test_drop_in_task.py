"""A task that exists only in this file plugs in: its Task class (own data, own metric, own output
formatting and predict notes), a tiny search space and a model family of its own are registered here,
and ``automl search`` -> ``automl compress`` -> ``automl predict`` run on it through the CLI with no
other file changed. The fixture unregisters all three afterwards, so other tests never see them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from typer.testing import CliRunner

import cli
from automl.exceptions import DataError
from automl.models import ModelFamily
from automl.tasks import DataBundle, DataConfig, Metric, Task

if TYPE_CHECKING:
    import torch
    from torch import nn

FEATURES, CLASSES, ROWS = 4, ("low", "mid", "high"), 300


def _error_rate(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred != y))


#: the toy task's own metric: the share of wrong classes, minimised (the built-in tasks maximise accuracy)
ERROR = Metric("error", "minimize", labels=True, score_fn=_error_rate)


class ToyTask(Task):
    """Three classes of 4-number vectors: which third of [-3, 3] the sum of the first two falls in."""

    metric = "error"
    direction = "minimize"
    description = "toy vectors (tests only)"
    default_model = "toymlp"
    default_data = "toy"
    default_epochs = 3

    def check_source(self, source: str, target: str | None) -> None:
        if source != "toy":
            raise DataError(f"--data {source}: the toy task knows only 'toy'")

    def load_data(self, cfg: DataConfig) -> DataBundle:
        import torch

        rng = np.random.default_rng(cfg.seed)
        x = rng.uniform(-1.5, 1.5, size=(ROWS, FEATURES)).astype(np.float32)
        y = np.digitize(x[:, 0] + x[:, 1], [-1.0, 1.0]).astype(np.int64)
        meta = {"task": self.name, "input_shape": [FEATURES], "num_classes": len(CLASSES), "classes": list(CLASSES),
                "preprocess": {"kind": self.name, "features": FEATURES}}
        parts = (np.arange(0, 200), np.arange(200, 250), np.arange(250, ROWS))
        return DataBundle.from_indices(lambda idx: torch.from_numpy(x[idx]), y, parts, meta)

    def metric_fn(self) -> Callable[[torch.Tensor, torch.Tensor], float]:
        def error(logits: torch.Tensor, y: torch.Tensor) -> float:
            return float((logits.argmax(dim=1) != y).float().mean().item()) if len(y) else 0.0

        return error

    # raw inputs: JSON arrays of FEATURES numbers on the command line
    def read_inputs(self, items: list[str], spec: dict[str, Any]) -> tuple[list[str], list[Any]]:
        return [f"vector {i + 1}" for i in range(len(items))], [json.loads(s) for s in items]

    def encode_inputs(self, raw: list[Any], spec: dict[str, Any]) -> np.ndarray:
        x = np.asarray(raw, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != spec["features"]:
            raise DataError(f"toy inputs must be {spec['features']} numbers each")
        return x

    def input_notes(self, raw: list[Any], spec: dict[str, Any]) -> tuple[list[str], list[dict[str, Any] | None]]:
        return ["toy vectors are used as given"], [{"sum2": round(float(r[0] + r[1]), 3)} for r in raw]

    def format_outputs(self, outputs: np.ndarray, classes: list[str], top_k: int | None = None) -> list[dict[str, Any]]:
        return [{"label": classes[int(np.argmax(row))], "margin": round(float(np.sort(row)[-1] - np.sort(row)[-2]), 4)}
                for row in np.asarray(outputs, dtype=np.float64)]


class ToyMLP(ModelFamily):
    """One hidden layer; pruning narrows it (``hidden``)."""

    tasks = ("toy",)
    params = frozenset({"hidden"})
    limits = {"hidden": (2, 256)}

    def arch_from_params(self, params: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        return {"family": self.name, "features": int(meta["input_shape"][0]), "hidden": int(params["hidden"]),
                "classes": int(meta["num_classes"])}

    def build(self, arch: dict[str, Any]) -> nn.Module:
        from torch import nn

        return nn.Sequential(nn.Linear(arch["features"], arch["hidden"]), nn.ReLU(),
                             nn.Linear(arch["hidden"], arch["classes"]))

    def pruned_arch(self, model: nn.Module, arch: dict[str, Any]) -> dict[str, Any]:
        return {**arch, "hidden": int(model[0].out_features)}


SPACE = """
description: the toy task's tiny space (tests)
params:
  model: toymlp
  hidden: {type: categorical, choices: [24, 32]}
  lr: 0.05
  batch_size: 32
  optimizer: adamw
"""


@pytest.fixture
def toy_task() -> Iterator[str]:
    """The toy task, its metric and its family registered for one test, then forgotten again."""
    from automl.models import list_models, register_model, unregister_model
    from automl.tasks import list_tasks, register_metric, register_task, unregister_metric, unregister_task

    list_tasks(), list_models()  # the built-in ones first, so only the toy ones are removed below
    register_metric(ERROR)
    register_task("toy")(ToyTask)
    register_model("toymlp")(ToyMLP)
    try:
        yield "toy"
    finally:
        unregister_task("toy")
        unregister_metric("error")
        unregister_model("toymlp")


def _invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli.app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, (args[0], result.stdout, result.stderr, result.exception)
    return result


def test_a_task_defined_in_one_file_is_searched_compressed_and_predicted(toy_task: str, tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    runs = tmp_path / "runs"
    found = json.loads(_invoke("search", "--task", toy_task, "--space", str(space), "--trials", "2", "--sampler",
                               "grid", "--pruner", "none", "--device", "cpu", "--out-dir", str(runs), "--json").stdout)
    assert found["metric"] == "error" and found["direction"] == "minimize"  # the task's own metric
    best = json.loads(Path(found["best_json"]).read_text())
    assert best["task"] == "toy" and best["data"]["source"] == "toy"  # --data defaulted to the task's
    assert best["arch"]["family"] == "toymlp" and best["metrics"]["test_error"] < 0.35  # chance: 0.67
    preds = best["test_predictions"]
    assert preds["classes"] == list(CLASSES) and len(preds["y_pred"]) == ROWS - 250

    out = tmp_path / "compressed"
    report = json.loads(_invoke("compress", found["best_pt"], "--out-dir", str(out), "--prune-ratio", "0.5",
                                "--finetune-epochs", "1", "--warmup", "1", "--repeats", "3", "--threads", "1",
                                "--device", "cpu", "--json").stdout)
    assert report["metric"] == "error" and report["direction"] == "minimize"
    assert report["prune"]["skipped"] is None and report["prune"]["arch"]["hidden"] < best["arch"]["hidden"]
    variants = {v["name"] for v in report["variants"]}
    assert {"fp32", "pruned"} <= variants, variants
    onnx = sorted(out.glob("*.onnx"))
    assert len(onnx) >= 2, onnx

    vectors = ["[1.4, 1.2, 0, 0]", "[-1.4, -1.3, 0.5, 0.5]", "[0.1, -0.1, 1, 1]"]
    for model in (*onnx, Path(found["best_pt"])):
        result = _invoke("predict", str(model), *vectors, "--json")
        rows = json.loads(result.stdout)["predictions"]
        assert [r["input"] for r in rows] == ["vector 1", "vector 2", "vector 3"]
        assert [r["sum2"] for r in rows] == [2.6, -2.7, 0.0]  # the task's per-sample notes
        assert all(set(r) == {"input", "label", "margin", "sum2"} for r in rows)  # the task's own formatting
        assert [r["label"] for r in rows][:2] == ["high", "low"]
        assert "toy vectors are used as given" in result.stderr


def test_the_toy_tasks_source_check_runs_before_the_search(toy_task: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["search", "--task", toy_task, "--data", "nope", "--out-dir", str(tmp_path)])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == "error: --data nope: the toy task knows only 'toy'"
    assert not (tmp_path / "automl.db").exists()  # refused before any study was created


def test_the_toy_task_is_gone_after_its_test() -> None:
    from automl.models import list_models
    from automl.tasks import list_metrics, list_tasks

    assert "toy" not in list_tasks() and "error" not in list_metrics() and "toymlp" not in list_models()


def test_the_toy_task_brings_its_own_default_space(toy_task: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --space, a task's ``default_space`` file is its space (no YAML in search_spaces/)."""
    from automl.exceptions import SearchSpaceError
    from automl.search.space import resolve_space
    from automl.tasks import get_task

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    monkeypatch.setattr(type(get_task(toy_task)), "default_space", str(space))
    assert [p.name for p in resolve_space(None, toy_task).params] == \
        [p.name for p in resolve_space(str(space), toy_task).params]
    monkeypatch.setattr(type(get_task(toy_task)), "default_space", None)
    with pytest.raises(SearchSpaceError, match="toy"):  # no shipped toy.yaml: the task must bring one
        resolve_space(None, toy_task)
