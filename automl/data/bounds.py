"""Limits on the data files the tool reads: ``--data`` tables and text folders, ``predict`` input tables.

A table is checked by :func:`check_table` before the CSV parser reads it: one pass decompresses it in
chunks of at most 1 MiB and checks each (never parsing, never holding more than a chunk), so a hostile
file is refused after at most one limit's worth of decompression, not after a ``MemoryError``: an
8 MB zip holding 4 GB of CSV, a 3 GB single line, a 190 MB field or a header of 10^6 columns. The
limits, each raised with an environment variable (sizes in bytes, or with a K, M or G suffix, powers
of 1024):

==========================  ========= ============================================================
variable                    default   what
==========================  ========= ============================================================
AUTOML_MAX_DATA_BYTES       1G        bytes of one table once decompressed (a text folder: in all)
AUTOML_MAX_DATA_RATIO       100       decompressed / compressed size, once past 64 MiB decompressed
AUTOML_MAX_LINE_BYTES       16M       bytes of one line of a table
AUTOML_MAX_FIELD_BYTES      4M        bytes of one field (cell, or run between separators); one
                                      text file of a text folder
AUTOML_MAX_COLUMNS          10000     columns of a table (counted in its header line)
AUTOML_MAX_CELLS            100000000 lines x columns of a table (800 MB as float64 once parsed)
==========================  ========= ============================================================

The field check in the stream is quote-blind (a run of bytes without a separator or line break), a
lower bound on a quoted field's length; :func:`check_fields` checks the parsed cells exactly.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from automl.exceptions import ConfigError, DataError

if TYPE_CHECKING:
    import zipfile

    import pandas as pd

RATIO_FLOOR = 64 << 20  # tables that unpack to less than this are never refused for their ratio
SCAN_CHUNK = 1 << 20  # bytes checked at a time
ENV = {"max_bytes": "AUTOML_MAX_DATA_BYTES", "max_ratio": "AUTOML_MAX_DATA_RATIO",
       "max_line_bytes": "AUTOML_MAX_LINE_BYTES", "max_field_bytes": "AUTOML_MAX_FIELD_BYTES",
       "max_columns": "AUTOML_MAX_COLUMNS", "max_cells": "AUTOML_MAX_CELLS"}
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class DataLimits:
    """The bounds on one data file; :meth:`from_env` reads the ``AUTOML_MAX_*`` variables."""

    max_bytes: int = 1 << 30
    max_ratio: float = 100.0
    max_line_bytes: int = 16 << 20
    max_field_bytes: int = 4 << 20
    max_columns: int = 10_000
    max_cells: int = 100_000_000  # lines x columns: 800 MB as float64 once parsed

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> DataLimits:
        """The defaults, overridden by the environment; a ConfigError names a malformed variable."""
        env = os.environ if environ is None else environ
        values: dict[str, int | float] = {}
        for f in fields(cls):
            raw = env.get(ENV[f.name], "").strip()
            if raw:
                values[f.name] = _parse(ENV[f.name], raw, ratio=f.name == "max_ratio",
                                        count=f.name in ("max_columns", "max_cells"))
        return cls(**values)

    def refusal(self, label: str, what: str, field_name: str) -> DataError:
        """A DataError: ``label`` (the file), what is over which limit, and the variable that raises it."""
        limit = getattr(self, field_name)
        shown = f"{limit:g}" if field_name == "max_ratio" else (
            f"{limit:,}" if field_name in ("max_columns", "max_cells") else _size(limit))
        joint = "" if what.endswith(",") else (" " if what.endswith((" line", " field")) else ", ")
        return DataError(f"{label}: {what}{joint}over the limit of {shown} (raise it with {ENV[field_name]}=...)")


def _parse(name: str, raw: str, ratio: bool, count: bool) -> int | float:
    text = raw.upper() if count or ratio else raw.upper().removesuffix("IB").removesuffix("B")
    unit = _UNITS.get(text[-1:]) if not ratio and not count else None
    number = text[:-1] if unit and not text[-1:].isdigit() else text
    try:
        value = float(number) if ratio else int(number) * (unit or 1)
    except ValueError:
        value = -1
    if not (value > 0 and value < 1 << 50):
        kind = "a number > 0" if ratio else ("a positive whole number" if count else
                                            "a positive whole number of bytes, optionally with K, M or G")
        raise ConfigError(f"{name}={raw[:40]!r}: must be {kind}")
    return value


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.4g} {unit}"
    return f"{int(n)} bytes"


def _decompressed(path: Path, compression: str | None, label: str) -> BinaryIO:
    """``path``'s bytes, decompressed on the fly."""
    import bz2
    import gzip
    import lzma
    import zipfile

    if compression is None:
        return open(path, "rb")  # noqa: SIM115 - closed by the caller
    if compression == "gzip":
        return gzip.open(path, "rb")
    if compression == "bz2":
        return bz2.open(path, "rb")
    if compression == "xz":
        return lzma.open(path, "rb")
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise DataError(f"{label}: reading .zst needs the zstandard package (pip install zstandard)") from None
        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)  # noqa: SIM115
    if compression == "zip":
        zf = zipfile.ZipFile(path)
        (member,) = [i for i in zf.infolist() if not i.is_dir() and not i.filename.startswith("__MACOSX/")]
        return _ZipMember(zf, zf.open(member))
    raise DataError(f"{label}: unknown compression {compression!r}")


class _ZipMember(io.RawIOBase):
    """One member of a zip archive; closing it closes the archive too."""

    def __init__(self, archive: zipfile.ZipFile, member: BinaryIO) -> None:
        self.archive, self.member = archive, member

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        return self.member.readinto(buffer)

    def close(self) -> None:
        self.member.close()
        self.archive.close()
        super().close()


class _CheckedStream(io.RawIOBase):
    """Decompressed table bytes; each chunk read is checked against the limits."""

    def __init__(self, inner: BinaryIO, label: str, limits: DataLimits, sep: bytes, packed: int | None) -> None:
        self.inner, self.label, self.limits, self.sep = inner, label, limits, sep
        self.step = max(1, min(SCAN_CHUNK, limits.max_line_bytes, limits.max_field_bytes))
        self.packed = packed  # compressed file size, or None for a plain file
        self.total = 0  # bytes handed on so far
        self.line_start = 0  # offset of the current line's first byte
        self.field_start = 0  # offset of the current run's first byte (a run ends at a separator or line break)
        self.header_columns: int | None = None  # columns of the header line once it is complete
        self.header_seps = 0  # separators of the (still unfinished) header line so far
        self.lines = 0  # line breaks so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:
        # At most `step` bytes a call: no span longer than a limit then fits inside one chunk, so the
        # first and last separator of each chunk are all the checks need (memchr speed, no arrays).
        view = memoryview(buffer)[: self.step]
        n = self.inner.readinto(view)
        if n:
            self._check(bytes(view[:n]))
        return n

    def close(self) -> None:
        self.inner.close()
        super().close()

    def _check(self, chunk: bytes) -> None:
        lim, start = self.limits, self.total
        self.total += len(chunk)
        if self.total > lim.max_bytes:
            raise lim.refusal(self.label, f"holds more than {_size(lim.max_bytes)}"
                              + (" once decompressed" if self.packed is not None else ""), "max_bytes")
        if self.packed is not None and self.total > RATIO_FLOOR and self.total > lim.max_ratio * self.packed:
            raise lim.refusal(self.label, f"unpacks to more than {self.total / self.packed:.0f} times its "
                              f"compressed size ({_size(self.packed)})", "max_ratio")
        first_nl, last_nl = chunk.find(b"\n"), chunk.rfind(b"\n")
        self.lines += chunk.count(b"\n")
        if self.header_columns is None:
            self.header_seps += chunk.count(self.sep, 0, first_nl if first_nl >= 0 else len(chunk))
            if self.header_seps + 1 > lim.max_columns:
                count = f"{self.header_seps + 1:,}" if first_nl >= 0 else f"at least {self.header_seps + 1:,}"
                raise lim.refusal(self.label, f"the header line has {count} columns", "max_columns")
            if first_nl >= 0:
                self.header_columns = self.header_seps + 1
        self.line_start = self._span(start, first_nl, last_nl, self.line_start, "max_line_bytes", "a line")
        first_sep, last_sep = chunk.find(self.sep), chunk.rfind(self.sep)
        first = min(i for i in (first_nl, first_sep, len(chunk)) if i >= 0)
        last = max(last_nl, last_sep)
        self.field_start = self._span(start, first if last >= 0 else -1, last, self.field_start,
                                      "max_field_bytes", "a field")

    def _span(self, start: int, first: int, last: int, open_start: int, field_name: str, what: str) -> int:
        """Check the span that the chunk starting at ``start`` ends at offset ``first`` (-1: none does)
        and the span still open at its end; returns where the open span begins."""
        limit = getattr(self.limits, field_name)
        longest = start + first - open_start if first >= 0 else 0
        if last >= 0:
            open_start = start + last + 1
        if max(longest, self.total - open_start) > limit:
            raise self.limits.refusal(self.label, f"has {what}", field_name)
        return open_start


def check_packed(path: Path, label: str, limits: DataLimits | None = None) -> None:
    """What a file's own header says, before any decompression: the plain size of a file, the
    declared unpacked size and ratio of a .zip member, the uncompressed size and columns of a parquet."""
    import zipfile

    limits = limits or DataLimits.from_env()
    size = path.stat().st_size
    suffix = path.suffix.lower()
    unpacked = size
    columns = None
    if suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            unpacked = sum(i.file_size for i in zf.infolist() if not i.is_dir())
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path).metadata
        except Exception as exc:  # pyarrow's errors for a broken footer are of several kinds
            raise DataError(f"{label}: not a readable parquet file ({str(exc)[:120]})") from None
        columns = meta.num_columns
        unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if columns is not None and columns > limits.max_columns:
        raise limits.refusal(label, f"has {columns:,} columns", "max_columns")
    if unpacked > limits.max_bytes:
        raise limits.refusal(label, f"holds {_size(unpacked)}" + (" once unpacked" if unpacked != size else ""),
                             "max_bytes")
    if unpacked != size and unpacked > RATIO_FLOOR and unpacked > limits.max_ratio * max(size, 1):
        raise limits.refusal(label, f"unpacks to {unpacked / max(size, 1):.0f} times its size ({_size(size)})",
                             "max_ratio")


def check_table(path: Path, compression: str | None, sep: str, label: str,
                limits: DataLimits | None = None) -> None:
    """Check a csv/tsv table before the CSV parser reads it: its header (:func:`check_packed`), then
    one pass over its decompressed bytes in chunks of at most 1 MiB, never parsing and never holding
    more than a chunk; a DataError naming ``label`` as soon as a limit is broken."""
    limits = limits or DataLimits.from_env()
    check_packed(path, label, limits)
    packed = path.stat().st_size if compression is not None else None
    with _CheckedStream(_decompressed(path, compression, label), label, limits, sep.encode(), packed) as scan:
        chunk = bytearray(SCAN_CHUNK)
        while scan.readinto(chunk):
            pass
    columns = scan.header_columns or scan.header_seps + 1
    if scan.lines * columns > limits.max_cells:
        raise limits.refusal(label, f"holds {scan.lines:,} lines x {columns:,} columns = {scan.lines * columns:,} "
                             "cells", "max_cells")


def check_fields(frame: pd.DataFrame, label: str, limits: DataLimits | None = None) -> None:
    """The longest text cell of each text column of a parsed table against AUTOML_MAX_FIELD_BYTES
    (in characters: a lower bound on bytes); the stream's check is blind to quoted separators."""
    import pandas as pd

    limits = limits or DataLimits.from_env()
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_string_dtype(col.dtype) and col.dtype != object:
            lengths = col.str.len().fillna(0)
        elif col.dtype == object:
            lengths = col.map(lambda v: len(v) if isinstance(v, str) else 0)
        else:
            continue
        if len(lengths) and int(lengths.max()) > limits.max_field_bytes:
            row = int(lengths.to_numpy().argmax())
            raise limits.refusal(label, f"column {str(name)[:40]!r}, row {row}: a field of "
                                 f"{int(lengths.max()):,} characters,", "max_field_bytes")


def check_text_folder(files: list[Path], label: str, limits: DataLimits | None = None) -> None:
    """Each text file of a ``<class>/*.txt`` folder (one sample each) against AUTOML_MAX_FIELD_BYTES,
    and all of them together against AUTOML_MAX_DATA_BYTES, from their sizes before reading."""
    limits = limits or DataLimits.from_env()
    total = 0
    for f in files:
        size = f.stat().st_size
        if size > limits.max_field_bytes:
            raise limits.refusal(f"{label}: {f.name}", f"one text of {_size(size)},", "max_field_bytes")
        total += size
        if total > limits.max_bytes:
            raise limits.refusal(label, f"its text files hold more than {_size(limits.max_bytes)},", "max_bytes")


def check_data_file(source: str) -> None:
    """All the limits of a ``--data`` table file or text folder, with no parsing and no heavy import:
    ``search`` calls it before importing PyTorch, so a hostile file fails in about a second. Names
    that are not a file or folder (built-in data sets) and unknown file types are left to the loaders."""
    from automl.data.files import guess_table_file

    path = Path(source).expanduser()
    label = f"--data {source}"
    if path.is_dir():
        subs = [sub for sub in path.iterdir() if sub.is_dir() and not sub.name.startswith(".")]
        files = [f for sub in subs for f in sub.glob("*.txt")]
        if files:
            check_text_folder(files, label)
        return
    if not path.is_file():
        return
    table = guess_table_file(path, source)
    if table is None:
        return
    if table.fmt == "parquet":
        check_packed(path, label)
    else:
        check_table(path, table.compression, table.sep, label)
