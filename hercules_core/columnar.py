"""Item-level arrays of a model in a columnar file beside its JSON, and the one-file bundle.

A model saved with ``items="columnar"`` (:func:`hercules_core.io.save_model`) is two files: the
JSON (``schema_version`` 2) keeps the hierarchy — clusters, centroids, stats, config, evaluation —
and every item-level value (ids, texts, item titles, per-level cluster ids, vectors, coordinates)
lives in an Arrow IPC file (``<model stem>.items-<sha256 prefix>.arrow``, one record batch,
uncompressed), which the loader memory-maps: 2-D arrays are zero-copy, read-only views of the file.
The JSON names the file with its size, sha256, row count and the type and shape of every column;
in the document each moved value is replaced by ``{"column": NAME}``.

The file name holds its content hash, so a crash between writing the items and the JSON leaves the
old JSON pointing at the old, complete items file; the superseded file is removed afterwards.

A *bundle* (``.hercules``) is a ZIP of ``model.json`` (deflated) and the items file (stored): one
download carries the whole model, and :func:`open_bundle` memory-maps the stored entry in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFileError

ITEMS_FORMAT = "arrow-ipc"
ITEMS_SCHEMA = 1
BUNDLE_SUFFIX = ".hercules"
BUNDLE_MODEL = "model.json"  # the model's name inside a bundle
# save_model(items="auto") keeps one self-contained JSON up to this many items: it loads in well
# under a second there, is one file to download, and older versions read it
INLINE_MAX_ITEMS = 20_000
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,120}\.items-[0-9a-f]{16}\.arrow")
_ZIP_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # a ZIP local file header


def items_name(model_path: Path, sha: str) -> str:
    return f"{model_path.stem}.items-{sha[:16]}.arrow"


# --------------------------------------------------------------------------- which values move

def _places(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], str]]:
    """(column, the dict holding it, key) of every item-level value of a model document."""
    ds, l0 = doc["dataset"], doc["levels"][0]
    places = [("id", ds, "ids"), ("id", l0, "ids"), ("text", ds, "texts"), ("image_path", ds, "image_paths"),
              ("label", ds, "labels"), ("numeric_raw", ds, "numeric_raw"), ("numeric", ds, "numeric"),
              ("title", l0, "titles"), ("description", l0, "descriptions"), ("source", l0, "sources"),
              ("fallback", l0, "fallback"), ("size", l0, "size"), ("L1_cluster_id", l0, "parent"),
              ("vector", l0, "vectors"), ("desc_embedding", l0, "desc_embeddings")]
    if isinstance(l0.get("reductions"), dict):
        places += [(f"reduction.{s}", l0["reductions"], s) for s in l0["reductions"]]
    rec = (doc.get("reducers") or {}).get("clustering") if isinstance(doc.get("reducers"), dict) else None
    if isinstance(rec, dict) and "items" in rec:
        places.append(("clustering", rec, "items"))
    return places


# --------------------------------------------------------------------------- writing

def _column(name: str, value: Any, n: int):
    """(Arrow array, declaration) of one item-level value."""
    import pyarrow as pa

    from .io import _storage_dtype

    if isinstance(value, np.ndarray):
        if value.dtype == np.bool_ and value.ndim == 1:
            return pa.array(value, pa.bool_()), {"dtype": "bool", "shape": [n]}
        sname, dtype = _storage_dtype(value.dtype)
        flat = np.ascontiguousarray(value, dtype=dtype.newbyteorder("=")).reshape(-1)
        if value.ndim == 1:
            return pa.array(flat), {"dtype": sname, "shape": [n]}
        width = int(value.shape[1])
        return pa.FixedSizeListArray.from_arrays(pa.array(flat), width), {"dtype": sname, "shape": [n, width]}
    texts = ["" if v is None else str(v) for v in value] if any(v is None for v in value) else value
    try:
        return pa.array(texts, pa.large_string()), {"type": "string"}
    except (UnicodeEncodeError, pa.ArrowException):  # a lone surrogate (text read with surrogateescape)
        raw = [str(v).encode("utf-8", "surrogatepass") for v in texts]
        return pa.array(raw, pa.large_binary()), {"type": "bytes"}


def _cluster_columns(h, n: int) -> list[tuple[str, Any, dict[str, Any]]]:
    """``L{l}_cluster_id`` for every level: the item's cluster there, dictionary-encoded with the
    level's ids (level 1's indices are level 0's parent; the others are derived, for readers)."""
    import pyarrow as pa

    out = []
    idx = np.arange(n)
    for level in range(1, h.top_level + 1):
        idx = h.levels[level - 1].parent[idx] if level > 1 else h.levels[0].parent
        _, dtype = _storage_dtype_of(idx)
        indices = pa.array(np.ascontiguousarray(idx, dtype=dtype))
        arr = pa.DictionaryArray.from_arrays(indices, pa.array(h.levels[level].ids, pa.large_string()))
        out.append((f"L{level}_cluster_id", arr, {"type": "cluster", "level": level, "dtype": str(dtype)}))
    return out


def _storage_dtype_of(a: np.ndarray):
    from .io import _storage_dtype

    return _storage_dtype(a.dtype)


class _HashingFile:
    """A binary file object that also hashes what is written (pyarrow writes through it).

    The hashing runs in a second thread beside the writes (both release the GIL; one worker keeps
    the chunks in order): at 1M x 384 the 1.8 GB items file is hashed in the 1.6 s its writing takes
    anyway. pyarrow hands over its buffers (immutable) or fresh bytes, so a chunk can wait.
    """

    def __init__(self, f):
        self.f, self.sha, self.closed = f, hashlib.sha256(), False
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="items-sha256")
        self._hashed: list = []

    def write(self, data) -> int:
        self._hashed.append(self._hasher.submit(self.sha.update, data))
        return self.f.write(data)

    def hexdigest(self) -> str:
        """The sha256 of everything written, once the hashing thread has caught up."""
        self._hasher.shutdown(wait=True)
        for done in self._hashed:
            done.result()
        return self.sha.hexdigest()

    def flush(self) -> None:
        self.f.flush()

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True


def write_items(h, doc: dict[str, Any], model_path: Path) -> dict[str, Any]:
    """Move the item-level values of ``doc`` (built with arrays left as numpy arrays) into an items
    file beside ``model_path``; the values in ``doc`` become ``{"column": NAME}`` and the returned
    reference goes into ``doc["items"]``."""
    import tempfile

    import pyarrow as pa

    n = len(h.dataset.ids)
    arrays, columns = {}, {}
    for name, holder, key in _places(doc):
        value = holder.get(key)
        if value is None or isinstance(value, dict):  # absent, or {"same_as": "vectors"}
            continue
        if name == "L1_cluster_id":
            for cname, arr, decl in _cluster_columns(h, n):
                arrays[cname], columns[cname] = arr, decl
        elif name not in arrays:
            arrays[name], columns[name] = _column(name, value, n)
        holder[key] = {"column": name}
    table = pa.table(arrays)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=model_path.parent, prefix=f".{model_path.stem}.items.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            sink = _HashingFile(f)
            try:
                with pa.ipc.new_file(pa.PythonFile(sink, mode="w"), table.schema) as writer:
                    writer.write_table(table, max_chunksize=max(n, 1))
                f.flush()
                os.fsync(f.fileno())
            finally:
                sha = sink.hexdigest()
        os.chmod(tmp, 0o644)
        name = items_name(model_path, sha)
        os.replace(tmp, model_path.parent / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {"file": name, "format": ITEMS_FORMAT, "schema": ITEMS_SCHEMA, "rows": n,
            "bytes": (model_path.parent / name).stat().st_size, "sha256": sha, "columns": columns}


def remove_stale_items(model_path: Path, keep: str | None) -> None:
    """Delete the items files of ``model_path`` other than ``keep`` (superseded by a new save)."""
    for p in model_path.parent.glob(f"{glob_escape(model_path.stem)}.items-*.arrow"):
        if p.name != keep and _NAME_RE.fullmatch(p.name):
            p.unlink(missing_ok=True)


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def current_reference(model_path: Path) -> dict[str, Any] | None:
    """The items reference of the model JSON at ``model_path`` if its items file is there, else None."""
    try:
        with open(model_path, "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError):
        return None
    ref = doc.get("items") if isinstance(doc, dict) else None
    if isinstance(ref, dict) and isinstance(ref.get("file"), str) and _NAME_RE.fullmatch(ref["file"]) \
            and (model_path.parent / ref["file"]).is_file():
        return ref
    return None


def strip_items(doc: dict[str, Any], ref: dict[str, Any]) -> None:
    """Replace the item-level values of ``doc`` by references to the columns of ``ref``."""
    for name, holder, key in _places(doc):
        value = holder.get(key)
        if value is None or isinstance(value, dict):
            continue
        column = "L1_cluster_id" if name == "L1_cluster_id" else name
        if column not in ref["columns"]:
            raise ModelFileError(f"The model's items file has no column {column!r}; save the model anew.")
        holder[key] = {"column": column}


# --------------------------------------------------------------------------- reading

class ItemsSource:
    """Where an items file's bytes are: a file, or a stored entry inside a bundle."""

    def __init__(self, path: Path, offset: int = 0, size: int | None = None, label: str = ""):
        self.path, self.offset = path, offset
        self.size = path.stat().st_size - offset if size is None else size
        self.label = label or path.name

    def sha256(self) -> str:
        sha, left = hashlib.sha256(), self.size
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            while left > 0:
                chunk = f.read(min(1 << 22, left))
                if not chunk:
                    break
                sha.update(chunk)
                left -= len(chunk)
        return sha.hexdigest()

    def buffer(self):
        import pyarrow as pa

        mm = pa.memory_map(str(self.path))
        mm.seek(self.offset)
        return mm.read_buffer(self.size)  # zero-copy: a slice of the mapping


def _expected_type(name: str, decl: Any, rows: int, doc: dict[str, Any]):
    """The Arrow type a declared column must have; ModelFileError for a declaration out of bounds."""
    import pyarrow as pa

    from .io import _DTYPES, MAX_VECTOR_WIDTH

    if not isinstance(decl, dict):
        raise ModelFileError(f"items column {name!r} has no valid declaration.")
    kind = decl.get("type")
    if kind == "string":
        return pa.large_string()
    if kind == "bytes":
        return pa.large_binary()
    if kind == "cluster":
        level, dtype = decl.get("level"), decl.get("dtype")
        if not isinstance(level, int) or not 1 <= level < len(doc["levels"]) or dtype not in ("int32", "int64"):
            raise ModelFileError(f"items column {name!r} declares an invalid cluster level or type.")
        return pa.dictionary(pa.from_numpy_dtype(np.dtype(dtype)), pa.large_string())
    dtype, shape = decl.get("dtype"), decl.get("shape")
    if dtype not in _DTYPES or not isinstance(shape, list) or not 1 <= len(shape) <= 2 \
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise ModelFileError(f"items column {name!r} has an invalid dtype or shape.")
    if shape[0] != rows:
        raise ModelFileError(f"items column {name!r} declares {shape[0]:,} rows but the items file has {rows:,}.")
    value = pa.bool_() if dtype == "bool" else pa.from_numpy_dtype(np.dtype(_DTYPES[dtype]).newbyteorder("="))
    if len(shape) == 1:
        return value
    if not 1 <= shape[1] <= MAX_VECTOR_WIDTH:
        raise ModelFileError(f"items column {name!r} declares shape {shape}; a stored vector has 1 to "
                             f"{MAX_VECTOR_WIDTH:,} values.")
    return pa.list_(value, shape[1])


def check_reference(ref: Any, where: str) -> None:
    """ModelFileError unless ``ref`` is a well-formed items reference this version reads."""
    ok = isinstance(ref, dict) and ref.get("format") == ITEMS_FORMAT and isinstance(ref.get("file"), str) \
        and _NAME_RE.fullmatch(ref["file"]) is not None and isinstance(ref.get("sha256"), str) \
        and re.fullmatch(r"[0-9a-f]{64}", ref["sha256"]) is not None and isinstance(ref.get("columns"), dict) \
        and all(isinstance(ref.get(k), int) and not isinstance(ref.get(k), bool) and ref[k] >= 0
                for k in ("rows", "bytes", "schema"))
    if not ok:
        raise ModelFileError(f"{where}: the \"items\" reference is damaged (it must name an items file "
                             f"'<stem>.items-<hash>.arrow' with its format, size, sha256, rows and columns).")
    if ref["schema"] > ITEMS_SCHEMA:
        raise ModelFileError(f"{where}: its items file has schema {ref['schema']}; this version reads schema "
                             f"{ITEMS_SCHEMA}: upgrade hercules to load it.")


def attach_items(doc: dict[str, Any], source: ItemsSource, where: str, *, verify: bool = True) -> dict[int, Any]:
    """Read the items file of ``doc`` and put its values where the document refers to them.

    Before a value is read, the file's size and (``verify``) sha256 must match the reference, every
    column must have exactly the declared type and width, and the rows must be the declared count:
    a forged file can neither make the loader allocate beyond the file's own size nor pass for
    another model's items. Strings and 1-D arrays are copied; 2-D arrays are read-only views of the
    memory-mapped file. Returns the derived cluster columns (level >= 2) for :func:`check_derived`.
    """
    import pyarrow as pa

    ref = doc["items"]
    if source.size != ref["bytes"]:
        raise ModelFileError(f"{where}: the items file {source.label} has {source.size:,} bytes, the model says "
                             f"{ref['bytes']:,}; it is truncated or belongs to another model.")
    if verify and source.sha256() != ref["sha256"]:
        raise ModelFileError(f"{where}: the items file {source.label} does not match the model (sha256 differs); "
                             "it is damaged or belongs to another model.")
    rows, declared = ref["rows"], ref["columns"]
    n_items = doc["dataset"].get("n_items")
    if n_items is not None and n_items != rows:
        raise ModelFileError(f"{where}: the items file declares {rows:,} rows but the dataset has {n_items:,} items.")
    expected = {name: _expected_type(name, decl, rows, doc) for name, decl in declared.items()}
    try:
        reader = pa.ipc.open_file(source.buffer())
        schema = reader.schema
        file_rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except (pa.ArrowException, OSError) as e:
        raise ModelFileError(f"{where}: the items file {source.label} is not a readable Arrow file ({e}).") from None
    if file_rows != rows:
        raise ModelFileError(f"{where}: the items file holds {file_rows:,} rows, the model declares {rows:,}.")
    for name, typ in expected.items():
        field = schema.field(name) if name in schema.names else None
        if field is None or not field.type.equals(typ):
            raise ModelFileError(f"{where}: items column {name!r} is "
                                 f"{'missing' if field is None else field.type}, the model declares {typ}.")
    try:
        batches = [reader.get_batch(i) for i in range(reader.num_record_batches)]
        if len(batches) == 1:
            batch = batches[0]
        else:  # not what save_model writes: one copy, bounded by the file's size
            table = pa.Table.from_batches(batches, schema).combine_chunks()
            batch = pa.RecordBatch.from_arrays([c.combine_chunks() for c in table.columns], schema=schema)
        for name in expected:
            batch.column(name).validate(full=True)  # offsets and UTF-8 of strings, before they are read
    except (pa.ArrowException, IndexError) as e:
        raise ModelFileError(f"{where}: the items file {source.label} is damaged ({e}).") from None
    values = {name: _values(batch.column(name), declared[name], doc, where, name) for name in expected}
    for name, holder, key in _places(doc):
        ref_ = holder.get(key)
        if isinstance(ref_, dict) and set(ref_) == {"column"}:
            if ref_["column"] not in values:
                raise ModelFileError(f"{where}: {key} refers to items column {ref_['column']!r}, which the model "
                                     "does not declare.")
            holder[key] = values[ref_["column"]]
    return {level: values[f"L{level}_cluster_id"] for level in range(2, len(doc["levels"]))
            if f"L{level}_cluster_id" in values}


def _values(col, decl: dict[str, Any], doc: dict[str, Any], where: str, name: str) -> Any:
    kind = decl.get("type")
    if kind == "string":
        return col.to_pylist()
    if kind == "bytes":
        return [None if b is None else b.decode("utf-8", "surrogatepass") for b in col.to_pylist()]
    if col.null_count:
        raise ModelFileError(f"{where}: items column {name!r} has missing values.")
    if kind == "cluster":
        ids = doc["levels"][decl["level"]].get("ids")
        if not isinstance(ids, list) or col.dictionary.to_pylist() != [str(i) for i in ids]:
            raise ModelFileError(f"{where}: items column {name!r} does not name the clusters of level "
                                 f"{decl['level']}.")
        return col.indices.to_numpy(zero_copy_only=False).copy()
    if len(decl["shape"]) == 1:
        return col.to_numpy(zero_copy_only=False).copy()  # small; writable like a decoded array
    flat = col.flatten().to_numpy(zero_copy_only=True)
    return flat.reshape(len(col), decl["shape"][1])


def check_derived(h, derived: dict[int, np.ndarray], where: str) -> None:
    """The derived ``L{l}_cluster_id`` columns (l >= 2) must agree with the hierarchy's parents."""
    for level, col in derived.items():
        if not np.array_equal(h.assignments(level), col):
            raise ModelFileError(f"{where}: items column L{level}_cluster_id disagrees with the hierarchy.")


# --------------------------------------------------------------------------- bundles

def is_bundle(path: Path) -> bool:
    """Whether ``path`` is a ZIP (a bundle), by its first bytes, not its name."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def _entry_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where a stored entry's bytes start (after its local header, whose lengths may differ from the
    central directory's)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        head = f.read(_ZIP_LOCAL.size)
    if len(head) != _ZIP_LOCAL.size or head[:4] != b"PK\x03\x04":
        raise ModelFileError(f"{path.name}: the bundle's entry {info.filename!r} has no valid header.")
    fields = _ZIP_LOCAL.unpack(head)
    return info.header_offset + _ZIP_LOCAL.size + fields[9] + fields[10]


def open_bundle(path: Path) -> tuple[bytes, zipfile.ZipInfo | None]:
    """(model JSON bytes, the items entry or None) of a bundle, after the ZIP rules
    of :func:`hercules_core.data._check_zip_budget` and the bundle's own: exactly ``model.json`` and at
    most one items file, stored, with plain names."""
    from .data import MAX_ZIP_BYTES
    from .errors import InputError

    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ModelFileError(f"{path.name} is not a readable HERCULES bundle (a ZIP of model.json and its items "
                             f"file): {e}.") from None
    with zf:
        infos = zf.infolist()
        try:
            _zip_rules(path, infos)
        except InputError as e:
            raise ModelFileError(str(e)) from None
        names = [i.filename for i in infos]
        model = [i for i in infos if i.filename == BUNDLE_MODEL]
        items = [i for i in infos if _NAME_RE.fullmatch(i.filename)]
        if len(model) != 1 or len(items) > 1 or len(infos) != len(model) + len(items):
            raise ModelFileError(f"{path.name} is not a HERCULES bundle: it must hold {BUNDLE_MODEL} and at most one "
                                 f"'<stem>.items-<hash>.arrow' file, and nothing else (it holds "
                                 f"{', '.join(repr(n) for n in names[:5])}).")
        if model[0].file_size > MAX_ZIP_BYTES:
            raise ModelFileError(f"{path.name}: its {BUNDLE_MODEL} is too large.")
        with zf.open(model[0]) as f:
            raw = f.read(model[0].file_size + 1)
        if len(raw) != model[0].file_size:
            raise ModelFileError(f"{path.name}: its {BUNDLE_MODEL} is larger than the archive says.")
        entry = items[0] if items else None
        if entry is not None and (entry.compress_type != zipfile.ZIP_STORED or entry.flag_bits & 0x1
                                  or entry.compress_size != entry.file_size):
            raise ModelFileError(f"{path.name}: its items file must be stored uncompressed and unencrypted.")
    return raw, entry


def _zip_rules(path: Path, infos: list[zipfile.ZipInfo]) -> None:
    from .data import _check_zip_budget

    # the bundle is read in place: "extraction" needs no free space, only the archive's own checks
    _check_zip_budget(path, infos, path.parent / f".{path.name}.contents")


def bundle_items(path: Path, entry: zipfile.ZipInfo) -> ItemsSource:
    offset = _entry_offset(path, entry)
    if offset + entry.file_size > path.stat().st_size:
        raise ModelFileError(f"{path.name}: its items file extends past the end of the archive.")
    return ItemsSource(path, offset, entry.file_size, label=f"{path.name}:{entry.filename}")


class _Sink:
    """A write-only stream that hands out what was written (ZipFile writes to it, we yield chunks)."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.pos = 0

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def drain(self) -> Iterator[bytes]:
        parts, self.parts = self.parts, []
        yield from parts


def iter_bundle(model_path: Path) -> Iterator[bytes]:
    """The bytes of a bundle of the model at ``model_path`` (its JSON and items file), streamed: the
    items file is stored, not deflated, so it is copied once and can be memory-mapped in the ZIP."""
    model_path = Path(model_path)
    raw = model_path.read_bytes()  # one consistent copy, even if an edit replaces the file meanwhile
    ref = json.loads(raw).get("items")
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", allowZip64=True) as zf:
        zf.writestr(zipfile.ZipInfo(BUNDLE_MODEL, (2000, 1, 1, 0, 0, 0)), raw, compress_type=zipfile.ZIP_DEFLATED)
        yield from sink.drain()
        if isinstance(ref, dict) and isinstance(ref.get("file"), str) and _NAME_RE.fullmatch(ref["file"]):
            info = zipfile.ZipInfo(ref["file"], (2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = int(ref.get("bytes") or 0)
            with open(model_path.parent / ref["file"], "rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    yield from sink.drain()
    yield from sink.drain()


def extract_bundle(bundle: Path, dest: Path) -> Path:
    """Write a bundle's ``model.json`` and items file into ``dest`` (under the same checks as
    :func:`load_model` of the bundle: ZIP rules, names, stored entry, sizes); returns the model's
    path. Load it afterwards: that checks the items against the model (sha256, types, shapes)."""
    from .io import atomic_write

    bundle, dest = Path(bundle), Path(dest)
    raw, entry = open_bundle(bundle)
    try:
        ref = json.loads(raw).get("items")
    except (ValueError, AttributeError):
        ref = None  # load_model says what is wrong with the document
    if entry is not None:
        if not isinstance(ref, dict) or ref.get("file") != entry.filename or ref.get("bytes") != entry.file_size:
            raise ModelFileError(f"{bundle.name}: its items file {entry.filename!r} is not the one its model refers "
                                 "to (name or size differs); the bundle is damaged.")
        source = bundle_items(bundle, entry)

        def chunks() -> Iterator[bytes]:
            left = source.size
            with open(bundle, "rb") as f:
                f.seek(source.offset)
                while left > 0 and (chunk := f.read(min(1 << 22, left))):
                    left -= len(chunk)
                    yield chunk
            if left:
                raise ModelFileError(f"{bundle.name}: its items file is truncated.")

        atomic_write(dest / entry.filename, chunks())
    model = dest / BUNDLE_MODEL
    atomic_write(model, [raw])
    return model


def write_bundle(model_path: Path, out: Path) -> None:
    """Write the bundle of the model at ``model_path`` to ``out`` (atomically)."""
    from .io import atomic_write

    atomic_write(out, iter_bundle(model_path))


def has_items_file(model_path: Path) -> bool:
    """Whether the model JSON at ``model_path`` keeps its items in a separate file (reads the JSON)."""
    return current_reference(Path(model_path)) is not None
