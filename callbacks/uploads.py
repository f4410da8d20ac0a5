"""Uploads: decode, check, store under generated names, preview, and turn into ``prepare`` arguments.

User file names are shown and used as item ids, never joined into a path: each upload is stored as
``<runs_dir>/_uploads/<upload_id>/f00000.<ext>`` with ``ext`` taken from a fixed list. The browser
keeps only the opaque ``upload_id``; everything else about an upload (kind, files, the user's names,
columns) is read back from its own record, ``upload.json`` in the upload's folder, and every file of
it is resolved with :func:`runstore.inside` (it must stay in that folder). Error messages name the
user's files, never the stored names or server paths.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import shutil
import zipfile
from pathlib import Path, PurePath
from typing import Any

import pandas as pd

from hercules_core import Dataset, InputError
from hercules_core import data as core_data
from hercules_core.data import IMAGE_EXTENSIONS, collect_images, prepare, read_table

from . import bounded, runstore

MAX_UPLOAD_BYTES = 200 * 1024**2  # all files of one upload together
MAX_MODEL_BYTES = 500 * 1024**2
PREVIEW_ROWS = 500
PREVIEW_CHARS = 300
PREVIEW_CELLS = 100_000  # a wide table previews fewer rows (at least 20), not a reply of many MB
PREVIEW_FILE = "preview.json"  # the first rows of a table upload, written when it is staged
TABLE_EXTS = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".xlsx", ".xls")
TEXT_EXTS = (".txt",)
ZIP_EXTS = (".zip",)
KINDS = ("table", "txt", "images", "zip")
LIMITS_TEXT = (f"Up to {MAX_UPLOAD_BYTES // 1024**2} MB per upload. Tables: CSV, TSV, JSON, JSONL, Parquet, "
               "Excel (one file). Texts: .txt files (one item per file, or one per line). Images: several "
               f"image files ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) or one ZIP of a folder "
               f"(at most {core_data.MAX_ZIP_ENTRIES:,} entries and {core_data.MAX_ZIP_BYTES // 1024**3} GB unpacked).")


def limited(upload, max_bytes: int, msg_id: str, types: tuple[str, ...] = (), wrong_type: str = ""):
    """``upload`` (a dcc.Upload) refusing files above ``max_bytes`` in the browser, before sending.

    dcc.Upload's ``max_size`` drops such a file silently; assets/03_upload_limit.js reads the
    wrapper's data attributes, stops the file before the component sees it and writes the reason
    into the ``msg_id`` element. With ``types`` (file name endings such as ``".json"``), a file of
    another type is stopped the same way, with ``wrong_type`` (``{name}`` is the file's name) as the
    reason: the upload's ``accept`` only filters the file chooser, and react-dropzone drops another
    type that is dragged onto the box without a word.
    """
    from dash import html

    upload.max_size = max_bytes
    attrs = {"data-max-bytes": str(max_bytes), "data-msg-id": msg_id}
    if types:
        upload.accept = ",".join(types)
        attrs.update({"data-accept": ",".join(t.lower() for t in types), "data-type-msg": wrong_type})
    return html.Div([upload, html.Div(id=msg_id, className="alert alert-danger py-2 upload-too-large",
                                      style={"display": "none"})], **attrs)


def _ext(name: str) -> str:
    return PurePath(str(name)).suffix.lower()


def decode_data_url(contents: str) -> bytes:
    """The bytes of a ``data:<mime>;base64,<data>`` string as sent by ``dcc.Upload``."""
    if not isinstance(contents, str) or "," not in contents:
        raise InputError("The upload arrived damaged (not a data URL); try again.")
    header, _, payload = contents.partition(",")
    if not header.endswith(";base64"):
        raise InputError("The upload arrived damaged (not base64); try again.")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("The upload arrived damaged (bad base64); try again.") from None


def encoded_size(contents: str) -> int:
    """Decoded size of a data URL without decoding it."""
    payload = contents.partition(",")[2]
    return len(payload) * 3 // 4 - payload[-2:].count("=")


def classify(names: list[str]) -> str:
    """Which kind of upload ``names`` are: table | txt | images | zip; InputError when unusable."""
    if not names:
        raise InputError("No file was uploaded.")
    exts = [_ext(n) for n in names]
    unknown = sorted({n for n, e in zip(names, exts)
                      if e not in TABLE_EXTS + TEXT_EXTS + ZIP_EXTS + IMAGE_EXTENSIONS})
    if unknown:
        raise InputError(f"Unsupported file type: {', '.join(unknown[:5])}. " + LIMITS_TEXT)
    if all(e in IMAGE_EXTENSIONS for e in exts):
        if len(names) < 2:
            raise InputError("A single image cannot be clustered: upload several images or a ZIP of a folder.")
        return "images"
    if all(e in TEXT_EXTS for e in exts):
        return "txt"
    if len(names) > 1:
        raise InputError(f"Upload one table or one ZIP at a time, or only .txt files, or only images "
                         f"(got {len(names)} files of mixed kinds: {', '.join(sorted(set(exts)))}).")
    return "zip" if exts[0] in ZIP_EXTS else "table"


def _str_list(value: Any, what: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"The upload arrived damaged ({what}); try again.")
    return value


def user_text(message: str, desc: dict[str, Any], *folders: Path) -> str:
    """``message`` with stored file names and server folders replaced by what the user knows.

    All replacements happen in one pass, so a user's name that was put in is never searched again
    (the name "notmodel.json" contains the stored name "model.json"), and a bare stored name is
    replaced only as a whole file name, never inside a longer one.
    """
    udir = folders[0] if folders else None
    swaps: dict[str, str] = {}
    patterns: dict[str, str] = {}  # text to find -> its regex, longest text tried first
    pairs = zip(desc.get("names") or [desc.get("name")], desc.get("files") or [desc.get("file")])
    for name, stored in pairs:
        if not stored or not isinstance(name, str):
            continue
        paths = {str(udir.resolve() / stored), str(udir / stored)} if udir is not None else set()
        for path in paths:
            swaps[path], patterns[path] = name, re.escape(path)
        swaps.setdefault(stored, name)
        patterns.setdefault(stored, rf"(?<![\w.\-]){re.escape(stored)}(?![\w\-]|\.\w)")
    forms = {str(f.resolve()) for f in folders} | {str(f) for f in folders if f.is_absolute()}
    for form in forms:
        for text in (form + "/", form):
            swaps.setdefault(text, "")
            patterns.setdefault(text, re.escape(text))
    if not patterns:
        return message
    regex = "|".join(patterns[t] for t in sorted(patterns, key=len, reverse=True))
    return re.sub(regex, lambda m: swaps[m.group(0)], message)


def _saved(write, what: str) -> Any:
    """Run a write; a full disk (or any OS error) becomes a message for the page, not an HTTP 500."""
    try:
        return write()
    except OSError as e:
        raise InputError(f"{what} could not be saved: {runstore.os_error_text(e)}.") from None


def stage(runs_dir: str | Path, names: Any, contents: Any,
          max_bytes: int = MAX_UPLOAD_BYTES) -> dict[str, Any]:
    """Check and store one upload; returns its record (the browser keeps only ``upload_id``)."""
    names = _str_list(names or [], "file names")
    contents = _str_list(contents or [], "contents")
    if len(names) != len(contents):
        raise InputError("The upload arrived incomplete; try again.")
    kind = classify(names)
    total = sum(encoded_size(c) for c in contents)
    if total > max_bytes:
        raise InputError(f"The upload is {total / 1024**2:.1f} MB, more than the {max_bytes // 1024**2} MB "
                         "allowed. Sample the data, or run the command-line tool on the full file.")
    upload_id = runstore.new_id()
    udir = runstore.upload_dir(runs_dir, upload_id)
    try:
        return _store(udir, upload_id, kind, names, contents, total)
    except BaseException:
        shutil.rmtree(udir, ignore_errors=True)  # keep nothing of a rejected upload (and free the space)
        raise


def _store(udir: Path, upload_id: str, kind: str, names: list[str], contents: list[str], total: int):
    _saved(lambda: udir.mkdir(parents=True), "The upload")
    stored = []
    for i, (name, data) in enumerate(zip(names, contents)):
        blob = decode_data_url(data)
        fname = f"f{i:05d}{_ext(name)}"
        _saved(lambda: runstore.inside(udir, fname).write_bytes(blob), name)
        del blob
        stored.append(fname)
    desc = {"upload_id": upload_id, "kind": kind, "names": names, "files": stored, "bytes": total}
    if kind == "table":
        desc.update(_table_record(udir, desc))
    elif kind == "txt":
        desc.update(txt_mode="file" if len(names) > 1 else "line", n_rows=len(names))
    elif kind == "images":
        desc.update(n_rows=len(names))
    _saved(lambda: runstore.write_json_atomic(udir / "upload.json", desc), "The upload")
    return desc


def _table_record(udir: Path, desc: dict[str, Any]) -> dict[str, Any]:
    """Columns, row count and column suggestions of a staged table, read within the server's budget in
    a bounded child process (:mod:`callbacks.bounded`); its first rows are saved for the preview."""
    name = desc["names"][0]
    try:
        rec = bounded.bounded_call(table_summary, str(udir / desc["files"][0]), bounded.read_budget(), what=name)
    except InputError as e:  # name the user's file, not our stored copy
        raise InputError(user_text(str(e), desc, udir)) from None
    if rec["n_rows"] == 0:
        raise InputError(f"{name} has no rows.")
    preview = rec.pop("preview")
    _saved(lambda: runstore.write_json_atomic(udir / PREVIEW_FILE, preview), "The upload")
    return rec


def table_summary(path: str, budget: core_data.ReadBudget | None = None) -> dict[str, Any]:
    """What staging keeps of a table file (run in the bounded child): columns, n_rows, suggest, preview."""
    df = read_table(path, budget=budget)
    columns = [str(c) for c in df.columns]
    rows = min(PREVIEW_ROWS, max(20, PREVIEW_CELLS // max(len(columns), 1)))
    return {"columns": columns, "n_rows": int(len(df)), "suggest": suggest_columns(df),
            "preview": {"rows": _records(df.head(rows), PREVIEW_CHARS), "columns": columns}}


def _records(df: pd.DataFrame, max_chars: int) -> list[dict[str, Any]]:
    """Rows as JSON-ready records, texts cut to ``max_chars``."""
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object or pd.api.types.is_string_dtype(df[c]):
            df[c] = df[c].map(lambda v: v if not isinstance(v, str) or len(v) <= max_chars else v[:max_chars] + "…")
    return json.loads(df.to_json(orient="records", date_format="iso", default_handler=str))


def upload_id_of(ref: Any) -> str | None:
    """The upload id in a browser store value (``{"upload_id": ...}``), or None."""
    uid = ref.get("upload_id") if isinstance(ref, dict) else ref
    return uid if runstore.valid_id(uid) else None


def load_descriptor(runs_dir: str | Path, ref: Any, kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    """The server's record of the upload a browser value names; InputError when there is none.

    Only the id of ``ref`` is used. The record is checked to be one of ``kinds``, and each of its files
    to lie inside the upload's folder.
    """
    upload_id = upload_id_of(ref)
    if upload_id is None:
        raise InputError("Upload a data file first.")
    udir = runstore.upload_dir(runs_dir, upload_id)
    desc = runstore.read_json(udir / "upload.json")
    if not isinstance(desc, dict) or desc.get("kind", "labels" if "file" in desc else None) not in kinds \
            or desc.get("upload_id") != upload_id:
        raise InputError("The uploaded data is no longer on the server; upload it again.")
    files = desc.get("files") if "files" in desc else [desc.get("file")]
    try:
        for f in files:
            runstore.inside(udir, f)
    except (TypeError, ValueError):
        raise InputError("The uploaded data is damaged on the server; upload it again.") from None
    return desc


def upload_file(runs_dir: str | Path, desc: dict[str, Any], index: int = 0) -> Path:
    """Stored file ``index`` of a record from :func:`load_descriptor` (checked inside its folder)."""
    files = desc.get("files") if "files" in desc else [desc["file"]]
    return runstore.inside(runstore.upload_dir(runs_dir, desc["upload_id"]), files[index])


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def suggest_columns(df: pd.DataFrame) -> dict[str, Any]:
    """Best guesses for the column pickers: text, numeric, id and label columns."""
    cols = [str(c) for c in df.columns]
    lower = {c.lower(): c for c in cols}
    id_col = next((lower[k] for k in ("id", "item_id", "ids", "key") if k in lower), None)
    label_col = next((lower[k] for k in ("label", "labels", "class", "category", "target", "y") if k in lower), None)
    reserved = {id_col, label_col}
    text_col, best = None, 0.0
    for c in cols:
        if c in reserved or _is_numeric(df[c]):
            continue
        lengths = df[c].dropna().astype(str).str.len()
        mean = float(lengths.mean()) if len(lengths) else 0.0
        if mean > best:
            text_col, best = c, mean
    numeric = [c for c in cols if c not in reserved and _is_numeric(df[c])]
    what = "text" if text_col is not None and (best >= 20 or not numeric) else "numeric" if numeric else "text"
    return {"what": what, "text_column": text_col, "numeric_columns": numeric, "id_column": id_col,
            "label_column": label_col}


def preview_rows(runs_dir: str | Path, ref: Any, txt_mode: Any = None, max_rows: int = PREVIEW_ROWS,
                 max_chars: int = 300) -> tuple[list[dict[str, Any]], list[str]]:
    """The first rows of the upload ``ref`` names, as records for the preview grid, and their columns."""
    desc = load_descriptor(runs_dir, ref)
    udir = runstore.upload_dir(runs_dir, desc["upload_id"])
    kind = desc["kind"]
    if kind == "table":
        records, columns = _table_preview(runs_dir, udir, desc)
        cut = [{k: v if not isinstance(v, str) or len(v) <= max_chars else v[:max_chars] + "…" for k, v in r.items()}
               for r in records[:max_rows]]
        return cut, columns
    if kind == "txt":
        mode = txt_mode if txt_mode in ("line", "file") else desc.get("txt_mode", "line")
        df = txt_frame(udir, desc, mode).head(max_rows)
    elif kind == "images":
        df = pd.DataFrame({"file": desc["names"][:max_rows]})
    else:
        df = pd.DataFrame({"archive": desc["names"]})
    return _records(df, max_chars), [str(c) for c in df.columns]


PREVIEW_LONG_CHARS = 40  # a column whose values reach this length on average (or twice it at most) is long text


def preview_column_defs(columns: list[str], rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """AG Grid column definitions of the data preview, from its columns and rows.

    Long text takes the grid's spare width (``flex``) and wraps to three lines (the rest in the
    cell's tooltip); ids, labels and numbers get a fixed width that fits their values. A table
    without long text spreads its columns over the grid's width. Values are shown as text.
    """
    stats = []
    for c in columns:
        values = [r.get(c) for r in rows if r.get(c) is not None]
        lengths = [len(str(v)) for v in values] or [0]
        numeric = bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        mean = sum(lengths) / len(lengths)
        long = not numeric and (mean >= PREVIEW_LONG_CHARS or max(lengths) >= 2 * PREVIEW_LONG_CHARS)
        width = int(min(max(8 * max(max(lengths), len(str(c))) + 40, 80), 240))
        stats.append((c, long, numeric, width))
    any_long = any(long for _, long, _, _ in stats)
    defs = []
    for c, long, numeric, width in stats:
        d: dict[str, Any] = {"field": c, "headerName": c, "tooltipField": c}
        if long:
            d.update(flex=1, minWidth=280, wrapText=True, autoHeight=True, cellClass="preview-long")
        elif any_long:
            d.update(width=width, maxWidth=240)
        else:
            d.update(flex=1, minWidth=width)
        if numeric:
            d["type"] = "numericColumn"
        defs.append(d)
    return defs


def _table_preview(runs_dir, udir: Path, desc: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows saved when the table was staged; an upload staged before they were saved is read
    again, in the bounded child like at staging, never in the web process."""
    saved = runstore.read_json(udir / PREVIEW_FILE)
    if isinstance(saved, dict) and isinstance(saved.get("rows"), list) and isinstance(saved.get("columns"), list):
        return saved["rows"], [str(c) for c in saved["columns"]]
    try:
        rec = bounded.bounded_call(table_summary, str(upload_file(runs_dir, desc)), bounded.read_budget(),
                                   what=desc["names"][0])
    except InputError as e:
        raise InputError(user_text(str(e), desc, udir)) from None
    return rec["preview"]["rows"], rec["preview"]["columns"]


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def txt_frame(udir: Path, desc: dict[str, Any], mode: str) -> pd.DataFrame:
    """``id, text`` from .txt uploads: one item per file (id = file name) or per non-empty line."""
    if mode == "file":
        return pd.DataFrame({"id": list(desc["names"]),
                             "text": [_read_text(runstore.inside(udir, f)) for f in desc["files"]]})
    ids, texts = [], []
    for name, f in zip(desc["names"], desc["files"]):
        stem = PurePath(name).stem
        for k, line in enumerate(_read_text(runstore.inside(udir, f)).splitlines()):
            if line.strip():
                ids.append(f"{stem}:{k + 1}" if len(desc["names"]) > 1 else str(k + 1))
                texts.append(line.strip())
    return pd.DataFrame({"id": ids, "text": texts})


def data_spec(desc: dict[str, Any] | None, *, what: str | None = None, text_column: str | None = None,
              numeric_columns: list[str] | None = None, id_column: str | None = None,
              label_column: str | None = None, txt_mode: str | None = None,
              labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """Validate the data choices of the form into a small JSON spec (InputError says what is missing).

    ``desc`` is the server's record of the upload (:func:`load_descriptor`), never a browser value;
    the form's choices are browser values and are checked here.
    """
    if not desc or not runstore.valid_id(desc.get("upload_id")):
        raise InputError("Upload a data file first.")
    for name, v in (("text column", text_column), ("id column", id_column), ("labels column", label_column),
                    ("choice", what), ("text mode", txt_mode)):
        if v is not None and not isinstance(v, str):
            raise InputError(f"The {name} must be a column name.")
    if numeric_columns is not None and (not isinstance(numeric_columns, list)
                                        or not all(isinstance(c, str) for c in numeric_columns)):
        raise InputError("The numeric columns must be a list of column names.")
    spec: dict[str, Any] = {"upload_id": desc["upload_id"], "kind": desc["kind"], "names": desc["names"][:20],
                            "n_files": len(desc["names"])}
    if desc["kind"] == "table":
        columns = desc.get("columns", [])
        for name, col in (("id column", id_column), ("labels column", label_column), ("text column", text_column)):
            if col and col not in columns:
                raise InputError(f"The {name} {col!r} is not a column of the table.")
        if what == "numeric":
            cols = [c for c in (numeric_columns or []) if c not in (id_column, label_column)]
            if not cols:
                raise InputError("Pick at least one numeric column to cluster.")
            bad = [c for c in cols if c not in columns]
            if bad:
                raise InputError(f"Unknown numeric columns: {', '.join(bad)}.")
            spec.update(what="numeric", numeric_columns=cols)
        else:
            if not text_column:
                raise InputError("Pick the column that holds the texts.")
            if text_column in (id_column, label_column):
                raise InputError("The text column cannot also be the id or labels column.")
            spec.update(what="text", text_column=text_column)
        if id_column and id_column == label_column:
            raise InputError("The id column and the labels column must differ.")
        spec.update(id_column=id_column or None, label_column=label_column or None)
    elif desc["kind"] == "txt":
        spec.update(what="text", txt_mode="file" if txt_mode == "file" else "line")
    else:
        spec.update(what="image")
    if labels:
        if label_column and desc["kind"] == "table":
            raise InputError("Labels were given twice: a labels column and a labels file; keep one.")
        labels_id = upload_id_of(labels)
        if labels_id is None:
            raise InputError("The labels file is no longer on the server; upload it again.")
        spec["labels_upload_id"] = labels_id
    return spec


def stage_labels(runs_dir: str | Path, name: Any, contents: Any) -> dict[str, Any]:
    """Store an ``id,label`` file (any table format) and check it has two usable columns."""
    if not isinstance(name, str) or not isinstance(contents, str):
        raise InputError("The labels file arrived damaged; try again.")
    if _ext(name) not in TABLE_EXTS:
        raise InputError(f"The labels file must be a table ({', '.join(TABLE_EXTS)}) with columns id,label.")
    if encoded_size(contents) > MAX_UPLOAD_BYTES:
        raise InputError("The labels file is too large.")
    upload_id = runstore.new_id()
    udir = runstore.upload_dir(runs_dir, upload_id)
    fname = "labels" + _ext(name)
    desc = {"upload_id": upload_id, "kind": "labels", "name": name, "file": fname}
    try:
        _saved(lambda: udir.mkdir(parents=True), "The labels file")
        blob = decode_data_url(contents)
        _saved(lambda: runstore.inside(udir, fname).write_bytes(blob), name)
        try:
            desc["n"] = bounded.bounded_call(labels_count, str(udir / fname), bounded.read_budget(), what=name)
        except InputError as e:
            raise InputError(user_text(str(e), desc, udir)) from None
        _saved(lambda: runstore.write_json_atomic(udir / "upload.json", desc), "The labels file")
    except BaseException:
        shutil.rmtree(udir, ignore_errors=True)
        raise
    return desc


def labels_count(path: str, budget: core_data.ReadBudget | None = None) -> int:
    """How many ids a labels file maps (run in the bounded child at staging)."""
    return len(labels_mapping(Path(path), budget))


def labels_mapping(path: Path, budget: core_data.ReadBudget | None = None) -> dict[str, str]:
    df = read_table(path, budget=budget)
    lower = {str(c).lower(): str(c) for c in df.columns}
    if "id" in lower and "label" in lower:
        id_col, label_col = lower["id"], lower["label"]
    elif len(df.columns) == 2:
        id_col, label_col = str(df.columns[0]), str(df.columns[1])
    else:
        raise InputError(f"The labels file needs columns id and label (it has {', '.join(map(str, df.columns))}).")
    ids = df[id_col].map(lambda v: str(int(v)) if isinstance(v, float) and math.isfinite(v) and v.is_integer()
                         else str(v))
    if ids.duplicated().any():
        raise InputError(f"The labels file lists ids more than once: {', '.join(ids[ids.duplicated()].head(5))}.")
    return dict(zip(ids, df[label_col].astype(str)))


def prepare_from_spec(spec: dict[str, Any], runs_dir: str | Path, rdir: Path | None):
    """The ``Dataset`` of a run's data spec (images of a ZIP are extracted into the run dir).

    On failure nothing extracted is left behind, and the message names the user's files only.
    """
    desc = load_descriptor(runs_dir, spec["upload_id"])
    udir = runstore.upload_dir(runs_dir, desc["upload_id"])
    folders = [udir] + ([Path(rdir)] if rdir is not None else []) + [Path(runs_dir)]
    try:
        return _prepare(spec, desc, runs_dir, udir, rdir)
    except InputError as e:
        if rdir is not None:
            discard_extracted(rdir)
        raise InputError(user_text(str(e), desc, *folders)) from None
    except OSError as e:
        if rdir is not None:
            discard_extracted(rdir)
        raise InputError(f"The data could not be prepared: {runstore.os_error_text(e)}.") from None


def discard_extracted(rdir: Path) -> None:
    """Remove the images a failed run copied or extracted into its folder (they can be large)."""
    shutil.rmtree(Path(rdir) / "images", ignore_errors=True)


def _prepare(spec: dict[str, Any], desc: dict[str, Any], runs_dir, udir: Path, rdir: Path | None):
    labels = None
    if spec.get("labels_upload_id"):
        ldesc = load_descriptor(runs_dir, spec["labels_upload_id"], kinds=("labels",))
        try:
            labels = labels_mapping(upload_file(runs_dir, ldesc), bounded.read_budget())
        except InputError as e:
            raise InputError(user_text(str(e), ldesc, runstore.upload_dir(runs_dir, ldesc["upload_id"]))) from None
    kind = desc["kind"]
    if kind == "table":
        path = upload_file(runs_dir, desc)
        kw = dict(id_column=spec.get("id_column"), labels_column=spec.get("label_column"),
                  read_budget=bounded.read_budget())
        if spec["what"] == "numeric":
            return prepare(path, numeric_columns=spec["numeric_columns"], labels=labels, **kw)
        return prepare(path, text_column=spec["text_column"], labels=labels, modality="text", **kw)
    if kind == "txt":
        df = txt_frame(udir, desc, spec.get("txt_mode", "line"))
        if df.empty:
            raise InputError("The .txt files hold no non-empty lines.")
        return prepare(df, text_column="text", id_column="id", labels=labels, modality="text")
    images_dir = rdir / "images"
    if kind == "images":
        images_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for f in desc["files"]:
            target = runstore.inside(images_dir, f)
            shutil.copyfile(runstore.inside(udir, f), target)
            paths.append(str(target))
        df = pd.DataFrame({"id": desc["names"], "path": paths})
        return prepare(df, text_column="path", id_column="id", labels=labels, modality="image")
    paths = collect_images(upload_file(runs_dir, desc), extract_dir=images_dir)
    if not paths:
        raise InputError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {desc['names'][0]}.")
    root = images_dir.resolve()
    ids = [str(Path(p).resolve().relative_to(root)) for p in paths]
    df = pd.DataFrame({"id": ids, "path": paths})
    return prepare(df, text_column="path", id_column="id", labels=labels, modality="image")


def estimate_dataset(spec: dict[str, Any], runs_dir: str | Path) -> Dataset:
    """The data of a run's spec as far as the cost estimate needs it, without writing anything: a
    table or texts are prepared (so their problems show before the start); images are only named,
    and a ZIP's images are counted from its listing, not extracted."""
    desc = load_descriptor(runs_dir, spec["upload_id"])
    if desc["kind"] in ("table", "txt"):
        return prepare_from_spec(spec, runs_dir, None)
    names = list(desc["names"])
    if desc["kind"] == "zip":
        try:
            with zipfile.ZipFile(upload_file(runs_dir, desc)) as zf:
                names = [n for n in zf.namelist() if _ext(n) in IMAGE_EXTENSIONS
                         and not any(p.startswith(".") or p == "__MACOSX" for p in PurePath(n).parts)]
        except (zipfile.BadZipFile, OSError):
            raise InputError(f"{desc['names'][0]} is not a readable ZIP archive.") from None
        if not names:
            raise InputError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {desc['names'][0]}.")
    return Dataset(ids=[str(i) for i in range(len(names))], modality="image", image_paths=names)


def estimate_summary(spec: dict[str, Any], runs_dir: str | Path):
    """The cost estimate's ``DataSummary`` of a spec: a table or texts are prepared in the bounded
    child (the web process keeps only the summary's few hundred items), images here (a listing)."""
    if spec.get("kind") in ("table", "txt"):
        names = spec.get("names") or ["The data"]
        return bounded.bounded_call(_summary, spec, str(runs_dir), what=str(names[0]))
    return _summary(spec, str(runs_dir))


def _summary(spec: dict[str, Any], runs_dir: str):
    from hercules_core import cost

    return cost.summarize_data(estimate_dataset(spec, runs_dir))


def describe_dataset(ds) -> dict[str, Any]:
    """The small data description kept in status.json and shown on the runs page."""
    out = {"source": ds.source, "modality": ds.modality, "n_items": len(ds), "labelled": ds.labels is not None}
    if ds.modality == "numeric":
        out["features"] = list(ds.feature_names or [])[:20]
    if ds.notes:
        out["notes"] = list(ds.notes)[:5]
    return out

