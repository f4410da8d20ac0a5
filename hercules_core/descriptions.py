"""Descriptions that add information: the test every cluster description passes, the re-ask, the
extractive fallback, and the ``description_*`` figures of the title-quality section.

A description is accepted (:func:`description_problem`) when it

- is not the title: after dropping case, punctuation, stop words and a few words that say nothing
  about a subject ("items", "about", "various"), it has a word (stem) the title lacks;
- is not a copy of one sample: no run of consecutive words shared with one sample covers two
  thirds or more of the description (at least ``_COPY_MIN_RUN`` words, or the whole sample);
- names at least two of the cluster's distinctive terms (the c-TF-IDF keywords the summariser
  shows in the prompt; a term counts when the stems of all its words occur), or all of them when
  the cluster has fewer. Clusters without keywords (numeric data) skip this test.

An LLM description that fails is asked again once with the reason (:func:`description_prompt`);
one that fails again is replaced by :func:`extractive_description` (the keywords and the two most
central samples, shortened) and marked ``extractive`` (``Level.description_marks``).
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Iterable, Sequence

import numpy as np

from .config import HerculesConfig
from .keywords import STOP_WORDS, stem
from .prompts import build_compact_prompt, clean_text
from .summarize_types import SummaryRequest

REASKED = "reasked"  # accepted when asked again
EXTRACTIVE = "extractive"  # built from keywords and samples after the re-ask failed too
MARKS = ("", REASKED, EXTRACTIVE)
MIN_TERMS = 2  # distinctive terms a description must name
_COPY_SHARE = 2 / 3  # a run copied from one sample covering this share of the description is a copy
_COPY_MIN_RUN = 6  # ... of at least this many words (or the whole sample)
EXCERPT_WORDS = 12  # words of each central sample quoted by the extractive description
_EXCERPT_ALONE = 6  # ... when only one sample exists (so the quote stays under the copy share)
KEYWORDS_SHOWN = 8
DESCRIPTION_MAX_CHARS = 400  # an answer to the re-ask is cut to this
# words a description adds to its title without adding information ("Items about X", "Various X topics")
_EMPTY_WORDS = frozenset("""
item items text texts example examples sample samples group groups cluster clusters topic topics subject
subjects theme themes various related relating regarding concerning discussing discusses discuss describe
describes describing mention mentions mentioning include includes including collection set sets type types
short quotes quote sentence sentences statement statements mostly mainly general""".split()) | STOP_WORDS
_TOKEN = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
_POSSESSIVE = re.compile(r"['’]s$")


def _tokens(text: Any) -> list[str]:
    """Lowercase words (letters only), possessive 's dropped: "Kirk's log, 2nd" -> kirk, log, nd."""
    return [_POSSESSIVE.sub("", w) for w in _TOKEN.findall(str(text or "").lower())]


def _content_stems(text: Any) -> set[str]:
    return {stem(w) for w in _tokens(text) if w not in _EMPTY_WORDS and len(w) > 1}


def is_title_copy(description: Any, title: Any) -> bool:
    """Whether ``description`` says nothing its title does not: no content word (stem) beyond the
    title's ("Stardate unknown and kirk." for "Stardate unknown and kirk", "War and violence in
    war" for "War and violence", an empty description)."""
    return not (_content_stems(description) - _content_stems(title))


def _longest_run(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest run of consecutive words common to ``a`` and ``b``."""
    if not a or not b:
        return 0
    prev = [0] * (len(b) + 1)
    best = 0
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                if cur[j] > best:
                    best = cur[j]
        prev = cur
    return best


def is_sample_copy(description: Any, samples: Iterable[str]) -> bool:
    """Whether ``description`` is (mostly) a verbatim copy of one of ``samples``: a run of words
    shared with one sample covers >= 2/3 of it and is the whole sample or >= ``_COPY_MIN_RUN`` words."""
    d = _tokens(description)
    if not d:
        return False
    need = max(1, int(np.ceil(_COPY_SHARE * len(d) - 1e-9)))
    key = set(d)
    for text in samples:
        s = _tokens(text)
        if len(key.intersection(s)) < min(need, _COPY_MIN_RUN):
            continue  # cheap: too few shared words for any long run
        run = _longest_run(d, s)
        if run >= need and (run >= _COPY_MIN_RUN or run == len(s)):
            return True
    return False


def named_terms(description: Any, keywords: Sequence[str]) -> list[str]:
    """The ``keywords`` that ``description`` names (every word of the term, by stem)."""
    stems = {stem(w) for w in _tokens(description)}
    out = []
    for k in keywords:
        words = [stem(w) for w in _tokens(k)]
        if words and all(w in stems for w in words) and k not in out:
            out.append(k)
    return out


def terms_needed(keywords: Sequence[str]) -> int:
    return min(MIN_TERMS, len(keywords))


def description_problem(description: Any, title: Any, samples: Iterable[str],
                        keywords: Sequence[str]) -> str | None:
    """Why ``description`` adds no information to ``title`` (the module docstring's tests), else None.
    The reason is written to be shown to the model when it is asked again."""
    if not _tokens(description):
        return "it is empty"
    if is_title_copy(description, title):
        return "it only repeats the title"
    if is_sample_copy(description, samples):
        return "it copies one of the examples"
    need = terms_needed(keywords)
    if len(named_terms(description, keywords)) < need:
        return f"it names fewer than {need} of the group's distinctive words"
    return None


def reask_feedback(problem: str, keywords: Sequence[str]) -> str:
    shown = ", ".join(clean_text(k, 40) for k in keywords[:KEYWORDS_SHOWN])
    return (f"Your description was rejected: {problem}. Write one new sentence in your own words that "
            "says what the examples have in common" + (f", using at least two of these words: {shown}." if shown
                                                       else "."))


def terms_to_name(title: Any, keywords: Sequence[str], count: int = MIN_TERMS) -> list[str]:
    """The first ``count`` of ``keywords`` (in their order) that a description must name to pass
    :func:`description_problem`, preferring terms with a content word the title lacks, so that a
    description naming them is not the title either; [] when fewer than ``count`` are usable."""
    have = _content_stems(title)
    new, old = [], []
    for k in keywords:
        words = _tokens(k)
        if not words or not re.fullmatch(r"[A-Za-z][A-Za-z' -]*", str(k).strip()):
            continue  # digits or symbols: not a literal a sentence writes
        (new if {stem(w) for w in words if w not in _EMPTY_WORDS} - have else old).append(str(k).strip())
    chosen = (new + old)[:count]
    return chosen if len(chosen) == count else []


DESCRIPTION_ASK = "Write one sentence saying what these examples are about"


def description_prompt(req: SummaryRequest, config: HerculesConfig, title: str, feedback: str = "",
                       terms: Sequence[str] = ()) -> str:
    """A one-cluster prompt asking only for the description of ``title`` (the grounded style's second
    call, and every style's re-ask, then with ``feedback``), naming ``terms`` when given."""
    # without the title's feedback (a re-asked title's): the title is settled
    base = build_compact_prompt(dataclasses.replace(req, feedback=""), config).rsplit("\n\n", 1)[0]
    ask = f'\n\nTitle: "{clean_text(title, 80)}".'
    if feedback:
        ask += " " + clean_text(feedback, 600)
    use = (", using the words " + " and ".join(f'"{clean_text(t, 40)}"' for t in terms)) if terms else ""
    return base + ask + f" {DESCRIPTION_ASK}{use}."


def parse_description(raw: str | None) -> str:
    """The description in an answer to :func:`description_prompt`: a JSON string, a JSON object
    with a "description", or plain text; "" when there is none."""
    if raw is None:
        return ""
    try:
        value = json.loads(raw, strict=False)
    except ValueError:
        value = raw
    if isinstance(value, dict):
        value = value.get("description")
    return clean_text(value, DESCRIPTION_MAX_CHARS) if isinstance(value, str) else ""


def _excerpt(text: str, words: int) -> str:
    w = clean_text(text).split()
    return " ".join(w[:words]) + ("…" if len(w) > words else "")


def extractive_description(keywords: Sequence[str], samples: Sequence[str], *, n_items: int | None = None) -> str:
    """The cluster's distinctive terms and its two most central samples (``samples`` in order of
    closeness), shortened: 'Items about a, b, c. Most central: "..."; "..."'. With two or more
    keywords it passes :func:`description_problem` by construction (the keyword summariser's
    descriptions are these)."""
    quotes = [q for q in (_excerpt(s, EXCERPT_WORDS if len(samples) > 1 else _EXCERPT_ALONE)
                          for s in samples[:2]) if q]
    central = (" Most central: " + "; ".join(f'"{q}"' for q in quotes)) if quotes else ""
    if keywords:
        return f"Items about {', '.join(keywords[:KEYWORDS_SHOWN])}.{central}"
    count = f"{n_items} items" if n_items else "Items"
    return f"{count}.{central}" if central else f"{count} without distinctive keywords."


# --------------------------------------------------------------------------- figures

class MemberTexts:
    """The items' texts for the member-copy figure, prepared once for every level of ``h``.

    ``joined``: the texts lower-cased (as :func:`_tokens` does) and joined by newlines, in an order
    where the members of every cluster of every level stand together (sorted by the top level's
    cluster, then the level below's, ...), so that one search covers a cluster's members. Building it
    per level cost ~0.3 s per level at 1M items, most of it fetching the texts in cluster order.
    """

    def __init__(self, h: Any, texts: Sequence[Any]):
        levels = range(1, h.top_level + 1)
        assignments = {lv: h.assignments(lv) for lv in levels}
        order = np.lexsort([assignments[lv] for lv in levels]) if h.top_level else np.arange(len(texts))
        self.texts = np.asarray(texts, dtype=object)[order]
        self.lowered = [str(t).lower() for t in self.texts]
        self.starts = np.concatenate([[0], np.cumsum([len(t) + 1 for t in self.lowered])])
        self.joined = "\n".join(self.lowered)
        self._sorted = {lv: a[order] for lv, a in assignments.items()}

    def spans(self, level: int, k: int) -> np.ndarray:
        """(k, 2): the positions [start, end) in the order of each cluster's members at ``level``."""
        a = self._sorted[level]
        firsts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]]) if len(a) else np.zeros(0, dtype=np.int64)
        out = np.zeros((k, 2), dtype=np.int64)  # an empty cluster: an empty span
        out[a[firsts], 0] = firsts
        out[a[firsts], 1] = np.r_[firsts[1:], len(a)]
        return out


def member_texts(h: Any) -> MemberTexts | None:
    """The items' texts a description could copy (texts, or image captions); None for numeric rows."""
    ds = h.dataset
    if ds.modality == "text" and ds.texts is not None:
        return MemberTexts(h, ds.texts)
    if ds.modality == "image":
        return MemberTexts(h, h.levels[0].descriptions)
    return None  # numeric rows: a description cannot copy one


def _copied_run(d: list[str]) -> re.Pattern[str]:
    """What a text must hold to be copied by a description with words ``d``: a run covering 2/3 of
    the description holds its middle third, and in a text those words stand in a row, each perhaps
    with a possessive 's, separated by characters that are not letters. A prefilter: whatever it
    misses is no copy, what it finds is then checked word by word (:func:`is_sample_copy`)."""
    third = len(d) // 3
    mid = d[third:max(third + 1, (2 * len(d)) // 3)]
    return re.compile(r"(?:['’]s)?[\W\d_]+".join(map(re.escape, mid)))


def _copies_a_member(description: str, texts: MemberTexts, start: int, end: int) -> bool:
    """Whether ``description`` copies one of the texts at positions [start, end) of ``texts``."""
    d = _tokens(description)
    if len(d) < 2 or start >= end:
        return False
    run = _copied_run(d)
    # one search over all the members' text first: most descriptions copy nobody, and testing each
    # member in Python cost ~1 s per level at 1M items
    if not run.search(texts.joined, int(texts.starts[start]), int(texts.starts[end]) - 1):
        return False
    return is_sample_copy(description, [texts.texts[i] for i in range(start, end) if run.search(texts.lowered[i])])


def level_description_quality(h: Any, level: int, texts: MemberTexts | None = None) -> dict[str, Any]:
    """The ``description_*`` figures of one level (JSON-serialisable): descriptions that only repeat
    the title, that copy one member's text (checked against every member), that were accepted when
    asked again, and that are extractive (counts, and shares of the level's clusters). The marks are
    None for models saved before they were recorded. ``texts``: :func:`member_texts` of ``h``, when
    the caller computes the figures of several levels (else they are prepared here)."""
    lv = h.levels[level]
    k = len(lv)
    descriptions = list(lv.descriptions or []) + [""] * (k - len(lv.descriptions or []))
    title_copies = sum(is_title_copy(d, t) for d, t in zip(descriptions, lv.titles))
    texts = texts if texts is not None else member_texts(h)
    sample_copies = None
    if texts is not None:
        spans = texts.spans(level, k)
        sample_copies = sum(_copies_a_member(descriptions[j], texts, *spans[j]) for j in range(k))
    marks = list(getattr(lv, "description_marks", None) or [])
    known = len(marks) == k
    reasked = sum(m == REASKED for m in marks) if known else None
    extractive = sum(m == EXTRACTIVE for m in marks) if known else None

    def share(n: int | None) -> float | None:
        return None if n is None or not k else n / k

    return {"description_title_copies": title_copies, "description_title_copy_share": share(title_copies),
            "description_sample_copies": sample_copies, "description_sample_copy_share": share(sample_copies),
            "description_reasked": reasked, "description_reasked_share": share(reasked),
            "description_extractive": extractive, "description_extractive_share": share(extractive)}


def format_line(level: int, q: dict[str, Any]) -> str | None:
    """The CLI's closing line of one level: ``descriptions L1: 0 repeat the title, 0 copy a sample,
    3 asked again, 1 extractive``; None for evaluations without the figures."""
    if "description_title_copies" not in q:
        return None
    n = q.get("n_clusters") or 0

    def part(key: str, what: str) -> str:
        v = q.get(key)
        return f"{'n/a' if v is None else v}/{n} {what}"

    return (f"descriptions L{level}: " + ", ".join([
        part("description_title_copies", "repeat the title"), part("description_sample_copies", "copy a sample"),
        part("description_reasked", "accepted when asked again"), part("description_extractive", "extractive")]))
