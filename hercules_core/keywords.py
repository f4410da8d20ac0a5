"""Keyword summaries without an LLM: c-TF-IDF terms for texts, distinctive variables for numbers.

Used as the fallback of :class:`~hercules_core.summarize.LLMSummarizer` and as a summariser of its
own when no LLM is configured. Deterministic and vectorised: one sparse product per call.
"""

from __future__ import annotations

import re

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer

from .config import HerculesConfig
from .dataset import Dataset
from .prompts import clean_text
from .summarize_types import ProgressFn, Summary, SummaryRequest

_WORDS = re.compile(r"\S+")
_SAMPLE_CHARS = 150
_MIN_Z = 0.1  # variables closer than this (in standard deviations) to the overall mean are "typical"


def _first_words(text: str, n: int, max_chars: int) -> str:
    return clean_text(" ".join(_WORDS.findall(clean_text(text))[:n]), max_chars)


def _cap(word: str) -> str:
    return word[:1].upper() + word[1:]


def _indicator(requests: list[SummaryRequest], n_items: int) -> sp.csr_matrix:
    """Rows = requests, columns = L0 items, 1 where the item is a member."""
    members = [np.asarray(r.member_indices, dtype=np.int64) for r in requests]
    indptr = np.concatenate([[0], np.cumsum([len(m) for m in members])])
    indices = np.concatenate(members) if members else np.empty(0, np.int64)
    data = np.ones(len(indices), dtype=np.float64)
    return sp.csr_matrix((data, indices, indptr), shape=(len(requests), n_items))


class KeywordSummarizer:
    """Titles and descriptions from class-based TF-IDF keywords (texts) or variable z-scores (numbers).

    Parameters
    ----------
    dataset : the prepared dataset (numeric modality uses its standardised and raw values).
    l0_texts : one text per L0 item (texts, captions, ...) for the vocabulary.
    n_title_words, n_desc_words : how many keywords go into titles and descriptions.
    config : optional; supplies L0 length limits and the numeric precision.
    """

    model_id = "keywords"

    def __init__(self, dataset: Dataset, l0_texts: list[str], *, n_title_words: int = 3, n_desc_words: int = 8,
                 config: HerculesConfig | None = None):
        self.dataset = dataset
        self.l0_texts = list(l0_texts)
        self.n_title_words = n_title_words
        self.n_desc_words = n_desc_words
        self.config = config or HerculesConfig()
        self._numeric = dataset.modality == "numeric" and dataset.numeric is not None
        self._vocab = np.empty(0, dtype=object)
        self._dtm: sp.csr_matrix | None = None
        if not self._numeric and self.l0_texts:
            # fitted once: every level reuses the same document-term matrix
            vectorizer = CountVectorizer(stop_words="english", token_pattern=r"(?u)\b[^\W\d_]{2,}\b",
                                         min_df=1, max_features=20000, dtype=np.float64, binary=True)
            try:
                self._dtm = vectorizer.fit_transform(self.l0_texts).tocsr()
                self._vocab = vectorizer.get_feature_names_out()
            except ValueError:  # empty vocabulary: every word is a stop word or too short
                self._dtm = None

    # --- public ---
    def summarize(self, requests: list[SummaryRequest], *, level_requests: list[SummaryRequest] | None = None,
                  progress: ProgressFn | None = None) -> dict[str, Summary]:
        if not requests:
            return {}
        out: dict[str, Summary] = {}
        items = [r for r in requests if r.level == 0]
        clusters = [r for r in requests if r.level != 0]
        if self._numeric:
            out.update(self._numeric_summaries(requests))
            return out
        for r in items:
            out[r.key] = self._item_summary(r)
        if clusters:
            base = [r for r in (level_requests or clusters) if r.level != 0] or clusters
            out.update(self._text_summaries(clusters, base))
        return out

    def keywords_for(self, requests: list[SummaryRequest],
                     level_requests: list[SummaryRequest] | None = None) -> dict[str, list[str]]:
        """The distinctive c-TF-IDF words of each cluster request, best first (what the titles use).

        Level-0 requests and numeric data get no keywords (an item speaks for itself; numeric
        clusters have their statistics).
        """
        clusters = [r for r in requests if r.level != 0]
        if self._numeric or not clusters:
            return {}
        base = [r for r in (level_requests or clusters) if r.level != 0] or clusters
        return {r.key: terms for r, terms in zip(clusters, self._top_terms(clusters, base)) if terms}

    # --- text ---
    def _item_text(self, r: SummaryRequest) -> str:
        if len(r.member_indices) == 1 and int(r.member_indices[0]) < len(self.l0_texts):
            text = clean_text(self.l0_texts[int(r.member_indices[0])])
            if text:
                return text
        return clean_text(r.samples[0][1]) if r.samples else ""

    def _item_summary(self, r: SummaryRequest) -> Summary:
        text = self._item_text(r)
        title = _first_words(text, 8, self.config.l0_title_max_chars) or f"Item {r.key}"
        desc = clean_text(text, self.config.l0_description_max_chars) or "Empty item."
        return Summary(title=title, description=desc, source=self.model_id)

    def _top_terms(self, requests: list[SummaryRequest], base: list[SummaryRequest]) -> list[list[str]]:
        """The ``n_desc_words`` best c-TF-IDF terms of each request, best first."""
        if self._dtm is None:
            return [[] for _ in requests]
        n_items = self._dtm.shape[0]
        base_keys = {r.key for r in base}
        extra = [r for r in requests if r.key not in base_keys]
        rows = base + extra
        tf = (_indicator(rows, n_items) @ self._dtm).tocsr()  # class x term counts
        tf_base = tf[: len(base)]
        freq = np.asarray(tf_base.sum(axis=0)).ravel()  # term frequency over the level's classes
        avg_words = max(float(freq.sum()) / max(len(base), 1), 1.0)
        idf = np.log1p(avg_words / np.where(freq > 0, freq, 1.0))
        weights = (tf @ sp.diags(idf)).tocsr()
        row_of = {r.key: i for i, r in enumerate(rows)}
        n = self.n_desc_words
        out = []
        for r in requests:
            lo, hi = weights.indptr[row_of[r.key]], weights.indptr[row_of[r.key] + 1]
            data, idx = weights.data[lo:hi], weights.indices[lo:hi]
            # A word counts (binary) once per item; in a cluster of several items, a word that only
            # one item uses describes that item, not the cluster (c-TF-IDF alone favours such rare words).
            keep = data > 0
            if r.n_items >= 4:
                keep &= tf[row_of[r.key]].toarray().ravel()[idx] >= 2
            data, idx = data[keep], idx[keep]
            if len(data) > n:
                # exact top n, ties broken alphabetically (vocabulary indices are sorted)
                cut = np.partition(data, len(data) - n)[len(data) - n]
                sel = data >= cut
                data, idx = data[sel], idx[sel]
            order = np.lexsort((idx, -data))[:n]
            out.append([str(self._vocab[i]) for i in idx[order]])
        return out

    def _text_summaries(self, requests: list[SummaryRequest], base: list[SummaryRequest]) -> dict[str, Summary]:
        out = {}
        for r, terms in zip(requests, self._top_terms(requests, base)):
            sample = clean_text(r.samples[0][1], _SAMPLE_CHARS) if r.samples else ""
            central = f' Most central: "{sample}"' if sample else ""
            if terms:
                title = ", ".join(_cap(t) for t in terms[: self.n_title_words])
                desc = f"Items about {', '.join(terms)}.{central}"
            elif sample:  # no usable keyword: the most central sample speaks for the cluster
                title = _first_words(sample, max(self.n_title_words, 5), 80)
                desc = f"{r.n_items} items such as:{central}"
            else:
                title = f"Cluster {r.key}"
                desc = f"{r.n_items} items without distinctive keywords."
            out[r.key] = Summary(title=title, description=desc, source=self.model_id)
        return out

    # --- numeric ---
    def _numeric_summaries(self, requests: list[SummaryRequest]) -> dict[str, Summary]:
        ds = self.dataset
        z_items = np.asarray(ds.numeric, dtype=np.float64)  # standardised: a mean here is a z-score
        raw = np.asarray(ds.numeric_raw if ds.numeric_raw is not None else ds.numeric, dtype=np.float64)
        p = z_items.shape[1]
        names = list(ds.feature_names or []) + [f"v{j}" for j in range(len(ds.feature_names or []), p)]
        meta = ds.numeric_metadata or {}
        ind = _indicator(requests, len(z_items))
        sizes = np.maximum(np.asarray(ind.sum(axis=1)).ravel(), 1.0)[:, None]
        z = np.asarray(ind @ z_items) / sizes
        means = np.asarray(ind @ raw) / sizes
        rank = np.argsort(-np.abs(z), axis=1, kind="stable")
        prec = self.config.prompt_numeric_stats_precision
        n_desc = min(5, self.n_desc_words, p)
        out = {}
        for i, r in enumerate(requests):
            top = [v for v in rank[i] if abs(z[i, v]) >= _MIN_Z]
            noun = "Item" if r.level == 0 else "Items"
            if not top:
                title = "Typical values"
                desc = f"{noun} close to the overall average on every variable."
            else:
                parts = [f"{'high' if z[i, v] > 0 else 'low'} {names[v]}" for v in top[: self.n_title_words]]
                title = _cap(", ".join(parts))
                listed = []
                for v in top[:n_desc]:
                    unit = (meta.get(names[v]) or {}).get("unit") or ""
                    listed.append(f"{'high' if z[i, v] > 0 else 'low'} {names[v]} "
                                  f"({'value' if r.level == 0 else 'mean'} {means[i, v]:.{prec}f}"
                                  f"{' ' + unit if unit else ''}, {z[i, v]:+.1f} sd)")
                desc = f"{noun} with {', '.join(listed)}."
            if r.level == 0:
                title = clean_text(title, self.config.l0_title_max_chars)
                desc = clean_text(desc, self.config.l0_description_max_chars)
            out[r.key] = Summary(title=title, description=desc, source=self.model_id)
        return out
