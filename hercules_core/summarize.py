"""Cluster summaries (paper §3.4): building the requests of a level and asking an LLM for them.

``build_requests`` gathers, per cluster, the evidence the prompt shows (samples, child summaries,
numeric statistics); ``LLMSummarizer`` batches the requests into Appendix-A prompts, retries and
re-asks what failed, and falls back to another summariser (keywords) for what still fails.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import math
import os
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Mapping

import numpy as np

from .clients.base import complete_with_usage, prompt_token_limit
from .config import HerculesConfig
from .dataset import Dataset
from .errors import Cancelled, LLMError
from .hierarchy import Level
from .kmeans import sq_dist_to_own
from .prompts import (build_prompt, clean_text, estimate_tokens, json_schema_for, parse_response,
                      prompt_footer, prompt_header, render_block)
from .descriptions import (EXTRACTIVE, REASKED, description_problem, description_prompt, extractive_description,
                           parse_description, reask_feedback, terms_to_name)
from .grounded import NoGroundedTitle, description_schema, grounded_answer
from .retry import is_transient, retrying
from .summarize_types import KeywordSource, ProgressFn, RunLogLike, Summarizer, Summary, SummaryRequest
from .title_quality import Grounding, gate_answers, junk_reason

__all__ = [
    "build_requests", "build_l0_requests", "build_prompt", "json_schema_for", "estimate_tokens",
    "parse_response", "LLMSummarizer", "copied_title", "copied_example", "fixed_tokens", "plan_batches",
    "tokens_budget", "render_sample", "numeric_stats",
]

logger = logging.getLogger("hercules_core")

L0_CONTENT_MAX_CHARS = 2000  # an L0 item shown alone gets far more room than a sample
L0_NUMERIC_MAX_VALS = 100
COPIED_TITLE = "title copied from a sample"
COPIED_EXAMPLE = "answer copied from the prompt's example"
# shown when a cluster whose title was a copy is asked again (the gate's re-asks say why the same way)
COPIED_FEEDBACK = ("Your title was rejected: it copies the opening of a sample. Name the topic the samples "
                   "share in your own words.")
# the placeholders of the EXAMPLE in prompts.prompt_header ("Title A", "Desc A."), which tiny models
# copy, also as "Title 2" or a bare "Title"
_PLACEHOLDER = re.compile(r"(title|desc|description)( [a-z]| \d+)?")
_COPY_OPENING_WORDS = 8  # a title is compared with about this many opening words of each sample
_COPY_MIN_WORDS = 3  # shorter titles (e.g. "Weather") may well open a sample without being copied
_COPY_SHARE = (4, 5)  # more than 4/5 of the title's words
_COPY_FUZZY_MIN_WORDS = 5  # "Linux operating system" may use a sample's opening words without copying it
_HEADING_MAX_WORDS = 6  # a title this short may quote a sample's heading ("Humor in the Court: ...")
# a heading ends with a colon or a dash; a first sentence ("Love is a grave mental disease.", which
# SmolLM2 gave as a title) ends with a full stop and is a copy
_HEADING_END = re.compile(r"\s*(?:[:\u2014\u2013]|-\s)")
_WORD_RE = re.compile(r"\w+")
SIBLINGS_SHOWN = 3  # one-cluster prompts show the keywords of this many nearest other clusters


# --------------------------------------------------------------------------- requests

def _groups(labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``order`` sorting ``labels`` (stable) and ``bounds`` so group j is order[bounds[j]:bounds[j+1]]."""
    order = np.argsort(labels, kind="stable")
    return order, np.searchsorted(labels[order], np.arange(k + 1))


def _pick(labels: np.ndarray, k: int, count: int, strategy: str, rng: np.random.Generator,
          *, dist: np.ndarray | None = None, size: np.ndarray | None = None) -> list[np.ndarray]:
    """Up to ``count`` members of each group: closest (``dist``), largest (``size``) or random."""
    if count <= 0:
        return [np.empty(0, dtype=np.int64)] * k
    idx = np.arange(len(labels))
    if strategy == "random":
        order, bounds = _groups(labels, k)
        out = []
        for j in range(k):
            members = order[bounds[j]:bounds[j + 1]]
            out.append(rng.choice(members, size=min(count, len(members)), replace=False)
                       if len(members) else members)
        return out
    # lexsort is stable: ties go to the lower index, so the choice is deterministic
    if strategy == "centroid_closest":
        order = np.lexsort((idx, dist, labels))
    else:  # largest
        order = np.lexsort((idx, -size, labels))
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    return [order[bounds[j]:min(bounds[j] + count, bounds[j + 1])] for j in range(k)]


def _numeric_repr(item_id: str, values: np.ndarray, names: list[str], max_vals: int, precision: int) -> str:
    inner = ", ".join(f"{n}={float(v):.{precision}f}" for n, v in zip(names[:max_vals], values[:max_vals]))
    if len(values) > max_vals:
        inner += ", ..."
    return f"Numeric Orig Item {item_id}: [{inner}]"


def _feature_names(dataset: Dataset, p: int) -> list[str]:
    names = list(dataset.feature_names or [])
    return names + [f"v{j}" for j in range(len(names), p)]


def render_sample(i: int, dataset: Dataset, l0_descriptions: list[str] | None, config: HerculesConfig) -> str:
    """Item ``i`` as a prompt shows it among a cluster's samples (the cost estimate renders the same)."""
    item_id = dataset.ids[i]
    if dataset.modality == "numeric":
        raw = dataset.numeric_raw if dataset.numeric_raw is not None else dataset.numeric
        return _numeric_repr(item_id, raw[i], _feature_names(dataset, raw.shape[1]),
                             config.prompt_l0_numeric_repr_max_vals, config.prompt_l0_numeric_repr_precision)
    if dataset.modality == "image":
        desc = l0_descriptions[i] if l0_descriptions and i < len(l0_descriptions) else ""
        desc = clean_text(desc, config.prompt_l0_sample_trunc_len) or "(Description Missing)"
        return f"Image Item {item_id}: {desc}"
    return clean_text(dataset.texts[i], config.prompt_l0_sample_trunc_len)


def numeric_stats(dataset: Dataset, order: np.ndarray, bounds: np.ndarray, k: int,
                  config: HerculesConfig) -> list[list[dict[str, Any]]]:
    """Per cluster, the most distinctive variables' statistics on the original scale."""
    raw = np.asarray(dataset.numeric_raw if dataset.numeric_raw is not None else dataset.numeric, dtype=np.float64)
    p = raw.shape[1]
    names, meta = _feature_names(dataset, p), dataset.numeric_metadata or {}
    counts = np.diff(bounds)
    nonempty = counts > 0
    starts = bounds[:-1][nonempty]  # empty groups have no rows, so consecutive starts delimit the rest
    means = np.full((k, p), np.nan)
    stds, mins, maxs = means.copy(), means.copy(), means.copy()
    if len(starts):
        cnt = counts[nonempty]
        # a variable at a time, its values in group order: (n,) temporaries instead of (n, p) ones
        # (0.75 s -> 0.4 s per level at 1M x 16); reduceat sums a column as it summed the rows, bit for bit
        for v in range(p):
            srt = raw[:, v][order]
            mean = np.add.reduceat(srt, starts) / cnt
            dev = srt - np.repeat(mean, cnt)  # two-pass: stable for big means
            means[nonempty, v] = mean
            stds[nonempty, v] = np.sqrt(np.add.reduceat(dev * dev, starts) / cnt)
            mins[nonempty, v] = np.minimum.reduceat(srt, starts)
            maxs[nonempty, v] = np.maximum.reduceat(srt, starts)
    gstd = raw.std(axis=0)
    z = (means - raw.mean(axis=0)) / np.where(gstd > 0, gstd, np.inf)
    rank = np.argsort(-np.nan_to_num(np.abs(z), nan=-1.0), axis=1, kind="stable")
    out = []
    for j in range(k):
        if not nonempty[j]:
            out.append([])
            continue
        entries = []
        for v in rank[j, :config.prompt_max_stats_vars]:
            m = meta.get(names[v]) or {}
            entries.append({"name": names[v], "unit": m.get("unit") or "", "description": m.get("description") or "",
                            "mean": float(means[j, v]), "std": float(stds[j, v]), "min": float(mins[j, v]),
                            "max": float(maxs[j, v]), "z": float(z[j, v])})
        out.append(entries)
    return out


def build_requests(level: int, cluster_ids: list[str], cluster_vectors: np.ndarray | None, assign: np.ndarray,
                   item_vectors: np.ndarray | None, dataset: Dataset, l0_descriptions: list[str] | None,
                   config: HerculesConfig, rng: np.random.Generator,
                   lower_level: Level | None = None) -> list[SummaryRequest]:
    """One :class:`SummaryRequest` per cluster of ``level``.

    Parameters
    ----------
    assign : for each L0 item, the index (in ``cluster_ids``) of its cluster at this level.
    item_vectors : L0 representation vectors, in the same space as ``cluster_vectors``.
    l0_descriptions : per L0 item, its caption or description (used for images).
    lower_level : the clusters of ``level - 1`` with ``parent`` already pointing into this level;
        needed for the child summaries of levels >= 2.
    """
    k = len(cluster_ids)
    assign = np.asarray(assign, dtype=np.int64)
    if len(assign) != len(dataset):
        raise ValueError(f"assign has {len(assign)} entries for {len(dataset)} items")
    if len(assign) and (assign.min() < 0 or assign.max() >= k):
        raise ValueError("assign holds cluster indices outside [0, len(cluster_ids))")
    order, bounds = _groups(assign, k)
    counts = np.diff(bounds)

    strategy = config.prompt_l0_sample_strategy
    dist = None
    if strategy == "centroid_closest":
        if item_vectors is None or cluster_vectors is None:
            strategy = "random"  # nothing to measure closeness with
        else:
            dist = sq_dist_to_own(item_vectors, [(cluster_vectors, assign)])[0]
    picks = _pick(assign, k, config.prompt_l0_sample_size, strategy, rng, dist=dist)

    children: list[list[tuple[str, str, str]]] = [[] for _ in range(k)]
    if (level >= 2 and config.prompt_include_immediate_children and lower_level is not None
            and config.prompt_immediate_child_sample_size > 0):
        children = _children(lower_level, k, cluster_vectors, config, rng)

    stats: list[list[dict[str, Any]]] = [[] for _ in range(k)]
    n_vars = 0
    if dataset.modality == "numeric":
        stats = numeric_stats(dataset, order, bounds, k, config)
        n_vars = (dataset.numeric_raw if dataset.numeric_raw is not None else dataset.numeric).shape[1]

    requests = []
    for j, cid in enumerate(cluster_ids):
        samples = [(dataset.ids[i], render_sample(int(i), dataset, l0_descriptions, config)) for i in picks[j]]
        requests.append(SummaryRequest(
            key=cid, level=level, n_items=int(counts[j]), modality=dataset.modality,
            member_indices=order[bounds[j]:bounds[j + 1]], samples=samples, children=children[j],
            numeric_stats=stats[j], n_numeric_vars=n_vars,
        ))
    return requests


def _children(lower: Level, k: int, cluster_vectors: np.ndarray | None, config: HerculesConfig,
              rng: np.random.Generator) -> list[list[tuple[str, str, str]]]:
    parent = np.asarray(lower.parent, dtype=np.int64)
    if len(parent) and (parent.min() < 0 or parent.max() >= k):
        raise ValueError("lower_level.parent must point into the new level before build_requests is called")
    strategy = config.prompt_immediate_child_sample_strategy
    dist = None
    if strategy == "centroid_closest":
        if lower.vectors is None or cluster_vectors is None:
            strategy = "largest"
        else:
            dist = sq_dist_to_own(lower.vectors, [(cluster_vectors, parent)])[0]
    picks = _pick(parent, k, config.prompt_immediate_child_sample_size, strategy, rng,
                  dist=dist, size=np.asarray(lower.size))
    titles, descs = lower.titles or [], lower.descriptions or []
    out = []
    for chosen in picks:
        out.append([(lower.ids[c], titles[c] if c < len(titles) else "",
                     clean_text(descs[c] if c < len(descs) else "", config.prompt_child_desc_trunc_len))
                    for c in chosen])
    return out


def build_l0_requests(dataset: Dataset, config: HerculesConfig, *,
                      l0_descriptions: list[str] | None = None) -> list[SummaryRequest]:
    """One request per item (key ``item_{i}``) carrying the item's own content, for L0 descriptions."""
    limit = max(L0_CONTENT_MAX_CHARS, config.prompt_l0_sample_trunc_len)
    raw = None
    if dataset.modality == "numeric":
        raw = dataset.numeric_raw if dataset.numeric_raw is not None else dataset.numeric
        names = _feature_names(dataset, raw.shape[1])
    out = []
    for i, item_id in enumerate(dataset.ids):
        if raw is not None:
            content = _numeric_repr(item_id, raw[i], names, max(L0_NUMERIC_MAX_VALS, config.prompt_l0_numeric_repr_max_vals),
                                    config.prompt_l0_numeric_repr_precision)
        elif dataset.modality == "image":
            desc = l0_descriptions[i] if l0_descriptions and i < len(l0_descriptions) else ""
            content = f"Image Item {item_id}: " + (clean_text(desc, limit) or
                                                   f"(file {clean_text(os.path.basename(dataset.image_paths[i]), 200)})")
        else:
            content = clean_text(dataset.texts[i], limit)
        out.append(SummaryRequest(key=f"item_{i}", level=0, n_items=1, modality=dataset.modality,
                                  member_indices=np.array([i], dtype=np.int64), samples=[(item_id, content)]))
    return out


# --------------------------------------------------------------------------- LLM summariser

def tokens_budget(config: HerculesConfig) -> int:
    """The prompt token budget the batcher keeps every prompt's estimate under."""
    return int(math.floor((1.0 - config.prompt_token_safety_margin) * config.max_prompt_tokens))


def fixed_tokens(level: int, keys: list[str], config: HerculesConfig, *, header: int | None = None,
                 count: Callable[[str], int] = estimate_tokens) -> int:
    """Tokens of a prompt besides its cluster blocks: the header of ``level`` (``header``: its tokens,
    when the caller already knows them) and the footer naming ``keys``. The pieces are counted
    separately (``count``: the estimate, or a model's own count); each carries its own overhead, so the
    sum is at least the count of the whole."""
    if header is None:
        header = count(prompt_header([level], config))
    return header + count(prompt_footer(keys))


def plan_batches(requests: list[SummaryRequest], block_tokens: Mapping[str, int], config: HerculesConfig,
                 size: int, *, budget: int | None = None,
                 count: Callable[[str], int] = estimate_tokens) -> list[list[SummaryRequest]]:
    """The batches the summariser sends, in request order: at most ``size`` requests per prompt (one
    with the compact prompt), one level per prompt, and every prompt's tokens (:func:`fixed_tokens`
    plus ``block_tokens[key]`` of its requests, counted with ``count``) within ``budget`` (default: the
    configuration's token budget). A batch that would not fit is split. The cost estimate plans with
    this same function."""
    if config.prompt_style in ("compact", "grounded"):  # these prompts hold one cluster
        size = 1
    budget = tokens_budget(config) if budget is None else budget
    headers: dict[int, int] = {}  # a header depends on the level only: estimated once per level
    batches: list[list[SummaryRequest]] = []
    cur: list[SummaryRequest] = []
    cur_cost = 0
    for req in requests:
        if cur:
            if req.level not in headers:
                headers[req.level] = count(prompt_header([req.level], config))
            fixed = fixed_tokens(req.level, [r.key for r in cur] + [req.key], config, header=headers[req.level],
                                 count=count)
            if len(cur) >= size or req.level != cur[0].level or cur_cost + block_tokens[req.key] + fixed > budget:
                batches.append(cur)
                cur, cur_cost = [], 0
        cur.append(req)
        cur_cost += block_tokens[req.key]
    if cur:
        batches.append(cur)
    return batches


def _words(text: str) -> list[str]:
    return _WORD_RE.findall(str(text).lower())


def copied_title(title: str, samples: list[tuple[str, str]]) -> bool:
    """Whether ``title`` is just the opening of one of ``samples`` (tiny models like to copy one).

    Compared lowercased without punctuation: a title equal to a whole sample, or of at least three
    words that opens a sample, or of at least five words more than 80% of which occur among the
    opening words of a longer sample (a title that adds one word to four copied ones, like the test
    fakes' "Fake" + four words, passes). A short title that is a whole heading of a sample ("Humor in the
    Court" of "Humor in the Court: Q. ...") names it and is not a copy; a whole first sentence is.
    """
    t = _words(title)
    if not t:
        return False
    for _, text in samples:
        s = _words(text)
        if not s:
            continue
        if t == s:
            return True
        if len(t) < _COPY_MIN_WORDS or len(s) <= len(t):
            continue
        if s[:len(t)] == t and not _quotes_heading(t, text):
            return True
        if len(t) < _COPY_FUZZY_MIN_WORDS:
            continue
        opening = set(s[:max(_COPY_OPENING_WORDS, len(t) + 2)])
        if _COPY_SHARE[1] * sum(w in opening for w in t) > _COPY_SHARE[0] * len(t) and not _quotes_heading(t, text):
            return True
    return False


def _quotes_heading(title_words: list[str], text: str) -> bool:
    """Whether a short title is the whole heading a sample opens with: the words of the title are
    followed in the sample by a colon or a dash, not by more words or a full stop."""
    if len(title_words) > _HEADING_MAX_WORDS:
        return False
    m = re.match(r"\W*" + r"\W+".join(map(re.escape, title_words)), str(text), re.IGNORECASE)
    return bool(m and _HEADING_END.match(str(text), m.end()))


def copied_example(title: str, description: str) -> bool:
    """Whether an answer is the prompt's example placeholder ("Title A", "Desc A.", "Title 2") copied."""
    return any(_PLACEHOLDER.fullmatch(" ".join(_words(text))) for text in (title, description))


def _short(reason: str) -> str:
    """A gate reason without its advice to the model (for logs and the fallback's error)."""
    return reason.split(". ", 1)[0].replace("Your title", "title").replace("Your answer", "answer")


class _Aborted(Exception):
    """Another batch hit a fatal error or the run was cancelled: stop without calling the LLM."""


def _shrink(req: SummaryRequest, fits: Callable[[SummaryRequest], bool]) -> SummaryRequest:
    """Make one request's block smaller step by step until ``fits`` (or nothing is left to cut)."""
    samples, children, stats = list(req.samples), list(req.children), list(req.numeric_stats)
    text_len = max((len(t) for _, t in samples), default=0)
    desc_len = max((len(d) for _, _, d in children), default=0)
    while True:
        if len(samples) > 1:
            samples = samples[: (len(samples) + 1) // 2]
        elif len(children) > 1:
            children = children[: (len(children) + 1) // 2]
        elif text_len > 40 or desc_len > 30:
            text_len, desc_len = max(40, text_len // 2), max(30, desc_len // 2)
            samples = [(i, clean_text(t, text_len)) for i, t in samples]
            children = [(c, clean_text(t, 60), clean_text(d, desc_len)) for c, t, d in children]
        elif len(stats) > 3:
            stats = stats[: max(3, len(stats) // 2)]
        elif children:
            children = []
        else:
            return dataclasses.replace(req, samples=samples, children=children, numeric_stats=stats)
        candidate = dataclasses.replace(req, samples=samples, children=children, numeric_stats=stats)
        if fits(candidate):
            return candidate


class LLMSummarizer:
    """Summaries from an LLM, batched, retried, re-asked, with a fallback for what still fails."""

    def __init__(self, llm: Any, config: HerculesConfig, *, fallback: Summarizer,
                 run_log: RunLogLike | None = None, cancel: Callable[[], bool] | None = None):
        self.llm = llm
        self.config = config
        self.fallback = fallback
        self.run_log = run_log
        self.cancel = cancel
        self.model_id = llm.model_id
        self._log_lock = threading.Lock()  # run logs need not be thread-safe
        # a title_quality.Grounding (the items' text embeddings), set by the estimator when it has one:
        # the gate then rejects ungrounded titles and the grounded prompt style ranks its candidates
        self.grounding: Grounding | None = None
        self._level_requests: list[SummaryRequest] = []
        self._budget = tokens_budget(config)
        # an LLM with a known context window: prompts are fitted to it before the call (a prompt too long
        # fails every attempt, and an answer without room is cut short), counted the model's way
        self._count: Callable[[str], int] = estimate_tokens
        limit = prompt_token_limit(llm)
        if limit is not None:
            self._budget = min(self._budget, limit)
            self._count = llm.count_tokens

    # --- planning (main thread only, so batches never depend on thread timing) ---
    def _fit(self, req: SummaryRequest) -> tuple[SummaryRequest, bool]:
        def fits(r: SummaryRequest) -> bool:
            return self._block_tokens(r) + fixed_tokens(r.level, [r.key], self.config, count=self._count) \
                <= self._budget
        if fits(req):
            return req, False
        small = _shrink(req, fits)
        if not fits(small):
            logger.warning("The prompt for %s exceeds the token budget (%d) even when shrunk; sending it anyway.",
                           req.key, self._budget)
        return small, True

    def _refit(self, fitted: dict[str, SummaryRequest], shrunk: set[str], cost: dict[str, int],
               req: SummaryRequest) -> None:
        """Record ``req`` (e.g. with feedback added) fitted to the budget again: feedback adds tokens."""
        fitted[req.key], was_shrunk = self._fit(req)
        if was_shrunk:
            shrunk.add(req.key)
        cost[req.key] = self._block_tokens(fitted[req.key])

    def _block_tokens(self, req: SummaryRequest) -> int:
        # the block of the full prompt; a one-cluster prompt (compact, grounded) holds the same content
        # without the full prompt's header, so it is shorter than header + block + footer
        return self._count(render_block(req, self.config))

    # --- calling (worker threads) ---
    def _write(self, record: dict[str, Any]) -> None:
        if self.run_log is not None:
            with self._log_lock:
                self.run_log.write(record)

    def _sleeper(self, abort: threading.Event) -> Callable[[float], None]:
        def sleep(seconds: float) -> None:
            # wake early on abort or cancel; the next attempt then stops before calling the LLM
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                if abort.wait(min(left, 0.05)) or (self.cancel is not None and self.cancel()):
                    return
        return sleep

    def _call(self, batch: list[SummaryRequest], prompt: str, shrunk: list[str], attempt: int,
              abort: threading.Event, schema: dict[str, Any] | None = None) -> str:
        if abort.is_set():
            raise _Aborted()
        if self.cancel is not None and self.cancel():
            raise Cancelled("Summarisation was cancelled.")
        keys = [r.key for r in batch]
        response: Any = None
        usage: Any = None
        error = None
        t0 = time.perf_counter()
        try:
            schema = schema or json_schema_for(keys, self.config, level=batch[0].level)
            response, usage = complete_with_usage(self.llm, prompt, schema=schema)  # usage: the server's counts
            return response
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            text = response if isinstance(response, str) else None
            record = {"event": "llm_call", "model": self.model_id, "level": batch[0].level, "keys": keys,
                      "attempt": attempt, "prompt": prompt, "response": text, "error": error,
                      "seconds": round(time.perf_counter() - t0, 4), "prompt_tokens_est": estimate_tokens(prompt),
                      "completion_tokens_est": estimate_tokens(text) if text else 0}
            if isinstance(usage, dict):
                record["prompt_tokens"] = usage.get("prompt_tokens")
                record["completion_tokens"] = usage.get("completion_tokens")
            if shrunk:
                record["shrunk"] = shrunk
            self._write(record)

    def _ask(self, batch: list[SummaryRequest], prompt: str, schema: dict[str, Any] | None, shrunk_keys: list[str],
             abort: threading.Event, failed: list[str]) -> str | None:
        """The answer to ``prompt``, retried; None (and why, appended to ``failed``) when a transient
        error outlasted the retries."""
        attempts = retrying(self.config.llm_retries + 1, base=self.config.llm_retry_delay,
                            cap=self.config.llm_retry_max_delay, sleep=self._sleeper(abort))
        try:
            for attempt in attempts:
                with attempt:
                    return self._call(batch, prompt, shrunk_keys, attempt.retry_state.attempt_number, abort, schema)
        except LLMError as exc:
            if not is_transient(exc):
                raise
            failed.append(f"LLM call failed after {self.config.llm_retries + 1} attempt(s): {exc}")
        return None

    def _run_batch(self, batch: list[SummaryRequest], shrunk: set[str],
                   abort: threading.Event) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
        """Parsed answers of one batch and, for the keys without an accepted answer, why."""
        shrunk_keys = [r.key for r in batch if r.key in shrunk]
        failed: list[str] = []

        def ask(prompt: str, schema: dict[str, Any] | None = None) -> str | None:
            return self._ask(batch, prompt, schema, shrunk_keys, abort, failed)

        if self.config.prompt_style == "grounded" and len(batch) == 1 and batch[0].level >= 1:
            try:
                response = self._grounded(batch[0], ask)
            except NoGroundedTitle as exc:
                return {}, {batch[0].key: str(exc)}
        else:
            response = ask(build_prompt(batch, self.config))
        if failed:
            return {}, {r.key: failed[0] for r in batch}
        parsed = parse_response(response, [r.key for r in batch])
        reason = "missing from the LLM answer" if parsed else "the LLM answer could not be parsed"
        reasons = {r.key: reason for r in batch if r.key not in parsed}
        for r in batch:
            if r.key not in parsed:
                continue
            if copied_example(*parsed[r.key]):
                reasons[r.key] = COPIED_EXAMPLE
            elif r.level >= 1 and copied_title(parsed[r.key][0], r.samples):
                reasons[r.key] = COPIED_TITLE
            else:
                continue
            del parsed[r.key]
        return parsed, reasons

    def _grounded(self, req: SummaryRequest, ask: Callable[..., str | None]) -> str | None:
        """prompt_style="grounded": candidate titles from the cluster's own words, the best kept."""
        grounding, level = self.grounding, self._level_requests
        choose = None
        if grounding is not None and level:
            def choose(titles: list[str]) -> int:
                return grounding.best(req.key, titles, level)
        return grounded_answer(req, self.config, ask, choose)

    def _gate(self, pool: ThreadPoolExecutor, answers: dict[str, tuple[str, str]],
              fitted: dict[str, SummaryRequest], shrunk: set[str], abort: threading.Event) -> dict[str, str]:
        """The title gate (title_quality.gate_answers) on the answers of clusters; a rejected answer is
        asked again once with the reason, and what fails again is returned (key -> why) for the fallback."""
        level = self._level_requests or [fitted[k] for k in answers]
        first = {k: a for k, a in answers.items() if fitted[k].level >= 1}
        rejected = gate_answers(first, fitted, level, self.grounding)
        if not rejected:
            return {}
        for key in rejected:
            del answers[key]
        self._write({"event": "title_rejected", "model": self.model_id, "keys": list(rejected),
                     "reasons": rejected})
        # fitted again: the reason adds tokens to a prompt that may have been fitted to the window exactly
        again = [self._fit(dataclasses.replace(fitted[k], feedback=why))[0] for k, why in rejected.items()]
        futures = {pool.submit(contextvars.copy_context().run, self._run_batch, [r], shrunk, abort): r for r in again}
        new: dict[str, tuple[str, str]] = {}
        final: dict[str, str] = {}
        try:
            for fut in futures:
                parsed, why = fut.result()
                key = futures[fut].key
                if key in parsed:
                    new[key] = parsed[key]
                else:
                    final[key] = f"{_short(rejected[key])}; asked again: {why.get(key, 'no answer')}"
        except BaseException:
            abort.set()
            for fut in futures:
                fut.cancel()
            raise
        kept = {k: a[0] for k, a in answers.items() if fitted[k].level >= 1}
        for key, why in gate_answers(new, fitted, level, self.grounding, accepted=kept).items():
            final[key] = f"{_short(rejected[key])}; asked again: {_short(why)}"
            del new[key]
        answers.update(new)
        return final

    def _describe_again(self, req: SummaryRequest, title: str, why: str, abort: threading.Event) -> str:
        """The description of ``title`` asked once more, saying ``why`` the first was rejected ("" if none)."""
        # the grounded style's grammar makes the sentence name the terms the test asks for
        terms = terms_to_name(title, req.keywords) if self.config.prompt_style == "grounded" else []
        prompt = description_prompt(req, self.config, title, reask_feedback(why, req.keywords), terms)
        schema = description_schema(terms) if self.config.prompt_style == "grounded" else {
            "type": "object", "properties": {"description": {"type": "string", "minLength": 1}},
            "required": ["description"]}
        return parse_description(self._ask([req], prompt, schema, [], abort, []))

    def _descriptions(self, pool: ThreadPoolExecutor, answers: dict[str, tuple[str, str]],
                      fitted: dict[str, SummaryRequest], by_key: dict[str, SummaryRequest],
                      abort: threading.Event) -> dict[str, str]:
        """The description test (descriptions.description_problem) on the answers of clusters: a
        rejected description is asked again once with the reason, and one that fails again is replaced
        by the extractive description. Returns the marks (key -> descriptions.REASKED / EXTRACTIVE)."""
        def problem(key: str, desc: str) -> str | None:
            junk = junk_reason(desc, title=False)
            if junk:
                return junk
            return description_problem(desc, answers[key][0], [t for _, t in by_key[key].samples],
                                       fitted[key].keywords)

        rejected = {k: why for k, (_, d) in answers.items() if fitted[k].level >= 1 and (why := problem(k, d))}
        if not rejected:
            return {}
        self._write({"event": "description_rejected", "model": self.model_id, "keys": list(rejected),
                     "reasons": rejected})
        futures = {pool.submit(contextvars.copy_context().run, self._describe_again, fitted[k], answers[k][0], why,
                               abort): k for k, why in rejected.items()}
        marks: dict[str, str] = {}
        extractive: dict[str, str] = {}
        try:
            for fut, key in futures.items():
                desc = fut.result()
                why = problem(key, desc) if desc else "no answer"
                if why is None:
                    marks[key] = REASKED
                else:
                    req = by_key[key]
                    desc = extractive_description(fitted[key].keywords, [t for _, t in req.samples],
                                                  n_items=req.n_items)
                    marks[key], extractive[key] = EXTRACTIVE, f"{rejected[key]}; asked again: {why}"
                answers[key] = (answers[key][0], desc)
        except BaseException:
            abort.set()
            for fut in futures:
                fut.cancel()
            raise
        if extractive:
            self._write({"event": "description_extractive", "model": self.model_id, "keys": list(extractive),
                         "reasons": extractive})
        return marks

    # --- public ---
    def summarize(self, requests: list[SummaryRequest], *, level_requests: list[SummaryRequest] | None = None,
                  progress: ProgressFn | None = None) -> dict[str, Summary]:
        """A :class:`Summary` for every request key (see the module docstring for the strategy);
        ``progress(done, total)`` follows the answered requests."""
        if not requests:
            return {}
        by_key = {r.key: r for r in requests}
        if len(by_key) != len(requests):
            raise ValueError("summary request keys must be unique")
        cfg = self.config
        self._level_requests = [r for r in (level_requests or requests) if r.level >= 1]
        fitted, shrunk = {}, set()
        for r in self._with_keywords(requests, level_requests):
            fitted[r.key], was_shrunk = self._fit(r)
            if was_shrunk:
                shrunk.add(r.key)
        if shrunk:
            logger.info("Shrunk the prompt blocks of %d cluster(s) to fit the prompt token budget (%d).", len(shrunk),
                        self._budget)
        cost = {k: self._block_tokens(r) for k, r in fitted.items()}

        total = len(requests)
        answers: dict[str, tuple[str, str]] = {}
        reasons: dict[str, str] = {}
        pending = [r.key for r in requests]
        size = cfg.llm_initial_batch_size
        abort = threading.Event()
        with ThreadPoolExecutor(max_workers=cfg.llm_concurrency, thread_name_prefix="hercules-llm") as pool:
            while pending:
                batches = plan_batches([fitted[k] for k in pending], cost, cfg, size, budget=self._budget,
                                       count=self._count)
                futures: dict[Future, list[SummaryRequest]] = {
                    # each batch runs in a copy of the caller's context (its log routing, e.g. the app's per-run log)
                    pool.submit(contextvars.copy_context().run, self._run_batch, b, shrunk, abort): b for b in batches}
                try:
                    remaining = set(futures)
                    while remaining:
                        done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                        for fut in done:
                            parsed, why = fut.result()
                            answers.update(parsed)
                            for r in futures[fut]:
                                if r.key not in parsed:
                                    reasons[r.key] = why.get(r.key) or "missing from the LLM answer"
                            if progress is not None:
                                progress(len(answers), total)
                except BaseException:
                    abort.set()
                    for fut in futures:
                        fut.cancel()
                    raise
                pending = [k for k in pending if k not in answers]
                if not pending or size <= cfg.llm_min_batch_size:
                    break
                size = max(cfg.llm_min_batch_size, int(size / cfg.llm_batch_reduction_factor))
                for key in pending:
                    if reasons.get(key) == COPIED_TITLE and not fitted[key].feedback:
                        self._refit(fitted, shrunk, cost, dataclasses.replace(fitted[key], feedback=COPIED_FEEDBACK))
            marks: dict[str, str] = {}
            if cfg.title_gate:
                reasons.update(self._gate(pool, answers, fitted, shrunk, abort))
                pending = [k for k in by_key if k not in answers]
                marks = self._descriptions(pool, answers, fitted, by_key, abort)

        results = {}
        for key, (title, desc) in answers.items():
            if by_key[key].level == 0:
                title, desc = clean_text(title, cfg.l0_title_max_chars), clean_text(desc, cfg.l0_description_max_chars)
            results[key] = Summary(title=title, description=desc, source=self.model_id,
                                   description_mark=marks.get(key, ""))
        if pending:
            results.update(self._fall_back([by_key[k] for k in pending], reasons, level_requests or requests))
            if progress is not None:
                progress(total, total)
        return results

    def _with_keywords(self, requests: list[SummaryRequest],
                       level_requests: list[SummaryRequest] | None) -> list[SummaryRequest]:
        """The requests with the fallback's keywords (when it is a ``KeywordSource``) for the prompt."""
        if not isinstance(self.fallback, KeywordSource):
            return requests
        keywords_for = self.fallback.keywords_for
        kw = keywords_for(requests, level_requests or requests)
        out = [dataclasses.replace(r, keywords=list(kw[r.key])) if kw.get(r.key) and not r.keywords else r
               for r in requests]
        if self.config.prompt_style == "full" or self.grounding is None or len(self._level_requests) < 2:
            return out
        # one-cluster prompts also show what the nearest other clusters are about
        every = keywords_for(self._level_requests, self._level_requests)
        return [dataclasses.replace(r, sibling_keywords=[w for n in self.grounding.neighbours(
                    r.key, self._level_requests, SIBLINGS_SHOWN) for w in every.get(n, [])[:2]])
                if r.level >= 1 and not r.sibling_keywords else r for r in out]

    def _fall_back(self, failed: list[SummaryRequest], reasons: dict[str, str],
                   level_requests: list[SummaryRequest]) -> dict[str, Summary]:
        keys = [r.key for r in failed]
        errors = {k: reasons.get(k, "no answer") for k in keys}
        logger.warning("%d of the level-%d summaries came from %r because %s failed for them (e.g. %s: %s).",
                       len(keys), failed[0].level, self.fallback.model_id, self.model_id, keys[0], errors[keys[0]])
        self._write({"event": "llm_fallback", "model": self.model_id, "fallback_model": self.fallback.model_id,
                     "level": failed[0].level, "keys": keys, "errors": errors})
        got = self.fallback.summarize(failed, level_requests=level_requests)
        out = {}
        for r in failed:
            s = got.get(r.key)
            if s is None:  # a fallback that also fails gets an honest placeholder, never made-up text
                s = Summary(title="Untitled", description=f"No summary available ({errors[r.key]}).", source="none")
            out[r.key] = Summary(title=s.title, description=s.description, source=self.fallback.model_id,
                                 fallback=True, error=errors[r.key])
        return out
