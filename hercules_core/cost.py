"""What a run will cost before it starts, and what it did cost after it ended.

:func:`estimate_run` plans the cluster counts per level (the fixed counts, or the upper bound of
automatic k), splits every level into LLM batches the way the summariser does (batch size and
prompt token budget) and measures the prompt of a representative batch with the real prompt
builder. :func:`run_report` turns a finished run's log totals, cache counters and timings into
actual calls, tokens and seconds. Both return plain JSON-ready dicts; ``format_*`` render them.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from . import prompts
from .config import HerculesConfig
from .dataset import Dataset
from .levels import LevelPlan, plan_levels
from .prompts import build_prompt, estimate_tokens, render_block
from . import grounded
from . import reduction, stability
from .summarize import build_l0_requests, plan_batches
from .summarize_types import SummaryRequest

__all__ = ["DataSummary", "estimate_run", "run_report", "summary_with_usage", "format_estimate", "format_report",
           "plan_levels", "LevelPlan", "summarize_data", "Rates", "estimate_duration", "level_notes",
           "annotate_estimate", "run_work", "format_duration", "stability_text", "duration_text", "compare_duration"]

NO_LLM = {None, "", "keywords", "none"}
_REPRESENTATIVE_POOL = 256  # items looked at to find one of average rendered length
_TYPICAL_DESCRIPTION_CHARS = 160  # what an LLM description usually runs to (1-2 sentences)
_TYPICAL_EMBEDDING_DIMS = 384  # the estimate has no vectors: an embedding's width is assumed (MiniLM's)


# --------------------------------------------------------------------------- planning

@dataclass(frozen=True)
class DataSummary:
    """What an estimate needs of a data set: its size, and an even spread of at most 256 of its
    items (the same items whether it is made from the whole data set or from an earlier summary).
    Small and config-independent, so a caller can keep it per upload (the app's preview does)."""

    n_items: int
    sample: Dataset

    @property
    def modality(self) -> str:
        return self.sample.modality


def _take(values: Any, idx: np.ndarray) -> Any:
    if values is None:
        return None
    return values[idx] if isinstance(values, np.ndarray) else [values[int(i)] for i in idx]


def summarize_data(data: Dataset | DataSummary) -> DataSummary:
    """The :class:`DataSummary` of a prepared data set (a summary is returned as it is)."""
    if isinstance(data, DataSummary):
        return data
    n = len(data)
    idx = np.unique(np.linspace(0, n - 1, num=min(n, _REPRESENTATIVE_POOL)).astype(int)) if n else np.empty(0, int)
    sample = dataclasses.replace(
        data, ids=_take(data.ids, idx), texts=_take(data.texts, idx), image_paths=_take(data.image_paths, idx),
        numeric=_take(data.numeric, idx), numeric_raw=_take(data.numeric_raw, idx), labels=_take(data.labels, idx),
        embeddings=_take(data.embeddings, idx), notes=list(data.notes))
    return DataSummary(n_items=n, sample=sample)


def _representative_index(dataset: Dataset, l0_descriptions: list[str] | None, config: HerculesConfig) -> int:
    """An item of the sample whose rendered sample has about the average length."""
    from .summarize import render_sample  # the exact rendering the prompts use

    lengths = np.array([len(render_sample(i, dataset, l0_descriptions, config)) for i in range(len(dataset))],
                       dtype=float)
    return int(np.argmin(np.abs(lengths - lengths.mean())))


def _fake_request(level: int, j: int, n_items: int, n_children: int, dataset: Dataset, sample: tuple[str, str],
                  config: HerculesConfig, stats: list[dict[str, Any]], keywords: list[str]) -> SummaryRequest:
    n_samples = min(config.prompt_l0_sample_size, max(n_items, 1))
    children = []
    if level >= 2 and config.prompt_include_immediate_children:
        title = " ".join(["Representative"] * max(1, min(config.prompt_title_max_words, 5)))
        desc = ("Typical description " * 40)[: min(config.prompt_child_desc_trunc_len, _TYPICAL_DESCRIPTION_CHARS)]
        children = [(f"L{level - 1}_{c}", title, desc)
                    for c in range(min(config.prompt_immediate_child_sample_size, max(n_children, 1)))]
    return SummaryRequest(key=f"L{level}_{j}", level=level, n_items=n_items, modality=dataset.modality,
                          member_indices=np.empty(0, dtype=np.int64), samples=[sample] * n_samples,
                          children=children, numeric_stats=stats,
                          n_numeric_vars=dataset.numeric.shape[1] if dataset.modality == "numeric" else 0,
                          keywords=list(keywords) if level >= 1 and dataset.modality != "numeric" else [])


def _fake_answer_tokens(keys: list[str], config: HerculesConfig) -> int:
    title = " ".join(["Word"] * config.prompt_title_max_words)
    answer = {k: {"title": title, "description": "x" * _TYPICAL_DESCRIPTION_CHARS} for k in keys}
    return estimate_tokens(json.dumps(answer, indent=1))


def _level_cost(requests: list[SummaryRequest], config: HerculesConfig) -> dict[str, int]:
    """Calls and tokens of one level whose requests all look alike, batched by the summariser's own
    plan (:func:`summarize.plan_batches`)."""
    block = estimate_tokens(render_block(requests[0], config))
    batches = plan_batches(requests, {r.key: block for r in requests}, config, config.llm_initial_batch_size)
    prompt_tokens = completion_tokens = 0
    for size, count in Counter(len(b) for b in batches).items():
        batch = next(b for b in batches if len(b) == size)  # batches of one size cost alike
        prompt_tokens += count * estimate_tokens(build_prompt(batch, config))
        completion_tokens += count * _fake_answer_tokens([r.key for r in batch], config)
    calls = len(batches)
    if config.prompt_style == "grounded" and requests[0].level >= 1:
        # grounded.py: CANDIDATES title calls and one description call per cluster, on one prompt
        per = grounded.CANDIDATES + 1
        calls, prompt_tokens, completion_tokens = calls * per, prompt_tokens * per, completion_tokens
    return {"calls": calls, "batch_size": len(batches[0]), "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens}


def estimate_run(data: Dataset | DataSummary, config: HerculesConfig, *, llm_id: str | None,
                 with_text_embedder: bool | None = None, with_captioner: bool = False) -> dict[str, Any]:
    """The expected cost of ``Hercules(config, ...).fit(dataset)`` before it runs.

    ``data`` is the prepared data set or its :func:`summarize_data` (the same estimate either way).
    ``llm_id`` ``None`` or ``"keywords"`` means no LLM (no calls). ``with_text_embedder`` defaults
    to True (text data always has one); ``with_captioner`` says whether images get captions.
    Returns ``{"llm", "n_items", "clusters_per_level", "upper_bound", "llm_calls", "prompt_tokens",
    "completion_tokens", "per_level": [...], "texts_to_embed", "images_to_embed", "work"}``
    (``work``: :func:`run_work`). Calls and tokens assume every answer is usable (no retries or
    re-asks); with automatic k they are upper bounds. Tokens are this project's pessimistic estimate (``prompts.estimate_tokens``).
    """
    from .data import default_l0_descriptions

    summary = summarize_data(data)
    n, dataset = summary.n_items, summary.sample
    counts, auto = plan_levels(n, config)
    uses_llm = llm_id not in NO_LLM
    has_embedder = True if with_text_embedder is None else bool(with_text_embedder)
    if dataset.modality == "text" and dataset.embeddings is None:
        has_embedder = True

    per_level: list[dict[str, Any]] = []
    if uses_llm and n:
        l0_desc = default_l0_descriptions(dataset, config.l0_description_max_chars,
                                          config.prompt_l0_numeric_repr_precision,
                                          config.prompt_l0_numeric_repr_max_vals)
        rep = _representative_index(dataset, l0_desc, config)
        from .summarize import numeric_stats, render_sample

        sample = (dataset.ids[rep], render_sample(rep, dataset, l0_desc, config))
        stats: list[dict[str, Any]] = []
        if dataset.modality == "numeric":  # the statistics of the sample: same shape as a cluster's
            m = len(dataset)
            stats = numeric_stats(dataset, np.arange(m), np.array([0, m]), 1, config)[0]
        keywords: list[str] = []
        if dataset.modality != "numeric":
            words = [w for w in sample[1].replace(",", " ").split() if len(w) > 2]
            keywords = ((words or ["keyword"]) * prompts.KEYWORDS_MAX)[:prompts.KEYWORDS_MAX]
        if config.use_llm_for_l0_descriptions and dataset.modality in ("text", "numeric"):
            one = build_l0_requests(dataset, config)[rep]
            reqs = [dataclasses.replace(one, key=f"item_{i}") for i in range(n)]
            per_level.append({"level": 0, "clusters": n, **_level_cost(reqs, config)})
        n_below = n
        for li, k in enumerate(counts, start=1):
            reqs = [_fake_request(li, j, max(1, round(n / k)), max(1, round(n_below / k)), dataset, sample,
                                  config, stats, keywords) for j in range(k)]
            per_level.append({"level": li, "clusters": k, **_level_cost(reqs, config)})
            n_below = k

    from .hercules import describes_items, uses_text_embedder

    described = describes_items(dataset, config, has_llm=uses_llm, has_captioner=with_captioner)
    texts = 0
    own = dataset.embeddings is not None  # the items came with their own vectors
    if dataset.modality == "text" and not own and (config.representation_mode == "direct" or not described):
        texts += n  # the items themselves
    if own and config.representation_mode == "description" and not described:
        texts += n  # description mode embeds the items' texts as their descriptions
    if has_embedder and (described or (dataset.modality != "text" and config.representation_mode == "description")):
        texts += n  # level-0 descriptions
    if has_embedder and uses_text_embedder(dataset, config, described=described):
        texts += sum(counts)  # every cluster's "title. description"
        if (dataset.modality == "text" and not own) or described:
            texts += sum(counts)  # every title alone, for the title-quality score (title_quality.py)
        if config.topic_seed:
            texts += 1
    images = n if dataset.modality == "image" and config.representation_mode == "direct" else 0
    stab = _stability_cost(n, counts, dataset, config)

    return {
        "llm": llm_id if uses_llm else None,
        "n_items": n,
        "modality": dataset.modality,
        "clusters_per_level": counts,
        "upper_bound": bool(auto),
        "llm_calls": sum(p["calls"] for p in per_level),
        "prompt_tokens": sum(p["prompt_tokens"] for p in per_level),
        "completion_tokens": sum(p["completion_tokens"] for p in per_level),
        "per_level": per_level,
        "texts_to_embed": texts,
        "images_to_embed": images,
        "images_to_caption": n if dataset.modality == "image" and with_captioner else 0,
        "stability": stab,
        "work": run_work(n, counts, dataset, config),
    }


def _space_dims(n: int, dataset: Dataset, config: HerculesConfig) -> tuple[int, bool]:
    """The dimensions level 1 clusters in, and whether UMAP makes that space (``reduction.choose_method``):
    a numeric table's columns in direct mode, the items' own vectors' width, else a typical embedding's."""
    numeric = dataset.modality == "numeric" and config.representation_mode == "direct"
    if numeric and dataset.numeric is not None:
        dims = dataset.numeric.shape[1]
    elif dataset.embeddings is not None and config.representation_mode == "direct":
        dims = dataset.embeddings.shape[1]
    else:
        dims = _TYPICAL_EMBEDDING_DIMS
    if reduction.choose_method(config, dataset.modality, n, dims)[0] == "umap":
        return config.reduce_components, True
    return dims, False


def run_work(n: int, counts: list[int], dataset: Dataset, config: HerculesConfig) -> dict[str, float]:
    """The run's work outside its models, in the units :class:`Rates` prices (docs/scaling.md, "How the
    stages grow"): ``space`` — UMAP, when the run uses it: :data:`SPACE_FIXED_UNITS` (numba compiling
    its code in each new process) + one unit per item; ``other`` — k-means, settle, keywords,
    stability, evaluation: :data:`OTHER_FIXED_UNITS` + n x (1 + k d / :data:`OTHER_KD_PER_UNIT`), k the
    finest level's clusters and d the clustering space's dimensions (the O(n k d) passes of level 1
    beside the O(n) rest). Never per item alone: a rate measured on a small UMAP run must not be
    multiplied by a million items."""
    if not n:
        return {"space": 0.0, "other": 0.0}
    dims, umap = _space_dims(n, dataset, config)
    k = counts[0] if counts else 0
    return {"space": float(SPACE_FIXED_UNITS + n) if umap else 0.0,
            "other": float(OTHER_FIXED_UNITS + n * (1.0 + k * dims / OTHER_KD_PER_UNIT))}


def _stability_cost(n: int, counts: list[int], dataset: Dataset, config: HerculesConfig) -> dict[str, Any] | None:
    """The stability step's plan (``stability.plan``) for level 1 in the clustering space the run
    will use: re-runs, sample fraction, and their k-means work as a share of level 1's."""
    if not counts or config.stability_runs <= 0:
        return None
    p = stability.plan(n, counts[0], _space_dims(n, dataset, config)[0], config)
    return {"runs": p.runs, "sample_fraction": round(p.fraction, 4), "share_of_clustering": round(p.share, 3),
            "cheap": p.cheap}


def stability_text(stab: Mapping[str, Any] | None) -> str:
    """"stability: 5 re-runs on 6% samples, about 30% of level 1's clustering" (or "off")."""
    if not stab or not stab.get("runs"):
        return "stability: off"
    text = f"stability: {stab['runs']} re-runs on {stab['sample_fraction']:.0%} samples of the items"
    if stab.get("cheap"):
        return text + " (a small amount of k-means work)"
    return text + f", about {stab['share_of_clustering']:.0%} of level 1's clustering time"


# --------------------------------------------------------------------------- after the run

def summary_with_usage(run_log: Any) -> dict[str, Any]:
    """``run_log.summary()`` plus the model-reported ``prompt_tokens`` / ``completion_tokens``
    summed over the ``llm_call`` records, when every answered call carries them (an answer from the
    cache reports zero). Without the records, or with any answered call lacking them, only the
    summary's estimates are there."""
    summary = dict(run_log.summary()) if hasattr(run_log, "summary") else {}
    records = [r for r in (getattr(run_log, "records", None) or []) if r.get("event") == "llm_call"]
    answered = [r for r in records if r.get("response") is not None]
    if not answered or len(records) < summary.get("llm_calls", 0):  # records not kept: cannot tell
        return summary
    totals = {"prompt_tokens": 0, "completion_tokens": 0}
    for r in answered:
        for key in totals:
            v = r.get(key)
            if not isinstance(v, int) or isinstance(v, bool):
                return summary
            totals[key] += v
    return {**summary, **totals}


def _stage_group(stage: str) -> str:
    """"clustering level 2" -> "clustering"; "summarizing level 0" -> "summarizing"."""
    for prefix in ("clustering", "summarizing"):
        if stage.startswith(prefix):
            return prefix
    return stage


def run_report(hierarchy: Any, run_log_summary: Mapping[str, Any] | None, cache_stats: Mapping[str, Any] | None,
               timings: Mapping[str, float] | None) -> dict[str, Any]:
    """What a finished run cost.

    Parameters
    ----------
    hierarchy : the result (for the cluster counts); may be None.
    run_log_summary : ``RunLog.summary()`` (or :func:`summary_with_usage`): every LLM call the
        summariser made, cached or not. Model-reported token counts are used when it has
        ``prompt_tokens`` / ``completion_tokens``, else its estimates minus what the cache answered.
    cache_stats : ``Cache.stats()`` (or None without a cache).
    timings : seconds per stage (``Hercules.timings_``).
    """
    summary = dict(run_log_summary or {})
    stats = dict(cache_stats or {})
    kinds = stats.get("by_kind") or {}
    llm_c = kinds.get("llm") or {}
    emb_c = kinds.get("emb") or {}

    requests = int(summary.get("llm_calls", 0))
    llm_hits = int(llm_c.get("hits", 0))
    calls = max(requests - llm_hits, 0)
    if isinstance(summary.get("prompt_tokens"), int):
        prompt_tokens, completion_tokens = int(summary["prompt_tokens"]), int(summary.get("completion_tokens") or 0)
        source = "reported"
    else:
        prompt_tokens = max(int(summary.get("prompt_tokens_est", 0)) - int(llm_c.get("prompt_tokens_est_saved", 0)), 0)
        completion_tokens = max(int(summary.get("completion_tokens_est", 0))
                                - int(llm_c.get("completion_tokens_est_saved", 0)), 0)
        source = "estimate"

    seconds: dict[str, float] = {}
    for stage, sec in (timings or {}).items():
        if stage == "total":
            continue
        group = _stage_group(stage)
        seconds[group] = round(seconds.get(group, 0.0) + float(sec), 4)
    report: dict[str, Any] = {
        "llm": {
            "requests": requests,  # prompts the summariser sent (cache hits included)
            "calls": calls,  # prompts that reached the model
            "cache_hits": llm_hits,
            "errors": int(summary.get("llm_errors", 0)),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "tokens_source": source,
        },
        "embedding": {
            "calls": int(emb_c.get("inner_calls", 0)),
            "texts_embedded": int(emb_c.get("inner_items", 0)),
            "cache_hits": int(emb_c.get("hits", 0)),
            "cache_misses": int(emb_c.get("misses", 0)),
        },
        "cache": {
            "enabled": bool(stats.get("enabled", False)),
            "directory": stats.get("directory"),
            "hits": int(stats.get("hits", 0)),
            "misses": int(stats.get("misses", 0)),
            "errors": int(stats.get("errors", 0)),
        },
        "seconds": seconds,
        "total_seconds": round(float((timings or {}).get("total", sum(seconds.values()))), 4),
    }
    for kind, name in (("img", "image_embedding"), ("cap", "captioning")):
        c = kinds.get(kind)
        if c:
            report[name] = {"calls": int(c.get("inner_calls", 0)), "items": int(c.get("inner_items", 0)),
                            "cache_hits": int(c.get("hits", 0)), "cache_misses": int(c.get("misses", 0))}
    if hierarchy is not None and getattr(hierarchy, "levels", None):
        report["clusters_per_level"] = [len(lv) for lv in hierarchy.levels[1:]]
    return report


# --------------------------------------------------------------------------- text

def format_estimate(est: Mapping[str, Any]) -> str:
    """One line, e.g. ``estimate: 25 clusters in 2 levels (20, 5) -> 4 LLM calls, ~9,100 prompt
    tokens; 125 texts to embed``."""
    counts = est.get("clusters_per_level") or []
    bound = "up to " if est.get("upper_bound") else ""
    shape = f"{bound}{sum(counts)} clusters in {len(counts)} level(s) ({', '.join(map(str, counts))})"
    if est.get("llm"):
        llm = (f"{bound}{est['llm_calls']} LLM call(s) to {est['llm']}, ~{est['prompt_tokens']:,} prompt + "
               f"~{est['completion_tokens']:,} completion tokens (before the cache)")
    else:
        llm = "no LLM calls"
    media = f"{est.get('texts_to_embed', 0)} texts to embed"
    if est.get("images_to_embed"):
        media += f", {est['images_to_embed']} images to embed"
    line = f"estimate: {shape} -> {llm}; {media}"
    if "stability" in est:
        line += f"; {stability_text(est['stability'])}"
    if est.get("duration"):  # annotate_estimate
        line += f"; {duration_text(est['duration'])}"
    if est.get("level_notes"):
        line += "; note: " + "; ".join(est["level_notes"])
    return line


def format_report(report: Mapping[str, Any]) -> list[str]:
    """A few lines: LLM calls and tokens, embeddings, cache, seconds per stage."""
    llm, emb, cache = report["llm"], report["embedding"], report["cache"]
    tok = "reported" if llm["tokens_source"] == "reported" else "estimated"
    lines = [f"cost: {llm['calls']} LLM call(s) ({llm['cache_hits']} answered from the cache), "
             f"{llm['prompt_tokens']:,} prompt + {llm['completion_tokens']:,} completion tokens ({tok}); "
             f"{emb['texts_embedded']} text(s) embedded in {emb['calls']} call(s), {emb['cache_hits']} from the cache"]
    for name, what in (("image_embedding", "image(s) embedded"), ("captioning", "image(s) captioned")):
        if name in report:
            lines[0] += f"; {report[name]['items']} {what}, {report[name]['cache_hits']} from the cache"
    if cache["enabled"]:
        lines.append(f"cache: {cache['hits']} hits, {cache['misses']} misses in {cache['directory']}"
                     + (f" ({cache['errors']} errors)" if cache["errors"] else ""))
    else:
        lines.append("cache: off")
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in report["seconds"].items())
    lines.append(f"time: {stages}; total {report['total_seconds']:.2f} s")
    return lines


# --------------------------------------------------------------------------- duration

# The work outside the models (run_work) and its default prices on this project's 2-core machine.
# UMAP: a 10k run's clustering space took 272-345 s at load 9-14 (docs/scaling.md), a fresh
# 1,225-text run ~31 s, ~20 s of it numba compiling: 0.02 s per unit, the compile 1,000 units.
SPACE_FIXED_UNITS = 1_000
DEFAULT_SPACE_SECONDS_PER_UNIT = 0.02
# The rest (the fit less UMAP; docs/scaling.md, quiet machine, k=1000): 1M x 384 own vectors 37.7 s,
# 1M x 16 14.6 s, 100k x 384 12.5 s, 100k x 16 2.5 s: 1.3e-5 s x (100,000 + n (1 + k d / 100,000))
# gives 63, 16.4, 7.6 and 2.8 s, within 2x at every size (100k x 384 trains on every point).
OTHER_FIXED_UNITS = 100_000
OTHER_KD_PER_UNIT = 100_000
DEFAULT_OTHER_SECONDS_PER_UNIT = 1.3e-5


@dataclass(frozen=True)
class Rates:
    """How fast this machine runs a run's parts, for :func:`estimate_duration`. The core does not
    know where they come from: the app layer (``hercules_run.timings``) reads them from what
    earlier runs measured, else from the registry's declared defaults. ``*_measured`` says which.

    ``llm_seconds_per_call``: one LLM call (prompt and answer), None for no LLM; the calls run
    ``llm_concurrency`` at a time. ``embed_items_per_second``: texts (or images, with
    ``image_items_per_second``) the embedder embeds per second. ``space_seconds_per_unit`` and
    ``other_seconds_per_unit``: the price of one unit of :func:`run_work`'s ``space`` (UMAP) and
    ``other`` (k-means, keywords, stability, evaluation).
    """

    llm_seconds_per_call: float | None = None
    llm_measured: bool = False
    embed_items_per_second: float | None = None
    embed_measured: bool = False
    image_items_per_second: float | None = None
    image_measured: bool = False
    caption_seconds_per_item: float | None = None
    caption_measured: bool = False
    space_seconds_per_unit: float = DEFAULT_SPACE_SECONDS_PER_UNIT
    space_measured: bool = False
    other_seconds_per_unit: float = DEFAULT_OTHER_SECONDS_PER_UNIT
    other_measured: bool = False
    llm_concurrency: int = 1


def estimate_duration(est: Mapping[str, Any], rates: Rates) -> dict[str, Any]:
    """Expected seconds of the run :func:`estimate_run` described, part by part:
    embedding (texts / rate), LLM (calls x s/call / concurrency), captions, the clustering space
    (UMAP) and the rest (:func:`run_work`'s units x s/unit). ``measured`` is True when every part
    that counts was measured on this machine; ``unmeasured`` names the parts that use a declared default."""
    parts: dict[str, float] = {}
    unmeasured: list[str] = []

    def add(name: str, seconds: float, measured: bool) -> None:
        parts[name] = round(max(float(seconds), 0.0), 3)
        if not measured and seconds > 0:
            unmeasured.append(name)

    texts = int(est.get("texts_to_embed") or 0)
    if texts and rates.embed_items_per_second:
        add("embedding", texts / rates.embed_items_per_second, rates.embed_measured)
    images = int(est.get("images_to_embed") or 0)
    if images and rates.image_items_per_second:
        add("image_embedding", images / rates.image_items_per_second, rates.image_measured)
    captions = int(est.get("images_to_caption") or 0)
    if captions and rates.caption_seconds_per_item:
        add("captioning", captions * rates.caption_seconds_per_item, rates.caption_measured)
    calls = int(est.get("llm_calls") or 0)
    if est.get("llm") and calls and rates.llm_seconds_per_call is not None:
        add("llm", calls * rates.llm_seconds_per_call / max(int(rates.llm_concurrency), 1), rates.llm_measured)
    work = est.get("work") or {}
    if work.get("space"):
        add("clustering space", float(work["space"]) * rates.space_seconds_per_unit, rates.space_measured)
    add("other", float(work.get("other") or 0.0) * rates.other_seconds_per_unit, rates.other_measured)
    return {"seconds": round(sum(parts.values()), 1), "parts": parts, "measured": not unmeasured,
            "unmeasured": unmeasured}


def level_notes(n_items: int, config: HerculesConfig) -> list[str]:
    """What the fixed cluster counts asked for and will not get, in words: "level 1 will have
    1,542 clusters, not 2,000 (only 1,543 items)" (``levels.next_level`` lowers a count to what is
    below it). Automatic k asks for no count: no notes."""
    asked = config.level_cluster_counts
    if asked is None:
        return []
    counts = plan_levels(n_items, config).counts
    notes: list[str] = []
    below_name = lambda level, n: f"only {n:,} items" if level == 1 else f"only {n:,} clusters in level {level - 1}"  # noqa: E731
    n_below = n_items
    for level, want in enumerate(asked, start=1):
        if level > config.max_levels:
            notes.append(f"levels above {config.max_levels} are left out (max_levels)")
            break
        if level > len(counts):
            notes.append(f"level {level} ({want:,} asked) is left out ({below_name(level, n_below)})")
            break
        k = counts[level - 1]
        if k != want:
            notes.append(f"level {level} will have {k:,} clusters, not {want:,} ({below_name(level, n_below)})")
        n_below = k
    return notes


def annotate_estimate(est: Mapping[str, Any], config: HerculesConfig, rates: Rates | None = None) -> dict[str, Any]:
    """``est`` with ``level_notes`` (:func:`level_notes`) and, given ``rates``, ``duration``
    (:func:`estimate_duration`): what :func:`format_estimate` shows beside the counts."""
    out = dict(est, level_notes=level_notes(int(est.get("n_items") or 0), config))
    if rates is not None:
        out["duration"] = estimate_duration(est, dataclasses.replace(
            rates, llm_concurrency=max(int(config.llm_concurrency), 1)))
    return out


def format_duration(seconds: float) -> str:
    """"about 40 s", "about 3 min", "about 1 h 20 min"."""
    s = max(float(seconds), 0.0)
    if s < 1:
        return "under 1 s"
    if s < 90:
        return f"about {max(round(s), 1)} s"
    if s < 90 * 60:
        return f"about {round(s / 60)} min"
    h, m = divmod(round(s / 60), 60)
    return f"about {h} h" + (f" {m} min" if m else "")


def duration_text(duration: Mapping[str, Any]) -> str:
    """"about 3 min (measured on this machine)" or "about 3 min (no measurement yet for llm)"."""
    text = format_duration(duration.get("seconds") or 0)
    missing = duration.get("unmeasured") or []
    why = "measured on this machine" if not missing else f"no measurement yet for {', '.join(missing)}"
    return f"{text} ({why})"


def compare_duration(estimate: Mapping[str, Any] | None, actual_seconds: float) -> dict[str, Any] | None:
    """The estimate's seconds beside the run's: ``{"estimated_seconds", "actual_seconds", "ratio"}``
    (ratio = actual / estimated), or None when the estimate had no duration."""
    duration = (estimate or {}).get("duration")
    if not duration:
        return None
    est_s = float(duration.get("seconds") or 0.0)
    return {"estimated_seconds": round(est_s, 1), "actual_seconds": round(float(actual_seconds), 1),
            "ratio": round(actual_seconds / est_s, 2) if est_s > 0 else None,
            "measured": bool(duration.get("measured"))}
