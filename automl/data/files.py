"""What kind of table a ``--data`` file is: its format (csv, tsv, parquet) and its compression.

A table may be compressed (``.csv.gz``, ``.tsv.bz2``, ``.csv.xz``, ``.csv.zst`` …) or packed alone in
a ``.zip``; pandas reads all of them, told the compression explicitly so the file name decides it,
not a guess. A ``.zip`` must hold exactly one table, whose own name gives its format. Sizes, ratios,
lines, fields and columns are bounded while a table is read: :mod:`automl.data.bounds`.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from automl.exceptions import DataError

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "csv", ".parquet": "parquet"}
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd", ".zip": "zip"}
SUFFIX_HELP = ".csv, .tsv or .parquet, optionally compressed (.gz, .bz2, .xz, .zst) or alone in a .zip"


@dataclass(frozen=True)
class TableFile:
    """How to read one table file: ``fmt`` is csv, tsv or parquet; ``compression`` a pandas name or None."""

    path: Path
    fmt: str
    compression: str | None

    @property
    def sep(self) -> str:
        return "\t" if self.fmt == "tsv" else ","


def table_file(path: Path, source: str, allowed: tuple[str, ...] = ("csv", "tsv", "parquet")) -> TableFile:
    """The :class:`TableFile` for ``path``; DataError naming ``source`` for a type it cannot read."""
    table = guess_table_file(path, source, allowed)
    if table is None:
        shown = "".join(s.lower() for s in path.suffixes[-2:]) or "a file without an extension"
        raise DataError(f"--data {source}: unsupported file type {shown!r} (use {SUFFIX_HELP})")
    return table


def guess_table_file(path: Path, source: str, allowed: tuple[str, ...] = ("csv", "tsv", "parquet")) -> TableFile | None:
    """The :class:`TableFile` for ``path``, or None when its name is no readable table of an
    ``allowed`` format; DataError for a .zip that is broken or holds anything but one table."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    compression = COMPRESSIONS.get(suffixes[-1]) if suffixes else None
    if compression == "zip":
        fmt = FORMATS.get(Path(_zip_member(path, source)).suffix.lower())
    else:
        last = suffixes[-2] if compression and len(suffixes) == 2 else (suffixes[-1] if suffixes else "")
        fmt = FORMATS.get(last)
    if fmt is None or fmt not in allowed or (fmt == "parquet" and compression is not None):
        return None
    return TableFile(path, fmt, compression)


def _zip_member(path: Path, source: str) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            members = [i for i in zf.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"--data {source}: not a readable .zip archive ({exc})") from None
    if len(members) != 1:
        names = ", ".join(m.filename for m in members[:5])
        names += f" and {len(members) - 5} more" if len(members) > 5 else ""
        raise DataError(f"--data {source}: a .zip must hold exactly one table, found {len(members)}"
                        + (f" ({names})" if members else ""))
    return members[0].filename  # its unpacked size and ratio: automl.data.bounds.check_packed


def strip_table_suffixes(name: str) -> str:
    """``reviews.tsv.gz`` -> ``reviews`` (for default study names)."""
    p = Path(name)
    while p.suffix.lower() in COMPRESSIONS or p.suffix.lower() in FORMATS:
        p = p.with_suffix("")
    return p.name or name
