"""The tabular families (mlp, resmlp, tabm) with and without PLR numeric embeddings: shapes,
regression de-standardisation, ONNX parity, TabM's train/eval semantics and its loss, pruning."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from automl.exceptions import ArtifactError
from automl.models import build_from_arch
from automl.models._tabular import numeric_positions
from automl.tasks import DataConfig, get_task
from tests.tasks.test_tabular import make_tabular_csv

FAMILIES = ("mlp", "resmlp", "tabm")
SMALL = {"depth": 2, "width": 32, "ensemble_size": 4, "res_factor": 2, "plr_frequencies": 8, "plr_dim": 4,
         "plr_sigma": 0.5, "dropout": 0.1}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """problem -> (task, bundle) on a synthetic table with numerics (one with missing values), a
    one-hot and an embedded categorical."""
    root = tmp_path_factory.mktemp("tabfam")
    out = {}
    for problem, regression in (("classification", False), ("regression", True)):
        task = get_task("tabular")
        csv = make_tabular_csv(root / f"{problem}.csv", n=240, regression=regression)
        out[problem] = (task, task.load_data(DataConfig(source=str(csv), seed=0)))
    return out


def _model(task: Any, bundle: Any, family: str, emb: str, **extra: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
    params = {**SMALL, "model": family, "num_embedding": emb, **extra}
    torch.manual_seed(0)
    arch = task.arch_from_params(params, bundle.meta)
    return build_from_arch(arch), arch


@pytest.mark.parametrize("problem", ["classification", "regression"])
@pytest.mark.parametrize("emb", ["none", "plr"])
@pytest.mark.parametrize("family", FAMILIES)
def test_shapes_in_train_and_eval_mode(bundles: dict[str, Any], family: str, emb: str, problem: str) -> None:
    task, bundle = bundles[problem]
    model, arch = _model(task, bundle, family, emb)
    out_dim = bundle.meta["num_classes"] if problem == "classification" else 1
    x = bundle.x_train[:10]
    train_out = model.train()(x)
    members = (10, 4, out_dim) if family == "tabm" else (10, out_dim)
    assert tuple(train_out.shape) == members
    loss = task.loss_fn()(train_out, bundle.y_train[:10])
    assert loss.dim() == 0 and math.isfinite(float(loss.detach()))
    loss.backward()
    with torch.no_grad():
        assert tuple(model.eval()(x).shape) == (10, out_dim)
    assert ("plr" in arch) == (emb == "plr")


def test_plr_embeds_only_the_standardised_numeric_columns(bundles: dict[str, Any]) -> None:
    task, bundle = bundles["classification"]
    spec = bundle.meta["preprocess"]
    index = numeric_positions(spec)
    kinds = [c["type"] for c in spec["columns"]]
    assert len(index) == kinds.count("numeric") and len(index) < spec["num_dense"]  # indicators, one-hot stay
    model, arch = _model(task, bundle, "mlp", "plr", plr_sigma=2.0)
    assert arch["plr"]["index"] == index and arch["plr"]["sigma"] == 2.0
    freq = model.plr.frequencies
    assert freq.shape == (len(index), 8) and 1.4 < float(freq.detach().std()) < 2.6  # drawn from N(0, sigma)
    x = bundle.x_val[:6]
    feats = model.input_features(x)
    n_emb = len(index) * 4
    other = [i for i in range(spec["num_dense"]) if i not in index]
    assert torch.equal(feats[:, n_emb : n_emb + len(other)], x[:, other])  # passed through unchanged
    assert feats.shape[1] == model.in_features == n_emb + len(other) + sum(d for _, d in arch["embeddings"])
    assert (feats[:, :n_emb] >= 0).all()  # ReLU(Linear(periodic))
    x2 = x.clone()
    x2[:, index[0]] += 1.0  # one numeric value moves: only its own embedding changes
    diff = (model.input_features(x2) - feats).abs().sum(0)
    assert diff[4:].sum() == 0 and diff[:4].sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_regression_output_is_destandardised(bundles: dict[str, Any], family: str) -> None:
    task, bundle = bundles["regression"]
    model, arch = _model(task, bundle, family, "plr")
    assert (arch["target_mean"], arch["target_std"]) != (0.0, 1.0)
    plain = build_from_arch({**arch, "target_mean": 0.0, "target_std": 1.0})
    plain.load_state_dict(model.state_dict(), strict=True)
    x = bundle.x_val[:16]
    with torch.no_grad():
        got, std_units = model.eval()(x), plain.eval()(x)
    assert torch.allclose(got, std_units * arch["target_std"] + arch["target_mean"], rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("problem", ["classification", "regression"])
@pytest.mark.parametrize("emb", ["none", "plr"])
@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_export_matches_torch(bundles: dict[str, Any], family: str, emb: str, problem: str,
                                   tmp_path: Path) -> None:
    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session as session
    from compress.bench import ort_logits

    task, bundle = bundles[problem]
    model, _ = _model(task, bundle, family, emb)
    model.eval()
    path = export_onnx(model, task.example_input(bundle.meta, 1), tmp_path / "m.onnx", {"automl.task": "tabular"})
    x = bundle.x_test[:37]  # exported at batch 1: the batch axis is dynamic
    with torch.no_grad():
        ref = model(x).numpy()
    got = ort_logits(session(path), x.numpy())
    assert got.shape == ref.shape
    scale = max(1.0, float(np.abs(ref).max()))  # regression outputs are in the target's units
    assert np.abs(got - ref).max() <= 1e-5 * scale


def test_tabm_trains_members_and_predicts_their_mean_probability(bundles: dict[str, Any]) -> None:
    task, bundle = bundles["classification"]
    model, _ = _model(task, bundle, "tabm", "none", dropout=0.0)
    x, y = bundle.x_train[:20], bundle.y_train[:20]
    members = model.train()(x)
    assert members.shape[1] == 4
    assert not torch.allclose(members[:, 0], members[:, 1])  # random-sign adapters: members differ
    expected = torch.stack([F.cross_entropy(members[:, m], y) for m in range(4)]).mean()
    assert torch.allclose(task.loss_fn()(members, y), expected, atol=1e-6)
    with torch.no_grad():
        ensemble = model.eval()(x)
        mean_prob = torch.softmax(members.detach(), dim=-1).mean(dim=1)
    assert torch.allclose(ensemble.exp(), mean_prob, atol=1e-6)
    assert torch.allclose(torch.softmax(ensemble, dim=1), mean_prob, atol=1e-6)  # softmax downstream is right
    assert torch.equal(ensemble.argmax(1), mean_prob.argmax(1))
    # the validation loss is the ensemble's negative log-likelihood
    assert torch.allclose(task.loss_fn()(ensemble, y), -mean_prob[torch.arange(20), y].log().mean(), atol=1e-5)


def test_tabm_regression_loss_is_the_mean_member_mse(bundles: dict[str, Any]) -> None:
    task, bundle = bundles["regression"]
    model, arch = _model(task, bundle, "tabm", "none", dropout=0.0)
    x, y = bundle.x_train[:20], bundle.y_train[:20]
    members = model.train()(x)
    assert members.shape == (20, 4, 1)
    var = arch["target_std"] ** 2
    expected = torch.stack([((members[:, m, 0] - y) ** 2).mean() for m in range(4)]).mean() / var
    assert torch.allclose(task.loss_fn()(members, y), expected, rtol=1e-5)
    ensemble_mse = ((members.mean(dim=1)[:, 0] - y) ** 2).mean() / var
    assert float(expected) > float(ensemble_mse)  # members disagree: the mean of losses is not the ensemble's
    with torch.no_grad():
        assert torch.allclose(model.eval()(x), members.detach().mean(dim=1), atol=1e-4)


def test_tabm_learns_wine_in_a_few_epochs() -> None:
    """The shared training loop (member losses in train mode, ensemble in eval) fits wine."""
    from automl.train import TrainConfig, fit

    task = get_task("tabular")
    bundle = task.load_data(DataConfig(source="wine", seed=0))
    model, _ = _model(task, bundle, "tabm", "none")
    cfg = TrainConfig(epochs=8, lr=3e-3, batch_size=32, weight_decay=3e-4)
    res = fit(model, bundle.x_train, bundle.y_train, bundle.x_val, bundle.y_val, cfg, task.loss_fn(), task.metric_fn())
    assert res.val_metric >= 0.85, res.history


def test_old_mlp_arches_load_and_bad_arches_are_refused(bundles: dict[str, Any]) -> None:
    task, bundle = bundles["classification"]
    model, arch = _model(task, bundle, "mlp", "none")
    assert "plr" not in arch
    assert {k.split(".")[0] for k in model.state_dict()} == {"embeddings", "features", "head"}  # as before PLR
    _, tarch = _model(task, bundle, "tabm", "plr")
    for bad in ({**tarch, "ensemble_size": 10**6}, {**tarch, "plr": {**tarch["plr"], "index": [10**6]}},
                {**tarch, "plr": {**tarch["plr"], "frequencies": 10**6}}, {**tarch, "hidden": [0]}):
        with pytest.raises(ArtifactError, match="incomplete or invalid"):
            build_from_arch(bad)


@pytest.mark.parametrize("family", ["mlp", "resmlp"])
def test_pruning_keeps_the_numeric_embeddings(tmp_path: Path, family: str) -> None:
    from tests._onnx_helpers import task_checkpoint
    from tests.compress.test_prune_families import _prune_checkpoint

    csv = make_tabular_csv(tmp_path / "t.csv", n=200)
    params = {**SMALL, "model": family, "num_embedding": "plr"}
    best = task_checkpoint("tabular", str(csv), tmp_path / "best.pt", params)
    res = _prune_checkpoint(best, tmp_path)
    new, arch, pruned = res["outcome"].arch, res["arch"], res["outcome"].model
    assert new["plr"] == arch["plr"] and new["embeddings"] == arch["embeddings"]
    assert all(torch.equal(a, b) for a, b in zip(pruned.plr.parameters(), res["model"].plr.parameters(), strict=True))
    if family == "resmlp":
        assert new["width"] == 16 and new["hidden"] == [32, 32]
    else:
        assert new["hidden"] == [16, 16]


@pytest.mark.parametrize("family", FAMILIES)
def test_int8_variants_of_plr_models_run_in_onnx_runtime(bundles: dict[str, Any], family: str, tmp_path: Path) -> None:
    """Dynamic and static INT8 of a PLR model load and run (a batched MatMul with a 3-D weight once
    made ONNX Runtime's quantized MatMul fail), and stay close to FP32."""
    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session as session
    from compress.bench import ort_logits
    from compress.quantize import calibration_reader, quantize_dynamic_int8, quantize_static_int8

    task, bundle = bundles["classification"]
    model, _ = _model(task, bundle, family, "plr")
    model.eval()
    meta = {"automl.task": "tabular"}
    fp32 = export_onnx(model, task.example_input(bundle.meta, 1), tmp_path / "m.onnx", meta)
    x = bundle.x_test.numpy()
    ref = ort_logits(session(fp32), x)
    dyn = quantize_dynamic_int8(fp32, tmp_path / "m.int8.onnx", meta)
    stat = quantize_static_int8(fp32, tmp_path / "m.qdq.onnx", calibration_reader(bundle.x_train, 64), meta)
    for path in (dyn, stat):
        got = ort_logits(session(path), x)
        assert got.shape == ref.shape and np.isfinite(got).all()
        assert np.abs(got - ref).max() < 0.5, (path.name, np.abs(got - ref).max())
