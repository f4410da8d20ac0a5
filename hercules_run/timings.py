"""How fast this machine runs each model, measured by earlier runs: ``<cache_dir>/timings.json``.

After every run the pipeline records what it measured (:func:`measure_run`, :func:`record`): the
seconds of the LLM calls that reached the model and their number, per LLM id; the texts (images)
an embedder embedded and the seconds it took, per embedder id; the seconds of captioning per image;
and the rest of the run over its units of work (``cost.run_work``): the clustering space (UMAP) and
everything else (k-means, keywords, stability, evaluation) apart. The file keeps
the latest :data:`KEEP` samples per model id (at most :data:`MAX_IDS` ids per kind), and a rate is
the sum of their counts over the sum of their seconds. It holds registry ids and numbers only:
never a key, a prompt or an endpoint URL. It is replaced atomically (a temporary file renamed over
it); an unreadable or malformed file is ignored with a warning (and replaced by the next run).

:func:`rates_for` turns it into the core's :class:`hercules_core.cost.Rates`, falling back to each
registry entry's declared default (``ModelEntry.seconds_per_call`` / ``items_per_second``) for a
model never measured here; the price of a unit of work is the measured one pulled towards the core's
default by :data:`PRIOR_UNITS` (a small run's fixed costs do not set the price of a large one). The
core never learns where the cache is.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import model_registry as registry
from hercules_core import io
from hercules_core.cache import default_cache_dir
from hercules_core.cost import DEFAULT_OTHER_SECONDS_PER_UNIT, DEFAULT_SPACE_SECONDS_PER_UNIT, Rates

__all__ = ["TIMINGS_FILE", "KEEP", "MAX_IDS", "SPACE", "OTHER", "PRIOR_UNITS", "Timed", "StageMemory", "load",
           "record", "measure_run", "rates_for",
           "timings_path"]

log = logging.getLogger(__name__)

TIMINGS_FILE = "timings.json"
VERSION = 1
KEEP = 5  # samples per model id
MAX_IDS = 32  # model ids per kind (the least recently measured go first)
KINDS = ("llm", "text_embedder", "image_embedder", "captioner", "other")
# the keys of the "other" kind (not models): cost.run_work's two parts, seconds over units of work.
# ("all", seconds per item of both together, was what an earlier version kept: no longer read.)
SPACE = "space"
OTHER = "rest"
# units of work the declared default counts as, beside the measured samples: a 60-item run (~100,000
# units, mostly its fixed part) barely moves the price; a 1M-item run (1-9 million) sets it
PRIOR_UNITS = {SPACE: 10_000.0, OTHER: 1_000_000.0}


def timings_path(cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / TIMINGS_FILE


def _valid_sample(s: Any) -> bool:
    return (isinstance(s, dict) and all(isinstance(s.get(k), (int, float)) and not isinstance(s.get(k), bool)
                                        for k in ("seconds", "count"))
            and s["seconds"] > 0 and s["count"] > 0)


def load(cache_dir: str | os.PathLike | None = None) -> dict[str, dict[str, list[dict[str, float]]]]:
    """``{kind: {model id: [samples]}}`` from the file; empty when it is missing, and empty with a
    warning when it cannot be read or is not what :func:`record` writes."""
    path = timings_path(cache_dir)
    empty: dict[str, dict[str, list[dict[str, float]]]] = {k: {} for k in KINDS}
    try:
        if path.stat().st_size > 1_000_000:  # ours stays a few KB
            raise ValueError("too large")
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or raw.get("version") != VERSION:
            raise ValueError("not a timings file of this version")
    except FileNotFoundError:
        return empty
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        log.warning("ignoring the measured timings in %s (%s); the estimate uses the declared defaults", path, exc)
        return empty
    for kind in KINDS:
        per_id = raw.get(kind)
        if isinstance(per_id, dict):
            for mid, samples in per_id.items():
                if isinstance(mid, str) and isinstance(samples, list):
                    good = [s for s in samples if _valid_sample(s)][-KEEP:]
                    if good:
                        empty[kind][mid] = good
    return empty


_write_lock = threading.Lock()


def record(measured: Mapping[str, Mapping[str, tuple[float, float]]], cache_dir: str | os.PathLike | None = None,
           *, now: float | None = None) -> bool:
    """Add one run's measurements ``{kind: {model id: (seconds, count)}}`` to the file. Returns
    False (with a warning) when it cannot be written: a measurement is never worth failing a run."""
    path = timings_path(cache_dir)
    stamp = round(time.time() if now is None else now, 1)
    try:
        with _write_lock:
            data = load(cache_dir)
            for kind, per_id in measured.items():
                if kind not in KINDS:
                    continue
                for mid, (seconds, count) in per_id.items():
                    sample = {"seconds": round(float(seconds), 4), "count": round(float(count), 4), "at": stamp}
                    if not mid or not _valid_sample(sample):
                        continue
                    data[kind][str(mid)] = (data[kind].get(str(mid), []) + [sample])[-KEEP:]
                if len(data[kind]) > MAX_IDS:  # forget the ids measured longest ago
                    newest = sorted(data[kind], key=lambda m: data[kind][m][-1].get("at", 0), reverse=True)
                    data[kind] = {m: data[kind][m] for m in newest[:MAX_IDS]}
            io.atomic_write(path, json.dumps({"version": VERSION, **data}, indent=1, sort_keys=True))
        return True
    except OSError as exc:
        log.warning("cannot record the run's timings in %s: %s", path, exc)
        return False


def _rate(samples: list[dict[str, float]] | None) -> float | None:
    """count per second over the samples (None without any)."""
    if not samples:
        return None
    seconds = sum(s["seconds"] for s in samples)
    return sum(s["count"] for s in samples) / seconds if seconds > 0 else None


def _entry(model_id: str | None, kind: str):
    if not model_id:
        return None
    try:
        return registry.get_entry(model_id, kind)
    except Exception:  # an unknown id: the run reports it; the estimate just has no default
        return None


def rates_for(models: Any, cache_dir: str | os.PathLike | None = None,
              data: Mapping[str, Any] | None = None) -> Rates:
    """The core's :class:`Rates` for ``models`` (a ``ModelIds`` or a dict of ids): measured here when
    the timings file has the model, else the registry entry's declared default."""
    ids = models.as_dict() if hasattr(models, "as_dict") else dict(models or {})
    data = load(cache_dir) if data is None else data

    def per_second(kind: str, attr: str) -> tuple[float | None, bool]:
        mid = ids.get(kind)
        if not mid or mid in ("none",):
            return None, False
        measured = _rate(data.get(kind, {}).get(mid))
        if measured:
            return (measured if attr == "items_per_second" else 1.0 / measured), True
        entry = _entry(mid, kind)
        return (getattr(entry, attr, None) if entry is not None else None), False

    llm_s, llm_m = per_second("llm", "seconds_per_call")
    if ids.get("llm") in (None, "", "none", "keywords"):
        llm_s, llm_m = 0.0, True
    emb, emb_m = per_second("text_embedder", "items_per_second")
    img, img_m = per_second("image_embedder", "items_per_second")
    cap, cap_m = per_second("captioner", "seconds_per_call")
    def per_unit(key: str, default: float) -> tuple[float, bool]:
        samples = data.get("other", {}).get(key) or []
        seconds = sum(s["seconds"] for s in samples) + PRIOR_UNITS[key] * default
        return seconds / (sum(s["count"] for s in samples) + PRIOR_UNITS[key]), bool(samples)

    space, space_m = per_unit(SPACE, DEFAULT_SPACE_SECONDS_PER_UNIT)
    other, other_m = per_unit(OTHER, DEFAULT_OTHER_SECONDS_PER_UNIT)
    return Rates(llm_seconds_per_call=llm_s, llm_measured=llm_m, embed_items_per_second=emb, embed_measured=emb_m,
                 image_items_per_second=img, image_measured=img_m, caption_seconds_per_item=cap,
                 caption_measured=cap_m,
                 space_seconds_per_unit=space, space_measured=space_m,
                 other_seconds_per_unit=other, other_measured=other_m)


class Timed:
    """A model that counts the seconds and items of its calls (``embed``, ``embed_images``,
    ``caption``); everything else is the model's own. Wrapped under the cache, it times only what
    reached the model."""

    _TIMED = ("embed", "embed_images", "caption")

    def __init__(self, inner: Any):
        self.inner = inner
        self.seconds = 0.0
        self.items = 0
        self._lock = threading.Lock()
        for name in self._TIMED:
            if callable(getattr(inner, name, None)):
                setattr(self, name, self._timed(getattr(inner, name)))

    def _timed(self, fn):
        def call(items, *args, **kw):
            items = list(items)
            t0 = time.perf_counter()
            out = fn(items, *args, **kw)
            with self._lock:
                self.seconds += time.perf_counter() - t0
                self.items += len(items)
            return out
        return call

    def embed_batched(self, texts, *, store=None, progress=None):
        """A ``BatchedEmbedder``'s call (present only when the model has it): the cache answers
        batches inside it, so only the texts its store did not answer count as the model's."""
        inner = self.inner.embed_batched  # AttributeError for a model without it, as for a missing name
        texts = list(texts)
        answered = [0]

        class Counting:
            def get(self, batch):
                kept = store.get(batch)
                answered[0] += len(batch) if kept is not None else 0
                return kept

            def put(self, batch, vectors):
                store.put(batch, vectors)

        t0 = time.perf_counter()
        out = inner(texts, store=Counting() if store is not None else None, progress=progress)
        with self._lock:
            self.seconds += time.perf_counter() - t0
            self.items += len(texts) - answered[0]
        return out

    def __getattr__(self, name: str) -> Any:  # model_id, dimension, ... (only called for missing ones)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def measure_run(ids: Mapping[str, str | None], timed: Mapping[str, Timed], run_log_summary: Mapping[str, Any],
                cache_stats: Mapping[str, Any] | None, timings: Mapping[str, float],
                work: Mapping[str, float] | None) -> dict[str, dict[str, tuple[float, float]]]:
    """What one run measured, ready for :func:`record`: ``{kind: {id: (seconds, count)}}``.

    The LLM: the run log's seconds over the calls that reached the model (the cache's answers take
    next to nothing). Models: their :class:`Timed` figures. The rest: the clustering space's seconds
    (when the run used UMAP) over ``work["space"]``, and the run's total less the models' and the
    space's seconds over ``work["other"]`` (``work``: the estimate's, ``cost.run_work``)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    model_seconds = 0.0
    for kind, t in timed.items():
        if ids.get(kind) and t.items and t.seconds > 0:
            out.setdefault(kind, {})[str(ids[kind])] = (t.seconds, t.items)
        model_seconds += t.seconds
    llm_id = ids.get("llm")
    llm_seconds = float(run_log_summary.get("llm_seconds") or 0.0)
    hits = int((((cache_stats or {}).get("by_kind") or {}).get("llm") or {}).get("hits", 0))
    calls = int(run_log_summary.get("llm_calls") or 0) - hits
    if llm_id and llm_id not in ("keywords",) and calls > 0 and llm_seconds > 0:
        out["llm"] = {str(llm_id): (llm_seconds, calls)}
    work = work or {}
    space = float(timings.get("clustering space") or 0.0) if work.get("space") else 0.0
    if space > 0:
        out.setdefault("other", {})[SPACE] = (space, float(work["space"]))
    rest = float(timings.get("total") or 0.0) - model_seconds - llm_seconds - space
    if work.get("other") and rest > 0:
        out.setdefault("other", {})[OTHER] = (rest, float(work["other"]))
    return out


def _status_mb(field: str) -> float | None:
    """A memory figure of this process from ``/proc/self/status`` (``VmHWM``, ``VmRSS``) in MB; None
    where there is no such file (not Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS: Linux's ``clear_refs`` "5"."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


class StageMemory:
    """The peak resident memory of each stage of a run, measured at the progress reports.

    Wraps a run's ``progress(stage, done, total)``; a stage is the progress label up to its first
    ``:``, and work that reports no progress of its own counts in the stage reported before it
    (level 1's settle in "clustering level 1"). With ``reset`` (the CLI, which owns its process) the
    process's peak RSS (``VmHWM``) is reset with Linux's ``clear_refs`` at every change of stage, so a
    stage's peak is its own and its rise is that peak less the RSS it started with. The reset also
    resets what ``getrusage``/``time -v`` report as the process's maximum, so a shared process (the
    app's workers) keeps ``reset=False``: a stage's peak is then the process's peak so far and its rise
    is how much the stage raised it. Where ``/proc`` is missing (not Linux) nothing is measured;
    reading costs ~20 us per change of stage.
    """

    def __init__(self, progress: Callable[[str, int, int], None] | None = None, *, reset: bool = False):
        self.inner = progress
        self.peaks: dict[str, float] = {}  # stage -> peak RSS in MB, in the order first seen
        self.rises: dict[str, float] = {}  # stage -> MB over the stage's start (see above)
        self.current: str | None = None
        self.start_mb: float | None = None
        self.resettable = reset and _reset_peak()

    def _close(self) -> None:
        if self.current is None:
            return
        peak = _status_mb("VmHWM")
        if peak is not None:
            self.peaks[self.current] = max(self.peaks.get(self.current, 0.0), peak)
            rise = peak - (self.start_mb if self.start_mb is not None else peak)
            self.rises[self.current] = max(self.rises.get(self.current, 0.0), rise)
        if self.resettable:
            self.resettable = _reset_peak()

    def __call__(self, stage: str, done: int, total: int) -> None:
        name = stage.split(":", 1)[0].strip()
        if name != self.current:
            self._close()
            self.current = name
            self.start_mb = _status_mb("VmRSS" if self.resettable else "VmHWM")
        if self.inner is not None:
            self.inner(stage, done, total)

    def finish(self) -> dict[str, dict[str, float]]:
        """Close the last stage; ``{stage: {"peak_mb": .., "rise_mb": ..}}`` in whole MB."""
        self._close()
        self.current = None
        return {k: {"peak_mb": round(v), "rise_mb": round(self.rises.get(k, 0.0))} for k, v in self.peaks.items()}

    @staticmethod
    def format(stages: Mapping[str, Mapping[str, float]]) -> str:
        """One line: every stage's peak RSS and its rise (see the class); the run's peak marked."""
        if not stages:
            return "peak memory per stage: not measured (no /proc/self/status)"
        top = max(stages, key=lambda s: stages[s]["peak_mb"])
        return "peak memory per stage (RSS, + over the stage's start): " + ", ".join(
            f"{name} {m['peak_mb'] / 1024:.2f} GB (+{m['rise_mb'] / 1024:.2f}){' = the peak' if name == top else ''}"
            for name, m in stages.items())
