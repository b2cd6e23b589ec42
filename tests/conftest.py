"""Shared fixtures: a tiny search on built-in digits that other tests reuse (a few seconds)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")
# Searches in tests train each trial once: the default 5-fold cross-validation of small tables (wine)
# would make every tabular test six times slower. tests/search/test_cv.py checks the default rule itself.
os.environ["AUTOML_CV"] = "0"
# A latency timing takes 0.05 s of timed calls instead of 0.3 s (hundreds of timings in the suite; the
# tests that compare latencies leave margins of 1.5x or more). tests/runtime/test_latency.py checks the knob.
os.environ.setdefault("AUTOML_LATENCY_SECONDS", "0.05")
# Decoded-image cache entries of test runs go to a throw-away folder, not the user's cache.
# Deleted when the run ends (it held up to a few MB per run and was left behind before).
if "AUTOML_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="automl-test-cache-")
    os.environ["AUTOML_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run ``search`` once on digits (3 trials x 4 epochs, no trial pruner); returns the SearchResult
    as a dict plus ``out`` (the output folder). Session-scoped: treat its files as read-only."""
    from automl.study import SearchSettings, run_search

    out = tmp_path_factory.mktemp("digits_run")
    # ensemble=False: the compress and prune tests read this best.pt as one CNN (tests/study/test_ensemble_search.py
    # covers an ensemble best.pt)
    settings = SearchSettings(task="image", data="digits", trials=3, epochs=4, pruner="none", out=str(out),
                              device="cpu", seed=0, ensemble=False)
    result = run_search(settings)
    info = result.to_json()
    info["out"] = str(out)
    info["storage_url"] = result.storage
    return info


@pytest.fixture(scope="session")
def digits_best_pt(digits_run: dict) -> Path:
    """Path of a best.pt trained on digits (read-only; copy it before changing it)."""
    return Path(digits_run["best_pt"])
