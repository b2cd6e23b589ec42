"""best.pt safety: an arch that does not fit the stored weights is refused before anything is built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from automl.exceptions import ArtifactError

SMALL_CNN = {"family": "cnn", "in_channels": 1, "input_size": [8, 8], "widths": [16, 16, 16],
             "pools": [True, True, True], "batch_norm": True, "activation": "relu", "dropout": 0.0,
             "init": "default", "num_classes": 3}
#: the preprocessing spec of an 8x8 grey image model (a checkpoint's spec is checked like an ONNX file's)
SPEC_8X8 = {"kind": "image", "channels": 1, "size": [8, 8], "mean": [0.5], "std": [0.25], "input_shape": [1, 8, 8]}

# Loads the checkpoint (not measured), then rebuilds it and reports the rise of the peak RSS (MB)
# and the seconds the refusal took.
PROBE = """
import json, resource, sys, time
import automl
from automl.artifacts import load_checkpoint, model_from_checkpoint
ckpt = load_checkpoint(sys.argv[1])
peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    model_from_checkpoint(ckpt, sys.argv[1])
    error = None
except automl.ArtifactError as exc:
    error = str(exc)
seconds = time.perf_counter() - t0
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak0) / 1024
print(json.dumps({"error": error, "peak_growth_mb": grew, "seconds": seconds}))
"""


def _forged(tmp_path: Path, **arch_changes: object) -> Path:
    from automl.artifacts import make_checkpoint, save_checkpoint
    from automl.models import build_from_arch

    ckpt = make_checkpoint(task="image", arch=SMALL_CNN, model=build_from_arch(SMALL_CNN), preprocess=SPEC_8X8,
                           data={}, metrics={})
    ckpt["arch"] = {**SMALL_CNN, **arch_changes}
    return save_checkpoint(tmp_path / "best.pt", ckpt)


def test_huge_arch_in_a_small_checkpoint_is_refused_without_allocating(tmp_path: Path) -> None:
    path = _forged(tmp_path, widths=[4000] * 3)  # built for real: ~1.2 GB of conv weights
    assert path.stat().st_size < 200_000
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["peak_growth_mb"] < 100, res  # building it takes > 1,000 MB
    assert res["seconds"] < 2.0, res
    assert res["error"] and "weights do not match the stored architecture" in res["error"]
    assert "the arch implies (4000, 1, 3, 3)" in res["error"], res["error"]


def test_forged_arch_shapes_are_named_and_the_honest_one_loads(tmp_path: Path) -> None:
    from automl.artifacts import check_arch_matches_weights, load_checkpoint, model_from_checkpoint
    from automl.models import build_from_arch

    state = build_from_arch(SMALL_CNN).state_dict()
    check_arch_matches_weights(SMALL_CNN, state)  # the honest arch passes
    with pytest.raises(ArtifactError, match=r"'widths' lists 1000000 entries in one list \(the limit is 64\)"):
        check_arch_matches_weights({**SMALL_CNN, "widths": [4] * 10**6, "pools": [False] * 10**6}, state)
    few = dict(list(state.items())[:5])  # a list within the family's bound, but more layers than weights
    with pytest.raises(ArtifactError, match=r"'widths' lists 60 entries for 5 stored tensors"):
        check_arch_matches_weights({**SMALL_CNN, "widths": [4] * 60, "pools": [False] * 60}, few)
    with pytest.raises(ArtifactError, match=r"'widths' is 1000000000000000000, the family builds at most"):
        check_arch_matches_weights({**SMALL_CNN, "widths": [10**18] * 3}, state)
    with pytest.raises(ArtifactError, match=r"'classifier.weight' is \(3, 16\) in the weights, the arch implies "
                                            r"\(7, 16\)"):
        check_arch_matches_weights({**SMALL_CNN, "num_classes": 7}, state)
    with pytest.raises(ArtifactError, match="'features.0.weight' is not a tensor"):
        check_arch_matches_weights(SMALL_CNN, {**state, "features.0.weight": [1, 2]})
    model = model_from_checkpoint(load_checkpoint(_forged(tmp_path)))
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
