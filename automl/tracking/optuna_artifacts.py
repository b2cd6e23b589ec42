"""best.pt and the recommended ONNX file registered as Optuna artifacts of their study
(``optuna.artifacts.upload_artifact`` into a ``FileSystemArtifactStore`` at ``<out>/artifacts``), so
``automl dashboard`` (optuna-dashboard) lists them and offers them for download.

They are the study's artifacts, not the best trial's: Optuna attaches an artifact to a trial only
while it runs (a finished trial's attributes are read-only), and best.pt is written after its trial
ended (best.json and the study's ``best_test`` attribute name the trial).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

ARTIFACTS = "artifacts"  # the store's folder, beside the study storage's automl.db in the output folder


def artifact_store_dir(out: str | Path) -> Path:
    """The artifact store of the studies written under ``out`` (``--out-dir``)."""
    return Path(out) / ARTIFACTS


def upload_study_artifact(study: Any, storage: Any, path: str | Path, store_dir: str | Path) -> str:
    """Copy ``path`` into the store at ``store_dir`` as an artifact of ``study``; returns the artifact
    id. A study that holds the same file already (same name, same bytes: a resumed search's best.pt)
    is not given a second copy; that artifact's id is returned."""
    import filecmp

    import optuna
    from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact

    name = Path(path).name
    with warnings.catch_warnings():  # the artifact API is marked experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for meta in get_all_artifact_meta(study, storage=storage):
            stored = Path(store_dir) / meta.artifact_id
            if meta.filename == name and stored.is_file() and filecmp.cmp(stored, path, shallow=False):
                return meta.artifact_id
        Path(store_dir).mkdir(parents=True, exist_ok=True)
        return upload_artifact(artifact_store=FileSystemArtifactStore(str(store_dir)), file_path=str(path),
                               study_or_trial=study, storage=storage)
