"""Read a file's lineage back to its study and trial, checking every hash it can reach on disk.

``trace(path)`` reads the lineage record of ``path`` (a .pt, an ONNX file, compress_report.json or
the HTML report), then of each parent it names — looked up beside the child first, then at the
recorded path — and says of each link whether the parent on disk is the file it was made from
(``verified``), a different file now (``changed``), absent (``missing``) or unreadable. The chain ends
at the study and trial, checked in the study's storage when that is a SQLite file here (read-only).

Everything a file controls is bounded: the record's size, the number of parents, the chain's depth
and length; a file is hashed only when it is a regular file. Nothing in a file is executed.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

from automl.exceptions import ArtifactError
from automl.lineage import LINEAGE_KEY, ONNX_KEY, file_sha256, hide_password

MAX_DEPTH = 16  # links followed from the file to its root
MAX_LINKS = 64  # files visited in all
MAX_PARENTS = 8  # parents of one record
MAX_RECORD_CHARS = 1 << 20  # the JSON of one record (characters)
MAX_JSON_BYTES = 16 << 20  # compress_report.json read for its record (bytes)
MAX_HTML_BYTES = 64 << 20  # an HTML report read for its record (bytes)
MAX_PICKLE_BYTES = 64 << 20  # the data.pkl of a .pt read for its record (bytes)
MAX_ZIP_ENTRIES = 100_000  # entries of a .pt zip looked through for its data.pkl
MAX_HASH_BYTES = 64 << 30  # larger files are not hashed (bytes)
MAX_TEXT = 4096  # characters of a name or path taken from a record
SQLITE_TIMEOUT_S = 2.0  # a locked study database is reported, not waited for
HTML_MARK = "automl-lineage"  # the id of the <script type="application/json"> holding a report's record
_SHA = re.compile(r"[0-9a-f]{64}")
_HTML_RECORD = re.compile(r'<script type="application/json" id="automl-lineage">(.*?)</script>', re.S)


def _bounded(rec: object, where: str) -> dict[str, Any]:
    """``rec`` as a record: a dict whose JSON is at most MAX_RECORD_CHARS; ArtifactError otherwise."""
    if not isinstance(rec, dict):
        raise ArtifactError(f"{where}: its lineage is not an object")
    try:
        text = json.dumps(rec, default=lambda o: f"<{type(o).__name__}>")
    except (ValueError, RecursionError, TypeError):
        raise ArtifactError(f"{where}: its lineage is not plain data") from None
    if len(text) > MAX_RECORD_CHARS:
        raise ArtifactError(f"{where}: its lineage is {len(text)} characters (the limit is {MAX_RECORD_CHARS})")
    return json.loads(text)


def _from_json_text(text: str, where: str) -> object:
    if len(text) > MAX_RECORD_CHARS:
        raise ArtifactError(f"{where}: its lineage is {len(text)} characters (the limit is {MAX_RECORD_CHARS})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise ArtifactError(f"{where}: its lineage is not valid JSON") from None


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The lineage record stored in ``path`` (None when the file has none); ArtifactError when the file
    cannot be read as any automl artifact."""
    import zipfile

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ArtifactError(f"{where}: not found")
    suffix = path.suffix.lower()
    if suffix == ".json":
        if path.stat().st_size > MAX_JSON_BYTES:
            raise ArtifactError(f"{where}: larger than {MAX_JSON_BYTES} bytes")
        try:
            doc = json.loads(path.read_text(errors="replace"))
        except (ValueError, RecursionError, OSError):
            raise ArtifactError(f"{where}: not valid JSON") from None
        rec = doc.get(LINEAGE_KEY) if isinstance(doc, dict) else None
        return None if rec is None else _bounded(rec, where)
    if suffix in (".html", ".htm"):
        if path.stat().st_size > MAX_HTML_BYTES:
            raise ArtifactError(f"{where}: larger than {MAX_HTML_BYTES} bytes")
        found = _HTML_RECORD.search(path.read_text(errors="replace"))
        return None if found is None else _bounded(_from_json_text(found.group(1), where), where)
    if suffix == ".pt" or zipfile.is_zipfile(path):
        return _pt_record(path)
    return _onnx_record(path)


class _PlainUnpickler(pickle.Unpickler):
    """Reads the structure of a ``torch.save`` pickle without PyTorch and without running anything from
    the file: torch's tensor and storage rebuilders become a stub that returns None (the tensors are
    not needed, only the plain dicts beside them); any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return dict
        if module == "torch" or module.startswith("torch."):
            return _none
        raise pickle.UnpicklingError(f"refused global {module}.{name}"[:200])

    def persistent_load(self, pid: Any) -> None:
        return None


def _none(*args: Any, **kwargs: Any) -> None:
    return None


def _pt_record(path: Path) -> dict[str, Any] | None:
    """The record of a ``torch.save`` zip, read without PyTorch (a server stays free of it): its
    ``data.pkl`` (at most MAX_PICKLE_BYTES) through ``_PlainUnpickler``."""
    import io
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            entry = next((i for i in zf.infolist()[:MAX_ZIP_ENTRIES] if i.filename.endswith("/data.pkl")
                          or i.filename == "data.pkl"), None)
            if entry is None or entry.file_size > MAX_PICKLE_BYTES:
                raise ArtifactError(f"{path}: not an automl checkpoint "
                                    f"(no data.pkl of at most {MAX_PICKLE_BYTES} bytes)")
            data = zf.read(entry)
        ckpt = _PlainUnpickler(io.BytesIO(data)).load()
    except ArtifactError:
        raise
    except Exception:  # BadZipFile, UnpicklingError, a truncated pickle, RecursionError, MemoryError
        raise ArtifactError(f"{path}: not a readable automl checkpoint") from None
    if not isinstance(ckpt, dict):
        raise ArtifactError(f"{path}: not an automl checkpoint")
    rec = ckpt.get(LINEAGE_KEY)
    return None if rec is None else _bounded(rec, str(path))


def _onnx_record(path: Path) -> dict[str, Any] | None:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # DecodeError and friends: a corrupt or foreign file
        raise ArtifactError(f"{path}: not a readable ONNX file") from None
    for prop in model.metadata_props:
        if prop.key == ONNX_KEY:
            return _bounded(_from_json_text(prop.value, str(path)), str(path))
    return None


def _parents(rec: dict[str, Any]) -> list[dict[str, str]]:
    """The well-formed parent links of a record (at most MAX_PARENTS)."""
    out: list[dict[str, str]] = []
    parents = rec.get("parents")
    for p in parents if isinstance(parents, list) else []:
        if not isinstance(p, dict):
            continue
        name, path, sha = p.get("name"), p.get("path"), p.get("sha256")
        if not isinstance(name, str) or not isinstance(sha, str) or not _SHA.fullmatch(sha):
            continue
        rel = p.get("relpath")
        out.append({"name": Path(name[:MAX_TEXT]).name, "path": str(path)[:MAX_TEXT] if isinstance(path, str) else "",
                    "relpath": rel[:MAX_TEXT] if isinstance(rel, str) else "", "sha256": sha})
        if len(out) == MAX_PARENTS:
            break
    return out


def _hash(path: Path) -> str | None:
    """SHA-256 of a regular file of at most MAX_HASH_BYTES; None otherwise (a device, a fifo …)."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_HASH_BYTES:
            return None
        return file_sha256(path)
    except OSError:
        return None


#: what a served record may name outside ``within``: model files only, never any other file
MODEL_SUFFIXES = (".pt", ".onnx")


def _inside(path: Path, within: Path | None) -> bool:
    """Whether ``path`` may be opened: always without ``within``; else a model file (by suffix) or a
    file whose resolved path lies under ``within``."""
    if within is None or path.suffix.lower() in MODEL_SUFFIXES:
        return True
    try:
        return path.resolve().is_relative_to(within)
    except (OSError, RuntimeError):
        return False


def _locate(parent: dict[str, str], beside: Path, within: Path | None = None) -> tuple[Path | None, str | None, str]:
    """(where the parent is, its hash, status). The first of these that exists is the parent: its
    recorded path relative to the child (the same tree, even copied or moved), the same name beside
    the child, the recorded absolute path. With ``within``, a candidate outside that folder is opened
    only when it is a model file (a record's paths are the file author's words)."""
    for cand in (beside / parent["relpath"] if parent["relpath"] else None, beside / parent["name"],
                 Path(parent["path"]) if parent["path"] else None):
        if cand is None or not _inside(cand, within) or not cand.is_file():
            continue
        sha = _hash(cand)
        return cand, sha, "verified" if sha == parent["sha256"] else "changed"
    return None, None, "missing"


def _summary(rec: dict[str, Any]) -> dict[str, Any]:
    keep = ("artifact", "variant", "steps", "study", "data", "metrics", "versions", "created")
    return {k: rec[k] for k in keep if k in rec}


def _measured(path: Path, sha: str | None, reports: dict[Path, Any]) -> dict[str, Any] | None:
    """The row of ``path`` in a compress_report.json beside it that lists this very file (same hash)."""
    folder = path.parent
    if folder not in reports:
        reports[folder] = None
        report = folder / "compress_report.json"
        try:
            if report.is_file() and report.stat().st_size <= MAX_JSON_BYTES:
                reports[folder] = json.loads(report.read_text(errors="replace"))
        except (OSError, ValueError, RecursionError):
            pass
    doc = reports[folder]
    if not isinstance(doc, dict) or sha is None:
        return None
    files = (doc.get(LINEAGE_KEY) or {}).get("files") if isinstance(doc.get(LINEAGE_KEY), dict) else None
    if not isinstance(files, dict) or path.name not in files:
        return None
    if files.get(path.name) != sha:  # the report beside it measured another file of this name
        return {"changed": True, "report": str(folder / "compress_report.json")}
    name = doc.get("recommended_variant") if path.name == "best.onnx" else None
    for row in doc.get("variants") if isinstance(doc.get("variants"), list) else []:
        if isinstance(row, dict) and (row.get("file") == path.name or row.get("name") == name):
            return {"variant": row.get("name"), "metric": doc.get("metric"), "value": row.get("metric_value"),
                    "drop": row.get("drop"), "verdict": row.get("verdict"),
                    "report": str(folder / "compress_report.json")}
    return None


def _check_files(files: dict[str, Any], folder: Path, problems: list[str]) -> dict[str, str]:
    """File name -> verified | changed | missing, for the files a compress report lists beside it."""
    out: dict[str, str] = {}
    for name, want in list(files.items())[:MAX_LINKS]:
        if not isinstance(name, str) or not isinstance(want, str):
            continue
        name = Path(name[:MAX_TEXT]).name
        sha = _hash(folder / name)
        out[name] = "missing" if sha is None else "verified" if sha == want else "changed"
        if out[name] != "verified":
            problems.append(f"{name} (listed by compress_report.json) is {out[name]}")
    return out


def trace(path: str | Path, *, within: str | Path | None = None) -> dict[str, Any]:
    """The chain of ``path`` (see the module docstring): ``{"file", "ok", "links", "study", "problems"}``.

    ``within`` (the server's use): outside that folder only model files (.pt, .onnx) are looked for,
    and the study's database is not opened, so a hostile record cannot make this process read or
    hash any other file on the machine.

    ``links`` lists the files from ``path`` to its root, depth first: each with ``depth``, ``name``,
    ``path``, ``sha256``, ``expected_sha256`` (what its child recorded), ``status`` (start, verified,
    changed, missing, unreadable, no lineage, loop, too deep) and the record's ``steps``, ``study``,
    ``data``, ``metrics``, ``versions``. ``study``: the study and trial the chain ends at, checked."""
    start = Path(path)
    confine = Path(within).resolve() if within is not None else None
    if not start.is_file():
        raise ArtifactError(f"{start}: not found")
    links: list[dict[str, Any]] = []
    problems: list[str] = []
    reports: dict[Path, Any] = {}
    visited: set[Path] = set()
    root_study: dict[str, Any] = {}
    stack: list[tuple[Path | None, dict[str, Any], int, str]] = [(start, {}, 0, "")]
    while stack:
        file, parent, depth, child = stack.pop()
        link: dict[str, Any] = {"depth": depth, "name": parent.get("name") or start.name, "child": child}
        if parent:
            link["expected_sha256"] = parent["sha256"]
        if len(links) >= MAX_LINKS or depth > MAX_DEPTH:
            link.update(status="too deep", path=str(file) if file else parent.get("path"))
            problems.append(f"the chain is longer than {MAX_LINKS} files or {MAX_DEPTH} links: stopped")
            links.append(link)
            break
        if file is None:  # missing parent
            link.update(status="missing", path=parent.get("path"), sha256=None)
            problems.append(f"{parent['name']} (parent of {child}) is missing: not beside it nor at its recorded path")
            links.append(link)
            continue
        sha = _hash(file) if not parent else parent.get("_actual")
        status = parent.get("_status", "start")
        link.update(path=str(file.resolve()), sha256=sha, status=status)
        if status == "changed":
            problems.append(f"{file.name} changed since {child} was made from it "
                            f"(sha256 {str(sha)[:12]}… now, {parent['sha256'][:12]}… then)")
        resolved = file.resolve()
        if resolved in visited:
            link["status"] = "loop"
            problems.append(f"{file.name} is its own ancestor: stopped")
            links.append(link)
            continue
        visited.add(resolved)
        measured = _measured(file, sha, reports)
        if measured and measured.get("changed"):
            problems.append(f"{file.name} differs from the file compress_report.json beside it lists (changed since)")
            if link["status"] in ("start", "verified"):
                link["status"] = status = "changed"
        elif measured:
            link["measured"] = measured
        try:
            rec = read_record(file)
        except ArtifactError as exc:
            rec = None
            link["status"] = "unreadable" if status != "changed" else status
            link["error"] = str(exc).replace(str(file), file.name)
            problems.append(link["error"])
        if rec is None:
            if "error" not in link:
                link["lineage"] = False
                problems.append(f"{file.name} carries no lineage record (made before lineage was recorded?)")
            links.append(link)
            continue
        link.update(_summary(rec))
        if isinstance(rec.get("files"), dict):  # compress_report.json: every file of its set, by hash
            link["files"] = _check_files(rec["files"], file.parent, problems)
        if isinstance(rec.get("study"), dict) and rec["study"]:
            root_study = rec["study"]
        links.append(link)
        for p in reversed(_parents(rec)):
            where, actual, found = _locate(p, file.parent, confine)
            stack.append((where, {**p, "_actual": actual, "_status": found}, depth + 1, file.name))
    if root_study and confine is not None:
        study = {**{k: root_study.get(k) for k in ("name", "trial", "value", "trial_started") if k in root_study},
                 "storage": hide_password(str(root_study.get("storage") or "")), "status": "not checked",
                 "detail": "the server does not open study databases"}
    else:
        study = check_study(root_study) if root_study else {"status": "missing", "detail": "no study recorded"}
    if study["status"] in ("missing", "changed"):
        problems.append(f"study: {study['detail']}")
    _check_data(links, problems)
    ok = not problems and all(link["status"] in ("start", "verified") for link in links)
    return {"file": str(start), "ok": ok, "links": links, "study": study, "problems": problems}


def _check_data(links: list[dict[str, Any]], problems: list[str]) -> None:
    """A problem when two records of the chain were made on data with different rows."""
    prints = {link["data"]["rows_sha256"]: link["name"] for link in links
              if isinstance(link.get("data"), dict) and isinstance(link["data"].get("rows_sha256"), str)}
    if len(prints) > 1:
        problems.append("the chain's files were made on different data (rows SHA-256 differ): "
                        + ", ".join(sorted(prints.values())))


def check_study(study: dict[str, Any]) -> dict[str, Any]:
    """The study block of a record, checked where it can be: a SQLite storage file here is opened
    read-only and the trial is looked up (state COMPLETE, same objective value)."""
    out = {k: study.get(k) for k in ("storage", "name", "trial", "value", "trial_started") if k in study}
    url = str(study.get("storage") or "")
    out["storage"] = hide_password(url)
    if not url.startswith("sqlite:"):
        why = "the storage is not a SQLite file here" if url else "no storage recorded"
        out.update(status="not checked", detail=why)
        return out
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        db = make_url(url).database
    except (ArgumentError, ValueError):
        db = None
    if not db or not Path(db).is_file():
        out.update(status="missing", detail=f"the study database {db} is not on this machine")
        return out
    try:
        found = _sqlite_trial(Path(db), str(study.get("name")), study.get("trial"))
    except Exception as exc:  # sqlite3.Error, a file that is not a database: reported, never raised
        out.update(status="unreadable", detail=f"cannot read {db} ({exc.__class__.__name__})")
        return out
    if found is None:
        out.update(status="missing", detail=f"trial {study.get('trial')} of study {study.get('name')!r} is not in {db}")
        return out
    state, value = found
    want = study.get("value")
    same = want is None or (isinstance(want, (int, float)) and value is not None
                            and abs(value - want) <= 1e-9 * max(1.0, abs(want)))
    if state != "COMPLETE" or not same:
        out.update(status="changed", detail=f"trial {study.get('trial')} is now {state} with value {value}, "
                                            f"recorded {want}")
        return out
    out.update(status="verified", detail=f"trial {study.get('trial')} found complete with the recorded value")
    return out


def _sqlite_trial(db: Path, name: str, number: object) -> tuple[str, float | None] | None:
    """(state, first objective value) of trial ``number`` of study ``name`` in an Optuna SQLite file,
    opened read-only (a verification must never create tables or files)."""
    import sqlite3
    from urllib.request import pathname2url

    if not isinstance(number, int):
        return None
    con = sqlite3.connect(f"file:{pathname2url(str(db.resolve()))}?mode=ro", uri=True, timeout=SQLITE_TIMEOUT_S)
    try:
        row = con.execute("SELECT t.trial_id, t.state FROM trials t JOIN studies s ON s.study_id = t.study_id "
                          "WHERE s.study_name = ? AND t.number = ?", (name, number)).fetchone()
        if row is None:
            return None
        value = con.execute("SELECT value FROM trial_values WHERE trial_id = ? AND objective = 0",
                            (row[0],)).fetchone()
        return str(row[1]), (float(value[0]) if value and value[0] is not None else None)
    finally:
        con.close()
