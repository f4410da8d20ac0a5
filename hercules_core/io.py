"""Saving and loading (paper §5.1): model JSON, memberships CSV, hierarchy text, run log.

The model file is one JSON document holding everything a ``Hierarchy`` holds and nothing else (no
keys, no client objects): ``schema_version`` 1 with every array inline, stored compactly and
losslessly by :func:`encode_array`; or ``schema_version`` 2, where the item-level values live in a
memory-mapped Arrow file beside it (:mod:`hercules_core.columnar`; ``save_model(items=...)``). Every
file is written to a temporary file in the target directory and moved into place with
``os.replace``, so a crash never leaves a half-written file behind.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import secrets
import tempfile
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timezone
from io import StringIO
from pathlib import Path, PurePath
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .config import HerculesConfig
from .dataset import Dataset
from .errors import HerculesError, ModelFileError
from .hierarchy import Hierarchy, Level

try:  # advisory lock so that several processes can append to one run log
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

SCHEMA_VERSION = 2  # the newest model document this version reads
INLINE_SCHEMA_VERSION = 1  # a document with every array inline: unchanged, so older versions read it
ITEMS_MODES = ("auto", "inline", "columnar", "keep")
CURATION_VERSION = 1  # of the optional "curation" section (hercules_core.curate: edit log, redo, counters)
FORMAT = "hercules-model"
ARRAY_ENCODING = "shuffle-zlib-b85"

# RFC 1924 alphabet, the one of base64.b85encode: output is decodable with the standard library
_B85 = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~"
_B85_CHUNK = 1 << 16  # 32-bit words per vectorised step: the temporaries stay in cache
_SPLICE_MIN = 1 << 16  # base85 blobs at least this long bypass json.dumps in save_model
_PROBE = 1 << 16  # bytes of a plane compressed first to decide whether the plane compresses at all
_INFLATE_LIMIT = 1032  # the most bytes one byte of a deflate stream can inflate to (see _inflation_problem)
_DTYPES = {"float32": "<f4", "float64": "<f8", "int32": "<i4", "int64": "<i8", "bool": "u1"}


# --------------------------------------------------------------------------- array codec

def _b85encode(data: bytes | memoryview) -> memoryview:
    """``base64.b85encode(data)``, vectorised (the standard library's runs at ~10 MB/s)."""
    alphabet = np.frombuffer(_B85, dtype=np.uint8)
    n_full, pad = len(data) // 4, -len(data) % 4
    out = np.empty((n_full + (pad > 0), 5), dtype=np.uint8)

    def fill(words: np.ndarray, dst: np.ndarray) -> None:
        w = words.astype(np.uint32)
        for col in range(4, -1, -1):
            q = w // np.uint32(85)
            np.take(alphabet, w - q * np.uint32(85), out=dst[:, col])
            w = q

    for s in range(0, n_full, _B85_CHUNK):
        m = min(_B85_CHUNK, n_full - s)
        fill(np.frombuffer(data, dtype=">u4", count=m, offset=4 * s), out[s:s + m])
    if pad:
        fill(np.frombuffer(bytes(data[4 * n_full:]) + b"\0" * pad, dtype=">u4"), out[n_full:])
    return memoryview(out.reshape(-1))[:out.size - pad]  # a view: the caller copies at most once


def _b85decode(text: str | bytes) -> memoryview:
    """Inverse of :func:`_b85encode` (same result as ``base64.b85decode``)."""
    try:
        raw = text.encode("ascii") if isinstance(text, str) else memoryview(text).cast("B")
    except (UnicodeEncodeError, TypeError):
        raise ModelFileError("Array data is not base85 text.") from None
    table = np.full(256, 255, dtype=np.uint8)
    table[np.frombuffer(_B85, dtype=np.uint8)] = np.arange(85, dtype=np.uint8)
    n_full, pad = len(raw) // 5, -len(raw) % 5
    out = np.empty(n_full + (pad > 0), dtype=">u4")

    def fill(chars: np.ndarray, dst: np.ndarray) -> None:
        digits = np.take(table, chars.T)  # (5, m): one contiguous row per digit position
        if digits.max(initial=0) == 255:
            raise ModelFileError("Array data contains a character that is not base85.")
        acc = digits[0].astype(np.uint64)
        for row in digits[1:]:
            acc *= 85
            acc += row
        if acc.max(initial=0) > 0xFFFFFFFF:
            raise ModelFileError("Array data is not valid base85 (a group overflows 32 bits).")
        dst[:] = acc

    chars = np.frombuffer(raw, dtype=np.uint8, count=5 * n_full).reshape(-1, 5)
    for s in range(0, n_full, _B85_CHUNK):
        m = min(_B85_CHUNK, n_full - s)
        fill(chars[s:s + m], out[s:s + m])
    if pad:
        fill(np.frombuffer(bytes(raw[5 * n_full:]) + b"~" * pad, dtype=np.uint8).reshape(1, 5), out[n_full:])
    return memoryview(out.view(np.uint8))[:out.nbytes - pad]


def _deflate(plane: memoryview) -> bytes | None:
    """zlib of a byte plane, or None when it would not pay.

    Z_RLE entropy-codes bytes and collapses runs. Exponent planes of embeddings are a handful of
    symbols in no particular order: Z_RLE is 15% smaller and ~10x faster on them than the default
    level-6 LZ77 search, and unlike Z_HUFFMAN_ONLY it shrinks constant planes (zeros, the high
    bytes of small integers) to almost nothing. Mantissa planes are noise: a 64 KiB probe tells so
    without spending a full compression on them.
    """
    def deflate(b: memoryview) -> bytes:
        c = zlib.compressobj(6, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
        return c.compress(b) + c.flush()

    if len(plane) > _PROBE and len(deflate(plane[:_PROBE])) > 0.9 * _PROBE:
        return None
    packed = deflate(plane)
    return packed if len(packed) < len(plane) else None


def _storage_dtype(dtype: np.dtype) -> tuple[str, np.dtype]:
    if dtype == np.bool_:
        return "bool", np.dtype("u1")
    if dtype.kind == "f":  # float16/float32 -> float32; float64 stays float64 (lossless)
        name = "float64" if dtype.itemsize > 4 else "float32"
    elif dtype.kind in "iu":
        fits32 = dtype.itemsize < 4 or (dtype.kind == "i" and dtype.itemsize == 4)
        name = "int32" if fits32 else "int64"
    else:
        raise TypeError(f"Cannot encode an array of dtype {dtype}: only bool, integer and float arrays.")
    return name, np.dtype(_DTYPES[name])


def _encode(a: Any) -> tuple[dict[str, Any], memoryview]:
    """The header of :func:`encode_array` and its base85 data as bytes."""
    a = np.asarray(a)
    name, dtype = _storage_dtype(a.dtype)
    if a.dtype.kind == "u" and a.dtype.itemsize == 8 and a.size and a.max() > np.iinfo(np.int64).max:
        raise TypeError("Cannot encode uint64 values above the int64 range.")
    flat = np.ascontiguousarray(a.reshape(-1), dtype=dtype)
    planes = np.ascontiguousarray(flat.view(np.uint8).reshape(flat.size, dtype.itemsize).T)
    payload, lengths, zipped = [], [], []
    for plane in planes:
        view = memoryview(plane)
        packed = _deflate(view) if len(view) else None
        payload.append(view if packed is None else packed)
        lengths.append(len(payload[-1]))
        zipped.append(packed is not None)
    header = {"dtype": name, "shape": list(a.shape), "encoding": ARRAY_ENCODING, "zlib": zipped, "lengths": lengths}
    return header, _b85encode(b"".join(payload))


def encode_array(a: Any) -> dict[str, Any]:
    """Encode an array as a small JSON-ready dict; :func:`decode_array` restores it bit-exactly.

    Floats are stored as float32 (float64 input stays float64), integers as int32/int64, bools as
    uint8. The bytes of each element are split into planes (all first bytes, then all second
    bytes, ...): sign/exponent planes of embeddings are very repetitive, mantissa planes are noise.
    Each plane is zlib-compressed when that pays, and the result is base85 text (RFC 1924, the
    alphabet of ``base64.b85encode``), which is 6% smaller than base64.
    """
    header, data = _encode(a)
    return {**header, "data": str(data, "ascii")}


def _is_encoded(value: Any) -> bool:
    return isinstance(value, dict) and "encoding" in value and "data" in value and "dtype" in value


class _Header(NamedTuple):
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    n: int  # elements, which is also the byte length of each plane
    lengths: list[int]
    zipped: list[bool]
    data: str | bytes


def _b85_size(chars: int) -> int:
    """Bytes that ``chars`` base85 characters decode to (as :func:`_b85decode` pads a last group)."""
    return 4 * -(-chars // 5) - (-chars % 5)


def _header(d: Mapping[str, Any]) -> _Header:
    """The header of an encoded array, checked against its own data without decoding anything.

    Everything here costs O(1) memory: a hostile header is refused before a byte is allocated for it.
    """
    try:
        name, encoding = d["dtype"], d["encoding"]
        shape = tuple(int(x) for x in d["shape"])
        lengths, zipped, data = [int(x) for x in d["lengths"]], [bool(x) for x in d["zlib"]], d["data"]
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"Encoded array is missing or has an invalid field: {e}.") from None
    if encoding != ARRAY_ENCODING:
        raise ModelFileError(f"Unknown array encoding {encoding!r} (this version reads {ARRAY_ENCODING!r}).")
    if name not in _DTYPES:
        raise ModelFileError(f"Unknown array dtype {name!r}.")
    if not isinstance(data, (str, bytes)):
        raise ModelFileError("Array data is not base85 text.")
    dtype = np.dtype(_DTYPES[name])
    if any(s < 0 for s in shape) or len(lengths) != dtype.itemsize or len(zipped) != dtype.itemsize \
            or any(length < 0 for length in lengths):
        raise ModelFileError(f"Encoded array header is inconsistent (shape {list(shape)}, dtype {name}).")
    size = _b85_size(len(data))
    if size != sum(lengths):
        raise ModelFileError(f"Encoded array data has {size} bytes, the header says {sum(lengths)}.")
    n = math.prod(shape)
    for k, (length, z) in enumerate(zip(lengths, zipped)):
        if not z and length != n:  # a stored plane holds exactly one byte per element
            raise ModelFileError(f"Encoded array plane {k} has {length} bytes, expected {n}.")
    return _Header(name, dtype, shape, n, lengths, zipped, data)


def _inflation_problem(h: _Header) -> str | None:
    """What is wrong when a compressed plane declares more bytes than it can inflate to, else None.

    Deflate spends at least 2 bits on a copy of at most 258 bytes, so no zlib stream of L bytes
    inflates to more than 1032 * L bytes (a plane of zeros reaches ~1030x). This bounds what any
    model file can make the loader allocate to about 1032 times the file's own size.
    """
    for k, (length, z) in enumerate(zip(h.lengths, h.zipped)):
        if z and h.n > _INFLATE_LIMIT * length:
            return (f"declares {h.n:,} bytes in plane {k}, more than its {length:,} compressed bytes can hold "
                    f"(zlib inflates one byte to at most {_INFLATE_LIMIT}).")
    return None


def decode_array(d: Mapping[str, Any]) -> np.ndarray:
    """Restore an array from :func:`encode_array`; ModelFileError if the dict is damaged."""
    header = _header(d)
    problem = _inflation_problem(header)
    if problem:
        raise ModelFileError(f"Encoded array {problem}")
    name, dtype, shape, n = header.name, header.dtype, header.shape, header.n
    lengths, zipped = header.lengths, header.zipped
    blob = _b85decode(header.data)
    planes = np.empty((dtype.itemsize, n), dtype=np.uint8)
    offset = 0
    for k, (length, z) in enumerate(zip(lengths, zipped)):
        chunk = memoryview(blob)[offset:offset + length]
        offset += length
        if z:
            inflater = zlib.decompressobj()
            try:  # max_length: a damaged or hostile file cannot inflate beyond the declared shape
                chunk = inflater.decompress(chunk, n) if n else b"?"
            except zlib.error as e:
                raise ModelFileError(f"Encoded array data is corrupt: {e}.") from None
            if not inflater.eof or inflater.unconsumed_tail:
                chunk = b""  # reported as a length mismatch just below
        if len(chunk) != n:
            raise ModelFileError(f"Encoded array plane {k} has {len(chunk)} bytes, expected {n}.")
        planes[k] = np.frombuffer(chunk, dtype=np.uint8)
    flat = np.ascontiguousarray(planes.T).view(dtype).reshape(shape)
    if name == "bool":
        return flat != 0
    return flat.astype(dtype.newbyteorder("="), copy=False)


# --------------------------------------------------------------------------- JSON helpers

def _plain(obj: Any, where: str = "value", strict: bool = True) -> Any:
    """A JSON-ready copy: numpy scalars/arrays to Python, NaN/inf to None, tuples/sets to lists.

    A ``default=`` hook would never see float NaN (json writes it as the invalid token ``NaN``),
    hence this walk. ``strict=False`` turns unknown objects into ``str(obj)`` (run log records).
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Mapping):
        return {str(k): _plain(v, f"{where}.{k}", strict) for k, v in obj.items()}
    if isinstance(obj, (set, frozenset)):
        obj = sorted(obj, key=str)
    if isinstance(obj, (list, tuple)):
        return [_plain(v, f"{where}[{i}]", strict) for i, v in enumerate(obj)]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist(), where, strict)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, PurePath):
        return str(obj)
    if not strict:
        return str(obj)
    raise TypeError(f"{where}: a {type(obj).__name__} cannot be stored in JSON.")


def _utf8(text: str) -> bytes:
    # a lone surrogate (text read with errors="surrogateescape") cannot be UTF-8: write it as the
    # JSON escape json.loads reads back (it can only occur inside a JSON string)
    return text.encode("utf-8", "backslashreplace")


def atomic_write(path: str | os.PathLike, content: str | Iterable[bytes]) -> None:
    """Write ``content`` (text as UTF-8, or byte chunks) via a temporary file in the same directory
    and ``os.replace``: readers see the old file or the complete new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644  # mkstemp alone would give 0600
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in ([_utf8(content)] if isinstance(content, str) else content):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())  # the rename must not reach the disk before the data does
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


Encoder = Callable[[np.ndarray], dict[str, Any]]


def _decode_values(d: Mapping[str, Any]) -> dict[str, Any]:
    return {k: decode_array(v) if _is_encoded(v) else v for k, v in d.items()}


def _dec(d: Any) -> np.ndarray | None:
    """A stored array: decoded from JSON, or as read from the items file (already an array)."""
    return d if d is None or isinstance(d, np.ndarray) else decode_array(d)


# --------------------------------------------------------------------------- model file

def _dataset_doc(ds: Dataset, enc: Encoder) -> dict[str, Any]:
    doc: dict[str, Any] = {"modality": ds.modality, "source": ds.source, "n_items": len(ds), "ids": list(ds.ids)}
    if ds.texts is not None:
        doc["texts"] = list(ds.texts)
    if ds.image_paths is not None:
        doc["image_paths"] = [str(p) for p in ds.image_paths]
    if ds.numeric_raw is not None:
        doc["numeric_raw"] = enc(ds.numeric_raw)
    if ds.scaler_mean is not None and ds.scaler_scale is not None:
        doc["scaler_mean"], doc["scaler_scale"] = enc(ds.scaler_mean), enc(ds.scaler_scale)
    if ds.numeric is not None and not ("numeric_raw" in doc and "scaler_mean" in doc):
        doc["numeric"] = enc(ds.numeric)  # otherwise rebuilt from raw + scaler: stored once, not twice
    if ds.feature_names is not None:
        doc["feature_names"] = list(ds.feature_names)
    if ds.numeric_metadata is not None:
        doc["numeric_metadata"] = _plain(ds.numeric_metadata, "dataset.numeric_metadata")
    doc["labels"] = None if ds.labels is None else [str(x) for x in ds.labels]
    doc["notes"] = list(ds.notes)
    return doc


def _clusters_doc(h: Hierarchy) -> list[dict[str, Any]]:
    """Every cluster of level >= 1 with its parent and children ids (a denormalised, jq-friendly view)."""
    out = []
    for level in range(1, h.top_level + 1):
        lv, below = h.levels[level], h.levels[level - 1]
        above = h.levels[level + 1] if level < h.top_level else None
        for j, cid in enumerate(lv.ids):
            p = int(lv.parent[j])
            out.append({
                "id": cid, "level": level, "parent": above.ids[p] if above is not None and p >= 0 else None,
                "children": [below.ids[c] for c in h.children_of(level, j).tolist()], "size": int(lv.size[j]),
                "title": lv.titles[j], "description": lv.descriptions[j], "fallback": bool(lv.fallback[j]),
                "source": lv.sources[j],
                "description_mark": lv.description_marks[j] if lv.description_marks else None,
            })
    return out


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is not None and b is not None and (
        a is b or (a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)))


def _level_doc(lv: Level, keep_vectors: bool, enc: Encoder) -> dict[str, Any]:
    vectors = lv.vectors if keep_vectors else None
    if _same(lv.desc_embeddings, vectors):
        # text runs use the item embeddings as the L0 description embeddings: store them once
        desc: dict[str, Any] | None = {"same_as": "vectors"}
    else:
        desc = None if lv.desc_embeddings is None else enc(lv.desc_embeddings)
    return {
        "level": lv.level, "ids": list(lv.ids), "parent": enc(lv.parent), "size": enc(lv.size),
        "titles": list(lv.titles), "descriptions": list(lv.descriptions), "fallback": enc(lv.fallback),
        "sources": list(lv.sources), "vectors": None if vectors is None else enc(vectors),
        "desc_embeddings": desc, "reductions": {space: enc(r) for space, r in lv.reductions.items()},
        "description_marks": list(lv.description_marks),
    }


def _model_document(h: Hierarchy, include_item_vectors: bool, enc: Encoder) -> dict[str, Any]:
    """The JSON-ready document that :func:`save_model` writes (``enc`` encodes each array)."""
    def values(d: Mapping[str, Any], where: str) -> dict[str, Any]:
        return {str(k): enc(v) if isinstance(v, np.ndarray) else _plain(v, f"{where}.{k}") for k, v in d.items()}

    return {
        "schema_version": INLINE_SCHEMA_VERSION, "format": FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": _plain(h.config.to_dict(), "config"), "dataset": _dataset_doc(h.dataset, enc),
        "levels": [_level_doc(lv, include_item_vectors or lv.level > 0, enc) for lv in h.levels],
        "clusters": _clusters_doc(h),
        "reducers": {space: values(p, f"reducers.{space}") for space, p in h.reducers.items()},
        "evaluation": {str(k): _plain(v, f"evaluation.{k}") for k, v in h.evaluation.items()},
        "stats": _plain(h.stats, "stats"),
        "topic_embedding": None if h.topic_embedding is None else enc(h.topic_embedding),
        # optional, versioned additions (absent in older files): assignment data and hand edits
        "assign": None if not h.assign_info else values(h.assign_info, "assign"),
        "edits": _plain(h.edits, "edits"),
        **({"curation": _plain({"version": CURATION_VERSION, "log": h.edit_log, "redo": h.redo_log,
                                "counters": h.edit_counters}, "curation")}
           if (h.edit_log or h.redo_log or h.edit_counters) else {}),
    }


def save_model(h: Hierarchy, path: str | os.PathLike, *, include_item_vectors: bool = True,
               items: str = "auto") -> None:
    """Save ``h`` as a HERCULES model (atomically). ``include_item_vectors=False`` leaves out the L0
    representation vectors, usually the biggest part; everything else is kept.

    ``items`` says where the item-level values go: ``"inline"``, one self-contained JSON;
    ``"columnar"``, an Arrow file beside the JSON (:mod:`hercules_core.columnar`), which loads in a
    fraction of the time and memory; ``"auto"`` (default), columnar above
    ``columnar.INLINE_MAX_ITEMS`` items; ``"keep"``, as the model already at ``path`` stores them,
    without rewriting its items file (for changes above level 0, such as hand edits).
    """
    from . import columnar

    if items not in ITEMS_MODES:
        raise ValueError(f"items must be one of {', '.join(ITEMS_MODES)}, not {items!r}.")
    path = Path(path)
    keep = columnar.current_reference(path) if items == "keep" else None
    separate = keep is not None or items == "columnar" or (items == "auto" and h.n_items > columnar.INLINE_MAX_ITEMS)
    # Big base85 blobs skip json.dumps (which would scan every character for escapes, ~5 s for a
    # 200k x 384 model): the document gets a placeholder, and the bytes are written in its place.
    # base85 has no character that JSON escapes, so the result is the same as dumping them.
    nonce, blobs = secrets.token_hex(8), []

    def enc(a: np.ndarray) -> dict[str, Any]:
        header, data = _encode(a)
        if len(data) < _SPLICE_MIN:
            return {**header, "data": str(data, "ascii")}
        blobs.append(data)
        return {**header, "data": f"@{nonce}:{len(blobs) - 1}@"}

    if not separate:
        doc = _model_document(h, include_item_vectors, enc)
    else:
        doc = _model_document(h, include_item_vectors, lambda a: a)  # arrays stay arrays until split off
        if keep is not None and keep["rows"] == h.n_items:
            columnar.strip_items(doc, keep)
            ref = keep
        else:
            ref = columnar.write_items(h, doc, path)
        doc.update(schema_version=SCHEMA_VERSION, items=ref)
        doc = _encode_arrays(doc, enc)
    parts = re.split(f"@{nonce}:([0-9]+)@", json.dumps(doc, ensure_ascii=False, allow_nan=False))
    atomic_write(path, (blobs[int(p)] if i % 2 else _utf8(p) for i, p in enumerate(parts)))
    columnar.remove_stale_items(path, doc.get("items", {}).get("file"))


def _encode_arrays(obj: Any, enc: Encoder) -> Any:
    """``obj`` with every numpy array replaced by ``enc(array)`` (dicts and lists walked)."""
    if isinstance(obj, np.ndarray):
        return enc(obj)
    if isinstance(obj, dict):
        return {k: _encode_arrays(v, enc) for k, v in obj.items()}
    if isinstance(obj, list) and any(isinstance(v, (dict, list, np.ndarray)) for v in obj):
        return [_encode_arrays(v, enc) for v in obj]
    return obj


_REQUIRED = ("config", "dataset", "levels")
_REQUIRED_DATASET = ("modality", "ids")
_REQUIRED_LEVEL = ("level", "ids", "parent", "size", "titles", "descriptions", "fallback", "sources")


def _check_fields(doc: dict[str, Any], path: Path) -> None:
    missing = [k for k in _REQUIRED if k not in doc]
    if isinstance(doc.get("dataset"), dict):
        missing += [f"dataset.{k}" for k in _REQUIRED_DATASET if k not in doc["dataset"]]
    if isinstance(doc.get("levels"), list):
        for i, lv in enumerate(doc["levels"]):
            if not isinstance(lv, dict):
                missing.append(f"levels[{i}]")
                continue
            missing += [f"levels[{i}].{k}" for k in _REQUIRED_LEVEL if k not in lv]
    if missing:
        raise ModelFileError(f"{path} is missing required field(s): {', '.join(missing)}.")
    if not isinstance(doc["levels"], list) or len(doc["levels"]) < 2:
        raise ModelFileError(f"{path} must hold at least two levels (items and one level of clusters).")


MAX_VECTOR_WIDTH = 65_536  # columns of a stored matrix; embeddings and tables are far narrower
MAX_NESTING = 64  # JSON depth of a model file; save_model writes fewer than ten levels


def _nesting_exceeds(doc: Any, limit: int) -> bool:
    """Whether ``doc`` nests lists/dicts deeper than ``limit`` (iterative: no recursion to exhaust)."""
    stack = [(doc, 1)] if isinstance(doc, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        kinds = set(map(type, children))  # C speed: most lists (ids, texts) hold no containers at all
        if dict not in kinds and list not in kinds:
            continue
        if depth >= limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _count_ids(where: str, ids: Any) -> int:
    if not isinstance(ids, list):
        raise ModelFileError(f"{where}.ids must be a list of ids, not a {type(ids).__name__}.")
    return len(ids)


# (field, encoded value, rows it must have or None, why (says whose rows), dimensions or None for 0-2)
_Spec = tuple[str, Any, "int | None", str, "int | None"]


def _array_specs(doc: dict[str, Any]) -> Iterable[_Spec]:
    """Every array :func:`_build` decodes, with the shape the rest of the document implies."""
    ds = doc["dataset"]
    n = _count_ids("dataset", ds["ids"])
    items = f"the dataset has {n:,} items"
    for key in ("numeric", "numeric_raw"):
        yield f"dataset.{key}", ds.get(key), n, items, 2
    for key in ("scaler_mean", "scaler_scale"):
        yield f"dataset.{key}", ds.get(key), None, "", 1
    sizes = [_count_ids(f"levels[{i}]", lv["ids"]) for i, lv in enumerate(doc["levels"])]
    for i, lv in enumerate(doc["levels"]):
        m = sizes[i]
        why = f"the level has {m:,} {'items' if i == 0 else 'clusters'}"
        for key in ("parent", "size", "fallback"):
            yield f"levels[{i}].{key}", lv[key], m, why, 1
        yield f"levels[{i}].vectors", lv.get("vectors"), m, why, 2
        if not (isinstance(lv.get("desc_embeddings"), dict) and lv["desc_embeddings"] == {"same_as": "vectors"}):
            yield f"levels[{i}].desc_embeddings", lv.get("desc_embeddings"), m, why, 2
        reductions = lv.get("reductions")
        for space, r in reductions.items() if isinstance(reductions, dict) else ():
            yield f"levels[{i}].reductions.{space}", r, m, why, 2
    yield "topic_embedding", doc.get("topic_embedding"), None, "", 1
    # the optional sections decode whichever of their values are encoded arrays; some have known rows
    known = {"items": (n, items, 2), "thresholds": (sizes[1], f"level 1 has {sizes[1]:,} clusters", 1),
             **{f"centroids_L{i}": (m, f"level {i} has {m:,} clusters", 2) for i, m in enumerate(sizes)}}
    sections = [(f"reducers.{space}", p) for space, p in (doc.get("reducers") or {}).items()] \
        if isinstance(doc.get("reducers"), dict) else []
    sections.append(("assign", doc.get("assign")))
    for prefix, values in sections:
        for key, v in values.items() if isinstance(values, dict) else ():
            if _is_encoded(v):
                yield (f"{prefix}.{key}", v, *known.get(key, (None, "", None)))


def _shape_problem(shape: tuple[int, ...], rows: int | None, why: str, ndim: int | None) -> str | None:
    """What is wrong with a declared ``shape`` given what the document implies, else None."""
    if len(shape) not in ((ndim,) if ndim is not None else (0, 1, 2)):
        return f"has shape {list(shape)}; expected {ndim if ndim is not None else 'at most 2'} dimensions."
    if rows is not None and shape[0] != rows:
        return f"declares {shape[0]:,} rows but {why}."
    if any(w > MAX_VECTOR_WIDTH for w in (shape[1:] if rows is not None else shape)):
        return f"declares shape {list(shape)}; a stored vector has at most {MAX_VECTOR_WIDTH:,} values."
    return None


def _check_arrays(doc: dict[str, Any], path: Path) -> None:
    """Check every array header against what the document says its shape must be, before any
    array is decoded: a forged shape must not make the loader allocate or inflate anything.

    Rows must match the ids they describe and widths stay <= MAX_VECTOR_WIDTH; ids, texts and
    levels are parsed JSON, so the file's own size already bounds them. Compressed planes cannot
    declare more than zlib can inflate them to (:func:`_inflation_problem`), which bounds the
    whole model to about 1032 times the file.
    """
    for where, value, rows, why, ndim in _array_specs(doc):
        if value is None:
            continue  # optional array not stored; a required one fails in _build with its name
        if isinstance(value, np.ndarray):  # from the items file: checked against its declaration there
            problem = _shape_problem(value.shape, rows, why, ndim)
            if problem:
                raise ModelFileError(f"{path}: {where} {problem}")
            continue
        try:
            header = _header(value)
        except ModelFileError as e:
            raise ModelFileError(f"{path}: {where}: {e}") from None
        problem = _shape_problem(header.shape, rows, why, ndim) or _inflation_problem(header)
        if problem:
            raise ModelFileError(f"{path}: {where} {problem}")


def _load_dataset(d: dict[str, Any]) -> Dataset:
    numeric, raw = _dec(d.get("numeric")), _dec(d.get("numeric_raw"))
    mean, scale = _dec(d.get("scaler_mean")), _dec(d.get("scaler_scale"))
    if numeric is None and raw is not None and mean is not None and scale is not None:
        # the expression of StandardScaler.transform, so the float32 result is bit-identical
        numeric = ((raw - mean) / scale).astype(np.float32)
    return Dataset(
        ids=[str(i) for i in d["ids"]], modality=d["modality"], texts=d.get("texts"),
        image_paths=d.get("image_paths"), numeric=numeric, numeric_raw=raw, feature_names=d.get("feature_names"),
        numeric_metadata=d.get("numeric_metadata"), scaler_mean=mean, scaler_scale=scale, labels=d.get("labels"),
        notes=list(d.get("notes") or []), source=d.get("source", ""),
    )


def _load_level(i: int, d: dict[str, Any]) -> Level:
    if d["level"] != i:
        raise ModelFileError(f"levels[{i}] says it is level {d['level']!r}.")
    n = len(d["ids"])
    vectors, desc = _dec(d.get("vectors")), d.get("desc_embeddings")
    if isinstance(desc, dict) and desc == {"same_as": "vectors"}:
        if vectors is None:
            raise ModelFileError(f"levels[{i}].desc_embeddings refers to vectors, which are not stored.")
        desc = vectors
    else:
        desc = _dec(desc)
    lv = Level(i, [str(x) for x in d["ids"]], _dec(d["parent"]), _dec(d["size"]),
               vectors, desc, list(d["titles"]), list(d["descriptions"]),
               _dec(d["fallback"]), list(d["sources"]),
               {space: _dec(r) for space, r in (d.get("reductions") or {}).items()},
               _description_marks(i, n, d.get("description_marks")))
    arrays = {"vectors": lv.vectors, "desc_embeddings": lv.desc_embeddings,
              **{f"reductions.{k}": v for k, v in lv.reductions.items()}}
    for name, arr in arrays.items():
        if arr is not None and (arr.ndim != 2 or len(arr) != n):
            raise ModelFileError(f"levels[{i}].{name} has shape {arr.shape}, expected {n} rows.")
    return lv


def _description_marks(i: int, n: int, marks: Any) -> list[str]:
    """A level's description marks as saved (absent in older models: none)."""
    if not marks:
        return []
    if not isinstance(marks, list) or len(marks) != n or not all(isinstance(m, str) for m in marks):
        raise ModelFileError(f"levels[{i}].description_marks must be a list of {n} strings.")
    return list(marks)


def _config_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The saved config, with the defaults of fields added later set to what older models did."""
    config = doc["config"]
    if isinstance(config, dict) and "reduce_method" not in config:
        # models saved before the clustering space existed clustered the vectors as they were
        config = {**config, "reduce_method": "none"}
    return config


def _build(doc: dict[str, Any], path: Path) -> Hierarchy:
    try:
        config = HerculesConfig.from_dict(_config_of(doc))
    except (HerculesError, TypeError, ValueError) as e:
        raise ModelFileError(f"{path} has an invalid config: {e}") from None
    dataset = _load_dataset(doc["dataset"])
    levels = [_load_level(i, d) for i, d in enumerate(doc["levels"])]
    if dataset.ids != levels[0].ids:
        raise ModelFileError(f"{path}: dataset ids and level 0 ids differ.")
    h = Hierarchy(
        levels=levels, config=config, dataset=dataset,
        reducers={space: _decode_values(p) for space, p in (doc.get("reducers") or {}).items()},
        evaluation={int(k): v for k, v in (doc.get("evaluation") or {}).items()},
        stats=doc.get("stats") or {}, topic_embedding=_dec(doc.get("topic_embedding")),
        assign_info=_decode_values(doc["assign"]) if isinstance(doc.get("assign"), dict) else None,
        edits=doc["edits"] if isinstance(doc.get("edits"), dict) else {},
        **_curation_of(doc, path),
    )
    try:
        h.validate()
    except HerculesError as e:
        raise ModelFileError(f"{path} is inconsistent: {e}") from None
    return h


def _curation_of(doc: dict[str, Any], path: Path) -> dict[str, Any]:
    """The edit log, redo stack and id counters of a curated model (absent in older models: empty)."""
    cur = doc.get("curation")
    if cur is None:
        return {}
    if not isinstance(cur, dict) or not isinstance(cur.get("log", []), list) \
            or not isinstance(cur.get("redo", []), list) or not isinstance(cur.get("counters", {}), dict):
        raise ModelFileError(f"{path}: the \"curation\" section (edit log) is malformed.")
    version = cur.get("version")
    if not isinstance(version, int) or version > CURATION_VERSION:
        raise ModelFileError(f"{path}: its edit log has version {version!r}; this version reads "
                             f"{CURATION_VERSION}: upgrade hercules to load it.")
    if not all(isinstance(e, dict) for e in cur.get("log", []) + cur.get("redo", [])):
        raise ModelFileError(f"{path}: an entry of the edit log is not an object.")
    counters = {str(k): int(v) for k, v in cur.get("counters", {}).items()
                if isinstance(v, int) and not isinstance(v, bool)}
    return {"edit_log": list(cur.get("log", [])), "redo_log": list(cur.get("redo", [])), "edit_counters": counters}


def _parse_document(raw: bytes, path: Path) -> Any:
    """The parsed JSON of a model; ModelFileError when it cannot be parsed or nests too deeply."""
    too_deep = False
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path} is not a HERCULES model JSON (it does not parse: {e}); "
                             "the file may be truncated or corrupt.") from None
    except RecursionError:  # json's parser recurses once per nested list or object
        too_deep = True
    # a parsed document must be shallow too: the loader and the writers after it walk it recursively
    if too_deep or _nesting_exceeds(doc, MAX_NESTING):
        raise ModelFileError(f"{path} is not a HERCULES model JSON: it is nested too deeply (a model is at "
                             f"most {MAX_NESTING} levels deep); the file is damaged or not a model.")
    return doc


def load_model(path: str | os.PathLike, *, verify: bool = True) -> Hierarchy:
    """Load a model written by :func:`save_model` — a model JSON (with its items file beside it, if it
    has one) or a ``.hercules`` bundle; ModelFileError says what is wrong otherwise.

    ``verify=False`` skips the sha256 of the items file (its size, types and shapes are still
    checked), for files this installation wrote itself.
    """
    from . import columnar

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"Model file {path} does not exist or is not a file.")
    entry, bundled = None, columnar.is_bundle(path)
    try:
        if bundled:
            raw, entry = columnar.open_bundle(path)
        else:
            raw = path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"Cannot read model file {path}: {e.strerror or e}.") from None
    doc = _parse_document(raw, path)
    del raw
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a HERCULES model JSON (no \"format\": \"{FORMAT}\").")
    version = doc.get("schema_version")
    if version is None:
        raise ModelFileError(f"{path} has no schema_version; it was not written by save_model or is damaged.")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{path} has an invalid schema_version {version!r}.")
    if version > SCHEMA_VERSION:
        raise ModelFileError(f"{path} was saved by a newer version (schema {version}); this version reads "
                             f"schema {SCHEMA_VERSION}: upgrade hercules to load it.")
    _check_fields(doc, path)
    try:
        if version >= 2 and "items" in doc:
            columnar.check_reference(doc["items"], str(path))
            if bundled:
                if entry is None:
                    raise ModelFileError(f"{path}: the bundle holds no items file; its model refers to "
                                         f"{doc['items']['file']!r}. Download the model again.")
                if entry.filename != doc["items"]["file"]:
                    raise ModelFileError(f"{path}: the bundle's items file is {entry.filename!r}, its model refers "
                                         f"to {doc['items']['file']!r}.")
                source = columnar.bundle_items(path, entry)
            else:
                items = path.parent / doc["items"]["file"]
                if not items.is_file():
                    raise ModelFileError(f"{path} keeps its items in {items.name}, which is missing: copy it beside "
                                         "the model, or download the run's .hercules bundle, which holds both.")
                source = columnar.ItemsSource(items)
            derived = columnar.attach_items(doc, source, str(path), verify=verify)
        else:
            derived = {}
        _check_arrays(doc, path)
        h = _build(doc, path)
        columnar.check_derived(h, derived, str(path))
        return h
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
        raise ModelFileError(f"{path} is not a valid HERCULES model ({type(e).__name__}: {e}).") from None


# --------------------------------------------------------------------------- memberships and text

def _membership_columns(h: Hierarchy) -> Iterable[tuple[str, np.ndarray | None, list[str]]]:
    """The columns of the memberships table as (name, index into values or None, values): ``item_id``,
    then ``L{l}_cluster_id`` and ``L{l}_title`` for l = 1..top."""
    yield "item_id", None, list(h.levels[0].ids)
    idx = np.arange(h.n_items)
    for level in range(1, h.top_level + 1):
        idx = h.levels[level - 1].parent[idx]  # one level up at a time: O(n) per level
        lv = h.levels[level]
        yield f"L{level}_cluster_id", idx, list(lv.ids)
        yield f"L{level}_title", idx, list(lv.titles)


def membership_frame(h: Hierarchy) -> pd.DataFrame:
    """One row per item: ``item_id``, then ``L{l}_cluster_id`` and ``L{l}_title`` for l = 1..top."""
    return pd.DataFrame({name: values if idx is None else np.asarray(values, dtype=object)[idx]
                         for name, idx, values in _membership_columns(h)})


# A cell a spreadsheet may run as a formula (OWASP "CSV Injection", ASVS 1.2.10): one that starts
# with = + - @ (or their full-width forms, which some Excel locales accept), also after leading
# whitespace that Excel and LibreOffice skip (spaces, NBSP, tabs, CR/LF, zero-width space, BOM),
# and any cell that starts with a tab, CR, LF or NUL.
_FORMULA_START = re.compile(r"[\t\r\n\0]|[\s\u200b\ufeff]*[=+\-@\uff1d\uff0b\uff0d\uff20]")


def csv_safe_cell(value: Any) -> Any:
    """``value`` as a CSV cell a spreadsheet will show as text, never run as a formula.

    A string that could start a formula gets a leading ``'`` (the OWASP advice: spreadsheets
    read it as "text follows"). Anything that is not a string is returned unchanged, so numbers
    stay numbers (a distance of -0.5 is written as -0.5). Every CSV this project writes goes
    through here (or :func:`csv_safe_frame`); tests/test_csv_writers.py holds the list.
    """
    if isinstance(value, str) and _FORMULA_START.match(value):
        return "'" + value
    return value


def csv_safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with :func:`csv_safe_cell` applied to its text cells; numeric, bool
    and datetime columns are left as they are (their cells are not strings)."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or isinstance(out[col].dtype, pd.StringDtype):
            out[col] = out[col].astype(object).map(csv_safe_cell)
    return out


# RFC 4180 line ends. With "\n" alone, Python's csv module (and pandas) leave a lone "\r" inside a
# cell unquoted, and spreadsheets that break rows at CR would start a new, unescaped cell there.
CSV_LINE_END = "\r\n"


def frame_csv(frame: pd.DataFrame, **to_csv: Any) -> str:
    """``frame`` as CSV text, every text cell escaped by :func:`csv_safe_cell`."""
    return csv_safe_frame(frame).to_csv(index=False, lineterminator=CSV_LINE_END, **to_csv)


def rows_csv(rows: Iterable[Iterable[Any]]) -> str:
    """Rows of cells (the header first) as CSV text, every cell escaped by :func:`csv_safe_cell`."""
    buf = StringIO()
    csv.writer(buf, lineterminator=CSV_LINE_END).writerows([csv_safe_cell(c) for c in row] for row in rows)
    return buf.getvalue()


class _Chunks:
    """A write-only binary stream whose written bytes are taken out with :meth:`take`."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> list[bytes]:
        parts, self.parts = self.parts, []
        return parts


def _memberships_csv(h: Hierarchy, rows_per_chunk: int = 1 << 16) -> Iterable[bytes]:
    """The CSV of :func:`membership_frame`, vectorised: :func:`csv_safe_cell` runs once per item id
    and once per cluster id and title (cluster columns are dictionary-encoded), and Arrow's CSV
    writer (every text cell quoted, RFC 4180 line ends) writes the rows."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    arrays = {}
    for name, idx, values in _membership_columns(h):
        safe = pa.array([csv_safe_cell(str(v)) for v in values], pa.string())
        arrays[name] = safe if idx is None else pa.DictionaryArray.from_arrays(pa.array(idx, pa.int64()), safe)
    table = pa.table(arrays)
    sink = _Chunks()
    options = pacsv.WriteOptions(eol=CSV_LINE_END, quoting_style="needed")
    with pacsv.CSVWriter(pa.PythonFile(sink, mode="w"), table.schema, write_options=options) as writer:
        for batch in table.to_batches(max_chunksize=rows_per_chunk):
            writer.write_batch(batch)
            yield from sink.take()
    yield from sink.take()


def save_memberships(h: Hierarchy, path: str | os.PathLike) -> None:
    """Write :func:`membership_frame` as CSV (atomically, formula-looking cells escaped)."""
    atomic_write(path, _memberships_csv(h))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def hierarchy_text(h: Hierarchy, *, max_children: int | None = None, include_items: bool = False) -> str:
    """An indented tree, top level first, biggest clusters first, children indented by two spaces.

    Each cluster is ``L3_0 [120 items, by MODEL] Title — description`` (``fallback: MODEL`` when
    the requested LLM failed for it, ``, extractive description`` when its description is); items (with ``include_items``) are
    ``id — title``. ``max_children`` shows at most that many children per cluster and then
    ``… and N more``.
    """
    if max_children is not None and max_children < 0:
        raise ValueError(f"max_children must be >= 0 or None, got {max_children}.")
    lines: list[str] = []

    def walk(level: int, j: int, depth: int) -> None:
        lv = h.levels[level]
        if level == 0:
            lines.append("  " * depth + _one_line(f"{lv.ids[j]} — {lv.titles[j]}"))
            return
        size = int(lv.size[j])
        # who wrote the summary, and whether it is a fallback for a failed LLM answer
        by = f"fallback: {lv.sources[j]}" if lv.fallback[j] else f"by {lv.sources[j]}"
        if lv.description_marks and lv.description_marks[j] == "extractive":
            by += ", extractive description"
        head = f"{lv.ids[j]} [{size} item{'s' if size != 1 else ''}, {by}] {lv.titles[j]}"
        desc = _one_line(lv.descriptions[j])
        lines.append("  " * depth + _one_line(head) + (f" — {desc}" if desc else ""))
        if level == 1 and not include_items:
            return
        kids = h.children_of(level, j)
        kids = kids[np.argsort(-h.levels[level - 1].size[kids], kind="stable")]
        shown = kids if max_children is None else kids[:max_children]
        for c in shown:
            walk(level - 1, int(c), depth + 1)
        if len(shown) < len(kids):
            lines.append("  " * (depth + 1) + f"… and {len(kids) - len(shown)} more")

    top = h.levels[h.top_level]
    for j in np.argsort(-top.size, kind="stable"):
        walk(h.top_level, int(j), 0)
    return "\n".join(lines) + "\n"


def print_hierarchy(h: Hierarchy, **kwargs: Any) -> None:
    """Print :func:`hierarchy_text` (same keyword arguments)."""
    print(hierarchy_text(h, **kwargs), end="")


def save_hierarchy_text(h: Hierarchy, path: str | os.PathLike, **kwargs: Any) -> None:
    atomic_write(path, hierarchy_text(h, **kwargs))


def save_evaluation(evaluation: Mapping[Any, Any], path: str | os.PathLike) -> None:
    """Write ``{level: metrics}`` as JSON (levels as string keys, NaN as null)."""
    atomic_write(path, json.dumps(_plain(evaluation, "evaluation"), indent=2, ensure_ascii=False,
                                   allow_nan=False) + "\n")


# --------------------------------------------------------------------------- run log

_SECRET_KEYS = {"authorization", "proxyauthorization", "apikey", "password", "passwd", "secret",
                "clientsecret", "accesstoken", "refreshtoken", "authtoken", "bearertoken", "privatekey",
                "cookie", "setcookie"}


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key names a credential (redacted in run logs, left out of cache keys)."""
    k = re.sub(r"[^a-z0-9]", "", str(key).lower())
    return k in _SECRET_KEYS or k.endswith(("apikey", "secret", "password"))


def _redact(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: "***" if is_secret_key(k) else _redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_redact(v) for v in obj]
    return obj


class RunLog:
    """A JSON-lines log of a run (one record per LLM call and per stage).

    ``write`` is thread-safe; each record is appended with one ``write`` system call on a file opened
    in append mode under an advisory lock, so several processes can share one log. Records keep a
    copy in ``records`` (``keep_records=False`` keeps none, for very long runs: prompts add up).
    Keys that look like credentials (``api_key``, ``Authorization``, ...) are replaced by ``***``.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, keep_records: bool = True):
        self.path = None if path is None else Path(path)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.keep_records = keep_records
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._totals = {"llm_calls": 0, "llm_errors": 0, "prompt_tokens_est": 0, "completion_tokens_est": 0,
                        "llm_seconds": 0.0}

    def write(self, record: Mapping[str, Any]) -> None:
        rec = _redact(dict(record))
        rec.setdefault("time", datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        line = (json.dumps(_plain(rec, "record", strict=False), ensure_ascii=False, allow_nan=False) + "\n")
        with self._lock:
            if self.keep_records:
                self.records.append(rec)
            self._count(rec)
            if self.path is not None:
                self._append(line.encode("utf-8"))

    def _count(self, rec: dict[str, Any]) -> None:
        if rec.get("event") != "llm_call":
            return
        t = self._totals
        t["llm_calls"] += 1
        t["llm_errors"] += bool(rec.get("error"))
        for key in ("prompt_tokens_est", "completion_tokens_est"):
            if isinstance(rec.get(key), (int, np.integer)) and not isinstance(rec.get(key), bool):
                t[key] += int(rec[key])
        if isinstance(rec.get("seconds"), (int, float, np.number)) and math.isfinite(float(rec["seconds"])):
            t["llm_seconds"] += float(rec["seconds"])

    def _append(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)

    def summary(self) -> dict[str, Any]:
        """Totals over ``llm_call`` records: calls, calls with an error, estimated tokens, seconds."""
        with self._lock:
            return dict(self._totals, llm_seconds=round(self._totals["llm_seconds"], 6))
