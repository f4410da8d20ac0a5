"""Keyword summaries without an LLM: c-TF-IDF terms for texts, distinctive variables for numbers.

Used as the fallback of :class:`~hercules_core.summarize.LLMSummarizer` and as a summariser of its
own when no LLM is configured. Deterministic and vectorised: one sparse product per call.
"""

from __future__ import annotations

import os
import re
from array import array
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from .config import HerculesConfig
from .dataset import Dataset
from .prompts import clean_text
from .summarize_types import ProgressFn, Summary, SummaryRequest

_WORDS = re.compile(r"\S+")
# A word: two or more letters, with inner apostrophes ("pudd'nhead", "don't": the latter is a stop
# word), between non-word characters or digits (digits end a clause: "covid19" is the word "covid",
# "abc_def" none). The lookbehind follows the first letter so that the regex engine can skip ahead
# to letters; the group makes split() return the gaps between the words too.
_TERM = re.compile(r"([^\W\d_](?<![^\W\d].)[^\W\d_]+(?:['’][^\W\d_]+)*)(?![^\W\d])")
# a one-character gap that ends a clause (punctuation, a line or tab break, a digit): no phrase across it
_CLAUSE_BREAK = frozenset(".,;:!?()[]\"“”…/\n\t-")
_MAX_TERMS = 50000  # vocabulary size: the most frequent terms
# conversational filler that c-TF-IDF ranks high in short texts but that names no subject
FILLER_WORDS = frozenset("""
said says say saying like likes liked people just got get gets getting going goes go went gone come comes
came know knows knew think thinks thought make makes made want wants wanted really thing things way lot
lots good bad great little big new old sure maybe actually probably pretty kind sort stuff tell told ask
asked let yes oh ok okay yeah gonna wanna need needs needed use used using try tried look looks looked
seen see sees saw dont don't didn't doesn't isn't wasn't aren't won't can't couldn't wouldn't shouldn't
it's i'm i've i'll i'd you're you've you'll he's she's that's there's what's let's we're they're
ll ve don didn doesn isn wasn aren won mr mrs ms dr st day days time times year years man men woman
one two three first second last long right left end best better
""".split())
STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | FILLER_WORDS
_CANDIDATES = 12  # best terms per cluster considered for its title
_MMR_LAMBDA = 0.7
# file-name words that say nothing about an image's content
_FILE_NOISE = frozenset("image images img pic pics picture pictures photo photos file files scan scans "
                        "screenshot dsc dscn dcim jpg jpeg png gif bmp tif tiff webp copy final new".split())
_PATH_TOKEN = re.compile(r"[^\W\d_]{3,}")
_SAMPLE_CHARS = 150
_MIN_Z = 0.1  # variables closer than this (in standard deviations) to the overall mean are "typical"


def _first_words(text: str, n: int, max_chars: int) -> str:
    return clean_text(" ".join(_WORDS.findall(clean_text(text))[:n]), max_chars)


def _cap(word: str) -> str:
    return word[:1].upper() + word[1:]


def _terms_of(text: str) -> list[str]:
    """Words and two-word phrases of ``text`` without stop or filler words; a phrase is two words
    that stand side by side in one clause (one character apart, never across a stop word or punctuation)."""
    out = []
    prev = None
    parts = _TERM.split(str(text).lower())  # gap, word, gap, word, ..., gap
    for gap, w in zip(parts[::2], parts[1::2]):
        if w[-2:] in ("'s", "’s"):  # "linux's" is the term "linux" ("Linux, Microsoft, Linux's")
            w = w[:-2]
        if w in STOP_WORDS:
            prev = None
            continue
        out.append(w)
        if prev is not None and len(gap) == 1 and gap not in _CLAUSE_BREAK and not gap.isdecimal():
            out.append(f"{prev} {w}")
        prev = w
    return out


def _document_terms(texts: list[str], max_terms: int = _MAX_TERMS) -> tuple[sp.csr_matrix, np.ndarray]:
    """The binary document-term matrix (float64 CSR, sorted indices) of ``texts`` over the terms of
    :func:`_terms_of` and its vocabulary (sorted): the ``max_terms`` terms most documents use, ties
    cut as scikit-learn's ``CountVectorizer(analyzer=_terms_of, binary=True, max_features=...)``
    cuts them (what this replaces). Each distinct text is analysed once (at 1M items of 20k distinct
    texts: 0.3 s instead of 7 s). ValueError when no text has a term."""
    row_of: dict[str, int] = {}
    codes = np.fromiter((row_of.setdefault(t, len(row_of)) for t in texts), dtype=np.int64, count=len(texts))
    vocab: dict[str, int] = {}
    indices, indptr = array("q"), array("q", [0])
    for text in row_of:
        indices.extend({vocab.setdefault(t, len(vocab)) for t in _terms_of(text)})
        indptr.append(len(indices))
    if not vocab:
        raise ValueError("empty vocabulary: every word is a stop word or too short")
    terms = sorted(vocab)
    column = np.empty(len(terms), dtype=np.int64)  # first-seen id -> alphabetical position
    column[np.fromiter((vocab[t] for t in terms), dtype=np.int64, count=len(terms))] = np.arange(len(terms))
    cols = column[np.frombuffer(indices, dtype=np.int64)]
    rows = np.repeat(np.arange(len(row_of)), np.diff(np.frombuffer(indptr, dtype=np.int64)))
    # documents per term, each distinct text counted as often as it occurs
    df = np.bincount(cols, weights=np.bincount(codes, minlength=len(row_of))[rows].astype(np.float64),
                     minlength=len(terms))
    keep = np.ones(len(terms), dtype=bool)
    if len(terms) > max_terms:  # CountVectorizer's own cut (an unstable argsort), for the same terms
        keep[:] = False
        keep[(-df).argsort()[:max_terms]] = True
    kept = keep[cols]
    new_col = np.cumsum(keep) - 1
    per_row = np.bincount(rows[kept], minlength=len(row_of))
    distinct = sp.csr_matrix((np.ones(int(kept.sum())), new_col[cols[kept]], np.concatenate([[0], np.cumsum(per_row)])),
                             shape=(len(row_of), int(keep.sum())))
    distinct.sort_indices()
    return distinct[codes], np.array(terms, dtype=object)[keep]


def stem(term: str) -> str:
    """A crude stem (dogs -> dog, children -> child) for comparing words, not for showing them."""
    w = term.lower()
    for suffix in ("ies", "es", "s", "ing", "ed", "ren"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            return w[: -len(suffix)]
    return w


def _same_stem(a: str, b: str) -> bool:
    """Two terms that read as a repetition in one title: "dog"/"dogs", "child"/"children",
    "mark twain"/"twain"."""
    sa, sb = {stem(w) for w in a.split()}, {stem(w) for w in b.split()}
    return bool(sa & sb)


def _distinct_stems(terms: list[str], n: int) -> list[str]:
    out: list[str] = []
    for t in terms:
        if not any(_same_stem(t, o) for o in out):
            out.append(t)
        if len(out) == n:
            break
    return out


def _title_terms(terms: list[str], n_words: int) -> list[str]:
    """The first terms of ``terms`` that together have at most ``n_words`` words (at least one term)."""
    out: list[str] = []
    used = 0
    for t in terms:
        w = len(t.split())
        if out and used + w > n_words:
            break
        out.append(t)
        used += w
    return out


def _title_key(terms: list[str]) -> str:
    return " ".join(sorted(terms))


def _coverage(term: str, children: list[tuple[str, str, str]]) -> float:
    """Share of the (shown) children whose title or description uses every word of ``term``."""
    words = set(term.split())
    hits = sum(words <= set(re.findall(r"[^\W\d_]+(?:['’][^\W\d_]+)*", f"{t} {d}".lower()))
               for _, t, d in children)
    return hits / len(children)


def _merge_phrases(vocab: np.ndarray, idx: np.ndarray, data: np.ndarray, counts: np.ndarray,
                   limit: int) -> list[tuple[str, float]]:
    """The best ``limit`` (term, score) of one cluster, best first, where a two-word phrase takes the
    place of its words when most items using them use the phrase ("mark twain", not "mark", "twain")."""
    if not len(idx):
        return []
    top = np.lexsort((idx, -data))[: limit * 3]  # ties broken alphabetically (vocabulary is sorted)
    terms = [(str(vocab[idx[k]]), float(data[k]), float(counts[idx[k]])) for k in top]
    count_of = {t: c for t, _, c in terms}
    score_of = {t: sc for t, sc, _ in terms}
    covered: set[str] = set()
    for t, sc, c in terms:
        parts = t.split()
        if len(parts) != 2:
            continue
        if (all(p in count_of for p in parts) and not covered & set(parts)
                and c >= 0.5 * min(count_of[p] for p in parts)):
            score_of[t] = max(sc, *(score_of[p] for p in parts)) * 1.01
            covered.update(parts)
        else:  # a chain ("cats dogs", "dogs pets") keeps its first phrase and the remaining words
            score_of.pop(t)
    ranked = sorted(((t, sc) for t, sc in score_of.items() if t not in covered), key=lambda x: (-x[1], x[0]))
    return ranked[:limit]


def image_texts(dataset: Dataset, l0_texts: list[str]) -> tuple[list[str], bool]:
    """The texts the keywords of an image run come from, and whether they are captions.

    Captions when there are some; otherwise the informative words of each image's folders and file
    name ("cats/tabby_03.jpg" -> "cats tabby"): words that are not file-type noise and not shared by
    every image (a common root folder says nothing about a cluster).
    """
    from .data import default_l0_descriptions

    paths = list(dataset.image_paths or [])
    if l0_texts and list(l0_texts) != default_l0_descriptions(dataset):
        return list(l0_texts), True
    root = os.path.commonpath([str(Path(p).parent) for p in paths]) if paths else ""
    token_lists = []
    for p in paths:
        rel = os.path.relpath(str(Path(p).with_suffix("")), root) if root else Path(p).stem
        token_lists.append([w for w in _PATH_TOKEN.findall(rel.lower()) if w not in _FILE_NOISE])
    everywhere = set.intersection(*(set(t) for t in token_lists)) if len(token_lists) > 1 else set()
    return [" ".join(w for w in t if w not in everywhere) for t in token_lists], False


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
        self.grounding: Any = None  # a title_quality.Grounding, set by the estimator when it has one
        self._captioned = True
        texts = self.l0_texts
        if dataset.modality == "image" and dataset.image_paths:
            texts, self._captioned = image_texts(dataset, self.l0_texts)
        if not self._numeric and texts:
            # fitted once: every level reuses the same document-term matrix; words and two-word phrases
            try:
                self._dtm, self._vocab = _document_terms(texts)
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
        return {r.key: terms for r, terms in zip(clusters, self._terms(clusters, base)) if terms}

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

    def _terms(self, requests: list[SummaryRequest], base: list[SummaryRequest]) -> list[list[str]]:
        """:meth:`_top_terms` reordered so that the first ``n_title_words`` (the title) of each cluster
        differ from every sibling's and child's: the biggest clusters choose first, a title a sibling already has
        moves on to the next terms. Decided over the whole level, so a subset gets the same answer."""
        base_keys = {r.key for r in base}
        rows = base + [r for r in requests if r.key not in base_keys]
        all_terms = self._top_terms(rows, base)
        n = self.n_title_words
        taken: set[str] = set()
        for i in sorted(range(len(base)), key=lambda i: (-base[i].n_items, i)):
            terms = all_terms[i]
            head = _title_terms(terms, n)
            options = [head] + [head[:-1] + [t] for t in terms[len(head):]
                                if len(" ".join(head[:-1] + [t]).split()) <= n] if head else [[]]
            # a parent is not titled like one of its children either
            kids = {_title_key([w.strip().lower() for w in t.split(",")]) for _, t, _ in base[i].children}
            pick = next((o for o in options if _title_key(o) not in taken | kids), options[0])
            taken.add(_title_key(pick))
            all_terms[i] = pick + [t for t in terms if t not in pick]
        by_key = dict(zip((r.key for r in rows), all_terms))
        return [by_key[r.key] for r in requests]

    def _top_terms(self, requests: list[SummaryRequest], base: list[SummaryRequest]) -> list[list[str]]:
        """The ``n_desc_words`` best terms (words or two-word phrases) of each request, best first.

        c-TF-IDF over the level, then: a phrase replaces its words when they mostly occur together;
        at levels >= 2 terms that several children use weigh more than one child's words; with a
        grounding (the items' embeddings) the terms are picked MMR-style (relevant to this cluster
        rather than to its nearest siblings, and not near-synonyms of each other); words sharing a
        stem with a better one (dog / dogs) are skipped.
        """
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
        cands = []
        for r in requests:
            i = row_of[r.key]
            lo, hi = weights.indptr[i], weights.indptr[i + 1]
            data, idx = weights.data[lo:hi], weights.indices[lo:hi]
            counts = tf[i].toarray().ravel()
            # A word counts (binary) once per item; in a cluster of several items, a word that only
            # one item uses describes that item, not the cluster (c-TF-IDF alone favours such rare words).
            keep = data > 0
            if r.n_items >= 4:
                keep &= counts[idx] >= 2
            data, idx = data[keep], idx[keep]
            if r.level >= 2 and r.children:
                data = data * np.array([0.5 + _coverage(str(self._vocab[j]), r.children) for j in idx])
            cands.append(_merge_phrases(self._vocab, idx, data, counts, _CANDIDATES))
        if self.grounding is not None and base and all(r.level >= 1 for r in base):
            return self._mmr(requests, base, cands)
        return [_distinct_stems([t for t, _ in c], self.n_desc_words) for c in cands]

    def _term_vectors(self, terms: list[str]) -> np.ndarray:
        """A term's embedding: the unit mean of the text embeddings of the items that use it (no
        embedder call: the items' embeddings are already there)."""
        if not hasattr(self, "_column"):
            self._column = {str(t): i for i, t in enumerate(self._vocab)}
        cols = [self._column[t] for t in terms]
        use = self._dtm[:, cols].T.tocsr()  # terms x items, binary
        X = np.asarray(use @ np.asarray(self.grounding.item_vectors, dtype=np.float64))
        n = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.where(n > 0, n, 1.0)

    def _mmr(self, requests: list[SummaryRequest], base: list[SummaryRequest],
             cands: list[list[tuple[str, float]]]) -> list[list[str]]:
        """Maximal marginal relevance over the term embeddings (see :meth:`_top_terms` and
        :meth:`_term_vectors`)."""
        index, C = self.grounding.centroids(base)
        terms = sorted({t for c in cands for t, _ in c})
        if not terms:
            return [[] for _ in requests]
        E = self._term_vectors(terms)
        row = {t: i for i, t in enumerate(terms)}
        out = []
        for r, c in zip(requests, cands):
            if not c or r.key not in index:
                out.append(_distinct_stems([t for t, _ in c], self.n_desc_words))
                continue
            vec = E[[row[t] for t, _ in c]]
            sim = vec @ C.T
            own = sim[:, index[r.key]]
            other = np.delete(sim, index[r.key], axis=1).max(axis=1) if C.shape[0] > 1 else 0.0
            score = np.array([sc for _, sc in c])
            rel = score / score.max() + (own - other)
            chosen: list[int] = []
            while len(chosen) < min(self.n_desc_words, len(c)):
                red = (vec @ vec[chosen].T).max(axis=1) if chosen else np.zeros(len(c))
                mmr = _MMR_LAMBDA * rel - (1 - _MMR_LAMBDA) * red
                pick = next((int(j) for j in np.argsort(-mmr, kind="stable") if int(j) not in chosen
                             and not any(_same_stem(c[j][0], c[k][0]) for k in chosen)), None)
                if pick is None:
                    break
                chosen.append(pick)
            out.append([c[j][0] for j in chosen])
        return out

    def _text_summaries(self, requests: list[SummaryRequest], base: list[SummaryRequest]) -> dict[str, Summary]:
        from .descriptions import extractive_description

        out = {}
        all_terms = self._terms(requests, base)
        for i, (r, terms) in enumerate(zip(requests, all_terms)):
            samples = [t for _, t in r.samples]
            # the terms and the two most central samples: a description that adds to the title
            desc = extractive_description(terms, samples, n_items=r.n_items)
            if terms:
                title = ", ".join(_cap(t) for t in _title_terms(terms, self.n_title_words))
            elif self.dataset.modality == "image" and not self._captioned:
                shown = ", ".join(f"#{clean_text(item_id, 30)}" for item_id, _ in r.samples[:3])
                title = f"Images like {shown}" if shown else f"Images of cluster {r.key}"
                desc = (f"{r.n_items} images without captions or informative file names; the most central: "
                        f"{shown or 'none'}. Add a captioner for titles about their content.")
            elif samples:  # no usable keyword: the most central sample speaks for the cluster
                title = _first_words(clean_text(samples[0], _SAMPLE_CHARS), max(self.n_title_words, 5), 80)
            else:
                title = f"Cluster {r.key}"
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
