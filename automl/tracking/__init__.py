"""Experiment trackers: MLflow (``--mlflow URI``), TensorBoard (``--tensorboard DIR``) and Optuna's
own artifact store.

A search, a worker and each ``--jobs`` child open a ``StudyTracker`` on the study they run trials of
(``open_tracker``); its ``wrap(observer)`` is the observer the trial loop reports to, so every
process logs its own trials with its own client (nothing shared between processes). MLflow follows
the layout of optuna-integration's ``MLflowCallback``: an experiment named after the study, one run
per trial (named by its number) nested under one study run, the sampled parameters as params, one
metric per objective, each epoch's losses, metric and learning rate as steps, and the trial's state
and prune or fail reason as tags. ``automl compress --mlflow`` adds a compress run with one nested
run per variant and the recommended ONNX model (``log_compress``).

A tracker that fails (a server gone, a disk full) never stops a search: the first error becomes one
note ("MLflow logging stopped: ...") and that tracker is switched off. Without the optional extras
installed, ``check_trackers`` says how to install them before any data is loaded. Importing this
package loads neither MLflow, TensorBoard, Optuna nor PyTorch.
"""

from __future__ import annotations

from automl.tracking._check import INSTALL, check_trackers, redact_uri, scrub, secrets_of
from automl.tracking._observer import StudyTracker, TrackingObserver, open_tracker
from automl.tracking.compress_log import log_compress
from automl.tracking.optuna_artifacts import artifact_store_dir, upload_study_artifact

__all__ = [
    "INSTALL",
    "StudyTracker",
    "TrackingObserver",
    "artifact_store_dir",
    "check_trackers",
    "log_compress",
    "open_tracker",
    "redact_uri",
    "scrub",
    "secrets_of",
    "upload_study_artifact",
]

