"""Input preparation (paper §3.1): turn user data into a validated ``Dataset`` and make L0 titles.

Everything a user can get wrong here raises ``InputError`` with what is wrong, where (ids, rows,
columns, file names) and what to do; raw pandas/PIL exceptions never escape for bad input.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import numbers
import os
import re
import shutil
import time
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.preprocessing import StandardScaler

from .dataset import Dataset
from .errors import InputError

logger = logging.getLogger("hercules_core")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp")
TABLE_EXTENSIONS = (".csv", ".tsv", ".txt", ".json", ".jsonl", ".parquet", ".xlsx", ".xls")
MODALITY_CHOICES = ("auto", "text", "image", "numeric")
# The budget of a ZIP of images, checked on its directory before anything is extracted.
MAX_ZIP_BYTES = 2 * 1024**3
MAX_ZIP_ENTRIES = 50_000
MAX_ZIP_RATIO = 200  # per large entry, and for the whole archive
# An entry this small cannot be a bomb on its own (the whole-archive ratio and size caps cover many
# of them), and plain formats such as a blank BMP legitimately compress far better than 200:1.
_ZIP_RATIO_MIN_BYTES = 1 << 20
_NA_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", "-"})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n")


# ----------------------------------------------------------------------------- small helpers
def _some(items: Any, limit: int = 10) -> str:
    """``a, b, c (and 7 more)``: name at most ``limit`` offenders in a message."""
    items = [str(x) for x in items]
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return isinstance(v, (float, np.floating)) and math.isnan(v)


def _as_str_id(v: Any) -> str:
    # Tables with a missing cell elsewhere turn integer ids into floats; "7" not "7.0".
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _as_str_ids(values: list) -> list[str]:
    """:func:`_as_str_id` of every value; a column of strs or ints needs no call per value."""
    types = set(map(type, values))
    if types <= {str}:
        return list(values)
    if types <= {int}:
        return list(map(str, values))
    return [_as_str_id(v) for v in values]


def _blank_cells(values: list) -> list[int]:
    """Positions of the missing (None, NaN, NA) or blank values; a column of strs or ints is checked
    without a call per value (1M string ids: 0.03 s instead of 0.27 s)."""
    types = set(map(type, values))
    if types <= {int}:
        return []
    if types <= {str}:
        return [] if all(map(str.strip, values)) else [r for r, v in enumerate(values) if not v.strip()]
    return [r for r, v in enumerate(values) if _is_missing(v) or str(v).strip() == ""]


def _to_float(v: Any) -> float | None:
    """A float for a number or numeric string (NaN for NA tokens), ``None`` if not numeric."""
    if _is_missing(v):
        return math.nan
    if isinstance(v, numbers.Real):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if s.lower() in _NA_TOKENS:
            return math.nan
        try:
            return float(s)
        except ValueError:
            return None
    return None


def _kind(v: Any) -> str:
    if _is_missing(v):
        return "missing"
    if isinstance(v, (str, os.PathLike)):
        return "str"
    if isinstance(v, numbers.Real):
        return "number"
    if isinstance(v, (list, tuple, np.ndarray, pd.Series)):
        return "vector"
    return "other"


def _has_image_ext(p: Any) -> bool:
    return isinstance(p, (str, os.PathLike)) and Path(p).suffix.lower() in IMAGE_EXTENSIONS


def _note(notes: list[str], message: str) -> None:
    notes.append(message)
    logger.warning(message)


def _truncate(text: str, max_chars: int) -> str:
    """Cut at a word boundary so the result, with "…", has at most ``max_chars`` characters."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    cut = text[: max(max_chars - 1, 0)]
    space = cut.rfind(" ")
    if space > max_chars // 2:  # only back off to a word boundary when it keeps most of the text
        cut = cut[:space]
    return cut.rstrip() + "…"


# ----------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class ReadBudget:
    """What reading one table file may cost; a file over any limit is refused with a message saying which.

    Checked from the file's own metadata before anything is materialised where the format allows it
    (a Parquet footer; an xlsx's ZIP directory, shared-strings size and declared sheet size; a CSV
    header's width; a JSON file's size), and counted while reading otherwise. ``max_cells`` counts
    rows x top-level columns (a list column of embeddings is one cell per row; its floats count in
    ``max_bytes``). ``max_bytes`` is the table's uncompressed size (a CSV's file size, a Parquet's
    declared uncompressed row groups, an xlsx's unpacked parts); JSON, JSONL and an xlsx's shared
    strings become Python objects of several times their size, so they get an eighth of it.
    ``max_seconds`` is checked between rows where the reader iterates (xlsx, JSON, JSONL); a parse
    pandas or Arrow does in one call is bounded by the sizes instead (the web app also runs every
    upload's parse in a child process it kills after this long).

    The defaults admit a 1,000,000-row x (id, text, 384-float list) Parquet of 1.6 GB and a 190 MB
    CSV of short texts, and refuse a 60,000,000-row table or an xlsx declaring a whole sheet.
    """

    max_rows: int = 10_000_000
    max_columns: int = 10_000
    max_cells: int = 50_000_000
    max_bytes: int = 4 * 1024**3
    max_seconds: float = 120.0

    def __post_init__(self):
        for name in ("max_rows", "max_columns", "max_cells", "max_bytes", "max_seconds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0 or not math.isfinite(v):
                raise InputError(f"ReadBudget.{name} must be a positive number; got {v!r}.")


DEFAULT_READ_BUDGET = ReadBudget()
# A CSV header longer than this (or with more separators than max_columns) is refused unread.
MAX_HEADER_BYTES = 1 << 20
_OBJECT_BYTES_FACTOR = 8  # JSON/JSONL/shared strings: their text may be at most max_bytes / 8
_XLSX_ADVICE = "save only the data range, or export it as CSV"


def _count(n: int) -> str:
    return f"{n / 1e9:,.0f} billion" if n >= 10**9 else f"{n:,}"


def _size(n: float) -> str:
    return f"{n / 1024**3:,.1f} GB" if n >= 1024**3 else f"{n / 1024**2:,.0f} MB" if n >= 1024**2 \
        else f"{n / 1024:,.0f} kB"


class _Guard:
    """One read's budget: shape, size and time checks whose messages name the file and the fix."""

    def __init__(self, path: Path, budget: ReadBudget):
        self.name, self.b = path.name, budget
        self.deadline = time.monotonic() + budget.max_seconds

    def shape(self, rows: int, cols: int, how: str = "has", advice: str | None = None, header: int = 0) -> None:
        """``rows`` x ``cols`` against the budget; ``header`` rows (a sheet's column names) are shown
        in the message but not counted."""
        b, cells = self.b, rows * cols
        if rows - header > b.max_rows:
            raise InputError(f"{self.name} {how} {_count(rows)} rows, more than the {b.max_rows:,} allowed:"
                             f" {advice or 'sample or split the file'}.")
        if (rows - header) * cols > b.max_cells:
            advice = advice or "keep only the rows and columns you need"
            raise InputError(f"{self.name} {how} {rows:,} rows × {cols:,} columns ({_count(cells)} cells), more than"
                             f" the {b.max_cells:,} cells allowed: {advice}.")
        if cols > b.max_columns:
            raise InputError(f"{self.name} {how} {_count(cols)} columns, more than the {b.max_columns:,} allowed:"
                             f" {advice or 'keep only the columns you need'}.")

    def size(self, n: int, what: str, limit: int | None = None, advice: str = "sample or split the file") -> None:
        limit = self.b.max_bytes if limit is None else limit
        if n > limit:
            raise InputError(f"{self.name} {what} {_size(n)}, more than the {_size(limit)} allowed: {advice}.")

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise InputError(f"{self.name} takes more than {self.b.max_seconds:,.0f} s to read: sample or split it,"
                             f" or save it as CSV or Parquet.")


def read_table(path: str | os.PathLike, *, sheet: str | int | None = None,
               budget: ReadBudget | None = None, exclude: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a .csv, .tsv, .txt (tab or comma), .json, .jsonl, .parquet or .xlsx/.xls file.

    ``budget`` (default :data:`DEFAULT_READ_BUDGET`) bounds its rows, columns, cells, bytes and time.
    ``exclude``: Parquet columns left unread (e.g. :func:`vector_columns`).
    """
    return _read_table(Path(path), sheet=sheet, budget=budget, exclude=tuple(exclude))


def _read_table(path: Path, *, sheet: str | int | None = None, as_str: tuple = (),
                budget: ReadBudget | None = None, exclude: str | tuple[str, ...] | None = None) -> pd.DataFrame:
    """``as_str`` columns are read as text so that ids such as "007" keep their leading zeros."""
    if not os.path.isfile(path):
        raise InputError(f"Table file {path} not found. Check the path.")
    ext = path.suffix.lower()
    if ext not in TABLE_EXTENSIONS:
        raise InputError(f"{path.name}: unknown table extension {ext!r}. Use one of {', '.join(TABLE_EXTENSIONS)},"
                         f" or pass a folder/.zip of images.")
    guard = _Guard(path, budget or DEFAULT_READ_BUDGET)
    dtype = {c: str for c in as_str}
    try:
        if ext in (".csv", ".tsv", ".txt"):
            df = _read_csv(path, ext, dtype, guard)
        elif ext == ".json":
            df = _read_json(path, guard)
        elif ext == ".jsonl":
            df = _read_jsonl(path, guard)
        elif ext == ".parquet":
            df = _read_parquet(path, guard, exclude)
        else:
            df = _read_excel(path, sheet, dtype, guard)
    except InputError:
        raise
    except ImportError as exc:
        raise InputError(f"Reading {path.name} needs an optional package ({exc}). Install it (e.g. `pip install"
                         f" xlrd` for .xls) or save the file as .csv/.xlsx.") from exc
    except MemoryError:
        raise InputError(f"{path.name} needs more memory to read than this machine has: sample or split it.") from None
    except Exception as exc:  # parser, encoding, arrow errors: all mean "this file cannot be read"
        raise InputError(f"Could not read {path.name} as a {ext} table: {type(exc).__name__}: {exc}. Check that the"
                         f" file is a valid {ext} file (consistent columns, proper quoting).") from exc
    guard.shape(len(df), len(df.columns))
    df.columns = [str(c) for c in df.columns]
    return df


def _read_csv(path: Path, ext: str, dtype: dict, guard: _Guard) -> pd.DataFrame:
    guard.size(path.stat().st_size, "is")
    with open(path, "rb") as fh:
        head = fh.read(MAX_HEADER_BYTES + 1)
    end = head.find(b"\n")
    if end < 0 and len(head) > MAX_HEADER_BYTES:
        raise InputError(f"{path.name}: its first line (the header) is longer than {_size(MAX_HEADER_BYTES)}, so it"
                         f" is not a table of at most {guard.b.max_columns:,} columns: check the file (one row per"
                         f" line, a header of column names).")
    first = head[: end if end >= 0 else len(head)]
    sep = "\t" if ext == ".tsv" or (ext == ".txt" and b"\t" in first) else ","
    n_cols = first.count(sep.encode()) + 1
    if n_cols > guard.b.max_columns:  # separators inside quotes do not count
        try:
            n_cols = len(next(csv.reader([first.decode("latin-1")], delimiter=sep)))
        except (csv.Error, StopIteration):
            pass
        if n_cols > guard.b.max_columns:
            raise InputError(f"{path.name}: its header has {n_cols:,} columns, more than the"
                             f" {guard.b.max_columns:,} allowed: keep only the columns you need.")
    b = guard.b
    row_cap = max(1, min(b.max_rows, b.max_cells // max(n_cols, 1)))
    # keep_default_na=False: a text such as "None" or "NA" is a text, not a missing value.
    # nrows: never more than the budget's rows, whatever the rest of the file holds.
    kw = dict(sep=sep, dtype=dtype, keep_default_na=False, na_values=[""], nrows=row_cap + 1)
    try:
        df = pd.read_csv(path, encoding="utf-8-sig", **kw)
    except UnicodeDecodeError:
        logger.warning("%s is not UTF-8; reading it as Latin-1.", path.name)
        df = pd.read_csv(path, encoding="latin-1", **kw)
    if len(df) > row_cap:
        guard.shape(len(df), max(n_cols, len(df.columns)), how="has at least")
    return df


def _read_json(path: Path, guard: _Guard) -> pd.DataFrame:
    guard.size(path.stat().st_size, "is", guard.b.max_bytes // _OBJECT_BYTES_FACTOR,
               advice="save it as CSV or Parquet (JSON takes several times its size in memory)")
    with open(path, encoding="utf-8-sig") as fh:
        obj = json.load(fh)
    if isinstance(obj, list) and all(isinstance(r, dict) for r in obj):
        guard.shape(len(obj), 1)
        keys: dict = {}
        for i, r in enumerate(obj):
            keys.update(dict.fromkeys(r))
            if len(keys) > guard.b.max_columns or (i & 0x3FFF) == 0:
                guard.shape(len(obj), len(keys))
                guard.tick()
        guard.shape(len(obj), len(keys))
        return pd.DataFrame(obj)
    if isinstance(obj, dict) and all(isinstance(v, list) for v in obj.values()):
        guard.shape(max((len(v) for v in obj.values()), default=0), len(obj))
        return pd.DataFrame(obj)
    raise InputError(f"{path.name}: expected a JSON list of objects (one per row) or an object of"
                     f" equal-length column lists.")


def _read_jsonl(path: Path, guard: _Guard) -> pd.DataFrame:
    guard.size(path.stat().st_size, "is", guard.b.max_bytes // _OBJECT_BYTES_FACTOR,
               advice="save it as CSV or Parquet (JSON takes several times its size in memory)")
    rows: list = []
    keys: dict = {}
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path.name} line {lineno} is not valid JSON ({exc}). Fix that line.")
            if not isinstance(row, dict):
                raise InputError(f"{path.name} line {lineno} is not a JSON object; each line must be"
                                 f' one row such as {{"text": "..."}}.')
            rows.append(row)
            if len(row) > len(keys) or any(k not in keys for k in row):
                keys.update(dict.fromkeys(row))
            if len(rows) > guard.b.max_rows or len(keys) > guard.b.max_columns or (lineno & 0x3FFF) == 0:
                guard.shape(len(rows), len(keys), how="has at least")
                guard.tick()
    guard.shape(len(rows), len(keys))
    return pd.DataFrame(rows)


def _check_parquet(pf, guard: _Guard) -> None:
    md = pf.metadata
    guard.shape(md.num_rows, len(pf.schema_arrow), how="declares")
    raw = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    guard.size(raw, "declares", advice="sample or split the file")


def _read_parquet(path: Path, guard: _Guard, exclude: str | tuple[str, ...] | None = None) -> pd.DataFrame:
    """``exclude``: columns left unread (a vector column, read by :func:`read_vector_column`)."""
    exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude or ()) or None
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)  # reads the footer only
    try:
        _check_parquet(pf, guard)
        names = list(pf.schema_arrow.names) if exclude is not None else None
    finally:
        close = getattr(pf, "close", None)
        if close is not None:
            close()
    if exclude is None:
        return pd.read_parquet(path)
    return pd.read_parquet(path, columns=[c for c in names if c not in exclude])


# ----------------------------------------------------------------------------- own vectors
VECTOR_EXTENSIONS = (".npy", ".npz")
_VECTOR_BATCH_ROWS = 1 << 16  # rows of a list column converted at a time


def _is_vector_type(typ) -> bool:
    """A column type that holds one vector per row: a list, large list or fixed-size list of numbers."""
    import pyarrow as pa

    listy = pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ)
    return listy and (pa.types.is_floating(typ.value_type) or pa.types.is_integer(typ.value_type))


def vector_columns(path: str | os.PathLike) -> list[str]:
    """The columns of a Parquet file that :func:`read_vector_column` can read, from its schema alone
    (the footer; no data is read); ``[]`` for any other file type."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix.lower() != ".parquet":
        return []
    try:
        schema = pq.read_schema(path)
    except Exception as exc:
        raise InputError(f"Could not read {path.name} as a Parquet file: {exc}.") from None
    return [f.name for f in schema if _is_vector_type(f.type)]


def read_vector_column(path: str | os.PathLike, column: str, *, budget: ReadBudget | None = None) -> np.ndarray:
    """The list (or fixed-size list) column ``column`` of a Parquet file as a float32 (n, d) matrix.

    Read with pyarrow batch by batch into one preallocated matrix (never as Python lists), so a
    1,000,000 x 384 column needs its 1.5 GB and one batch beside it. Every row must hold d numbers.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix.lower() != ".parquet":
        raise InputError(f"A vector column is read from a Parquet file; {path.name} is not one. Save the table as"
                         f" Parquet with the vectors as a list column, or give the vectors as a .npy/.npz file.")
    guard = _Guard(path, budget or DEFAULT_READ_BUDGET)
    try:
        # no pre-buffering, a 1 MB read buffer: pyarrow otherwise reads (and keeps) a row group's whole
        # column chunk ahead of the batches; at 1M x 384 the read peaked at 3.7 GB for a 1.5 GB matrix (now 2.0)
        pf = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
    except Exception as exc:
        raise InputError(f"Could not read {path.name} as a Parquet file: {exc}.") from None
    with pf:
        _check_parquet(pf, guard)
        schema = pf.schema_arrow
        if column not in schema.names:
            raise InputError(f"The vector column {column!r} is not a column of {path.name}. Columns:"
                             f" {_some(schema.names, 30)}.")
        typ = schema.field(column).type
        if not _is_vector_type(typ):
            raise InputError(f"The vector column {column!r} of {path.name} holds {typ}, not lists of numbers:"
                             f" choose a column whose cells are lists of floats (one vector per row).")
        n = pf.metadata.num_rows
        out, d, row = None, None, 0
        pool = pa.default_memory_pool()
        for batch in pf.iter_batches(batch_size=_VECTOR_BATCH_ROWS, columns=[column]):
            arr = batch.column(0)
            if arr.null_count:
                bad = np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False)) + row + 1
                raise InputError(f"The vector column {column!r} of {path.name} has no vector in rows {_some(bad)}"
                                 f" (counting from 1): fill or remove those rows.")
            lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
            if d is None:
                d = int(lengths[0]) if len(lengths) else 0
                if d < 1:
                    raise InputError(f"The vector column {column!r} of {path.name} holds empty vectors.")
                out = np.empty((n, d), dtype=np.float32)
            if (lengths != d).any():
                bad = np.flatnonzero(lengths != d)
                raise InputError(f"The vectors of {column!r} in {path.name} differ in length: {d} in row 1 but"
                                 f" {_some(f'{int(lengths[b])} in row {row + b + 1}' for b in bad)}. Every vector"
                                 f" must have the same dimension.")
            values = arr.flatten()
            if values.null_count:
                raise InputError(f"The vector column {column!r} of {path.name} has missing numbers inside vectors"
                                 f" (rows {row + 1}-{row + len(arr)}): fill them or remove those rows.")
            out[row:row + len(arr)] = values.to_numpy(zero_copy_only=False).reshape(len(arr), d)
            row += len(arr)
            del batch, arr, values
            pool.release_unused()  # hand the batch's pages back (Arrow's mimalloc pool keeps them otherwise)
            guard.tick()
    if out is None:
        raise InputError(f"{path.name} has no rows; nothing to cluster.")
    return out


def read_vectors(path: str | os.PathLike, *, budget: ReadBudget | None = None) -> np.ndarray:
    """A float32 (n, d) matrix from a .npy file or a .npz file (its only array, or the one named
    ``embeddings`` or ``vectors``); the array's header is checked against ``budget`` before it is read."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in VECTOR_EXTENSIONS:
        raise InputError(f"{path.name}: vectors are read from a .npy or .npz file (numpy.save / numpy.savez).")
    if not path.is_file():
        raise InputError(f"Vectors file {path} not found. Check the path.")
    guard = _Guard(path, budget or DEFAULT_READ_BUDGET)
    try:
        if ext == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)  # only the header is read here
            return _vector_matrix(arr, path.name, guard)
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            key = next((k for k in ("embeddings", "vectors") if k in names), names[0] if len(names) == 1 else None)
            if key is None:
                raise InputError(f"{path.name} holds several arrays ({_some(names)}): name the vectors 'embeddings'"
                                 f" or save only them.")
            return _vector_matrix(npz[key], path.name, guard)
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{path.name} needs more memory to read than this machine has: sample or split it.") from None
    except Exception as exc:
        raise InputError(f"Could not read {path.name} as a numpy array: {type(exc).__name__}: {exc}.") from None


def _vector_matrix(arr: np.ndarray, name: str, guard: _Guard) -> np.ndarray:
    if arr.ndim != 2 or arr.dtype.kind not in "iuf":
        raise InputError(f"{name} holds an array of shape {arr.shape} and type {arr.dtype}; vectors are a 2-D array"
                         f" of numbers (one row per item).")
    guard.shape(arr.shape[0], 1)
    guard.size(arr.shape[0] * arr.shape[1] * 4, "holds vectors of")
    out = np.empty(arr.shape, dtype=np.float32)
    for start in range(0, len(arr), _VECTOR_BATCH_ROWS):  # a memory-mapped file is read block by block
        out[start:start + _VECTOR_BATCH_ROWS] = arr[start:start + _VECTOR_BATCH_ROWS]
    return out


def _stack_vectors(values: list, where: str) -> np.ndarray:
    """A DataFrame's vector column (cells are lists/arrays of numbers) as a float32 matrix."""
    bad = [k + 1 for k, v in enumerate(values) if _kind(v) != "vector"]
    if bad:
        raise InputError(f"{where} has no vector in rows {_some(bad)} (counting from 1): every cell must be a list of"
                         f" numbers.")
    lengths = np.array([len(v) for v in values])
    if len(lengths) and (lengths != lengths[0]).any():
        rows = np.flatnonzero(lengths != lengths[0]) + 1
        raise InputError(f"The vectors of {where} differ in length: {lengths[0]} in row 1 but not in rows"
                         f" {_some(rows)}. Every vector must have the same dimension.")
    try:
        return np.asarray(np.stack([np.asarray(v, dtype=np.float32) for v in values]), dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"{where} holds vectors with values that are not numbers.") from None


def _check_vectors(matrix: np.ndarray, ids: list[str], what: str) -> np.ndarray:
    """Own vectors: one finite row per item."""
    if matrix.ndim != 2 or matrix.shape[1] < 1:
        raise InputError(f"The vectors of {what} must be a 2-D array (one row per item); got shape {matrix.shape}.")
    if len(matrix) != len(ids):
        raise InputError(f"{what} has {len(ids):,} items but {len(matrix):,} vectors: give one vector per row, in the"
                         f" table's order.")
    finite = np.ones(len(matrix), dtype=bool)
    for start in range(0, len(matrix), _VECTOR_BATCH_ROWS):
        finite[start:start + _VECTOR_BATCH_ROWS] = np.isfinite(matrix[start:start + _VECTOR_BATCH_ROWS]).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InputError(f"{len(bad)} vectors contain NaN or infinite values: ids {_some(ids[b] for b in bad)}. Fix or"
                         f" remove those rows.")
    return matrix


def _read_excel(path: Path, sheet: str | int | None, dtype: dict, guard: _Guard) -> pd.DataFrame:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"PK\x03\x04":  # an xlsx whatever its extension says (pandas would pick openpyxl for it)
        return _read_xlsx(path, sheet, dtype, guard)
    # .xls (BIFF): xlrd reads the whole workbook at once; its shape is checked once read.
    guard.size(path.stat().st_size, "is")
    with pd.ExcelFile(path) as book:
        _check_sheet(path, sheet, book.sheet_names)
        return pd.read_excel(book, sheet_name=sheet if sheet is not None else 0, dtype=dtype,
                             keep_default_na=False, na_values=[""])


def _check_sheet(path: Path, sheet: str | int | None, names: list[str]) -> None:
    if sheet is not None and not (isinstance(sheet, int) and 0 <= sheet < len(names)) and sheet not in names:
        raise InputError(f"{path.name} has no sheet {sheet!r}; its sheets are {_some(names)}.")


def _read_xlsx(path: Path, sheet: str | int | None, dtype: dict, guard: _Guard) -> pd.DataFrame:
    """An xlsx judged from its ZIP directory and declared sheet size before openpyxl loads it, then
    read row by row (read-only mode, the declared size ignored) with the budget counted as it goes."""
    _check_xlsx_container(path, sheet, guard)
    from openpyxl import load_workbook
    from openpyxl.cell.cell import TYPE_ERROR, TYPE_NUMERIC

    def value(cell):  # as pandas' openpyxl reader converts a cell
        v = cell.value
        if v is None:
            return ""
        if cell.data_type == TYPE_ERROR:
            return np.nan
        if cell.data_type == TYPE_NUMERIC:
            i = int(v)
            return i if i == v else float(v)
        return v

    b = guard.b
    book = load_workbook(path, read_only=True, data_only=True, keep_links=False)
    try:
        _check_sheet(path, sheet, book.sheetnames)
        ws = book[sheet] if isinstance(sheet, str) else book.worksheets[sheet or 0]
        ws.reset_dimensions()  # the declared size was checked; read the cells that are there
        data: list[list] = []
        width, last = 0, -1
        for i, row in enumerate(ws.rows):  # row 0 holds the column names
            if i > b.max_rows or i * width > b.max_cells:
                guard.shape(i + 1, width, how="has at least", advice=_XLSX_ADVICE, header=1)
            values = [value(c) for c in row]
            while values and values[-1] == "":
                values.pop()
            if values:
                last = i
                width = max(width, len(values))
                if width > b.max_columns:
                    guard.shape(i + 1, width, how="has at least", advice=_XLSX_ADVICE, header=1)
            data.append(values)
            if (i & 0x3FF) == 0:
                guard.tick()
    finally:
        book.close()
    data = data[: last + 1]
    guard.shape(len(data), width, advice=_XLSX_ADVICE, header=1)
    if not data:
        return pd.DataFrame()
    data = [r + [""] * (width - len(r)) for r in data]
    from pandas.io.parsers import TextParser

    return TextParser(data, header=0, dtype=dtype or None, keep_default_na=False, na_values=[""],
                      skip_blank_lines=False).read()


def _check_xlsx_container(path: Path, sheet: str | int | None, guard: _Guard) -> None:
    """The ZIP sizes and ratios, the shared strings' size and the sheet's declared dimension."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path.name} is not a readable Excel workbook ({exc}): open and save it again in Excel,"
                         f" or export it as CSV.") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise InputError(f"{path.name} holds {len(infos):,} parts, more than the {MAX_ZIP_ENTRIES:,} an Excel"
                             f" workbook may have here: {_XLSX_ADVICE}.")
        total = sum(i.file_size for i in infos)
        guard.size(total, "unpacks to", advice=_XLSX_ADVICE)
        for info in infos:
            if info.file_size > _ZIP_RATIO_MIN_BYTES and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
                raise InputError(f"{path.name}: its part {info.filename!r} has a compression ratio above"
                                 f" {MAX_ZIP_RATIO}:1 (possible zip bomb); refusing to read it: {_XLSX_ADVICE}.")
        parts = {i.filename: i for i in infos}
        strings = parts.get("xl/sharedStrings.xml")
        if strings is not None:
            guard.size(strings.file_size, "has shared strings of", guard.b.max_bytes // _OBJECT_BYTES_FACTOR,
                       advice=_XLSX_ADVICE)
        part = _xlsx_sheet_part(zf, parts, sheet)
        dims = _xlsx_dimension(zf, part) if part else None
    if dims is not None:
        min_col, min_row, max_col, max_row = dims
        guard.shape(max_row - min_row + 1, max_col - min_col + 1, how="declares", advice=_XLSX_ADVICE, header=1)


def _xlsx_sheet_part(zf: zipfile.ZipFile, parts: dict, sheet: str | int | None) -> str | None:
    """The ZIP part of the chosen sheet (from xl/workbook.xml and its relationships), None if unclear."""
    import posixpath
    import xml.etree.ElementTree as ET

    book, rels = parts.get("xl/workbook.xml"), parts.get("xl/_rels/workbook.xml.rels")
    if book is None or rels is None or book.file_size > 16 << 20 or rels.file_size > 16 << 20:
        return None
    try:
        sheets = [(el.get("name"), next((v for k, v in el.attrib.items() if k.endswith("}id")), None))
                  for el in ET.fromstring(zf.read(book)).iter() if el.tag.endswith("}sheet")]
        targets = {el.get("Id"): el.get("Target") for el in ET.fromstring(zf.read(rels)).iter()
                   if el.tag.endswith("}Relationship")}
    except (ET.ParseError, zipfile.BadZipFile, OSError, RuntimeError, ValueError):
        return None
    if sheet is None:
        chosen = sheets[:1]
    elif isinstance(sheet, int):
        chosen = sheets[sheet:sheet + 1] if sheet >= 0 else []
    else:
        chosen = [s for s in sheets if s[0] == sheet][:1]
    target = targets.get(chosen[0][1]) if chosen else None
    if not target:
        return None
    part = posixpath.normpath(target.lstrip("/") if target.startswith("/") else "xl/" + target)
    return part if part in parts else None


def _xlsx_dimension(zf: zipfile.ZipFile, part: str) -> tuple[int, int, int, int] | None:
    """(min_col, min_row, max_col, max_row) of a sheet's <dimension>; parsing stops at its cells."""
    import xml.etree.ElementTree as ET

    from openpyxl.utils.cell import range_boundaries

    try:
        with zf.open(part) as fh:
            for _, el in ET.iterparse(fh, events=("start",)):
                tag = el.tag.rsplit("}", 1)[-1]
                if tag == "dimension":
                    bounds = range_boundaries(str(el.get("ref", "")).upper())
                    return None if None in bounds else bounds
                if tag == "sheetData":
                    return None
    except (ET.ParseError, zipfile.BadZipFile, OSError, RuntimeError, ValueError, TypeError):
        return None
    return None


def _column(df: pd.DataFrame, name: Any, where: str, what: str) -> str:
    if str(name) not in df.columns:
        raise InputError(f"{what} {name!r} is not a column of {where}. Available columns: {_some(df.columns, 30)}.")
    return str(name)


def _numeric_like(s: pd.Series) -> bool:
    if pd.api.types.is_bool_dtype(s) or (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_complex_dtype(s)):
        return True
    if s.dtype != object and not pd.api.types.is_string_dtype(s):
        return False
    parsed = [_to_float(v) for v in s.tolist()]
    return all(p is not None for p in parsed) and any(not math.isnan(p) for p in parsed)


def _mostly_text(s: pd.Series) -> bool:
    vals = [v for v in s.tolist() if not _is_missing(v)]
    texty = sum(isinstance(v, str) and _to_float(v) is None for v in vals)
    return bool(vals) and texty >= 0.5 * len(vals)


# Columns named like these hold ids or labels: never clustered unless named as the items.
ID_COLUMN_NAMES = ("id", "item_id", "ids", "key")
LABEL_COLUMN_NAMES = ("label", "labels", "class", "category", "target")
# With numeric columns beside it, a text column whose values average fewer characters (names,
# categories) is not what to cluster: the numbers are.
SHORT_TEXT_CHARS = 20


@dataclass(frozen=True)
class ColumnGuess:
    """What :func:`guess_columns` picks in a table: the items' ``kind`` ("text" | "image" | "numeric",
    None when it cannot tell) and the columns for each choice."""

    kind: str | None
    text_column: str | None  # the text column to cluster (the best one even when kind is "numeric")
    numeric_columns: list[str]  # every numeric column that is not the id or labels column
    id_column: str | None
    labels_column: str | None
    text_like: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        """The item columns of ``kind`` (empty when it cannot tell)."""
        if self.kind == "numeric":
            return list(self.numeric_columns)
        return [self.text_column] if self.kind is not None else []


def _mean_chars(s: pd.Series) -> float:
    lengths = [len(str(v)) for v in s.tolist() if not _is_missing(v)]
    return sum(lengths) / len(lengths) if lengths else 0.0


def guess_columns(df: pd.DataFrame, *, modality: str = "auto", id_column: str | None = None,
                  labels_column: str | None = None) -> ColumnGuess:
    """The one rule for a table's columns, used by ``prepare`` (no column given) and the app's form.

    The id and labels columns are the ones given, else the first column named like one
    (:data:`ID_COLUMN_NAMES`, :data:`LABEL_COLUMN_NAMES`, any case); neither is ever clustered.
    Of the other columns: all numeric -> numeric; else the text column with the longest values
    (a tie -> cannot tell), unless numeric columns exist and the texts are short
    (< :data:`SHORT_TEXT_CHARS` characters on average) -> numeric. ``modality`` "numeric" keeps the
    numbers only; "text"/"image" the text column only.
    """
    cols = [str(c) for c in df.columns]
    lower = {c.lower(): c for c in reversed(cols)}  # the first of equal names in any case
    if id_column is None:
        id_column = next((lower[k] for k in ID_COLUMN_NAMES if k in lower and lower[k] != labels_column), None)
    if labels_column is None:
        labels_column = next((lower[k] for k in LABEL_COLUMN_NAMES if k in lower and lower[k] != id_column), None)
    cands = [c for c in cols if c not in (id_column, labels_column)]
    numeric = [c for c in cands if _numeric_like(df[c])]
    texty = [c for c in cands if c not in numeric and _mostly_text(df[c])]
    chars = {c: _mean_chars(df[c]) for c in texty}
    top = max(chars.values(), default=0.0)
    tied = [c for c in texty if chars[c] == top]
    best = tied[0] if len(tied) == 1 else None
    if modality == "numeric":
        kind = "numeric" if numeric else None
    elif modality == "auto" and numeric and (len(numeric) == len(cands) or top < SHORT_TEXT_CHARS):
        kind = "numeric"
    elif best is not None:
        kind = "image" if modality == "image" else "text"
    else:
        kind = None
    return ColumnGuess(kind, best, numeric, id_column, labels_column, texty)


def _plan_frame(df, modality, text_column, numeric_columns, reserved, where, notes):
    """Choose the item column(s) of a table: ("text" | "image" | "numeric", [columns])."""
    if text_column is not None:
        col = _column(df, text_column, where, "text_column")
        if modality == "numeric":
            raise InputError(f"modality='numeric' conflicts with text_column={text_column!r}; pass numeric_columns.")
        return ("image" if modality == "image" else "text"), [col]
    if numeric_columns is not None:
        cols = [_column(df, c, where, "numeric_columns entry") for c in numeric_columns]
        if not cols:
            raise InputError("numeric_columns is empty; name at least one column.")
        if modality in ("text", "image"):
            raise InputError(f"modality={modality!r} conflicts with numeric_columns; pass text_column instead.")
        return "numeric", cols
    given = dict(reserved)
    guess = guess_columns(df, modality=modality, id_column=given.get("id"), labels_column=given.get("labels"))
    if guess.kind is None:
        raise InputError(
            f"Cannot tell which columns of {where} hold the items (modality={modality!r}). Columns:"
            f" {_some(df.columns, 30)} (numeric: {_some(guess.numeric_columns) or 'none'}; text-like:"
            f" {_some(guess.text_like) or 'none'}). Pass text_column='...' to cluster texts or numeric_columns=[...]"
            f" to cluster numbers (and id_column/labels_column for those).")
    chosen = guess.columns
    others = [c for c in df.columns if c not in chosen and c not in given.values()]
    if others:
        what = f"column {chosen[0]!r}" if guess.kind != "numeric" else f"columns {_some(chosen, 5)}"
        _note(notes, f"Using {what} as the items; ignored columns {_some(others)}.")
    return guess.kind, chosen


# ----------------------------------------------------------------------------- images
def collect_images(path: str | os.PathLike, *, extract_dir: str | os.PathLike | None = None) -> list[str]:
    """Image files in a folder (recursive) or a .zip (extracted into ``extract_dir``), sorted by path."""
    paths, skipped = _collect_images(Path(path), extract_dir)
    if skipped:
        logger.warning("Skipped %d non-image files in %s: %s", len(skipped), Path(path).name, _some(skipped))
    return paths


def _junk(rel: str) -> bool:
    """macOS resource forks and hidden files: never user images, often unreadable ``._x.png``."""
    parts = PurePosixPath(rel).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _collect_images(path: Path, extract_dir) -> tuple[list[str], list[str]]:
    if path.is_dir():
        found, skipped = [], []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for f in sorted(files):
                rel = Path(root, f).relative_to(path).as_posix()
                if _junk(rel):
                    continue
                (found if _has_image_ext(f) else skipped).append(rel)
        return [os.path.abspath(path / r) for r in sorted(found)], sorted(skipped)
    if path.suffix.lower() == ".zip" and path.is_file():
        if extract_dir is None:
            raise InputError(f"{path.name} is a zip archive: pass extract_dir=... (a folder to extract the images to).")
        return _extract_zip(path, Path(extract_dir))
    raise InputError(f"{path} is neither a folder nor a .zip file of images.")


def _unsafe_member(name: str, root: Path) -> bool:
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(name).drive:
        return True
    target = (root / posix).resolve()  # resolution, not string prefixes: "a/../../x" and symlinks
    return not target.is_relative_to(root)


def _free_bytes(folder: Path) -> int | None:
    for p in (folder, *folder.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free
            except OSError:
                return None
    return None


def _check_zip_budget(path: Path, infos: list[zipfile.ZipInfo], dest: Path) -> None:
    """Refuse a bomb from the archive's directory alone: entries, total size, total and entry ratios,
    unsafe names and the free space, before a single byte is extracted."""
    if len(infos) > MAX_ZIP_ENTRIES:
        raise InputError(f"{path.name} has {len(infos):,} entries, more than the {MAX_ZIP_ENTRIES:,} allowed;"
                         f" split it or pass an extracted folder.")
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    if total > MAX_ZIP_BYTES:
        raise InputError(f"{path.name} would extract to {total / 1024**3:.1f} GiB, more than the 2 GiB allowed;"
                         f" split it or pass an extracted folder.")
    if total > _ZIP_RATIO_MIN_BYTES and total > MAX_ZIP_RATIO * max(packed, 1):
        raise InputError(f"{path.name} has a compression ratio above {MAX_ZIP_RATIO}:1 for the whole archive"
                         f" ({total / 1024**2:,.0f} MB from {packed / 1024**2:,.1f} MB; possible zip bomb);"
                         f" refusing to extract it.")
    root = dest.resolve()
    for info in infos:
        if _unsafe_member(info.filename, root):
            raise InputError(f"{path.name} contains an unsafe entry {info.filename!r} (absolute path or '..'"
                             f" leaving the extraction folder); refusing to extract this archive.")
        if info.file_size > _ZIP_RATIO_MIN_BYTES and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
            raise InputError(f"{path.name}: entry {info.filename!r} has a compression ratio above"
                             f" {MAX_ZIP_RATIO}:1 (possible zip bomb); refusing to extract this archive.")
    free = _free_bytes(root)
    if free is not None and total > free:
        raise InputError(f"{path.name} would extract to {total / 1024**2:,.0f} MB but the disk has only"
                         f" {free / 1024**2:,.0f} MB free.")


def _copy_bounded(src, dst, limit: int) -> None:
    """Copy at most ``limit`` bytes (the size the archive declares); more means a lying archive."""
    left = limit
    while chunk := src.read(min(1 << 20, left + 1)):
        left -= len(chunk)
        if left < 0:
            raise InputError("the entry is larger than the archive says")
        dst.write(chunk)


def _extract_zip(path: Path, dest: Path) -> tuple[list[str], list[str]]:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{path.name} is not a readable zip archive ({exc}). Re-create the archive.") from exc
    with zf:
        infos = zf.infolist()
        _check_zip_budget(path, infos, dest)
        root = dest.resolve()
        chosen, skipped = [], []
        for info in infos:
            if info.is_dir() or _junk(info.filename):
                continue
            (chosen if _has_image_ext(info.filename) else skipped).append(info)
        out: list[str] = []
        created = [p for p in (root, *root.parents) if not p.exists()]
        try:
            root.mkdir(parents=True, exist_ok=True)
            for info in sorted(chosen, key=lambda i: i.filename):
                target = (root / PurePosixPath(info.filename.replace("\\", "/"))).resolve()
                if str(target) in out:  # a name repeated in the archive: keep one copy, not two items
                    continue
                for d in reversed(target.parents):
                    if d.is_relative_to(root) and not d.exists():
                        created.append(d)
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    out.append(str(target))
                    with zf.open(info) as src, open(target, "wb") as dst:
                        _copy_bounded(src, dst, info.file_size)
                except Exception as exc:  # encrypted entry, CRC error, truncated archive, disk full
                    raise InputError(f"{path.name}: cannot extract {info.filename!r} ({exc}).") from exc
        except BaseException:
            # leave nothing behind: the files written, then the folders this call made (deepest first)
            for f in out:
                Path(f).unlink(missing_ok=True)
            for d in sorted(set(created), key=lambda d: len(d.parts), reverse=True):
                try:
                    d.rmdir()
                except OSError:
                    pass
            raise
    return out, [i.filename for i in skipped]


def _check_images(paths: list[str], ids: list[str]) -> list[str]:
    """Absolute paths of the images, or InputError naming the missing, non-image and corrupt files."""
    bad_ext = [f"{p} (id {i})" for i, p in zip(ids, paths) if not _has_image_ext(p)]
    if bad_ext:
        raise InputError(f"{len(bad_ext)} items are not image files (extension not in {', '.join(IMAGE_EXTENSIONS)}):"
                         f" {_some(bad_ext)}. Remove them or convert them to an image format.")
    missing = [f"{p} (id {i})" for i, p in zip(ids, paths) if not os.path.isfile(p)]
    if missing:
        raise InputError(f"{len(missing)} image files do not exist: {_some(missing)}. Check the paths.")
    broken = []
    for i, p in zip(ids, paths):
        try:
            with Image.open(p) as im:
                im.verify()
        except Exception as exc:  # PIL raises many types (UnidentifiedImageError, SyntaxError, OSError, ...)
            broken.append(f"{Path(p).name} (id {i}: {type(exc).__name__})")
    if broken:
        raise InputError(f"{len(broken)} image files cannot be opened (corrupt or not really images): "
                         f"{_some(broken)}. Remove or replace them.")
    return [os.path.abspath(p) for p in paths]


# ----------------------------------------------------------------------------- ids, labels, values
def _resolve_ids(n: int, src_ids: list | None, ids: Any, src_is_explicit: bool) -> list[str]:
    if ids is not None:
        if src_ids is not None and src_is_explicit:
            raise InputError("ids were given twice (ids= and id_column / dict keys); give only one.")
        if isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__"):
            raise InputError("ids= must be a list with one id per item.")
        src_ids = list(ids)
        if len(src_ids) != n:
            raise InputError(f"ids= has {len(src_ids)} entries but there are {n} items; give one id per item.")
    if src_ids is None:
        return list(map(str, range(n)))
    missing = _blank_cells(src_ids)
    if missing:
        raise InputError(f"{len(missing)} items have no id (rows {_some(missing)}). Fill the ids or drop the id column.")
    out = _as_str_ids(src_ids)
    dup = [i for i, c in Counter(out).items() if c > 1] if len(set(out)) < len(out) else []
    if dup:
        raise InputError(f"Ids must be unique, but {len(dup)} ids occur more than once: {_some(dup)}. De-duplicate"
                         f" the rows or use another id column (without one, row numbers are used).")
    return out


def _resolve_labels(ids: list[str], src_labels: list | None, labels: Any) -> list[str] | None:
    if labels is not None and src_labels is not None:
        raise InputError("labels were given twice (labels= and labels_column); give only one.")
    labels = src_labels if labels is None else labels
    if labels is None:
        return None
    if isinstance(labels, dict):
        by_id = {_as_str_id(k): v for k, v in labels.items()}
        absent = [i for i in ids if i not in by_id]
        if absent:
            raise InputError(f"labels dict has no label for {len(absent)} ids: {_some(absent)}. Add them.")
        values = [by_id[i] for i in ids]
    elif isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
        raise InputError("labels= must be a list (one label per item) or a dict id -> label.")
    else:
        values = list(labels)
        if len(values) != len(ids):
            raise InputError(f"labels has {len(values)} entries but there are {len(ids)} items; give one per item.")
    missing = [ids[r] for r in _blank_cells(values)]
    if missing:
        raise InputError(f"{len(missing)} items have no label: ids {_some(missing)}. Label every item or pass no labels.")
    return _as_str_ids(values)


def _detect(values: list, ids: list[str], modality: str, what: str) -> str:
    """Modality of a flat list of values; InputError for mixed or unsupported types."""
    kinds = [_kind(v) for v in values]
    counts = Counter(k for k in kinds if k != "missing")
    if counts.get("other"):
        rows = [f"{i} ({type(v).__name__})" for i, v, k in zip(ids, values, kinds) if k == "other"]
        raise InputError(f"{what} has values of unsupported types at ids {_some(rows)}. Items must be texts, image"
                         f" paths, numbers or numeric vectors.")
    if not counts:
        raise InputError(f"All {len(values)} items of {what} are empty (None/NaN); nothing to cluster.")
    if len(counts) > 1:
        major = counts.most_common(1)[0][0]
        odd = [f"{i} (value {v!r:.40})" for i, v, k in zip(ids, values, kinds) if k not in (major, "missing")]
        desc = ", ".join(f"{c} {'string' if k == 'str' else k}(s)" for k, c in counts.items())
        fix = ("texts must all be strings: convert or remove them" if major == "str"
               else "numeric items must all be numbers, or all be vectors of the same length")
        raise InputError(f"{what} mixes types ({desc}). Items that differ from the majority: ids {_some(odd)};"
                         f" {fix}.")
    kind = next(iter(counts))
    if kind == "str":
        strs = [v for v in values if not _is_missing(v)]
        n_img = sum(_has_image_ext(v) for v in strs)
        if modality == "numeric":
            raise InputError(f"modality='numeric' but {what} holds strings (e.g. {strs[0]!r:.60}); convert them to"
                             f" numbers first, or use modality='text'.")
        return "image" if modality == "image" or (modality == "auto" and n_img and 2 * n_img >= len(strs)) else "text"
    if modality in ("text", "image"):
        raise InputError(f"modality={modality!r} but {what} holds numbers, not "
                         f"{'texts' if modality == 'text' else 'image paths'}; use modality='numeric' or 'auto'.")
    return "numeric"


def _matrix_from_values(values: list, ids: list[str]) -> np.ndarray:
    """A float64 (n, p) matrix from numbers (p = 1) or vectors; NaN for missing entries."""
    if all(_kind(v) != "vector" for v in values):
        return np.array([math.nan if _is_missing(v) else float(v) for v in values], dtype=np.float64)[:, None]
    lengths = [0 if _is_missing(v) else len(v) for v in values]
    common = Counter(lengths).most_common(1)[0][0]
    odd = [f"{i} (length {n})" for i, n in zip(ids, lengths) if n != common]
    if odd:
        raise InputError(f"Numeric vectors must all have the same length ({common} for most items); these differ:"
                         f" ids {_some(odd)}. Pad, fix or remove them.")
    out = np.empty((len(values), common), dtype=np.float64)
    bad = []
    for r, (i, v) in enumerate(zip(ids, values)):
        row = [_to_float(x) if not isinstance(x, str) else None for x in v]
        if any(x is None for x in row):
            bad.append(i)
            continue
        out[r] = row
    if bad:
        raise InputError(f"Numeric vectors contain non-numeric entries at ids {_some(bad)}. Use numbers only.")
    return out


def _matrix_from_frame(df: pd.DataFrame, cols: list[str], ids: list[str], where: str) -> np.ndarray:
    out = np.empty((len(df), len(cols)), dtype=np.float64)
    problems = []
    for j, c in enumerate(cols):
        s = df[c]
        if pd.api.types.is_bool_dtype(s) or (pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_complex_dtype(s)):
            out[:, j] = s.to_numpy(dtype=np.float64, na_value=np.nan)
            continue
        parsed = [_to_float(v) for v in s.tolist()]
        bad = [f"{i} ({v!r:.30})" for i, v, p in zip(ids, s.tolist(), parsed) if p is None]
        if bad:
            problems.append(f"column {c!r} at ids {_some(bad, 5)}")
        out[:, j] = [math.nan if p is None else p for p in parsed]
    if problems:
        raise InputError(f"Non-numeric values in numeric columns of {where}: {'; '.join(problems[:10])}. Fix or"
                         f" remove those rows, or leave those columns out of numeric_columns.")
    return out


def _check_finite(raw: np.ndarray, ids: list[str], names: list[str]) -> None:
    bad = ~np.isfinite(raw)
    if bad.any():
        rows = [ids[r] for r in np.flatnonzero(bad.any(axis=1))]
        cols = [names[c] for c in np.flatnonzero(bad.any(axis=0))]
        raise InputError(f"{len(rows)} items have missing (NaN) or infinite values: ids {_some(rows)}, in columns"
                         f" {_some(cols)}. Clean or impute them first (e.g. df.dropna() or df.fillna(df.median())).")


def _check_metadata(meta: Any, names: list[str]) -> dict[str, dict[str, Any]] | None:
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise InputError('numeric_metadata must be a dict {feature name: {"unit": ..., "description": ...}}.')
    unknown = [k for k in meta if str(k) not in names]
    if unknown:
        raise InputError(f"numeric_metadata names unknown features {_some(unknown)}; the features are {_some(names, 30)}.")
    out = {}
    for k, v in meta.items():
        if not isinstance(v, dict) or set(v) - {"unit", "description"}:
            raise InputError(f'numeric_metadata[{k!r}] must be a dict with keys "unit" and/or "description", got {v!r:.80}.')
        out[str(k)] = dict(v)
    return out


# ----------------------------------------------------------------------------- prepare
@dataclass
class _Loaded:
    """What the container said before validation: item values (or a matrix/frame) and their source ids."""

    what: str
    values: list | None = None
    kind: str | None = None  # known for tables and folders; detected from the values otherwise
    matrix: np.ndarray | None = None
    frame: pd.DataFrame | None = None
    columns: list[str] = field(default_factory=list)
    src_ids: list | None = None
    explicit_ids: bool = False  # id_column / dict keys conflict with ids=; an index is overridden
    src_labels: list | None = None
    base_dir: Path | None = None
    vectors: np.ndarray | None = None  # the items' own vectors (a vector column)
    notes: list[str] = field(default_factory=list)


def _default_index(index: pd.Index) -> bool:
    return isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1


def _load_path(path: Path, modality, text_column, numeric_columns, id_column, labels_column, extract_dir,
               read_budget: ReadBudget | None = None, vector_column: str | None = None):
    if not os.path.exists(path):  # unlike Path.exists(), False (not OSError) for a long text
        raise InputError(f"{str(path)[:200]!r} is not an existing file or folder. Pass a table file"
                         f" ({', '.join(TABLE_EXTENSIONS)}), a folder or .zip of images, or a list of items.")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise InputError(f"{path.name} is a single image; need at least 2 items to cluster. Pass a folder, a"
                         f" .zip or a list of image paths.")
    if not (path.is_dir() or path.suffix.lower() == ".zip"):
        as_str = tuple(str(c) for c in (id_column, labels_column, text_column) if c is not None)
        vectors = read_vector_column(path, vector_column, budget=read_budget) if vector_column is not None else None
        frame = _read_table(path, as_str=as_str, budget=read_budget, exclude=vector_column)
        loaded = _load_frame(frame, path.name, modality, text_column, numeric_columns, id_column, labels_column)
        loaded.base_dir, loaded.vectors = path.parent, vectors
        return loaded
    if any(x is not None for x in (text_column, numeric_columns, id_column, labels_column)):
        raise InputError("text_column/numeric_columns/id_column/labels_column apply to tables, not to an image"
                         " folder or zip.")
    if modality not in ("auto", "image"):
        raise InputError(f"modality={modality!r} but {path.name} is a folder/zip, which can only hold images.")
    paths, skipped = _collect_images(path, extract_dir)
    loaded = _Loaded(what=f"folder {path.name}/" if path.is_dir() else f"zip {path.name}", values=paths, kind="image")
    if skipped:
        _note(loaded.notes, f"Skipped {len(skipped)} non-image files in {path.name}: {_some(skipped)}.")
    if not paths:
        raise InputError(f"No image files ({', '.join(IMAGE_EXTENSIONS)}) found in {path.name}.")
    return loaded


def _load_frame(df, where, modality, text_column, numeric_columns, id_column, labels_column) -> _Loaded:
    if not all(isinstance(c, str) for c in df.columns):  # feature names and column lookups are strings
        df = df.set_axis([str(c) for c in df.columns], axis=1)
    if len(df) == 0:
        raise InputError(f"{where} has no rows; nothing to cluster.")
    if df.columns.duplicated().any():
        raise InputError(f"{where} has duplicated column names {_some(df.columns[df.columns.duplicated()])}; rename them.")
    loaded, reserved = _Loaded(what=where, frame=df), {}
    if id_column is not None:
        c = _column(df, id_column, where, "id_column")
        loaded.src_ids, loaded.explicit_ids = df[c].tolist(), True
        reserved["id"] = c
    elif not _default_index(df.index):
        loaded.src_ids = df.index.tolist()
    if labels_column is not None:
        c = _column(df, labels_column, where, "labels_column")
        loaded.src_labels = df[c].tolist()
        reserved["labels"] = c
    loaded.kind, cols = _plan_frame(df, modality, text_column, numeric_columns, reserved, where, loaded.notes)
    loaded.columns = [str(c) for c in cols]
    loaded.what = f"{where} column {cols[0]!r}" if len(cols) == 1 else f"{where} columns {_some(cols, 5)}"
    if loaded.kind != "numeric":
        col = df[cols[0]]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            raise InputError(f"{loaded.what} holds numbers, not {'texts' if loaded.kind == 'text' else 'image paths'};"
                             f" pass numeric_columns=[{cols[0]!r}] to cluster numbers.")
        loaded.values = col.tolist()
    return loaded


def _load_container(data: Any, modality: str) -> _Loaded:
    if isinstance(data, pd.Series):
        loaded = _Loaded(what="Series", values=data.tolist())
        if not _default_index(data.index):
            loaded.src_ids = data.index.tolist()
    elif isinstance(data, dict):
        loaded = _Loaded(what="dict", values=list(data.values()), src_ids=list(data.keys()), explicit_ids=True)
    elif isinstance(data, np.ndarray) and data.dtype.kind in "biuf":
        if data.ndim not in (1, 2):
            raise InputError(f"A numeric array must be 1-D (one variable) or 2-D (items x variables); got shape"
                             f" {data.shape}.")
        if modality in ("text", "image"):
            raise InputError(f"modality={modality!r} but the array holds numbers; use modality='numeric' or 'auto'.")
        matrix = data.astype(np.float64)
        loaded = _Loaded(what=f"array of shape {data.shape}", kind="numeric",
                         matrix=matrix[:, None] if matrix.ndim == 1 else matrix)
    elif isinstance(data, (list, tuple, np.ndarray)):
        loaded = _Loaded(what=type(data).__name__, values=list(data))
    else:
        raise InputError(f"Unsupported input type {type(data).__name__}. Pass a list/dict/Series of texts, image"
                         f" paths or numbers, a numpy array, a DataFrame, or a path to a table, folder or zip.")
    return loaded


def prepare(data: Any, *, modality: str = "auto", text_column: str | None = None,
            numeric_columns: list[str] | None = None, id_column: str | None = None,
            labels_column: str | None = None, ids: Any = None, labels: Any = None,
            numeric_metadata: dict[str, dict[str, Any]] | None = None, drop_empty_texts: bool = True,
            extract_dir: str | os.PathLike | None = None, max_items: int | None = None,
            min_items: int = 2, fit_scaler: bool = True, read_budget: ReadBudget | None = None,
            vector_column: str | None = None, vectors: Any = None) -> Dataset:
    """Validate texts, image paths (list, folder or zip), numbers, a DataFrame or a table file into a ``Dataset``.

    Parameters
    ----------
    data : list/tuple/dict/Series of texts, image paths or numbers/vectors; numpy array; DataFrame;
        or a path to a table file, an image folder or a .zip of images.
    modality : "auto" detects the modality; "text", "image" or "numeric" force it (InputError if it does not fit).
    text_column, numeric_columns, id_column, labels_column : column names for tables.
    ids, labels : one id / label per item (labels may also be a dict id -> label).
    numeric_metadata : {feature name: {"unit": ..., "description": ...}} for numeric data.
    drop_empty_texts : drop empty texts with a note (True) or raise InputError (False).
    extract_dir : where a .zip of images is extracted (required for a zip).
    max_items : refuse inputs with more items.
    min_items : refuse inputs with fewer usable items (2 to cluster; assigning new items needs 1).
    fit_scaler : standardise numeric data (False leaves ``numeric`` unset: new items for a saved model
        are scaled with the model's own scaler).
    read_budget : limits on reading a table file (:class:`ReadBudget`; default :data:`DEFAULT_READ_BUDGET`).
    vector_column, vectors : the items' own embeddings, as a column of lists of numbers (a Parquet
        file's or a DataFrame's) or as an (n, d) array or a .npy/.npz file with one row per item in
        order. The items are then texts (their text column feeds titles, summaries and search)
        represented by these vectors, which are not scaled (``Dataset.embeddings``).

    Raises
    ------
    InputError : the data cannot be used; the message names the rows/ids/columns and the fix.
    """
    if modality not in MODALITY_CHOICES:
        raise InputError(f"modality must be one of {', '.join(MODALITY_CHOICES)}; got {modality!r}.")
    if max_items is not None and (isinstance(max_items, bool) or not isinstance(max_items, int) or max_items < 1):
        raise InputError(f"max_items must be a positive integer or None; got {max_items!r}.")
    if text_column is not None and numeric_columns is not None:
        raise InputError("Pass either text_column or numeric_columns, not both.")
    if isinstance(numeric_columns, str):
        numeric_columns = [numeric_columns]
    own = vector_column is not None or vectors is not None
    if own:
        if vector_column is not None and vectors is not None:
            raise InputError("Own vectors were given twice: a vector column and a vectors file; keep one.")
        if modality in ("numeric", "image") or numeric_columns is not None:
            raise InputError("Own vectors represent texts: they go with a text column, not with numeric columns or"
                             " images.")
        modality = "text"
    table_opts = (text_column, numeric_columns, id_column, labels_column)
    own_matrix = None
    if isinstance(data, (str, os.PathLike)):
        ld = _load_path(Path(data), modality, *table_opts, extract_dir, read_budget, vector_column)
        own_matrix = ld.vectors
    elif isinstance(data, pd.DataFrame):
        if vector_column is not None:
            col = _column(data, vector_column, "DataFrame", "vector_column")
            own_matrix = _stack_vectors(data[col].tolist(), f"DataFrame column {col!r}")
            data = data.drop(columns=[col])
        ld = _load_frame(data, "DataFrame", modality, *table_opts)
    elif any(x is not None for x in table_opts):
        raise InputError("text_column/numeric_columns/id_column/labels_column only apply to a DataFrame or a table"
                         f" file, not to a {type(data).__name__}.")
    elif vector_column is not None:
        raise InputError("vector_column applies to a DataFrame or a table file; pass vectors=... with a list.")
    else:
        ld = _load_container(data, modality)
    if vectors is not None:
        own_matrix = read_vectors(vectors, budget=read_budget) if isinstance(vectors, (str, os.PathLike)) \
            else np.asarray(vectors, dtype=np.float32)
    n = len(ld.frame) if ld.frame is not None else len(ld.matrix) if ld.matrix is not None else len(ld.values)
    if n == 0:
        raise InputError(f"The input ({ld.what}) is empty; nothing to cluster.")
    if max_items is not None and n > max_items:
        raise InputError(f"Got {n:,} items, more than max_items={max_items:,}. Sample the data or raise max_items.")
    item_ids = _resolve_ids(n, ld.src_ids, ids, ld.explicit_ids)
    if ld.kind is None:  # a plain container: the values decide
        ld.kind = _detect(ld.values, item_ids, modality, f"the {ld.what}")
        noun = {"text": "texts", "image": "image paths", "numeric": "numeric items"}[ld.kind]
        ld.what = f"{ld.what} of {n} {noun}"
    item_labels = _resolve_labels(item_ids, ld.src_labels, labels)
    if ld.kind != "numeric" and numeric_metadata is not None:
        raise InputError("numeric_metadata only applies to numeric data.")
    ds = Dataset(ids=item_ids, modality=ld.kind, labels=item_labels, notes=ld.notes, source=ld.what)
    if own_matrix is not None:  # checked against the rows as given, before empty texts are dropped
        what = f"vector column {vector_column!r}" if vector_column is not None else "the vectors"
        _check_vectors(own_matrix, item_ids, f"{ld.what} with {what}")
    if ld.kind == "text":
        keep = _fill_texts(ds, ld.values, drop_empty_texts)
        if own_matrix is not None:
            ds.embeddings = own_matrix if keep is None else own_matrix[keep]
            _note(ds.notes, f"The items are represented by their own {own_matrix.shape[1]}-d vectors; their texts"
                            f" give titles, summaries and search.")
    elif ld.kind == "image":
        missing = [i for i, v in zip(item_ids, ld.values) if _is_missing(v)]
        if missing:
            raise InputError(f"Image paths are missing for ids {_some(missing)}. Fill or remove those rows.")
        paths = [os.fspath(v) for v in ld.values]
        if ld.base_dir is not None:  # relative paths in a table file are relative to the table
            paths = [p if os.path.isabs(p) or os.path.exists(p) else str(ld.base_dir / p) for p in paths]
        ds.image_paths = _check_images(paths, item_ids)
    else:
        _fill_numeric(ds, ld, numeric_metadata, fit_scaler)
    if len(ds.ids) < min_items:
        raise InputError(f"{ld.what} has {len(ds.ids)} usable item(s); need at least {min_items} item"
                         + ("s to cluster." if min_items >= 2 else "."))
    return ds


def _fill_texts(ds: Dataset, values: list, drop_empty: bool) -> list[int] | None:
    """The texts into ``ds``; returns the positions kept when empty texts were dropped (else None)."""
    bad = [f"{i} ({v!r:.40})" for i, v in zip(ds.ids, values) if not _is_missing(v) and not isinstance(v, str)] \
        if not set(map(type, values)) <= {str} else []
    if bad:
        raise InputError(f"Texts must be strings; {len(bad)} items of {ds.source} are not: ids {_some(bad)}. Convert"
                         f" them with str() or remove them.")
    empty = _blank_cells(values)
    if empty:
        named = _some(ds.ids[k] for k in empty)
        if not drop_empty:
            raise InputError(f"{len(empty)} texts are empty or whitespace only: ids {named}. Remove them or pass"
                             f" drop_empty_texts=True.")
        _note(ds.notes, f"Dropped {len(empty)} empty texts: ids {named}.")
        keep = sorted(set(range(len(values))) - set(empty))
        ds.ids = [ds.ids[k] for k in keep]
        ds.labels = None if ds.labels is None else [ds.labels[k] for k in keep]
        values = [values[k] for k in keep]
        ds.texts = list(values)
        return keep
    ds.texts = list(values)
    return None


def _fill_numeric(ds: Dataset, ld: _Loaded, metadata: Any, fit_scaler: bool = True) -> None:
    if ld.frame is not None:
        raw, names = _matrix_from_frame(ld.frame, ld.columns, ds.ids, ld.what), ld.columns
    else:
        raw = ld.matrix if ld.matrix is not None else _matrix_from_values(ld.values, ds.ids)
        names = [f"x{j}" for j in range(raw.shape[1])]
    if raw.shape[1] == 0:
        raise InputError(f"{ld.what} has no numeric columns.")
    _check_finite(raw, ds.ids, names)
    ds.numeric_raw, ds.feature_names = raw, list(names)
    ds.numeric_metadata = _check_metadata(metadata, ds.feature_names)
    if len(raw) < 2 or not fit_scaler:
        return  # prepare() raises "need at least 2 items"
    scaler = StandardScaler().fit(raw)  # scale_ is 1.0 for a constant column, so no division by zero
    const = [names[j] for j in np.flatnonzero(np.ptp(raw, axis=0) == 0)]
    if const:
        _note(ds.notes, f"Constant columns {_some(const)} carry no information (they scale to 0 for every item).")
    ds.numeric = scaler.transform(raw).astype(np.float32)
    ds.scaler_mean, ds.scaler_scale = scaler.mean_.astype(np.float64), scaler.scale_.astype(np.float64)


# ----------------------------------------------------------------------------- level 0 texts
def default_l0_titles(dataset: Dataset, max_chars: int = 80) -> list[str]:
    """Preliminary L0 titles (§3.1): first sentence of a text, image file stem, or "Item <id>"."""
    if dataset.modality == "text":
        out = []
        for t in dataset.texts:
            first = _SENTENCE_END.split(t.strip(), maxsplit=1)[0].strip()
            out.append(_truncate(first or t, max_chars))
        return out
    if dataset.modality == "image":
        return [_truncate(Path(p).stem, max_chars) for p in dataset.image_paths]
    return [f"Item {i}" for i in dataset.ids]


_DESCRIBE_ROWS = 1 << 15  # rows formatted per batch (one format string of 32k x 10 numbers)


def _number_descriptions(raw: np.ndarray, names: list, max_chars: int, precision: int, max_vals: int) -> list[str]:
    """"name=value, ..." per row (the first ``max_vals`` variables, then "…"), each number readable:
    integers as such, ``precision`` decimals without trailing zeros, ``max(precision, 1)``
    significant digits below 1 and from 1e6 on, str() for nan/inf.

    Python's %-formatting writes every number, a batch of rows in one call: numpy picks each
    number's format, including how many decimals are left once the trailing zeros go ("%.1f" for
    2.50): from the value rounded to ``precision`` decimals, which float arithmetic gets right
    unless it is next to a rounding tie; those few are formatted one by one. At 1M x 10 numbers:
    about 2 s instead of 7 s one number at a time.
    """
    raw = np.asarray(raw, dtype=np.float64)
    shown = [f"{n}" for n in names[:max_vals]][: raw.shape[1]]
    m, p = len(shown), precision
    end = (", …" if m else "…") if len(names) > max_vals else ""
    row_end = next(c for c in map(chr, range(1, 0x110000)) if c not in "".join(shown) + end)
    # format codes: 0 nan/inf, 1 integer, 2 significant digits, 3 preformatted, 4 + k: k decimals
    formats = ["%r", "%d", f"%.{max(p, 1)}g", "%s"] + [f"%.{k}f" for k in range(p + 1)]
    # every number's piece of the format string ("x3=%.1f"), by column and format; the last one ends a row
    pieces = np.array([("" if j == 0 else ", ") + name.replace("%", "%%") + "=" + f
                       for j, name in enumerate(shown) for f in formats] + [end + row_end], dtype=object)
    out: list[str] = []
    for start in range(0, len(raw), _DESCRIBE_ROWS):
        v = raw[start:start + _DESCRIBE_ROWS, :m]
        with np.errstate(invalid="ignore", over="ignore"):
            a, x = np.abs(v), v * 10.0 ** p
            n = np.rint(x)
            # x is within |x| * 2**-53 of the exact v * 10**p: far enough from a tie, rint rounds as printf does
            tie = ~((np.abs(x - np.floor(x) - 0.5) > np.abs(x) * 2.0 ** -50) & (np.abs(n) < 2.0 ** 53))
            whole = np.where(tie, 0.0, n).astype(np.int64)  # the value in units of 10**-p
            decimals = np.full(v.shape, p)
            for i in range(1, min(p, 18) + 1):  # minus the trailing zeros (beyond 15 decimals all are ties)
                decimals -= whole % 10 ** i == 0
            code = np.select([~np.isfinite(v), (v == np.floor(v)) & (a < 1e15), (a < 1) | (a >= 1e6), tie],
                             [0, 1, 2, 3], 4 + decimals)
        values = v.ravel().tolist()
        for i in np.flatnonzero(code.ravel() == 3).tolist():
            fixed = f"{values[i]:.{p}f}"
            values[i] = fixed.rstrip("0").rstrip(".") if p else fixed
        which = np.empty((len(v), m + 1), dtype=np.intp)
        which[:, :m] = code + len(formats) * np.arange(m)
        which[:, m] = len(pieces) - 1
        out += ("".join(pieces[which.ravel()].tolist()) % tuple(values)).split(row_end)[:-1]
    lead = shown[0][:1].isspace() if shown else False  # _truncate strips; a row ends in a digit or "…"
    return [_truncate(r, max_chars) if lead or len(r) > max_chars else r for r in out]


def default_l0_descriptions(dataset: Dataset, max_chars: int = 300, precision: int = 2,
                            max_vals: int = 10) -> list[str]:
    """Preliminary L0 descriptions (§3.1): truncated text, "v1=5.2, v2=3.1, …", or an image placeholder."""
    if dataset.modality == "text":
        return [_truncate(t, max_chars) for t in dataset.texts]
    if dataset.modality == "image":
        return [f"Image {Path(p).name}" for p in dataset.image_paths]
    return _number_descriptions(dataset.numeric_raw, list(dataset.feature_names), max_chars, precision, max_vals)
