"""Every registered model family gets the same tests (the timm pattern): it builds from the arch its
``arch_from_params`` gives, prunes at ratio 0.5 (or says why it cannot), rebuilds from its pruned arch
with the pruned weights (strict), and exports to ONNX with PyTorch-vs-ONNX-Runtime parity. A new
family is tested without new test code; ``tests/models/drop_in/rescnn.py`` shows that a family is one
file the registry discovers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from automl.exceptions import ArtifactError, ConfigError
from automl.models import _registry, build_from_arch, get_model, list_models
from tests.models.conftest import family_bundle_key
from tests.tasks.test_tasks_registry import output_shape

PARITY_TOL = 1e-4


def test_registry_lists_families_by_task_and_names_the_valid_ones_on_a_miss() -> None:
    assert {"cnn", "resnet", "mlp", "textcnn", "gru"} <= set(list_models())
    assert list_models("text") == ["gru", "ngram", "textcnn"]
    assert {"hgb", "mlp", "resmlp", "tabm"} <= set(list_models("tabular"))
    with pytest.raises(ConfigError, match=r"unknown model family 'resnet9000' \(choose from: .*cnn.*gru.*mlp"):
        get_model("resnet9000")
    with pytest.raises(ArtifactError, match="unknown model family 'nope'"):
        build_from_arch({"family": "nope"})


def test_task_picks_its_family_by_the_model_parameter(task_bundles: dict[str, Any]) -> None:
    task, bundle = task_bundles["text"]
    assert task.arch_from_params({"model": "gru", "hidden": 8}, bundle.meta)["family"] == "gru"
    assert task.arch_from_params({}, bundle.meta)["family"] == task.default_model == "textcnn"
    assert {"model", "filters", "hidden", "kernel_sizes"} <= task.model_params
    with pytest.raises(ValueError, match=r"unknown text model 'cnn' \(choose from: gru, ngram, textcnn\)"):
        task.arch_from_params({"model": "cnn"}, bundle.meta)  # a family of another task


def test_a_family_is_one_file_the_registry_discovers(drop_in_family: str, task_bundles: dict[str, Any]) -> None:
    task, bundle = task_bundles["image"]
    assert drop_in_family not in _registry._MODELS  # not imported yet
    assert list_models("image") == sorted(["cnn", "resnet", drop_in_family])
    assert {"depth", "width"} <= task.model_params
    model = task.build_model({"model": drop_in_family, "depth": 2, "width": 8}, bundle.meta).eval()
    with torch.no_grad():
        assert model(bundle.x_val[:5]).shape == (5, bundle.meta["num_classes"])


# every searchable family (the ensemble, built from trained members, has its own tests/models/test_ensemble.py)
@pytest.mark.parametrize("name", [n for n in list_models() if get_model(n).tasks])
def test_family_builds_prunes_rebuilds_and_exports_with_parity(name: str, task_bundles: dict[str, Any],
                                                                tmp_path: Any) -> None:
    from automl.runtime.export import export_onnx
    from automl.runtime.ort import make_session as session
    from compress.bench import ort_logits
    from compress.prune import prune_model

    family = get_model(name)
    task, bundle = task_bundles[family_bundle_key(family)]
    arch = family.arch_from_params({"model": name}, bundle.meta)
    assert arch["family"] == name
    torch.manual_seed(0)
    model = build_from_arch(arch).eval()
    x, example = bundle.x_val[:32], task.example_input(bundle.meta, 1)
    with torch.no_grad():
        ref = model(x)
    assert ref.shape == (len(x), *output_shape(bundle.meta))

    out = prune_model(model, arch, example, 0.5)
    if family.prune_unsupported:
        assert out.model is None and out.skipped == family.prune_unsupported
        final, final_arch = model, arch
    else:
        assert out.skipped is None, out.skipped
        assert out.params_after < 0.75 * out.params_before and out.macs_after < out.macs_before
        assert out.arch["family"] == name and out.arch != arch
        final_arch = out.arch
        final = build_from_arch(final_arch).eval()
        final.load_state_dict(out.model.state_dict(), strict=True)  # the pruned arch describes it exactly
        with torch.no_grad():
            got = final(x)
            assert got.shape == ref.shape and torch.allclose(got, out.model(x), atol=1e-6)

    path = export_onnx(final, example, tmp_path / f"{name}.onnx", {"automl.task": task.name})
    with torch.no_grad():
        torch_logits = final(x).numpy()
    onnx_logits = ort_logits(session(path), x.numpy())
    assert onnx_logits.shape == torch_logits.shape
    assert np.abs(onnx_logits - torch_logits).max() <= PARITY_TOL
    if "output_shape" not in bundle.meta:  # a classifier or regressor: its head has one output per class
        head = final_arch["num_classes" if "num_classes" in final_arch else "out_features"]
        assert head == bundle.meta["num_classes"]
