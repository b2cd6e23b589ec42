"""Checks of ``automl compress``'s arguments and of the checkpoint file that need neither PyTorch nor
ONNX: a wrong option or a file that is not a best.pt is refused in well under a second, before the
heavy libraries are imported (about 3-15 s on a loaded machine)."""

from __future__ import annotations

import zipfile
from pathlib import Path

from automl.exceptions import ArtifactError, ConfigError

DEFAULT_TEMPERATURE = 4.0
DEFAULT_WEIGHT = 0.5


def check_distill_args(temperature: float, weight: float) -> None:
    """ConfigError naming the argument and its allowed range."""
    if not temperature > 0:
        raise ConfigError(f"distill temperature must be > 0, got {temperature}")
    if not 0.0 <= weight <= 1.0:
        raise ConfigError(f"distill weight must be in [0, 1] (share of the soft-target loss), got {weight}")


def check_checkpoint_file(checkpoint: str | Path) -> Path:
    """ArtifactError unless ``checkpoint`` is a file in PyTorch's zip format (``torch.save`` writes
    ``<name>/data.pkl`` and the tensors beside it). What the pickle holds is checked later, by
    ``automl.artifacts.load_checkpoint`` (``weights_only``)."""
    path = Path(checkpoint)
    if not path.exists():
        raise ArtifactError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise ArtifactError(f"{path}: is a folder, expected a best.pt file")
    if not path.is_file():
        raise ArtifactError(f"{path}: not a regular file, expected a best.pt file")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: not a best.pt (not a PyTorch checkpoint file)") from exc
    if not any(n.count("/") == 1 and n.endswith("/data.pkl") for n in names):
        raise ArtifactError(f"{path}: not a readable automl checkpoint (a zip file, but not one torch.save wrote: "
                            "no data.pkl)")
    return path
