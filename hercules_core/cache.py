"""A content-addressed on-disk cache for embeddings, captions and LLM answers.

Repeat runs with the same data and settings cost nothing: every model call is looked up by a key
made of the model id and SHA-256 hashes of what the model was given (text, file bytes, prompt,
schema, generation parameters), never of secrets. The store is ``diskcache`` (SQLite underneath),
safe for several threads and processes at once; its ``size_limit`` bounds the volume on disk and
older entries are evicted first (diskcache's ``least-recently-stored`` policy).

``Hercules`` knows nothing about caching: callers wrap the model objects before handing them over
(:func:`wrap` picks the wrapper for what an object is)::

    cache = Cache("~/.cache/hercules")
    model = Hercules(cfg, text_embedder=wrap(embedder, cache), llm=wrap(llm, cache))

A failing cache never fails a run: read errors are misses, write errors are skipped (with one
warning).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .clients.base import (LLM, BatchedEmbedder, Captioner, ConfigurableLLM, ContextLimitedLLM, ImageEmbedder,
                           TextEmbedder, UsageReportingLLM)
from .prompts import PROMPT_TEMPLATE_VERSION, estimate_tokens, parse_response

__all__ = [
    "Cache", "CachedEmbedder", "CachedBatchedEmbedder", "CachedImageEmbedder", "CachedCaptioner", "CachedLLM", "CachedUsageLLM",
    "DEFAULT_SIZE_LIMIT", "default_size_limit",
    "DEFAULT_CACHE_DIR", "cache_disabled_by_env", "default_cache_dir", "sha256_text", "sha256_file", "sha256_json",
    "wrap",
]

logger = logging.getLogger("hercules_core")

DEFAULT_SIZE_LIMIT = 2 ** 30  # bytes
DEFAULT_CACHE_DIR = "~/.cache/hercules"
_OFF = {"off", "0", "false", "no", "disabled", "none"}
_MISS = object()
_FILE_CHUNK = 1 << 20


def cache_disabled_by_env() -> bool:
    """True when the environment variable ``HERCULES_CACHE`` says ``off`` (or 0/false/no)."""
    return os.environ.get("HERCULES_CACHE", "").strip().lower() in _OFF


def default_cache_dir() -> Path:
    """Where runs share their cache unless told otherwise: ``HERCULES_CACHE_DIR``, else
    ``~/.cache/hercules`` (the one place this default is written down)."""
    return Path(os.environ.get("HERCULES_CACHE_DIR", "").strip() or DEFAULT_CACHE_DIR).expanduser()


def default_size_limit() -> int:
    """Bytes the cache may hold: ``HERCULES_CACHE_SIZE_GB`` (e.g. ``4`` for the 1.5 GB of vectors of
    1,000,000 texts at 384 dimensions, so that a failed run resumes with all its batches), else
    :data:`DEFAULT_SIZE_LIMIT` (1 GB)."""
    raw = os.environ.get("HERCULES_CACHE_SIZE_GB", "").strip()
    try:
        gb = float(raw) if raw else 0.0
    except ValueError:
        gb = 0.0
    return int(gb * 1024**3) if gb > 0 else DEFAULT_SIZE_LIMIT


def sha256_text(text: str) -> str:
    return hashlib.sha256(str(text).encode("utf-8", "surrogatepass")).hexdigest()


def sha256_json(obj: Any) -> str:
    """Hash of a JSON value, independent of dict key order."""
    return sha256_text(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_FILE_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _cache_errors() -> tuple[type[BaseException], ...]:
    import diskcache

    return (sqlite3.Error, OSError, diskcache.Timeout)


class Cache:
    """A size-bounded on-disk key-value store with hit/miss counters.

    Parameters
    ----------
    directory : where the store lives (created if missing; ``~`` is expanded).
    size_limit : bytes on disk (default :func:`default_size_limit`); diskcache evicts the
        oldest-stored entries beyond it.
    enabled : ``False`` (or the environment variable ``HERCULES_CACHE=off``) bypasses the store:
        every ``get`` misses and nothing is written (the directory is not even created).

    Keys are tuples whose first element is the kind (``"emb"``, ``"img"``, ``"cap"``, ``"llm"``);
    counters are kept per kind. ``stats()`` returns them with the totals.
    """

    def __init__(self, directory: str | os.PathLike, *, size_limit: int | None = None, enabled: bool = True):
        self.directory = Path(directory).expanduser()
        self.size_limit = int(size_limit) if size_limit is not None else default_size_limit()
        self.enabled = bool(enabled) and not cache_disabled_by_env()
        self._lock = threading.Lock()
        self._kinds: dict[str, dict[str, int]] = {}
        self._errors = 0
        self._store = None
        if self.enabled:
            import diskcache

            try:
                self._store = diskcache.Cache(str(self.directory), size_limit=self.size_limit)
            except _cache_errors() as exc:  # e.g. a read-only home: run without the cache
                logger.warning("Cannot open the cache in %s (%s: %s); running without it.", self.directory,
                               type(exc).__name__, exc)
                self.enabled = False

    # --- counters ---
    def _bump(self, kind: str, field: str, amount: int = 1) -> None:
        with self._lock:
            counts = self._kinds.setdefault(kind, {"hits": 0, "misses": 0})
            counts[field] = counts.get(field, 0) + int(amount)

    def note(self, kind: str, field: str, amount: int = 1) -> None:
        """Add ``amount`` to a free counter of ``kind`` (wrappers count inner calls, saved tokens, ...)."""
        self._bump(kind, field, amount)

    @property
    def hits(self) -> int:
        with self._lock:
            return sum(c["hits"] for c in self._kinds.values())

    @property
    def misses(self) -> int:
        with self._lock:
            return sum(c["misses"] for c in self._kinds.values())

    def stats(self) -> dict[str, Any]:
        """``{"enabled", "directory", "size_limit", "hits", "misses", "errors", "by_kind": {kind: {...}}}``."""
        with self._lock:
            by_kind = {k: dict(v) for k, v in self._kinds.items()}
            errors = self._errors
        return {"enabled": self.enabled, "directory": str(self.directory), "size_limit": self.size_limit,
                "hits": sum(c["hits"] for c in by_kind.values()),
                "misses": sum(c["misses"] for c in by_kind.values()), "errors": errors, "by_kind": by_kind}

    def _failed(self, action: str, exc: BaseException) -> None:
        with self._lock:
            self._errors += 1
            first = self._errors == 1
        if first:
            logger.warning("The cache in %s could not %s (%s: %s); going on without it where needed.",
                           self.directory, action, type(exc).__name__, exc)

    # --- store ---
    def get(self, key: tuple, default: Any = None, *, count: int = 1) -> Any:
        """The stored value or ``default``; counts ``count`` hits or misses for ``key[0]`` (a batch
        entry counts its texts)."""
        value = _MISS
        if self._store is not None:
            try:
                value = self._store.get(key, default=_MISS, retry=True)
            except _cache_errors() as exc:
                self._failed("be read", exc)
        self._bump(str(key[0]), "misses" if value is _MISS else "hits", count)
        return default if value is _MISS else value

    def get_many(self, keys: Iterable[tuple], default: Any = None) -> list[Any]:
        return [self.get(k, default) for k in keys]

    def set(self, key: tuple, value: Any) -> None:
        if self._store is None:
            return
        try:
            self._store.set(key, value, retry=True)
        except _cache_errors() as exc:
            self._failed("be written", exc)

    def set_many(self, items: Mapping[tuple, Any] | Iterable[tuple[tuple, Any]]) -> None:
        """Store several entries in one transaction (much faster than one ``set`` each)."""
        if self._store is None:
            return
        pairs = list(items.items() if isinstance(items, Mapping) else items)
        if not pairs:
            return
        try:
            with self._store.transact(retry=True):
                for key, value in pairs:
                    self._store.set(key, value)
        except _cache_errors() as exc:
            self._failed("be written", exc)

    def keys(self) -> list[tuple]:
        """Every stored key (for inspection and tests)."""
        return [] if self._store is None else list(self._store.iterkeys())

    def volume(self) -> int:
        """Bytes on disk (0 when disabled)."""
        return 0 if self._store is None else int(self._store.volume())

    def __len__(self) -> int:
        return 0 if self._store is None else len(self._store)

    def clear(self) -> None:
        if self._store is not None:
            self._store.clear(retry=True)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cache({str(self.directory)!r}, size_limit={self.size_limit}, enabled={self.enabled})"


# --------------------------------------------------------------------------- vectors

def _encode_row(row: np.ndarray) -> bytes:
    return np.ascontiguousarray(row, dtype="<f4").tobytes()


def _decode_rows(values: list[Any]) -> list[np.ndarray | None]:
    """Cached byte strings as float32 rows; anything malformed becomes a miss (None)."""
    out: list[np.ndarray | None] = []
    for v in values:
        if isinstance(v, bytes) and v and len(v) % 4 == 0:
            out.append(np.frombuffer(v, dtype="<f4").astype(np.float32))
        else:
            out.append(None)
    return out


class _VectorCache:
    """Shared logic of the embedders: look every input up, compute the misses in one inner call."""

    kind = ""

    def __init__(self, inner: Any, cache: Cache):
        self.inner = inner
        self.cache = cache
        self.model_id = inner.model_id
        self._lock = threading.Lock()
        self.inner_calls = 0
        self.inner_items = 0

    def _compute(self, items: list[Any]) -> np.ndarray:
        raise NotImplementedError

    def _hash(self, item: Any) -> str | None:
        raise NotImplementedError

    def _run(self, items: list[Any]) -> np.ndarray:
        if not items:
            return np.asarray(self._compute([]), dtype=np.float32)
        keys: list[tuple | None] = []
        for item in items:
            digest = self._hash(item)
            keys.append(None if digest is None else (self.kind, self.model_id, digest))
        rows: list[np.ndarray | None] = [None] * len(items)
        lookup = [i for i, k in enumerate(keys) if k is not None]
        for i, row in zip(lookup, _decode_rows(self.cache.get_many([keys[i] for i in lookup]))):
            rows[i] = row
        dims = {len(r) for r in rows if r is not None}
        if len(dims) > 1:  # inconsistent entries under one model id: trust none of them
            rows, dims = [None] * len(items), set()
        missing = [i for i, r in enumerate(rows) if r is None]
        if missing and not self._fill(items, keys, rows, missing, dims):
            # the model behind this id now gives another dimension: recompute everything
            rows = [None] * len(items)
            self._fill(items, keys, rows, list(range(len(items))), set())
        return np.stack(rows).astype(np.float32, copy=False)

    def _fill(self, items: list[Any], keys: list[tuple | None], rows: list[np.ndarray | None],
              missing: list[int], dims: set[int]) -> bool:
        """Compute the rows at ``missing`` (each distinct input once, one inner call) and store them.
        False, with nothing filled, when the fresh rows do not have the cached rows' dimension."""
        groups: dict[Any, list[int]] = {}
        for i in missing:
            groups.setdefault(keys[i] if keys[i] is not None else ("#", i), []).append(i)
        fresh = self._call([items[idx[0]] for idx in groups.values()])
        if dims and fresh.shape[1] not in dims:
            return False
        store = {}
        for idx, row in zip(groups.values(), fresh):
            for i in idx:
                rows[i] = row
            if keys[idx[0]] is not None and np.all(np.isfinite(row)):
                store[keys[idx[0]]] = _encode_row(row)
        self.cache.set_many(store)
        return True

    def _counted(self, n: int) -> None:
        """One call of the inner model with ``n`` inputs, counted here and in the cache's statistics."""
        with self._lock:
            self.inner_calls += 1
            self.inner_items += n
        self.cache.note(self.kind, "inner_calls")
        self.cache.note(self.kind, "inner_items", n)

    def _checked(self, out: Any, n: int) -> np.ndarray:
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 2 or out.shape[0] != n:
            raise ValueError(f"{self.model_id} returned an array of shape {out.shape} for {n} inputs")
        return out

    def _call(self, items: list[Any]) -> np.ndarray:
        self._counted(len(items))
        return self._checked(self._compute(items), len(items))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r}, {self.cache!r})"


class CachedEmbedder(_VectorCache):
    """A ``TextEmbedder`` answering from the cache; key ``("emb", model_id, sha256(text))``.

    ``embed`` looks every text up and embeds only the misses (each distinct text once) in a single
    call to the inner embedder; rows come back in the caller's order, as float32.
    ``inner_calls`` / ``inner_texts`` count what reached the inner embedder.
    """

    kind = "emb"

    def _hash(self, item: Any) -> str:
        return sha256_text(item)

    def _compute(self, items: list[Any]) -> np.ndarray:
        return self.inner.embed(items)

    @property
    def inner_texts(self) -> int:
        return self.inner_items

    def embed(self, texts: list[str]) -> np.ndarray:
        return self._run(list(texts))


class _BatchStore:
    """The ``BatchStore`` a :class:`CachedBatchedEmbedder` hands its inner embedder: one entry per
    batch, key ``("emb", model_id, endpoint, sha256(the batch's texts))``."""

    def __init__(self, owner: "CachedBatchedEmbedder"):
        self.owner = owner

    def _key(self, texts: list[str]) -> tuple:
        return ("emb", self.owner.model_id, self.owner.endpoint, sha256_json(list(texts)))

    def get(self, texts: list[str]) -> np.ndarray | None:
        value = self.owner.cache.get(self._key(texts), count=len(texts))
        if not isinstance(value, bytes) or not value or len(value) % (4 * len(texts)):
            return None
        return np.frombuffer(value, dtype="<f4").reshape(len(texts), -1).astype(np.float32)

    def put(self, texts: list[str], vectors: np.ndarray) -> None:
        self.owner._counted(len(texts))
        arr = np.asarray(vectors)
        if arr.ndim == 2 and arr.shape[0] == len(texts) and np.all(np.isfinite(arr)):
            self.owner.cache.set(self._key(texts), np.ascontiguousarray(arr, dtype="<f4").tobytes())


class CachedBatchedEmbedder(CachedEmbedder):
    """A :class:`CachedEmbedder` around a ``BatchedEmbedder`` (an embeddings server; ``wrap`` picks it):
    the cache keeps whole batches, each as soon as the server answered it, so a long run that fails
    half-way resumes with the batches it had not finished. Key ``("emb", model_id, endpoint,
    sha256(batch))``: the endpoint is the server's address without credentials and the model.
    """

    def __init__(self, inner: Any, cache: Cache):
        super().__init__(inner, cache)
        self._store = _BatchStore(self)

    @property
    def endpoint(self) -> str:
        return self.inner.endpoint

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embed_batched(texts)

    def embed_batched(self, texts: list[str], *, store: Any = None,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        return self._checked(self.inner.embed_batched(list(texts), store=self._store if store is None else store,
                                                      progress=progress), len(texts))


class CachedImageEmbedder(_VectorCache):
    """An ``ImageEmbedder`` answering from the cache; key ``("img", model_id, sha256(file bytes))``.

    A file that cannot be read is passed to the inner embedder uncached (which reports the error).
    """

    kind = "img"

    def _hash(self, item: Any) -> str | None:
        try:
            return sha256_file(item)
        except OSError:
            return None

    def _compute(self, items: list[Any]) -> np.ndarray:
        return self.inner.embed_images(items)

    def embed_images(self, paths: list[str]) -> np.ndarray:
        return self._run(list(paths))


class CachedCaptioner:
    """A ``Captioner`` answering from the cache; key ``("cap", model_id, sha256(file bytes))``."""

    kind = "cap"

    def __init__(self, captioner: Any, cache: Cache):
        self.inner = captioner
        self.cache = cache
        self.model_id = captioner.model_id
        self._lock = threading.Lock()
        self.inner_calls = 0
        self.inner_items = 0

    def caption(self, paths: list[str]) -> list[str]:
        paths = list(paths)
        keys: list[tuple | None] = []
        for p in paths:
            try:
                keys.append((self.kind, self.model_id, sha256_file(p)))
            except OSError:
                keys.append(None)
        out: list[str | None] = [None] * len(paths)
        for i, k in enumerate(keys):
            if k is not None:
                v = self.cache.get(k)
                out[i] = v if isinstance(v, str) else None
        missing = [i for i, c in enumerate(out) if c is None]
        if missing:
            first: dict[Any, int] = {}
            for i in missing:
                first.setdefault(keys[i] if keys[i] is not None else ("#", i), i)
            todo = list(first.values())
            with self._lock:
                self.inner_calls += 1
                self.inner_items += len(todo)
            self.cache.note(self.kind, "inner_calls")
            self.cache.note(self.kind, "inner_items", len(todo))
            fresh = list(self.inner.caption([paths[i] for i in todo]))
            if len(fresh) != len(todo):
                raise ValueError(f"{self.model_id} returned {len(fresh)} captions for {len(todo)} images")
            store = {}
            for i, cap in zip(todo, fresh):
                out[i] = cap
                if keys[i] is not None and isinstance(cap, str):
                    store[keys[i]] = cap
            for i in missing:
                if out[i] is None:
                    out[i] = out[first[keys[i] if keys[i] is not None else ("#", i)]]
            self.cache.set_many(store)
        return [str(c) for c in out]


# --------------------------------------------------------------------------- LLM

def _public_params(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Generation parameters without anything that looks like a credential (the run log's rule), so
    that a rotated key keeps the cache and no key is ever hashed into one."""
    from .io import is_secret_key

    return {str(k): v for k, v in (params or {}).items() if not is_secret_key(k)}


def _is_title_schema(schema: Mapping[str, Any]) -> bool:
    props = schema.get("properties")
    if not isinstance(props, Mapping) or not props:
        return False
    return all(isinstance(p, Mapping) and {"title", "description"} <= set(p.get("required") or ())
               for p in props.values())


def complete_answer(answer: Any, schema: Mapping[str, Any] | None) -> bool:
    """Whether an answer is worth caching: a non-empty string and, with a schema, a usable one.

    For the summary schema (cluster id -> {title, description}) every required id must be found by
    the lenient parser; for another schema the answer must be JSON. A half answer is not cached,
    so the next run asks again instead of replaying it.
    """
    if not isinstance(answer, str) or not answer.strip():
        return False
    if not schema:
        return True
    if _is_title_schema(schema):
        required = [str(k) for k in (schema.get("required") or schema["properties"].keys())]
        return len(parse_response(answer, required)) == len(required)
    try:
        json.loads(answer)
    except ValueError:
        return False
    return True


class CachedLLM:
    """An ``LLM`` answering from the cache.

    Key: ``("llm", model_id, PROMPT_TEMPLATE_VERSION, sha256(prompt), sha256(json(schema)),
    sha256(json(params)))`` where ``params`` are the generation parameters (temperature, max
    tokens, ...; credential-like entries are dropped before hashing). Only answers that pass
    ``accept(answer, schema)`` (default :func:`complete_answer`) are stored; exceptions never are.

    The wrapper declares what the inner LLM declares: wrapping a ``UsageReportingLLM`` gives a
    :class:`CachedUsageLLM`, whose ``complete_with_usage`` reports a cached answer as
    ``{"prompt_tokens": 0, "completion_tokens": 0, "cached": True}``; wrapping a
    ``ContextLimitedLLM`` passes its context limit and token count through.
    """

    kind = "llm"

    def __new__(cls, llm: Any, *args: Any, **kwargs: Any):
        if cls is CachedLLM:
            cls = _CACHED_LLM_CLASSES[isinstance(llm, UsageReportingLLM), isinstance(llm, ContextLimitedLLM)]
        return super().__new__(cls)

    def __init__(self, llm: Any, cache: Cache, *, params: Mapping[str, Any] | None = None,
                 accept: Callable[[Any, Mapping[str, Any] | None], bool] | None = None):
        self.inner = llm
        self.cache = cache
        self.model_id = llm.model_id
        self.params = _public_params(params)
        self._params_hash = sha256_json(self.params)
        self.accept = accept or complete_answer
        self._lock = threading.Lock()
        self.inner_calls = 0
        self.cache_hits = 0

    def key_for(self, prompt: str, schema: Mapping[str, Any] | None = None) -> tuple:
        return (self.kind, self.model_id, PROMPT_TEMPLATE_VERSION, sha256_text(prompt), sha256_json(schema),
                self._params_hash)

    def _lookup(self, prompt: str, schema: Any) -> tuple[tuple, str | None]:
        key = self.key_for(prompt, schema)
        hit = self.cache.get(key)
        if isinstance(hit, str):
            with self._lock:
                self.cache_hits += 1
            # what the run log counts for this call, so reports can subtract it
            self.cache.note(self.kind, "prompt_tokens_est_saved", estimate_tokens(prompt))
            self.cache.note(self.kind, "completion_tokens_est_saved", estimate_tokens(hit))
            return key, hit
        return key, None

    def _counted(self) -> None:
        with self._lock:
            self.inner_calls += 1
        self.cache.note(self.kind, "inner_calls")

    def _store(self, key: tuple, answer: Any, schema: Any) -> None:
        try:
            ok = self.accept(answer, schema)
        except Exception:  # a validator bug must not fail the run
            ok = False
        if ok:
            self.cache.set(key, answer)

    def complete(self, prompt: str, *, schema: dict[str, Any] | None = None) -> str:
        key, hit = self._lookup(prompt, schema)
        if hit is not None:
            return hit
        self._counted()
        answer = self.inner.complete(prompt, schema=schema)
        self._store(key, answer, schema)
        return answer

    def __repr__(self) -> str:
        return f"CachedLLM({self.inner!r}, {self.cache!r})"


class CachedUsageLLM(CachedLLM):
    """A :class:`CachedLLM` around a ``UsageReportingLLM`` (``CachedLLM(...)`` picks it itself)."""

    def complete_with_usage(self, prompt: str, *, schema: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        key, hit = self._lookup(prompt, schema)
        if hit is not None:
            return hit, {"prompt_tokens": 0, "completion_tokens": 0, "cached": True}
        self._counted()
        text, usage = self.inner.complete_with_usage(prompt, schema=schema)
        self._store(key, text, schema)
        usage = dict(usage or {})
        usage.setdefault("cached", False)
        return text, usage


class _ContextPassThrough:
    """The ``ContextLimitedLLM`` members of a wrapped LLM, declared by its wrapper."""

    inner: Any

    @property
    def prompt_token_limit(self) -> int | None:
        return self.inner.prompt_token_limit

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


class CachedContextLLM(_ContextPassThrough, CachedLLM):
    """A :class:`CachedLLM` around a ``ContextLimitedLLM``."""


class CachedUsageContextLLM(_ContextPassThrough, CachedUsageLLM):
    """A :class:`CachedUsageLLM` around a ``ContextLimitedLLM``."""


# (reports usage, has a context limit) -> the wrapper class declaring the same
_CACHED_LLM_CLASSES = {(False, False): CachedLLM, (True, False): CachedUsageLLM,
                       (False, True): CachedContextLLM, (True, True): CachedUsageContextLLM}


def wrap(obj: Any, cache: Cache | None, *, llm_params: Mapping[str, Any] | None = None) -> Any:
    """``obj`` (an embedder, image embedder, captioner or LLM) answering from ``cache``.

    ``None`` (no model, e.g. the keyword summariser) and a ``None`` cache pass through; an object
    that is already wrapped is returned as is. What ``obj`` is comes from the protocols it satisfies
    (``hercules_core.clients.base``). An LLM's generation parameters (part of its cache key) are
    ``llm_params`` or else its own, when it is a ``ConfigurableLLM``.
    """
    if obj is None or cache is None:
        return obj
    if isinstance(obj, (CachedCaptioner, CachedEmbedder, CachedImageEmbedder, CachedLLM)):
        return obj
    if isinstance(obj, LLM):
        params = llm_params if llm_params is not None else (
            obj.generation_params if isinstance(obj, ConfigurableLLM) else None)
        return CachedLLM(obj, cache, params=params if isinstance(params, dict) else None)
    if isinstance(obj, ImageEmbedder):
        return CachedImageEmbedder(obj, cache)
    if isinstance(obj, Captioner):
        return CachedCaptioner(obj, cache)
    if isinstance(obj, BatchedEmbedder):
        return CachedBatchedEmbedder(obj, cache)
    if isinstance(obj, TextEmbedder):
        return CachedEmbedder(obj, cache)
    raise TypeError(f"cache.wrap: {type(obj).__name__} is not an embedder, image embedder, captioner or LLM")
