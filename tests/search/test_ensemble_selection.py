"""Ensemble selection (automl.search.ensemble) on fixed predictions with known answers: greedy forward
selection with replacement, the best prefix, the log-loss tie-break, the latency cap, the kept files."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from automl.search.ensemble import (
    CANDIDATES,
    PER_FAMILY,
    candidate_numbers,
    load_predictions,
    metric_scorer,
    predictions_path,
    save_predictions,
    select,
    weights_of,
    would_be_candidate,
)


def rmse(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float((pred.reshape(-1) - y.reshape(-1)).pow(2).mean().sqrt())


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


# y = 0 everywhere; A says +1, B says -1, C says +0.5. Best single: C (rmse 0.5). Round 2 adds B
# ((0.5 - 1) / 2 = -0.25), round 3 adds C again ((0.5 - 1 + 0.5) / 3 = 0): exact, and no later round
# beats it, so the best prefix {B: 1, C: 2} is returned.
Y0 = np.zeros(4, dtype=np.float32)
PREDS = np.stack([np.full(4, v, dtype=np.float32) for v in (1.0, -1.0, 0.5)])


def test_greedy_with_replacement_finds_the_known_ensemble() -> None:
    counts = select(PREDS, metric_scorer(rmse, Y0, regression=True), maximize=False)
    assert counts.tolist() == [0, 1, 2]
    assert weights_of(counts).tolist() == pytest.approx([1 / 3, 2 / 3])
    avg = np.tensordot(weights_of(counts), PREDS[counts > 0], axes=1)
    assert np.abs(avg).max() < 1e-6


def test_rounds_cap_the_ensemble() -> None:
    score = metric_scorer(rmse, Y0, regression=True)
    assert select(PREDS, score, maximize=False, rounds=1).tolist() == [0, 0, 1]
    assert select(PREDS, score, maximize=False, rounds=2).tolist() == [0, 1, 1]


def test_latency_cap_keeps_slow_members_out() -> None:
    """A fake latency table: B (5 ms) would make the pair 6 ms, over a 4 ms cap, so C stays alone;
    with 10 ms it joins as before; a candidate of unknown latency never enters under a cap."""
    score = metric_scorer(rmse, Y0, regression=True)
    assert select(PREDS, score, False, latencies=[1.0, 5.0, 1.0], max_latency_ms=4.0).tolist() == [0, 0, 1]
    assert select(PREDS, score, False, latencies=[1.0, 5.0, 1.0], max_latency_ms=10.0).tolist() == [0, 1, 2]
    assert select(PREDS, score, False, latencies=[1.0, None, 1.0], max_latency_ms=10.0).tolist() == [0, 0, 1]
    assert select(PREDS, score, False, latencies=[9.0, 9.0, 9.0], max_latency_ms=4.0).tolist() == [0, 0, 0]


def test_accuracy_ties_are_broken_by_log_loss() -> None:
    """Both candidates are right on every row (accuracy 1): the more confident one (B) is picked, and
    adding the less confident one does not lower the log loss, so B stays alone."""
    y = np.array([0, 1, 0])
    a = np.array([[0.6, 0.4], [0.4, 0.6], [0.6, 0.4]], dtype=np.float32)
    b = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1]], dtype=np.float32)
    counts = select(np.stack([a, b]), metric_scorer(accuracy, y, regression=False), maximize=True, y=y)
    assert counts.tolist() == [0, 1]


def test_classification_metric_reads_log_probabilities() -> None:
    """The task's metric gets log(p): its argmax is that of the averaged probabilities."""
    y = np.array([0, 1])
    probs = np.array([[0.7, 0.3], [0.6, 0.4]], dtype=np.float32)
    assert metric_scorer(accuracy, y, regression=False)(probs) == 0.5


def test_candidates_are_the_best_overall_and_per_family() -> None:
    trials = [SimpleNamespace(number=i, values=[float(i)], params={"model": "a" if i < 30 else "b"})
              for i in range(40)]
    fam = lambda t: t.params["model"]  # noqa: E731
    keep = candidate_numbers(trials, maximize=True, family_of=fam)
    assert keep == set(range(40 - CANDIDATES, 40)) | set(range(30 - PER_FAMILY, 30))
    assert would_be_candidate(trials, 27.5, "a", True, fam)  # third best of family a
    assert not would_be_candidate(trials, 26.5, "a", True, fam)  # fourth
    assert would_be_candidate(trials, 39.5, "b", True, fam)


def test_predictions_round_trip_as_plain_npy(tmp_path: Path) -> None:
    preds = np.random.default_rng(0).random((5, 3)).astype(np.float32)
    path = predictions_path(tmp_path, 7)
    assert path.name == "trial-7.val.npy" and save_predictions(path, preds)
    assert np.array_equal(load_predictions(path, 5, 3), preds)
    assert load_predictions(path, 6, 3) is None and load_predictions(path, 5, None) is None  # other data
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert load_predictions(path, 1, None) is None  # a pickled array is never loaded
