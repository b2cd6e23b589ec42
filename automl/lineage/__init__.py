"""Lineage: where an artifact came from, recorded in the artifact itself.

Every file automl writes (best.pt, pruned.pt, each ONNX variant, compress_report.json, the HTML
report) carries one *lineage record*, a plain JSON-able dict (``make_record``):

- ``lineage_version``: 1
- ``artifact``: what the file is (``checkpoint``, ``onnx``, ``compress-report``, ``report``)
- ``steps``: the steps that made it from its parents, each ``{"step", "settings"}`` (search, prune,
  fine-tune, distil, export, quantize, compress, report)
- ``parents``: the files it was made from, each ``{"name", "path", "sha256"}``
- ``study``: storage URL (password hidden), study name, trial number, trial value
- ``data``: the data fingerprint (``data_fingerprint``: source, split seed and fractions, a SHA-256 of
  every split's rows as the model sees them, split sizes, class names)
- ``metrics``: test (and validation) metrics, ``versions`` (``versions()``), ``created`` (UTC)

In a ``.pt`` it is the plain dict under ``"lineage"`` (``weights_only`` loadable); in ONNX the JSON
string of ``metadata_props["automl.lineage"]``; in compress_report.json the ``"lineage"`` key.
``automl.lineage.trace`` reads the chain back and checks every hash it can reach.

This package's ``__init__`` imports nothing heavy and nothing above the artifacts layer.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.runtime.inference import sha256_file as file_sha256  # the one file hash (serve's /metadata too)

if TYPE_CHECKING:
    from automl.data.bundle import DataBundle

__all__ = ["LINEAGE_KEY", "LINEAGE_VERSION", "ONNX_KEY", "data_fingerprint", "file_sha256", "git_commit",
           "data_of", "hide_password", "make_record", "onnx_props", "parent_entry", "scrub", "study_of", "versions"]

LINEAGE_VERSION = 1
LINEAGE_KEY = "lineage"  # the key of the record in a .pt dict and in compress_report.json
ONNX_KEY = "automl.lineage"  # the metadata_props key of the record in an ONNX file
MAX_CLASSES_RECORDED = 1000  # class names written into a record (the rest are counted)
MAX_GIT_FILE_BYTES = 1 << 20  # a .git/HEAD or packed-refs read for the commit (bytes)
VERSIONED = ("torch", "onnx", "onnxruntime", "optuna")  # distributions whose versions every record names

# scheme://user:password@host -> scheme://user:***@host (any URL in any string of a record)
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s/]*@")


def hide_password(url: str) -> str:
    """A storage URL with its password hidden (SQLAlchemy's ``render_as_string(hide_password=True)``);
    anything that does not parse keeps only its scheme."""
    if "://" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://…"
    return url if u.password is None else u.render_as_string(hide_password=True)


def scrub(obj: Any) -> Any:
    """``obj`` with the password of every URL in its strings hidden (a last guard: storage URLs are
    already rendered without it, but a data source or a setting might hold one)."""
    if isinstance(obj, str):
        return _URL_PASSWORD.sub(r"\1***@", obj) if "://" in obj else obj
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub(v) for v in obj]
    return obj




def _read_small(path: Path) -> str | None:
    try:
        if not path.is_file() or path.stat().st_size > MAX_GIT_FILE_BYTES:
            return None
        return path.read_text(errors="replace")
    except OSError:
        return None


def git_commit(start: str | Path | None = None) -> str | None:
    """The commit checked out where automl's source lives (a git checkout, a worktree included), read
    from the ``.git`` files: no ``git`` process, so nothing can hang. None outside a checkout."""
    here = Path(start) if start is not None else Path(__file__).resolve().parents[2]
    for root in (here, *list(here.parents)[:2]):
        dot = root / ".git"
        if dot.is_file():  # a worktree or submodule: "gitdir: <path>"
            text = _read_small(dot) or ""
            if not text.startswith("gitdir:"):
                return None
            gitdir = Path(text.split(":", 1)[1].strip())
            gitdir = gitdir if gitdir.is_absolute() else root / gitdir
        elif dot.is_dir():
            gitdir = dot
        else:
            continue
        head = (_read_small(gitdir / "HEAD") or "").strip()
        if not head.startswith("ref:"):
            return head if re.fullmatch(r"[0-9a-f]{40}", head) else None
        ref = head.split(":", 1)[1].strip()
        common = gitdir
        if (gitdir / "commondir").is_file():  # a worktree keeps its refs in the main repository
            common = (gitdir / (_read_small(gitdir / "commondir") or ".").strip()).resolve()
        for base in (gitdir, common):
            value = (_read_small(base / ref) or "").strip()
            if re.fullmatch(r"[0-9a-f]{40}", value):
                return value
        for line in (_read_small(common / "packed-refs") or "").splitlines():
            if line.endswith(" " + ref) and re.fullmatch(r"[0-9a-f]{40}", line[:40]):
                return line[:40]
        return None
    return None


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str | None]:
    """Python, torch, onnx, onnxruntime, optuna and automl versions, and automl's git commit (None
    outside a checkout). Read from the installed distributions' metadata: nothing is imported."""
    import importlib.metadata as md
    import platform

    from automl._version import __version__

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED:
        found = None
        for dist in (name, f"{name}-gpu") if name == "onnxruntime" else (name,):
            try:
                found = md.version(dist)
                break
            except md.PackageNotFoundError:
                continue
        out[name] = found
    out["automl"] = __version__
    out["git_commit"] = git_commit()
    return out


def _tensor_bytes(h: Any, t: Any) -> None:
    """Feed a tensor's dtype, shape and bytes into the hash ``h``."""
    import torch

    t = t.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    if t.numel():
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool
                 else t.numpy().tobytes())


_ROWS_CACHE: dict[int, tuple[Any, str]] = {}  # id(bundle) -> (weak reference to it, its rows' SHA-256)


def _rows_sha256(bundle: DataBundle) -> str:
    """SHA-256 over every split's rows and labels; computed once per bundle object (best.pt is written
    after many trials of one search, on the same data)."""
    import weakref

    cached = _ROWS_CACHE.get(id(bundle))
    if cached is not None and cached[0]() is bundle:
        return cached[1]
    h = hashlib.sha256()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        h.update(name.encode())
        _tensor_bytes(h, getattr(bundle, name))
    for key in [k for k, (ref, _) in _ROWS_CACHE.items() if ref() is None]:
        del _ROWS_CACHE[key]
    _ROWS_CACHE[id(bundle)] = (weakref.ref(bundle), h.hexdigest())
    return h.hexdigest()


def data_fingerprint(bundle: DataBundle, data: dict[str, Any]) -> dict[str, Any]:
    """What data a model was trained and tested on: the source and split settings of ``data`` (a
    ``DataConfig.to_dict()``), a SHA-256 over every split's rows and labels as the model sees them
    (the same rows give the same hash, on any machine), the split sizes and the class names."""
    classes = list(bundle.meta.get("classes") or (bundle.meta.get("preprocess") or {}).get("classes") or [])
    keep = ("source", "seed", "val_fraction", "test_fraction", "test_source", "target", "problem")
    return scrub({
        **{k: data.get(k) for k in keep if k in data},
        "rows_sha256": _rows_sha256(bundle),
        "sizes": bundle.sizes(),
        "classes": [str(c) for c in classes[:MAX_CLASSES_RECORDED]],
        "num_classes": len(classes),
    })


def parent_entry(path: str | Path, *, sha256: str | None = None, place: str | Path | None = None,
                 child_dir: str | Path | None = None) -> dict[str, str]:
    """A parent link: the file's name, its absolute path (``place``: where it will be once in place,
    when it is written in a staging folder now), its path relative to the folder of the child
    (``child_dir``: so a copied or moved tree still finds it) and its SHA-256 (hashed from ``path``)."""
    import os

    path = Path(path)
    where = Path(place) if place is not None else path.resolve()
    entry = {"name": path.name, "path": str(where), "sha256": sha256 or file_sha256(path)}
    if child_dir is not None:
        entry["relpath"] = os.path.relpath(where, Path(child_dir).resolve())
    return entry


def make_record(
    artifact: str, steps: list[dict[str, Any]], *, parents: list[dict[str, str]] | None = None,
    study: dict[str, Any] | None = None, data: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One lineage record (see the module docstring), JSON-able and with every URL password hidden."""
    study = dict(study or {})
    if isinstance(study.get("storage"), str):
        study["storage"] = hide_password(study["storage"])
    record = {
        "lineage_version": LINEAGE_VERSION,
        "artifact": artifact,
        "steps": steps,
        "parents": parents or [],
        "study": study,
        "data": data or {},
        "metrics": metrics or {},
        "versions": versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    return scrub(json.loads(json.dumps(record, default=str)))  # plain JSON types only


def study_of(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The study block of a checkpoint's lineage (or, for an older file, from its plain keys)."""
    rec = ckpt.get(LINEAGE_KEY)
    if isinstance(rec, dict) and isinstance(rec.get("study"), dict) and rec["study"]:
        return dict(rec["study"])
    return {k: v for k, v in {"storage": ckpt.get("storage"), "name": ckpt.get("study"),
                               "trial": ckpt.get("trial")}.items() if v is not None}


def data_of(ckpt: dict[str, Any]) -> dict[str, Any]:
    """The data fingerprint of a checkpoint's lineage ({} when it has none)."""
    rec = ckpt.get(LINEAGE_KEY)
    return dict(rec.get("data") or {}) if isinstance(rec, dict) else {}


def onnx_props(record: dict[str, Any]) -> dict[str, str]:
    """The ``metadata_props`` entry that carries ``record`` in an ONNX file."""
    return {ONNX_KEY: json.dumps(record, separators=(",", ":"))}
