"""The ensemble family (automl/models/ensemble.py): the weighted mean of its members' probabilities
(regression: values), weights_only save and load, one ONNX graph within 1e-5 of PyTorch for a
classification and a regression ensemble mixing an MLP and tree members, forged archs refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automl.exceptions import ArtifactError
from automl.models import build_from_arch, get_model
from automl.models.ensemble import MAX_MEMBERS, ensemble_arch

PARITY_TOL = 1e-5


@pytest.fixture(scope="module", params=["wine", "diabetes"])
def members(request: pytest.FixtureRequest) -> dict[str, Any]:
    """An MLP (random weights: parity does not need training), fitted hgb and rf members on ``data``."""
    from automl.tasks import DataConfig, get_task

    task = get_task("tabular")
    bundle = task.load_data(DataConfig(source=request.param, seed=0))
    regression = request.param == "diabetes"
    torch.manual_seed(0)
    mlp_arch = get_model("mlp").arch_from_params({"depth": 1, "width": 16}, bundle.meta)
    mlp = build_from_arch(mlp_arch).eval()
    hgb, hgb_arch = get_model("hgb").fit_direct({"hgb_max_iter": 10}, bundle, seed=0)
    rf, rf_arch = get_model("rf").fit_direct({"forest_n_estimators": 5, "forest_max_leaf_nodes": 16}, bundle, seed=0)
    models = [mlp, hgb.eval(), rf.eval()]
    out = 1 if regression else int(bundle.meta["num_classes"])
    arch = ensemble_arch([mlp_arch, hgb_arch, rf_arch], out, regression, trials=[3, 0, 1],
                         member_families=["mlp", "hgb", "rf"], best_member=1)
    ens = build_from_arch(arch)
    with torch.no_grad():
        for slot, m in zip(ens.members, models, strict=True):
            slot.load_state_dict(m.state_dict())
        ens.weights.copy_(torch.tensor([0.5, 0.25, 0.25]))
    return {"bundle": bundle, "task": task, "models": models, "ensemble": ens.eval(), "arch": arch,
            "regression": regression}


def test_forward_is_the_weighted_mean_of_members(members: dict[str, Any]) -> None:
    x = members["bundle"].x_val
    w = [0.5, 0.25, 0.25]
    with torch.no_grad():
        outs = [m(x).float() for m in members["models"]]
        got = members["ensemble"](x)
    if members["regression"]:
        want = sum(wi * o for wi, o in zip(w, outs, strict=True))
        assert got.shape == (len(x), 1)
        assert torch.allclose(got, want, atol=1e-4)
    else:  # log of the weighted mean probability: softmax gives the mean back, argmax the same class
        want = sum(wi * torch.softmax(o, 1) for wi, o in zip(w, outs, strict=True))
        assert torch.allclose(torch.softmax(got, 1), want, atol=1e-6)
        assert torch.equal(got.argmax(1), want.argmax(1))


def test_saved_as_plain_tensors_and_loaded_weights_only(members: dict[str, Any], tmp_path: Path) -> None:
    from automl.artifacts import model_from_checkpoint

    ens = members["ensemble"]
    path = tmp_path / "ens.pt"
    torch.save({"arch": members["arch"], "state_dict": ens.state_dict()}, path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    model = model_from_checkpoint(loaded)
    x = members["bundle"].x_val[:16]
    with torch.no_grad():
        assert torch.equal(model(x), ens(x))
    assert model.weights.tolist() == [0.5, 0.25, 0.25]


def test_one_onnx_graph_matches_pytorch(members: dict[str, Any], tmp_path: Path) -> None:
    import onnx

    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session

    ens, task, bundle = members["ensemble"], members["task"], members["bundle"]
    path = export_onnx(ens, task.example_input(bundle.meta, 1), tmp_path / "ens.onnx", {"automl.task": "tabular"})
    assert len(onnx.load(str(path)).graph.input) == 1  # one graph, one input
    x = torch.cat([bundle.x_val, bundle.x_test])
    with torch.no_grad():
        ref = ens(x).numpy()
    got = make_session(path, ["CPUExecutionProvider"]).run(["logits"], {"input": x.numpy()})[0]
    assert got.shape == ref.shape
    # within 1e-5, relative where an output exceeds 1: a diabetes target near 150 has float32 steps of 1.5e-5
    assert float((np.abs(got - ref) / np.maximum(1.0, np.abs(ref))).max()) <= PARITY_TOL


def test_forged_archs_are_refused_before_building(members: dict[str, Any]) -> None:
    from automl.artifacts import check_arch_matches_weights

    arch, state = members["arch"], members["ensemble"].state_dict()
    inner = {**arch, "members": [arch["members"][1]], "trials": [0], "member_families": ["hgb"], "best_member": 0}
    nested = {**arch, "members": [inner]}
    with pytest.raises(ArtifactError, match="cannot be an ensemble"):
        check_arch_matches_weights(nested, state)
    many = {**arch, "members": [arch["members"][0]] * (MAX_MEMBERS + 1)}
    with pytest.raises(ArtifactError):
        check_arch_matches_weights(many, state)
    wrong = {**arch, "members": arch["members"][:2]}  # one member fewer than the stored weights
    with pytest.raises(ArtifactError, match="do not match"):
        check_arch_matches_weights(wrong, state)


def test_not_searchable() -> None:
    from automl.models import list_models
    from automl.tasks import get_task

    assert "ensemble" in list_models() and all("ensemble" not in list_models(t) for t in ("tabular", "text", "image"))
    with pytest.raises(ValueError, match="unknown tabular model 'ensemble'"):
        get_task("tabular").model_family({"model": "ensemble"})
