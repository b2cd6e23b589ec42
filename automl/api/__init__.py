"""The Python API: ``search``, ``compress`` and ``Predictor``, the library form of ``automl search``,
``automl compress`` and ``automl predict``.

Each goes through the same library call as its command (``automl.study.search_command``,
``compress.pipeline.run_compress``, ``automl.runtime.predict``) and prints nothing: progress goes to a
``progress`` callable when one is given, Optuna's log and Python warnings are held back for the call
(restored after; warnings become the result's notes). ``automl.search`` etc. load this package on
first use (``automl/__init__.py``), so ``import automl`` stays light.

Modules: ``_quiet`` (silence, progress events), ``_data`` (in-memory tables into the run folder),
``_predict`` (``Predictor``), ``_compress`` (``compress``, ``export``), ``_search`` (``search``, ``Result``).
This package sits at the top of the layers beside ``cli`` (tests/test_imports.py): it drives ``compress``.

A whole session (run by tests/api/test_api.py; ``out`` is a fresh folder):

>>> import automl
>>> result = automl.search(task="tabular", data="wine", trials=1, epochs=1, cv=0, out=out)
>>> result.summary.study, result.metric, sorted(result.leaderboard["kind"])
('tabular-wine', 'accuracy', ['family', 'reference'])
>>> p = automl.Predictor(result.best_pt)
>>> p.classes
['class_0', 'class_1', 'class_2']
>>> p.predict_proba([dict.fromkeys(p.features, 1.0)]).shape
(1, 3)
>>> table = automl.compress(result.best_pt, quantize="none", finetune_epochs=0, repeats=2)
>>> list(table["name"]), table.attrs["recommended"].endswith(".onnx")
(['fp32'], True)
"""

from __future__ import annotations

from automl.api._compress import compress, export
from automl.api._predict import Predictor
from automl.api._search import Result, option_names, search

__all__ = ["Predictor", "Result", "compress", "export", "option_names", "search"]
