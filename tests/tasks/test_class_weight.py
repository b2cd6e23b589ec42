"""``--class-weight balanced``: per-class loss weights n / (C x count) for the networks,
``class_weight="balanced"`` for the tree families, a note when the rarest class is under 10%, and the
chosen metric handed to HistGradientBoosting's early stopping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from automl.data.bundle import DataBundle
from automl.tasks import get_task


def _bundle(n_pos: int, n: int = 200, seed: int = 0) -> DataBundle:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.zeros(n, dtype=torch.int64)
    y[:n_pos] = 1
    x[:n_pos, 0] += 0.8  # a weak signal: the rare class overlaps the common one
    spec = {"kind": "tabular", "num_features": 4, "num_dense": 4}
    meta = {"task": "tabular", "input_shape": [4], "num_classes": 2, "classes": ["no", "yes"],
            "problem": "classification", "preprocess": spec}
    return DataBundle(x, y, x[:40], y[:40], x[:40], y[:40], meta)


def test_balanced_weights_are_n_over_classes_times_count_and_change_the_loss() -> None:
    task = get_task("tabular")
    task.class_weight = "balanced"
    bundle = _bundle(n_pos=10)
    task.bind(bundle)
    assert task.loss_weights == pytest.approx([200 / (2 * 190), 200 / (2 * 10)])
    assert bundle.meta["fit"]["class_weight"] == "balanced"
    logits, y = torch.zeros(3, 2), torch.tensor([0, 1, 1])
    logits[:, 0] = 1.0
    weighted = float(task.loss_fn()(logits, y))
    plain = get_task("tabular")
    plain.bind(_bundle(n_pos=10))
    assert plain.loss_weights is None and "class_weight" not in _bundle(10).meta.get("fit", {})
    assert weighted == pytest.approx(float(torch.nn.functional.cross_entropy(
        logits, y, weight=torch.tensor(task.loss_weights))))
    assert weighted != pytest.approx(float(plain.loss_fn()(logits, y)))


@pytest.mark.parametrize("family", ["hgb", "rf"])
def test_tree_families_weigh_the_rare_class_when_balanced(family: str) -> None:
    from automl.models import get_model

    params = {"model": family, "hgb_max_iter": 20} if family == "hgb" else {"model": family,
                                                                             "forest_n_estimators": 20}
    rates = {}
    for mode in ("none", "balanced"):
        task = get_task("tabular")
        task.class_weight = mode
        bundle = _bundle(n_pos=16)
        task.bind(bundle)
        model, _ = get_model(family).fit_direct(params, bundle, seed=0)
        with torch.no_grad():
            rates[mode] = float((model(bundle.x_train).argmax(1) == 1).float().mean())
    assert rates["balanced"] > rates["none"], rates  # the rare class is predicted more often


def test_a_note_suggests_balanced_under_ten_percent() -> None:
    task = get_task("tabular")
    note = task.imbalance_note(_bundle(n_pos=12))
    assert note is not None and "class 'yes' is 6.0% of the training rows" in note and "--class-weight balanced" in note
    assert task.imbalance_note(_bundle(n_pos=30)) is None  # 15%
    task.class_weight = "balanced"
    assert task.imbalance_note(_bundle(n_pos=12)) is None  # already weighted


def test_ten_even_classes_get_no_note_but_one_rare_class_among_ten_does() -> None:
    """Digits-like data (each class about 10%, the smallest 9.7%) is balanced: no note; a class at 3%
    of ten is rare (the note's threshold is the smaller of 10% and half the balanced share)."""
    task = get_task("tabular")
    bundle = _bundle(n_pos=0, n=1000)
    meta = {**bundle.meta, "num_classes": 10, "classes": [str(i) for i in range(10)]}
    y = torch.tensor([i % 10 for i in range(1000)])
    y[y == 8] = 9  # class 8 to class 9 ...
    y[:97] = 8  # ... then 8 gets 97 rows (9.7%)
    even = DataBundle(bundle.x_train, y, bundle.x_val, bundle.y_val, bundle.x_test, bundle.y_test, meta)
    assert int((y == 8).sum()) == 97 and task.imbalance_note(even) is None
    y2 = torch.tensor([i % 10 for i in range(1000)])
    y2[(y2 == 3).nonzero()[30:]] = 4  # class 3 keeps 30 rows: 3%
    rare = DataBundle(bundle.x_train, y2, bundle.x_val, bundle.y_val, bundle.x_test, bundle.y_test, meta)
    assert "class '3' is 3.0% of the training rows" in (task.imbalance_note(rare) or "")


def test_the_rarer_class_is_the_positive_one() -> None:
    task = get_task("tabular")
    task.bind(_bundle(n_pos=12))
    assert task.positive == 1
    bundle = _bundle(n_pos=188)
    task.bind(bundle)
    assert task.positive == 0  # "no" is the rarer class here
    task.choose_metric("average_precision")
    y = np.array([0, 1, 1, 0])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    from sklearn.metrics import average_precision_score

    assert task.score(p, y) == pytest.approx(average_precision_score(y == 0, p[:, 0]))


def test_hgb_early_stopping_scores_the_chosen_metric() -> None:
    from automl.models.hgb import fit_kwargs

    task = get_task("tabular")
    task.choose_metric("average_precision")
    bundle = _bundle(n_pos=12)
    task.bind(bundle)
    assert fit_kwargs(bundle.meta["fit"], "binary") == {"scoring": "average_precision"}
    task = get_task("tabular")
    task.bind(bundle)  # the default metric keeps scikit-learn's loss
    assert fit_kwargs(bundle.meta["fit"], "binary") == {}
