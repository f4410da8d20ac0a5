"""Uploads: decode, check, store under generated names, preview, and name them in a run's data spec.

User file names are shown and used as item ids, never joined into a path: each upload is stored as
``<runs_dir>/_uploads/<upload_id>/f00000.<ext>`` with ``ext`` taken from a fixed list. The browser
keeps only the opaque ``upload_id``; everything else about an upload (kind, files, the user's names,
columns) is read back from its own record, ``upload.json`` in the upload's folder, and every file of
it is resolved with :func:`runstore.inside` (it must stay in that folder). Every record has one shape:
``{"upload_id", "kind", "names", "files", ...}`` (one name and file for a labels or metadata file).
Error messages name the user's files, never the stored names or server paths.

Files arrive in chunks over ``/upload`` (:mod:`callbacks.upload_route`, stored by :mod:`callbacks.chunked`):
:func:`begin` checks what the browser declares (names, sizes, which box) before a byte is sent; once the
file is on disk the page's callback stages it (:func:`stage_upload`, :func:`stage_side`), which reads it
in the bounded reader and writes the record. :func:`stage` does both for bytes in hand (data URLs).

:func:`data_spec` turns the form's choices and the server's records into a
:class:`hercules_run.spec.DataSpec` (files relative to the uploads folder); turning that into a
``Dataset`` is :func:`hercules_run.spec.prepare`, the command line's way too.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import shutil
from pathlib import Path, PurePath
from typing import Any

import pandas as pd

from hercules_core import InputError
from hercules_core import data as core_data
from hercules_core.data import IMAGE_EXTENSIONS, read_table
from hercules_run import spec as run_spec
from hercules_run.spec import DataSpec

from . import bounded, chunked, runstore


def _max_upload_bytes() -> int:
    """``HERCULES_MAX_UPLOAD_GB`` (default 20): the most all files of one upload may hold together."""
    raw = os.environ.get("HERCULES_MAX_UPLOAD_GB", "").strip()
    try:
        gb = float(raw) if raw else 20.0
    except ValueError:
        gb = 20.0
    return int(gb * 1024**3) if gb > 0 else int(20 * 1024**3)


def size_text(n: float) -> str:
    return f"{n / 1024**3:g} GB" if n >= 1024**3 else f"{n / 1024**2:g} MB"


MAX_UPLOAD_BYTES = _max_upload_bytes()  # all files of one upload together (read when the app starts)
# a model: a model.json, or a .hercules bundle (a ZIP: the same size bound as any ZIP the app reads)
MAX_MODEL_BYTES = core_data.MAX_ZIP_BYTES
PREVIEW_ROWS = 500
PREVIEW_CHARS = 300
PREVIEW_CELLS = 100_000  # a wide table previews fewer rows (at least 20), not a reply of many MB
PREVIEW_FILE = "preview.json"  # the first rows of a table upload, written when it is staged
MAX_METADATA_BYTES = run_spec.MAX_METADATA_BYTES
METADATA_TYPES = (".json",)
VECTOR_TYPES = core_data.VECTOR_EXTENSIONS  # the items' own embeddings beside a table or .txt items
TABLE_EXTS, TEXT_EXTS, ZIP_EXTS, KINDS = run_spec.TABLE_EXTS, run_spec.TEXT_EXTS, run_spec.ZIP_EXTS, run_spec.KINDS
LIMITS_TEXT = (f"Up to {size_text(MAX_UPLOAD_BYTES)} per upload. Tables: CSV, TSV, JSON, JSONL, Parquet, "
               "Excel (one file). Texts: .txt files (one item per file, or one per line). Images: several "
               f"image files ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) or one ZIP of a folder "
               f"(at most {core_data.MAX_ZIP_ENTRIES:,} entries and {core_data.MAX_ZIP_BYTES // 1024**3} GB unpacked).")


def sent_id(upload_id: str) -> str:
    """The store a box's finished transfer is announced in: ``{"upload_id": ...}``."""
    return f"{upload_id}-sent"


def limited(upload, max_bytes: int, msg_id: str, types: tuple[str, ...] = (), wrong_type: str = "",
            purpose: str = "data"):
    """``upload`` (a dcc.Upload: the drop zone and file chooser) sending its files in chunks.

    assets/03_upload_limit.js takes a chosen or dropped file before the component reads it (the
    wrapper's data attributes say the limit, the message element and the ``purpose``, a key of
    :data:`PURPOSES`). A file above ``max_bytes`` is refused there, before sending, with the reason
    in the ``msg_id`` element; with ``types`` (file name endings such as ``".json"``) a file of another
    type is refused the same way, with ``wrong_type`` (``{name}`` is the file's name) as the reason.
    Any other file goes to ``/upload`` in chunks, with a progress bar under the box; when it has
    arrived, the store :func:`sent_id` gets ``{"upload_id"}`` and the page's callback stages it.
    """
    from dash import dcc, html

    upload.max_size = max_bytes
    attrs = {"data-max-bytes": str(max_bytes), "data-msg-id": msg_id, "data-purpose": purpose,
             "data-sent-id": sent_id(upload.id)}
    if types:
        upload.accept = ",".join(types)
        attrs.update({"data-accept": ",".join(t.lower() for t in types), "data-type-msg": wrong_type})
    progress = html.Div(className="upload-progress", style={"display": "none"}, children=[
        html.Div(html.Div(className="progress-bar", role="progressbar"), className="progress"),
        html.Div(className="upload-progress-text small text-muted")])
    return html.Div([upload, progress,
                     html.Div(id=msg_id, className="alert alert-danger py-2 upload-too-large", style={"display": "none"}),
                     dcc.Store(id=sent_id(upload.id))], **attrs)


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
    return run_spec.classify(names, LIMITS_TEXT)


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
    pairs = zip(desc.get("names") or [], desc.get("files") or [])
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


MODEL_TYPES = (".json", ".hercules")
NOT_A_MODEL = ("{name} is not a model file: a model is the model.json or .hercules bundle a run wrote; to cluster a "
               "table, use New run.")
# what each upload box takes: (the most bytes of one upload, file name endings or None: any data file)
PURPOSES: dict[str, tuple[int, tuple[str, ...] | None]] = {
    "data": (MAX_UPLOAD_BYTES, None), "labels": (MAX_UPLOAD_BYTES, TABLE_EXTS),
    "metadata": (MAX_METADATA_BYTES, METADATA_TYPES), "model": (MAX_MODEL_BYTES, MODEL_TYPES),
    "vectors": (MAX_UPLOAD_BYTES, VECTOR_TYPES)}
WRONG_TYPE = {"labels": f"The labels file must be a table ({', '.join(TABLE_EXTS)}) with columns id,label.",
               "metadata": "The numeric metadata file must be a .json file.", "model": NOT_A_MODEL,
               "vectors": "{name} is not a vectors file: give the embeddings as a .npy or .npz file (numpy.save), "
                          "one row per item, in the data's order."}


def too_large_text(total: float, limit: int) -> str:
    return (f"The upload is {size_text(total)}, more than the {size_text(limit)} allowed per upload. Sample the "
            "data, or run the command-line tool on the full file.")


def free_bytes(runs_dir: str | Path) -> int | None:
    """Free space where uploads are stored (None when it cannot be told)."""
    try:
        return shutil.disk_usage(Path(runs_dir)).free
    except OSError:
        return None


def begin(runs_dir: str | Path, purpose: Any, names: Any, sizes: Any) -> dict[str, Any]:
    """Start a chunked upload of files the browser declares (names, sizes) for one box (``purpose``).

    Everything that can be told from the names and sizes is checked before a byte is sent: the kind
    of upload, the file types, the size limit, the free disk space. Returns the transfer record
    (:func:`callbacks.chunked.create`); errors are :class:`chunked.TransferError` with an HTTP status.
    """
    if purpose not in PURPOSES:
        raise chunked.TransferError("Unknown upload box.")
    names = _str_list(names or [], "file names")
    if not isinstance(sizes, list) or len(sizes) != len(names) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes):
        raise chunked.TransferError("The upload arrived damaged (file sizes); try again.")
    limit, types = PURPOSES[purpose]
    if purpose == "data":
        classify(names)
        files = [f"f{i:05d}{_ext(n)}" for i, n in enumerate(names)]
    else:
        if len(names) != 1:
            raise chunked.TransferError("Upload one file here.")
        if _ext(names[0]) not in types:
            raise chunked.TransferError(WRONG_TYPE[purpose].format(name=names[0]))
        files = [f"{purpose}{_ext(names[0])}"]
    total = sum(sizes)
    if total > limit:
        raise chunked.TransferError(too_large_text(total, limit), 413)
    free = free_bytes(runs_dir)
    if free is not None and total > free:
        raise chunked.TransferError(f"The upload is {size_text(total)} but the server has {size_text(free)} of disk "
                                    "space left; free some space or ask the administrator.", 507)
    return chunked.create(runs_dir, purpose, names, sizes, files)


def _staged_record(udir: Path, upload_id: str) -> dict[str, Any] | None:
    desc = _one_shape(runstore.read_json(udir / "upload.json"))
    return desc if isinstance(desc, dict) and desc.get("upload_id") == upload_id else None


def stage_upload(runs_dir: str | Path, ref: Any) -> dict[str, Any]:
    """Stage a data upload whose chunks have all arrived: check, read (bounded), record; its record.

    ``ref`` is the browser's ``{"upload_id"}``. A rejected upload is removed (nothing of it is kept).
    """
    upload_id = upload_id_of(ref)
    if upload_id is None:
        raise InputError("Upload a data file first.")
    udir = runstore.upload_dir(runs_dir, upload_id)
    done = _staged_record(udir, upload_id)
    if done is not None:
        return done
    udir, transfer = chunked.complete(runs_dir, upload_id, ("data",))
    names = transfer["names"]
    try:
        return _describe(udir, upload_id, classify(names), names, transfer["files"], sum(transfer["sizes"]))
    except BaseException:
        shutil.rmtree(udir, ignore_errors=True)  # keep nothing of a rejected upload (and free the space)
        raise


def put_bytes(runs_dir: str | Path, purpose: str, names: list[str], blobs: list[bytes]) -> str:
    """Send bytes in hand through the chunk store, as the browser would; the upload's id."""
    transfer = begin(runs_dir, purpose, names, [len(b) for b in blobs])
    try:
        for i, blob in enumerate(blobs):
            chunked.append(runs_dir, transfer["upload_id"], i, 0, io.BytesIO(blob), len(blob))
    except BaseException:
        shutil.rmtree(runstore.upload_dir(runs_dir, transfer["upload_id"]), ignore_errors=True)
        raise
    return transfer["upload_id"]


def stage(runs_dir: str | Path, names: Any, contents: Any,
          max_bytes: int = MAX_UPLOAD_BYTES) -> dict[str, Any]:
    """Check and store one upload given as data URLs (``dcc.Upload``'s form); returns its record."""
    names = _str_list(names or [], "file names")
    contents = _str_list(contents or [], "contents")
    if len(names) != len(contents):
        raise InputError("The upload arrived incomplete; try again.")
    classify(names)
    total = sum(encoded_size(c) for c in contents)
    if total > max_bytes:
        raise InputError(f"The upload is {total / 1024**2:.1f} MB, more than the {max_bytes // 1024**2} MB "
                         "allowed. Sample the data, or run the command-line tool on the full file.")
    upload_id = put_bytes(runs_dir, "data", names, [decode_data_url(c) for c in contents])
    return stage_upload(runs_dir, {"upload_id": upload_id})


def _describe(udir: Path, upload_id: str, kind: str, names: list[str], stored: list[str], total: int):
    """The record of an upload whose files are on disk (a table is read in the bounded reader)."""
    desc = {"upload_id": upload_id, "kind": kind, "names": names, "files": stored, "bytes": total}
    if kind == "table":
        desc.update(_table_record(udir, desc))
    elif kind == "txt":
        desc.update(txt_mode=run_spec.default_txt_mode(len(names)), n_rows=len(names))
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
    """What staging keeps of a table file (run in the bounded child): columns, n_rows, suggest, preview,
    and ``vector_columns``: the Parquet columns of vectors (told from the schema and left unread here:
    the form offers them as the items' own embeddings, the preview does not show them)."""
    vectors = core_data.vector_columns(path)
    df = read_table(path, budget=budget, exclude=tuple(vectors))
    shown = [str(c) for c in df.columns]
    rows = min(PREVIEW_ROWS, max(20, PREVIEW_CELLS // max(len(shown), 1)))
    return {"columns": shown + vectors, "vector_columns": vectors, "n_rows": int(len(df)),
            "suggest": suggest_columns(df), "preview": {"rows": _records(df.head(rows), PREVIEW_CHARS),
                                                        "columns": shown}}


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


def _one_shape(desc: Any) -> Any:
    """A record as ``{names, files}``; a labels record saved as ``{name, file}`` is read as one."""
    if isinstance(desc, dict) and "files" not in desc and "file" in desc:
        desc = {k: v for k, v in desc.items() if k not in ("name", "file")} | {
            "names": [desc.get("name")], "files": [desc.get("file")]}
    return desc


def load_descriptor(runs_dir: str | Path, ref: Any, kinds: tuple[str, ...] = KINDS) -> dict[str, Any]:
    """The server's record of the upload a browser value names; InputError when there is none.

    Only the id of ``ref`` is used. The record is checked to be one of ``kinds``, and each of its files
    to lie inside the upload's folder.
    """
    upload_id = upload_id_of(ref)
    if upload_id is None:
        raise InputError("Upload a data file first.")
    udir = runstore.upload_dir(runs_dir, upload_id)
    desc = _one_shape(runstore.read_json(udir / "upload.json"))
    if not isinstance(desc, dict) or desc.get("kind") not in kinds or desc.get("upload_id") != upload_id:
        raise InputError("The uploaded data is no longer on the server; upload it again.")
    try:
        if not isinstance(desc.get("files"), list) or not isinstance(desc.get("names"), list) \
                or len(desc["names"]) != len(desc["files"]) or not desc["files"]:
            raise ValueError
        for f in desc["files"]:
            runstore.inside(udir, f)
    except (TypeError, ValueError):
        raise InputError("The uploaded data is damaged on the server; upload it again.") from None
    return desc


def upload_file(runs_dir: str | Path, desc: dict[str, Any], index: int = 0) -> Path:
    """Stored file ``index`` of a record from :func:`load_descriptor` (checked inside its folder)."""
    return runstore.inside(runstore.upload_dir(runs_dir, desc["upload_id"]), desc["files"][index])


def suggest_columns(df: pd.DataFrame) -> dict[str, Any]:
    """The form's preselected columns: what ``prepare`` picks when no column is given
    (:func:`hercules_core.data.guess_columns`), with the id and labels columns it recognises."""
    g = core_data.guess_columns(df)
    return {"what": "numeric" if g.kind == "numeric" else "text", "text_column": g.text_column,
            "numeric_columns": list(g.numeric_columns), "id_column": g.id_column, "label_column": g.labels_column}


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
        mode = txt_mode if txt_mode in run_spec.TXT_MODES else desc.get("txt_mode", "line")
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


def txt_frame(udir: Path, desc: dict[str, Any], mode: str) -> pd.DataFrame:
    """``id, text`` of a .txt upload (the preview): :func:`hercules_run.spec.txt_frame` on its files."""
    return run_spec.txt_frame([runstore.inside(udir, f) for f in desc["files"]], list(desc["names"]), mode)


def uploads_root(runs_dir: str | Path) -> Path:
    """The folder a run's data spec names its files in (``<upload_id>/<stored name>``)."""
    return Path(runs_dir) / runstore.UPLOADS


def _stored(desc: dict[str, Any], index: int = 0) -> str:
    return f"{desc['upload_id']}/{desc['files'][index]}"


def data_spec(desc: dict[str, Any] | None, *, what: str | None = None, text_column: str | None = None,
              numeric_columns: list[str] | None = None, id_column: str | None = None,
              label_column: str | None = None, txt_mode: str | None = None, labels: Any = None,
              metadata: Any = None, vector_column: str | None = None, vectors: Any = None,
              runs_dir: str | Path | None = None) -> DataSpec:
    """The run's :class:`DataSpec` of the form's choices (InputError says what is missing).

    ``desc`` is the server's record of the upload (:func:`load_descriptor`), never a browser value;
    the form's choices are browser values and are checked here. ``labels`` and ``metadata`` (browser
    values naming a labels or numeric metadata upload) are looked up in ``runs_dir``: the spec holds
    only the stored files the server's records name. The items' own embeddings are ``vector_column``
    (one of the table's :func:`table_summary` vector columns) or ``vectors`` (a browser value naming a
    vectors upload, :func:`stage_side`).
    """
    if not desc or not runstore.valid_id(desc.get("upload_id")):
        raise InputError("Upload a data file first.")
    for name, v in (("text column", text_column), ("id column", id_column), ("labels column", label_column),
                    ("choice", what), ("text mode", txt_mode), ("vector column", vector_column)):
        if v is not None and not isinstance(v, str):
            raise InputError(f"The {name} must be a column name.")
    if numeric_columns is not None and (not isinstance(numeric_columns, list)
                                        or not all(isinstance(c, str) for c in numeric_columns)):
        raise InputError("The numeric columns must be a list of column names.")
    kind = desc["kind"]
    files = tuple(_stored(desc, i) for i in range(len(desc["files"])))
    kw: dict[str, Any] = {}
    if kind == "table":
        if what == "numeric":
            cols = [c for c in (numeric_columns or []) if c not in (id_column, label_column)]
            if not cols:
                raise InputError("Pick at least one numeric column to cluster.")
            kw.update(modality="numeric", numeric_columns=tuple(cols))
        else:
            if not text_column:
                raise InputError("Pick the column that holds the texts.")
            kw.update(modality="text", text_column=text_column)
        kw.update(id_column=id_column or None, labels_column=label_column or None)
        if vector_column:
            if vector_column not in (desc.get("vector_columns") or []):
                raise InputError(f"The column {vector_column!r} holds no vectors: choose a column of lists of numbers "
                                 "(Parquet), or none.")
            kw["vector_column"] = vector_column
    elif kind == "txt":
        kw.update(modality="text", txt_mode=txt_mode if txt_mode in run_spec.TXT_MODES else None)
    else:
        kw.update(modality="image")
    side: dict[str, dict[str, Any]] = {}
    for ref, key, kinds, what_file in ((labels, "labels_file", ("labels",), "labels file"),
                                       (metadata, "numeric_metadata_file", ("metadata",), "numeric metadata file"),
                                       (vectors, "vectors_file", ("vectors",), "vectors file")):
        if not ref:
            continue
        if key == "labels_file" and label_column and kind == "table":
            raise InputError("Labels were given twice: a labels column and a labels file; keep one.")
        if runs_dir is None:
            raise TypeError("data_spec needs runs_dir to look up a labels or metadata upload")
        try:
            side[key] = load_descriptor(runs_dir, ref, kinds=kinds)
        except InputError:
            raise InputError(f"The {what_file} is no longer on the server; upload it again.") from None
        kw[key] = _stored(side[key])
    spec = DataSpec(files=files, names=tuple(desc["names"]), kind=kind, **kw)
    if kind == "table":
        spec.check_columns(desc.get("columns", []))
    vec = side.get("vectors_file")
    if vec is not None and kind == "table" and isinstance(vec.get("n"), int) and vec["n"] != desc.get("n_rows"):
        raise InputError(f"{vec['names'][0]} holds {vec['n']:,} vectors but {desc['names'][0]} has "
                         f"{desc.get('n_rows', 0):,} rows: give one vector per row, in the table's order.")
    return spec


def stage_side(runs_dir: str | Path, ref: Any, purpose: str) -> dict[str, Any]:
    """Stage a side file (``purpose`` labels, metadata or vectors: :data:`_SIDE`) whose chunks have all
    arrived: check it in the bounded reader and record it; its record (a rejected file is removed)."""
    what, check = _SIDE[purpose]
    upload_id = upload_id_of(ref)
    if upload_id is None:
        raise InputError(f"Upload the {what} again.")
    udir = runstore.upload_dir(runs_dir, upload_id)
    done = _staged_record(udir, upload_id)
    if done is not None:
        return done
    udir, transfer = chunked.complete(runs_dir, upload_id, (purpose,))
    name, fname = transfer["names"][0], transfer["files"][0]
    desc = {"upload_id": upload_id, "kind": purpose, "names": [name], "files": [fname]}
    try:
        try:
            desc.update(bounded.bounded_call(check, str(udir / fname), bounded.read_budget(), what=name))
        except InputError as e:
            raise InputError(user_text(str(e), desc, udir)) from None
        _saved(lambda: runstore.write_json_atomic(udir / "upload.json", desc), f"The {what}")
    except BaseException:
        shutil.rmtree(udir, ignore_errors=True)
        raise
    return desc


def _stage_small(runs_dir: str | Path, name: Any, contents: Any, *, kind: str, what: str, types: tuple[str, ...],
                 max_bytes: int) -> dict[str, Any]:
    """Store one side file given as a data URL (a labels or numeric metadata file) and stage it."""
    if not isinstance(name, str) or not isinstance(contents, str):
        raise InputError(f"The {what} arrived damaged; try again.")
    if _ext(name) not in types:
        raise InputError(f"The {what} must be a {' or '.join(types)} file.")
    if encoded_size(contents) > max_bytes:
        raise InputError(f"The {what} is larger than {max_bytes / 1024**2:g} MB.")
    upload_id = put_bytes(runs_dir, kind, [name], [decode_data_url(contents)])
    return stage_side(runs_dir, {"upload_id": upload_id}, kind)


def stage_labels(runs_dir: str | Path, name: Any, contents: Any) -> dict[str, Any]:
    """Store an ``id,label`` file (any table format) and check it has two usable columns."""
    if isinstance(name, str) and _ext(name) not in TABLE_EXTS:
        raise InputError(f"The labels file must be a table ({', '.join(TABLE_EXTS)}) with columns id,label.")
    return _stage_small(runs_dir, name, contents, kind="labels", what="labels file", types=TABLE_EXTS,
                        max_bytes=MAX_UPLOAD_BYTES)


def labels_count(path: str, budget: core_data.ReadBudget | None = None) -> dict[str, int]:
    """How many ids a labels file maps (run in the bounded child at staging)."""
    return {"n": len(run_spec.read_labels_file(Path(path), budget))}


def stage_metadata(runs_dir: str | Path, name: Any, contents: Any) -> dict[str, Any]:
    """Store a numeric metadata file (JSON ``{variable: {unit, description}}``, as the command line's
    ``--numeric-metadata``) and check its shape."""
    return _stage_small(runs_dir, name, contents, kind="metadata", what="numeric metadata file",
                        types=METADATA_TYPES, max_bytes=MAX_METADATA_BYTES)


def metadata_count(path: str, budget: core_data.ReadBudget | None = None) -> dict[str, int]:
    """How many variables a numeric metadata file describes (run in the bounded child at staging)."""
    return {"n": len(run_spec.read_numeric_metadata(Path(path)))}


def vectors_count(path: str, budget: core_data.ReadBudget | None = None) -> dict[str, int]:
    """How many vectors of which dimension a .npy/.npz file holds, all finite (run in the bounded child
    at staging, so the form tells at once what the run would)."""
    import numpy as np

    arr = core_data.read_vectors(Path(path), budget=budget)
    step = 1 << 16  # rows at a time: no n x d array of booleans beside the vectors
    bad = np.concatenate([np.flatnonzero(~np.isfinite(arr[a:a + step]).all(axis=1)) + a
                          for a in range(0, len(arr), step)] or [np.zeros(0, np.int64)])
    if len(bad):
        rows = ", ".join(str(int(b) + 1) for b in bad[:5]) + (" …" if len(bad) > 5 else "")
        raise InputError(f"{Path(path).name} has {len(bad):,} vectors with NaN or infinite values (rows {rows}, "
                         "counting from 1): fix or remove them.")
    return {"n": int(arr.shape[0]), "dim": int(arr.shape[1])}


# a side file's purpose -> (what the user calls it, its check in the bounded reader: {"n", ...})
_SIDE = {"labels": ("labels file", labels_count), "metadata": ("numeric metadata file", metadata_count),
         "vectors": ("vectors file", vectors_count)}


def _spec_folders(spec: DataSpec, runs_dir, rdir: Path | None) -> tuple[dict[str, Any], list[Path]]:
    """What :func:`user_text` needs to speak of ``spec``'s files by the user's names."""
    root = uploads_root(runs_dir)
    udir = root / PurePath(spec.files[0]).parent
    desc = {"names": list(spec.names), "files": [PurePath(f).name for f in spec.files]}
    return desc, [udir] + ([Path(rdir)] if rdir is not None else []) + [root, Path(runs_dir)]


def _translated(work, spec: DataSpec, runs_dir, rdir: Path | None):
    """``work()``; its errors in the user's words (no stored names, no server folders), and the images
    a failed run extracted removed."""
    try:
        return work()
    except InputError as e:
        if rdir is not None:
            discard_extracted(rdir)
        desc, folders = _spec_folders(spec, runs_dir, rdir)
        raise InputError(user_text(str(e), desc, *folders)) from None
    except OSError as e:
        if rdir is not None:
            discard_extracted(rdir)
        raise InputError(f"The data could not be prepared: {runstore.os_error_text(e)}.") from None


def prepare_from_spec(spec: DataSpec, runs_dir: str | Path, rdir: Path | None):
    """The ``Dataset`` of a run's data spec (:func:`hercules_run.spec.prepare` on the uploads folder,
    within the server's read budget; images of a ZIP are extracted into ``rdir/images``)."""
    extract = Path(rdir) / "images" if rdir is not None else None
    return _translated(lambda: run_spec.prepare(spec, uploads_root(runs_dir), extract,
                                                read_budget=bounded.read_budget()), spec, runs_dir, rdir)


def discard_extracted(rdir: Path) -> None:
    """Remove the images a failed run copied or extracted into its folder (they can be large)."""
    shutil.rmtree(Path(rdir) / "images", ignore_errors=True)


def spec_of_record(data: dict[str, Any], runs_dir: str | Path) -> DataSpec:
    """The :class:`DataSpec` of a run's ``spec.json`` data: as saved, or (a run queued by an earlier
    version, which saved the upload's id and the form's choices) rebuilt from the upload's record."""
    if "upload_id" not in data:
        return DataSpec.from_dict(data)
    desc = load_descriptor(runs_dir, data["upload_id"])
    return data_spec(desc, what=data.get("what"), text_column=data.get("text_column"),
                     numeric_columns=data.get("numeric_columns"), id_column=data.get("id_column"),
                     label_column=data.get("label_column"), txt_mode=data.get("txt_mode"),
                     labels=data.get("labels_upload_id"), runs_dir=runs_dir)


def estimate_summary(spec: DataSpec, runs_dir: str | Path):
    """The cost estimate's ``DataSummary`` of a spec: a table or texts are prepared in the bounded
    child (the web process keeps only the summary's few hundred items), images here (a listing)."""
    if spec.kind in ("table", "txt"):
        return bounded.bounded_call(_summary, spec, str(runs_dir), what=spec.names[0])
    return _summary(spec, str(runs_dir))


def _summary(spec: DataSpec, runs_dir: str):
    from hercules_core import cost

    ds = _translated(lambda: run_spec.estimate_dataset(spec, uploads_root(runs_dir),
                                                       read_budget=bounded.read_budget()), spec, runs_dir, None)
    return cost.summarize_data(ds)
