"""best.pt / best.json: atomic writing and safe loading.

A checkpoint is a dict of plain Python types and tensors, loadable with
``torch.load(path, weights_only=True)``; nothing in it is ever unpickled as an object.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.exceptions import ArtifactError

# The arch checks live with the model families they bound; re-exported here, where checkpoints are loaded.
from automl.models import check_arch_bounds, check_arch_matches_weights, short_value  # noqa: F401

if TYPE_CHECKING:
    from types import TracebackType

    from torch import nn

    from automl.models import Arch, Params

#: a best.pt dict (DESIGN.md §3): ``format_version``, ``task``, ``arch``, ``state_dict``, ``preprocess``,
#: ``data``, ``metrics``, ``params``, ``study``, ``trial``, ``versions`` and any extra keys of a stage
#: (``pruned_from``, ``prune``); plain values only (``plain``), which ``weights_only`` loading accepts
Checkpoint = dict[str, Any]
#: what ``plain`` returns: None, bool, int, float, str, and lists and string-keyed dicts of them
Plain = None | bool | int | float | str | list["Plain"] | dict[str, "Plain"]

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format_version", "task", "arch", "state_dict", "preprocess")


def versions() -> dict[str, str]:
    import optuna
    import torch

    from automl._version import __version__

    return {"torch": str(torch.__version__), "optuna": str(optuna.__version__), "automl": str(__version__)}


def new_file_mode() -> int:
    """The one permission rule for every file automl writes (best.pt, reports, ONNX): what ``open()``
    would give a new file, 0666 minus the umask (0644 under the usual umask 022). ``mkstemp`` alone
    would make 0600 files that a server running as another user cannot read."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_target(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, new_file_mode())
    return fd, tmp


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``."""
    path = Path(path)
    fd, tmp = _atomic_target(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, obj: object) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode())


class StagedDir:
    """A set of files written into a hidden temporary folder beside ``final`` and put in place as a
    whole by :meth:`commit`; leaving the ``with`` block by an exception removes the folder.

    ``final`` absent, or holding only files for which ``owned(name)`` is true (a previous run's set):
    it is replaced by renaming folders, so after a kill at any moment ``final`` holds either the
    whole old set or the whole new one (between the two renames it is briefly absent). ``final``
    holding other files too (``--out`` pointed at a shared folder): the old owned files are removed
    first, then the new ones are moved in, ``last`` at the end, so new and old never mix.
    """

    def __init__(self, final: str | Path, owned: Callable[[str], bool]) -> None:
        self.final = Path(final).resolve()
        if self.final.exists() and not self.final.is_dir():
            raise ArtifactError(f"{self.final}: exists and is not a folder")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.owned = owned
        self._sweep()
        self.work = Path(tempfile.mkdtemp(prefix=self._prefix, suffix=".tmp", dir=self.final.parent))
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(self.work, 0o777 & ~mask)  # mkdtemp's 0700 would become the output folder's mode

    @property
    def _prefix(self) -> str:
        return f".{self.final.name}.{os.getpid()}."

    def _sweep(self) -> None:
        """Remove the staging folders of earlier runs that were killed (their process is gone)."""
        for p in self.final.parent.glob(f".{glob.escape(self.final.name)}.*"):
            pid = p.name[len(self.final.name) + 2 :].split(".", 1)[0]
            if p.is_dir() and p.suffix in (".tmp", ".old") and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)

    def __enter__(self) -> StagedDir:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def commit(self, last: str | None = None) -> None:
        """Put the staged files in place of the previous set (see the class docstring)."""
        for f in self.work.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if not self.final.exists():
            os.rename(self.work, self.final)
            return
        if all(self.owned(p.name) for p in self.final.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=self._prefix, suffix=".old", dir=self.final.parent))
            os.rename(self.final, old)  # onto the empty folder just made
            os.rename(self.work, self.final)
            shutil.rmtree(old, ignore_errors=True)
            return
        for p in self.final.iterdir():
            if self.owned(p.name) and (p.is_file() or p.is_symlink()):
                p.unlink()
        for f in sorted(self.work.iterdir(), key=lambda f: f.name == last):
            os.replace(f, self.final / f.name)
        self.discard()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Save a checkpoint dict atomically (temporary file + rename)."""
    import torch

    path = Path(path)
    fd, tmp = _atomic_target(path)
    os.close(fd)
    try:
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def plain(obj: object) -> Plain:
    """Convert to the plain types ``weights_only`` loading accepts (numpy scalars, str subclasses,
    paths and tuples become int/float/str/list)."""
    import numpy as np

    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (int, str)) else k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    return str(obj)


def make_checkpoint(
    *,
    task: str,
    arch: Arch,
    model: nn.Module,
    preprocess: dict[str, object],
    data: dict[str, object],
    metrics: dict[str, object],
    params: Params | None = None,
    study: str | None = None,
    trial: int | None = None,
    extra: dict[str, object] | None = None,
) -> Checkpoint:
    """Assemble a best.pt-format dict (DESIGN.md §3) from plain parts and a model."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    ckpt = {
        "format_version": FORMAT_VERSION,
        "task": str(task),
        "arch": plain(arch),
        "state_dict": state,
        "preprocess": plain(preprocess),
        "data": plain(data),
        "metrics": plain(metrics),
        "params": plain(params or {}),
        "study": plain(study),
        "trial": plain(trial),
        "versions": versions(),
    }
    if extra:
        ckpt.update(plain(extra))
    return ckpt


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a best.pt-format file with ``weights_only=True`` and check its keys.

    Raises ArtifactError with one readable line for a missing, corrupt or foreign file.
    """
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise ArtifactError(f"{path}: is a folder, expected a best.pt file")
    try:
        with warnings.catch_warnings():  # torch warns about old pickle protocols: the error line says it all
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError,
            AttributeError, TypeError, IndexError, KeyError, MemoryError) as exc:
        raise ArtifactError(f"{path}: not a readable automl checkpoint ({_load_reason(exc)})") from None
    if not isinstance(ckpt, dict):
        raise ArtifactError(f"{path}: not an automl checkpoint (holds a {type(ckpt).__name__}, not a dict)")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise ArtifactError(f"{path}: not an automl checkpoint (missing keys: {', '.join(missing)})")
    if not isinstance(ckpt["format_version"], int) or ckpt["format_version"] > FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: checkpoint format {ckpt['format_version']!r} is newer than this automl understands "
            f"({FORMAT_VERSION}); upgrade automl"
        )
    if not isinstance(ckpt["arch"], dict) or not isinstance(ckpt["state_dict"], dict):
        raise ArtifactError(f"{path}: not an automl checkpoint ('arch' and 'state_dict' must be dicts)")
    check_preprocess(ckpt, str(path))
    return ckpt


def check_preprocess(ckpt: Checkpoint, source: str = "checkpoint") -> None:
    """ArtifactError unless the checkpoint's preprocessing spec passes exactly the checks an ONNX file's
    does (``Task.validate_spec``: sizes, vocabularies, safe token patterns, class names) and agrees
    with its arch (image size and channels, vocabulary size), so a ``.pt`` cannot ask predict for
    more than an ``.onnx`` can."""
    from automl.exceptions import DataError
    from automl.runtime.inference import task_of
    from automl.runtime.onnx_meta import check_classes

    spec = ckpt["preprocess"]
    if not isinstance(spec, dict):
        raise ArtifactError(f"{source}: not an automl checkpoint ('preprocess' must be a dict)")
    spec = {"kind": ckpt.get("task"), **spec}
    from automl.tasks import decision_threshold

    try:
        task_of(spec).validate_spec(spec)
        decision_threshold(spec)  # a binary model's threshold: a number in (0, 1) when present
    except DataError as exc:
        raise ArtifactError(f"{source}: bad preprocessing spec: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # e.g. an int of 5,000 digits
        raise ArtifactError(f"{source}: bad preprocessing spec ({exc.__class__.__name__})") from None
    check_classes(spec.get("classes") or [], f"{source}: preprocess.classes")
    arch = ckpt["arch"]
    implied = {"input_size": spec.get("size"), "in_channels": spec.get("channels"),
               "vocab_size": len(spec["vocab"]) if isinstance(spec.get("vocab"), list) else None}
    for key, want in implied.items():
        if key in arch and want is not None and arch[key] != want:
            raise ArtifactError(f"{source}: the arch's {key} is {short_value(arch[key])} but the preprocessing "
                                f"spec implies {short_value(want)}: the file was altered")


def _load_reason(exc: BaseException) -> str:
    """A short reason for a failed ``torch.load`` (PyTorch's own text is long and advisory)."""
    text = str(exc).strip()
    if "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if found:
            return f"it holds pickled objects, which are never loaded: {found.group(1)[:120]}"
        return "not a PyTorch checkpoint, or it holds pickled objects, which are never loaded"
    if "zip" in text.lower() or "central directory" in text.lower():
        return "not a PyTorch zip archive (truncated or another kind of file)"
    return text.splitlines()[0][:160] if text else exc.__class__.__name__


def model_from_checkpoint(ckpt: Checkpoint, source: str = "checkpoint") -> nn.Module:
    """Rebuild the module stored in a loaded checkpoint dict, in eval mode on the CPU.

    The arch is checked against the stored weights' shapes *before* anything is allocated (see
    :func:`check_arch_matches_weights`), so a small file whose arch claims huge layers is refused
    without taking the memory those layers would need."""
    from automl.models import build_from_arch

    check_arch_matches_weights(ckpt["arch"], ckpt["state_dict"], source)
    try:
        model = build_from_arch(ckpt["arch"])
    except ArtifactError as exc:
        raise ArtifactError(f"{source}: {exc}") from None
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise ArtifactError(f"{source}: weights do not match the stored architecture ({detail[:160]})") from None
    return model.eval()


def load_model(path: str | Path, device: str = "cpu") -> nn.Module:
    """``best.pt`` -> the rebuilt module in eval mode on ``device``."""
    ckpt = load_checkpoint(path)
    return model_from_checkpoint(ckpt, str(path)).to(device)
