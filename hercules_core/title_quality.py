"""Titles people can trust: a measured title-quality score per level, and the gate every LLM title passes.

**Title self-retrieval.** Embed each title with the run's text embedder and rank the level's cluster
centroids by cosine similarity to it; the rank of the title's own cluster gives top-1 (share ranked
first) and MRR (mean of 1/rank). The centroids are the means of the items' text embeddings (texts,
captions or LLM-written item descriptions), so the figure is the same whatever space the clusters
were built in. It rewards a title that shares words and meaning with its own items more than with
the other clusters' items: lexical overlap scores well even when the title is clumsy, and a title that
is right but abstract ("Family life") may lose to a listing of words. It is one signal, not the truth.

The other figures count what a reader notices at once: titles not written by the model (fallbacks),
bare keyword lists ("Eat, Food, Like"), meta-text about the prompt or format ("JSON", "The 58 Text
Items"), junk (a title or description with markup, a URL, a template placeholder, braces or
unbalanced brackets, or mostly punctuation), duplicate titles among siblings, and parents titled like
one of their children. **Fluency** (:func:`title_fluency`, 0-1) scores readability by word pattern:
a title assembled from a cluster's words ("Oz of cup and price", "Children and parents in awkward")
loses a quarter per fault; natural titles (``FLUENCY_REFERENCE``) score 1.

The gate (:func:`gate_answers`) applies the same tests to every LLM answer before it becomes a title.
The ``description_*`` figures (:mod:`.descriptions`) count descriptions that add nothing to their
title or copy one item, and those that were asked again or built extractively.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from .descriptions import MemberTexts, format_line as description_line, level_description_quality, member_texts
from .summarize_types import SummaryRequest

_PLACEHOLDER_SOURCES = ("values", "file name")  # level-0 sources of default numeric / image descriptions
GROUNDED_TOP = 3  # an LLM title must rank its own cluster among this many (of the level's clusters)
GROUNDED_TOLERANCE = 0.05  # ... where a cluster only counts as closer by more than this cosine (noise)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_ARTICLES = {"the", "a", "an"}
# words that describe the prompt, the answer format or the data set rather than a subject
_META_WORDS = {"json", "title", "titles", "description", "descriptions", "cluster", "clusters", "keyword",
               "keywords", "summary", "summaries", "subgroup", "subgroups"}
_META_PHRASES = re.compile(
    r"\b(this|these|the|a|each) (group|groups|cluster|texts?|examples?|items?|topics?|category|categories|samples?)\b"
    r"|\b\d+[\s-]+(?:[a-z]+[\s-]+)?(items?|texts?|examples?|samples?|words?|quotes?|entries|sentences?)\b"
    r"|\btext items?\b|\bkeys?\b.*\bvalues?\b", re.IGNORECASE)
# a title made only of these names a file type, not what the images show
_FILE_WORDS = {"image", "images", "img", "png", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff", "file", "files",
               "photo", "photos", "picture", "pictures", "item", "items", "and", "of"}
# "Eat, Food, Like": two or more comma-separated parts of at most two words each, nothing else
_KEYWORD_LIST = re.compile(r"^\s*[\w'’-]+(?: [\w'’-]+)?(?:\s*,\s*[\w'’-]+(?: [\w'’-]+)?)+\s*$")


# --------------------------------------------------------------------------- single-title tests

def words(text: Any) -> list[str]:
    return _WORD.findall(str(text or "").lower())


def norm_title(title: Any) -> str:
    """Lowercase words without punctuation or a leading article: what makes two titles "the same"."""
    w = words(title)
    while len(w) > 1 and w[0] in _ARTICLES:
        w = w[1:]
    return " ".join(w)


def meta_reason(title: Any) -> str | None:
    """Why ``title`` talks about the prompt, the format or the data set instead of a subject (None if not)."""
    w = words(title)
    if not w:
        return "the title is empty"
    hit = next((x for x in w if x in _META_WORDS), None)
    if hit:
        return f'the title mentions "{hit}"'
    m = _META_PHRASES.search(str(title))
    if m:
        return f'the title says "{m.group(0)}"'
    if all(x in _FILE_WORDS or x.isdigit() for x in w):
        return "the title names only a file type"
    return None


# Junk: what a tiny model writes when it imitates web pages or templates instead of naming a subject
# ("[<b>Forthcoming, FINISHED!</c><i>", "<a href=https://www.youtube...", "[Normal Norms Description]",
# "} } { ... {"). Titles and descriptions are plain prose: none of this belongs in either.
_TAG = re.compile(r"</?[A-Za-z][\w:-]*(?=[\s/>])|\b(?:href|src|style|class)\s*=", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:#\d{1,7}|#x[0-9a-f]{1,6}|[a-z][a-z0-9]{1,31});", re.IGNORECASE)
# "AT&T", "R&D", "Node.js", "Amazon.com" stay: a URL has a scheme, "www." or a known domain with a path
_URL = re.compile(r"\b(?:https?|ftp)://|\bwww\.[\w-]|\b[\w-]+\.(?:com|org|net|edu|gov|io|co|uk|de|fr|ru|jp|"
                  r"info|biz|me|tv|ly|be|nl|eu|ca|au|us)/", re.IGNORECASE)
# {{x}}, {title}, [Norm's Last Name], [... Description], <Your title here>: slots of a template
_PLACEHOLDER = re.compile(r"\{[^{}]*\}|\[[^\[\]]*[^\W\d_][^\[\]]*\]|<\s*(?:your|insert|title|description|name|"
                          r"topic|summary|text|placeholder)\b[^<>]*>", re.IGNORECASE)
_TITLE_PAIRS = ("()", "[]")  # braces are junk anywhere


def _unbalanced(text: str, pairs: tuple[str, ...]) -> bool:
    """Whether a closing bracket comes before its opening one, or an opened one is never closed."""
    for opening, closing in pairs:
        depth = 0
        for c in text:
            depth += (c == opening) - (c == closing)
            if depth < 0:
                return True
        if depth:
            return True
    return False


def _mostly_punctuation(text: str) -> bool:
    """No letter or digit at all, or more punctuation and symbols than letters and digits (and more
    than "C++" has)."""
    alnum = sum(c.isalnum() for c in text)
    other = sum(not c.isalnum() and not c.isspace() for c in text)
    return other > (max(alnum, 3) if alnum else 0)


def junk_reason(text: Any, *, title: bool = True) -> str | None:
    """Why ``text`` (a title, or a description with ``title=False``) is not plain prose: markup, a URL,
    a template placeholder, braces, unbalanced brackets or mostly punctuation; None if it is prose.

    The reasons are shown to the model when it is asked again. A description may leave a parenthesis
    or square bracket open (the answer's length limit can cut it); a title may not.
    """
    s = str(text or "")
    if _PLACEHOLDER.search(s):  # first: "<title>" is a slot to fill more than it is markup
        return "it is a placeholder"
    if _TAG.search(s) or _ENTITY.search(s):
        return "it contains HTML markup"
    if _URL.search(s):
        return "it contains a URL"
    if _mostly_punctuation(s):
        return "it is mostly punctuation"
    if "{" in s or "}" in s or (title and _unbalanced(s, _TITLE_PAIRS)):
        return "it has unbalanced brackets"
    return None


def answer_junk_reason(title: Any, description: Any) -> str | None:
    """Why an answer's title or description is junk (see :func:`junk_reason`), e.g. "its title
    contains HTML markup"; None when both are prose. The gate and the ``title_junk`` figure use it."""
    for part, text, is_title in (("title", title, True), ("description", description, False)):
        why = junk_reason(text, title=is_title)
        if why:
            return f"its {part} {why.removeprefix('it ')}"
    return None


def is_keyword_list(title: Any) -> bool:
    """A bare keyword list such as "Eat, Food, Like" (not a phrase a person would write)."""
    return bool(_KEYWORD_LIST.match(str(title or "")))


# --------------------------------------------------------------------------- fluency

# Readability without a language model: the word-order faults of titles assembled from a cluster's
# words ("Oz of cup and price", "Bartender and dog in replied", "Children and parents in awkward").
# Deterministic and free, so every run (keywords, any LLM, no LLM at all) gets the same figure.
_CONJUNCTIONS = {"and", "or", "nor", "but", "&"}
_PREPOSITIONS = {"of", "in", "for", "with", "on", "at", "to", "from", "by", "about", "as", "into", "over", "under",
                 "without", "between", "among", "against", "through", "after", "before", "during", "near", "vs"}
_FUNCTION_WORDS = _CONJUNCTIONS | _PREPOSITIONS | _ARTICLES
# word endings of verbs, adverbs and adjectives: not what a preposition or a title's last word wants
_NOT_NOUN_END = re.compile(r"(?:[^e]ed|ly|ous|ful|less|ive|able|ible|ish|ward|ical)$")
_NOUN_EXCEPTIONS = {"bed", "seed", "need", "speed", "feed", "greed", "breed", "weed", "reed", "creed", "shed",
                    "sled", "red", "family", "july", "italy", "ally", "belly", "jelly", "bully", "fly", "supply",
                    "reply", "rally", "lily", "holly", "assembly", "anomaly", "monopoly", "butterfly", "lullaby",
                    "archive", "detective", "motive", "native", "relative", "executive", "representative",
                    "objective", "initiative", "alternative", "perspective", "hive", "olive", "drive",
                    "table", "cable", "fable", "bible", "vegetable", "variable", "stable", "label", "toward",
                    "reward", "ward", "award", "steward", "coward", "forward", "wish", "dish", "fish", "english",
                    "spanish", "polish", "irish", "turkish", "danish", "swedish", "finnish", "jewish", "rubbish"}
FLUENCY_READABLE = 0.75  # a title scoring below this reads oddly (``title_disfluent``)
# Reference titles a person would write (natural titles the README and docs quote, and a few alike): each
# scores 1.0; tests keep it so, and a rule change that marks one of them down is wrong.
FLUENCY_REFERENCE = ("Illegal Driving Laws", "Smoking and Cancer", "Linux kernel", "Cats and dogs",
                     "Doctor patient health", "Mark Twain quotes", "Humor in the Court", "War and peace",
                     "Family life", "Marriage advice", "Weather", "Stocks bonds market", "Kids at school",
                     "Parents and kids", "Star Trek captain's log", "Love and marriage", "Computer programming",
                     "Bartenders and their customers", "Price of a cup of coffee")


def _noun_like(word: str) -> bool:
    return word in _NOUN_EXCEPTIONS or not _NOT_NOUN_END.search(word)


def fluency_faults(title: Any) -> list[str]:
    """What makes ``title`` read oddly, by word pattern (empty when nothing does): it opens or ends
    with a function word, two function words stand together, the last word is a verb, adverb or
    adjective form ("... in replied", "... in awkward"), more than one joining word between single
    words ("Oz of cup and price"), a word repeated, a bare keyword list ("Eat, Food, Like")."""
    w = words(title)
    if not w:
        return ["empty"]
    out = []
    if w[0] in _CONJUNCTIONS or (w[0] in _PREPOSITIONS and len(w) == 1):
        out.append(f'opens with "{w[0]}"')
    if len(w) > 1 and w[-1] in _FUNCTION_WORDS:
        out.append(f'ends with "{w[-1]}"')
    for a, b in zip(w, w[1:]):
        if a in _FUNCTION_WORDS and b in _FUNCTION_WORDS and a not in _ARTICLES and b in _CONJUNCTIONS | _PREPOSITIONS:
            out.append(f'"{a} {b}"')
    if len(w) > 1 and w[-1] not in _FUNCTION_WORDS and not _noun_like(w[-1]):
        out.append(f'ends with "{w[-1]}"')
    joins = [x for x in w if x in _CONJUNCTIONS | _PREPOSITIONS]
    content = [x for x in w if x not in _FUNCTION_WORDS]
    if len(joins) >= 2 and len(content) <= len(joins) + 1 and not any(x in _ARTICLES for x in w):
        out.append("a chain of words joined by " + "/".join(dict.fromkeys(joins)))
    if len(set(content)) < len(content):
        out.append("a repeated word")
    if is_keyword_list(title):
        out.append("a bare keyword list")
    return list(dict.fromkeys(out))


def title_fluency(title: Any) -> float:
    """Readability of a title in [0, 1] by word pattern: 1 for the reference titles
    (``FLUENCY_REFERENCE``), a quarter less for each fault (:func:`fluency_faults`)."""
    return max(0.0, 1.0 - 0.25 * len(fluency_faults(title)))


# --------------------------------------------------------------------------- self-retrieval

def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def member_centroids(item_vectors: np.ndarray, members: Sequence[np.ndarray]) -> np.ndarray:
    """Unit-length mean of the item vectors of each cluster (``members``: item indices per cluster)."""
    X = np.asarray(item_vectors, dtype=np.float64)
    out = np.zeros((len(members), X.shape[1]))
    for j, m in enumerate(members):
        m = np.asarray(m, dtype=np.int64)
        if len(m):
            out[j] = X[m].mean(axis=0)
    return _unit(out)


def retrieval_ranks(title_vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """1-based rank of each title's own centroid (row i's own is centroid i) among all centroids."""
    sim = _unit(title_vectors) @ _unit(centroids).T
    own = np.diag(sim)
    return 1 + (sim > own[:, None] + 1e-9).sum(axis=1)


class MemoEmbedder:
    """A text embedder that embeds each distinct text once per run: the gate embeds the titles it
    accepts, and the title-quality score then finds them here."""

    def __init__(self, embedder: Any):
        self.embedder = embedder
        self.model_id = getattr(embedder, "model_id", "text-embedder")
        self._memo: dict[str, np.ndarray] = {}

    def embed(self, texts: list[str]) -> np.ndarray:
        texts = [str(t) for t in texts]
        new = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if new:
            for t, v in zip(new, np.asarray(self.embedder.embed(new))):
                self._memo[t] = v
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])


def items_have_text(level0: Any) -> bool:
    """Whether the items' description embeddings embed real text: texts, captions, LLM descriptions;
    not the placeholders of numeric rows ("v0=1.2, ...") or uncaptioned images ("Image x.png")."""
    emb = getattr(level0, "desc_embeddings", None)
    if emb is None or np.ndim(emb) != 2:
        return False
    return not all(src in _PLACEHOLDER_SOURCES for src in level0.sources)


class Grounding:
    """What the gate needs to measure self-retrieval while a level is being summarised.

    ``item_vectors``: the items' text embeddings (L0 description embeddings) from ``embedder``. The
    centroids of a level are computed from its requests' member indices, once per level.
    """

    def __init__(self, embedder: Any, item_vectors: np.ndarray):
        self.embedder = embedder
        self.item_vectors = np.asarray(item_vectors)
        self._level: tuple[tuple[str, ...], np.ndarray] | None = None

    @classmethod
    def build(cls, embedder: Any, level0: Any) -> "Grounding | None":
        """A grounding when there is a text embedder and the items have text embeddings (see
        :func:`items_have_text`), else None."""
        if embedder is None or not items_have_text(level0):
            return None
        return cls(embedder, level0.desc_embeddings)

    def centroids(self, level_requests: list[SummaryRequest]) -> tuple[dict[str, int], np.ndarray]:
        keys = tuple(r.key for r in level_requests)
        if self._level is None or self._level[0] != keys:
            self._level = (keys, member_centroids(self.item_vectors, [r.member_indices for r in level_requests]))
        return {k: i for i, k in enumerate(keys)}, self._level[1]

    def embed(self, texts: list[str]) -> np.ndarray:
        return _unit(np.asarray(self.embedder.embed(list(texts)), dtype=np.float64))

    def scores(self, titles: dict[str, str], level_requests: list[SummaryRequest],
               tolerance: float = 0.0) -> dict[str, tuple[int, float]]:
        """Per key: (rank of its own cluster, counting only clusters more similar to the title by more
        than ``tolerance``; own similarity minus the best other cluster's)."""
        if not titles:
            return {}
        index, C = self.centroids(level_requests)
        keys = [k for k in titles if k in index]
        if not keys:
            return {}
        sim = self.embed([titles[k] for k in keys]) @ C.T
        out = {}
        for row, k in zip(sim, keys):
            own = row[index[k]]
            others = np.delete(row, index[k])
            out[k] = (int(1 + (others > own + max(tolerance, 1e-9)).sum()),
                      float(own - (others.max() if len(others) else 0.0)))
        return out

    def margins(self, key: str, titles: list[str], level_requests: list[SummaryRequest]) -> np.ndarray | None:
        """Per candidate title: its similarity to cluster ``key`` minus that to the nearest other
        cluster (positive: its own cluster comes first); None when ``key`` is not of the level."""
        index, C = self.centroids(level_requests)
        if key not in index or not titles:
            return None
        sim = self.embed(titles) @ C.T
        own = sim[:, index[key]]
        others = np.delete(sim, index[key], axis=1)
        return own - (others.max(axis=1) if others.shape[1] else 0.0)

    def best(self, key: str, titles: list[str], level_requests: list[SummaryRequest]) -> int:
        """The index of the candidate title to keep for cluster ``key`` (:func:`choose_title`)."""
        return choose_title(titles, self.margins(key, titles, level_requests))

    def neighbours(self, key: str, level_requests: list[SummaryRequest], count: int) -> list[str]:
        """The keys of the ``count`` clusters of the level whose centroids are closest to ``key``'s."""
        index, C = self.centroids(level_requests)
        if key not in index:
            return []
        sim = C @ C[index[key]]
        sim[index[key]] = -np.inf
        keys = list(index)
        return [keys[i] for i in np.argsort(-sim, kind="stable")[:count]]


def choose_title(titles: list[str], margins: Sequence[float] | np.ndarray | None = None) -> int:
    """The index of the candidate to keep: among those whose self-retrieval margin is within
    ``GROUNDED_TOLERANCE`` of the best (the cosine difference the gate treats as noise) (and positive when the best is: the own cluster still comes first),
    the most readable (:func:`title_fluency`), then the larger margin, then the earlier one. Without
    margins (no text embedder): the most readable, then the earlier one."""
    if not titles:
        return 0
    fluency = [title_fluency(t) for t in titles]
    if margins is None:
        return max(range(len(titles)), key=lambda i: (fluency[i], -i))
    m = np.asarray(margins, dtype=np.float64)
    top = float(m.max())
    close = [i for i in range(len(titles)) if m[i] >= top - GROUNDED_TOLERANCE and (m[i] > 0 or top <= 0)]
    return max(close, key=lambda i: (fluency[i], m[i], -i))


def attach_grounding(summarizer: Any, grounding: Grounding | None) -> None:
    """Give ``grounding`` to a summariser and to its fallback (those that take one)."""
    for obj in (summarizer, getattr(summarizer, "fallback", None)):
        if obj is not None and hasattr(obj, "grounding"):
            obj.grounding = grounding


# --------------------------------------------------------------------------- the gate

def _reason_junk(why: str) -> str:
    # the junk itself is not quoted back: a tiny model would copy it again
    return (f"Your answer was rejected: {why}. Write plain words naming the subject the texts share: "
            "no markup, links, brackets or placeholders.")


def _reason_meta(title: str, why: str) -> str:
    return (f'Your title "{title}" was rejected: {why}, which describes the request, not the texts. '
            "Name the subject the texts share.")


def gate_answers(answers: dict[str, tuple[str, str]], requests: dict[str, SummaryRequest],
                 level_requests: list[SummaryRequest], grounding: Grounding | None,
                 accepted: dict[str, str] | None = None) -> dict[str, str]:
    """Which of ``answers`` (key -> (title, description)) must not become titles, and why.

    Tests, in order: junk in the title or description (:func:`answer_junk_reason`: markup, URLs,
    placeholders, braces, unbalanced brackets, mostly punctuation); meta-text; a parent titled like one of its children (those shown in its
    prompt); ungrounded (its own cluster not among the ``GROUNDED_TOP`` closest to the title, when a
    grounding exists, the level has more clusters than that and the cluster's own keywords do rank it
    there, so that a better title exists); the same title as another cluster
    of the level (the later key, or the less grounded one, is rejected). ``accepted`` are titles
    of the level already accepted earlier (key -> title): a new answer may not repeat them.
    The reasons are written to be shown to the model when it is asked again.
    """
    reasons: dict[str, str] = {}
    for key, (title, description) in answers.items():
        req = requests[key]
        junk = answer_junk_reason(title, description)
        if junk:
            reasons[key] = _reason_junk(junk)
            continue
        why = meta_reason(title)
        if why:
            reasons[key] = _reason_meta(title, why)
            continue
        kids = {norm_title(t): t for _, t, _ in req.children if t}
        if norm_title(title) in kids:
            shown = "; ".join(t for _, t, _ in req.children[:6] if t)
            reasons[key] = (f'Your title "{title}" was rejected: it is the title of one of its subgroups. '
                            f"Name what the subgroups have in common: {shown}.")
    live = {k: a[0] for k, a in answers.items() if k not in reasons}
    scores = grounding.scores(live, level_requests, GROUNDED_TOLERANCE) if grounding is not None else {}
    if grounding is not None and len(level_requests) > GROUNDED_TOP:
        far = [k for k, (rank, _) in scores.items() if rank > GROUNDED_TOP]
        # ... unless the cluster's own keywords do no better: then no title could (e.g. several
        # clusters of one topic) and asking again would only waste a call
        kw_titles = {k: " ".join(requests[k].keywords[:3]) for k in far if requests[k].keywords}
        kw_scores = grounding.scores(kw_titles, level_requests, GROUNDED_TOLERANCE) if kw_titles else {}
        for key in far:
            if key in kw_scores and kw_scores[key][0] > GROUNDED_TOP:
                continue
            kw = ", ".join(requests[key].keywords[:6])
            reasons[key] = (f'Your title "{live[key]}" was rejected: it fits other groups better than this one. '
                            "The title must name what distinguishes this group from its siblings"
                            + (f": {kw}." if kw else "."))
    # duplicates: earlier accepted titles win; among new ones the best grounded (then first key) wins
    taken = {norm_title(t): k for k, t in (accepted or {}).items()}
    order = sorted((k for k in live if k not in reasons), key=lambda k: (-scores.get(k, (0, 0.0))[1],
                                                                         list(requests).index(k)))
    for key in order:
        n = norm_title(live[key])
        if n in taken:
            kw = ", ".join(requests[key].keywords[:6])
            reasons[key] = (f'Your title "{live[key]}" was rejected: another group already has that title. '
                            "Name what distinguishes this group" + (f": {kw}." if kw else "."))
        else:
            taken[n] = key
    return reasons


# --------------------------------------------------------------------------- the score

def _siblings_duplicates(titles: list[str], parent: np.ndarray) -> int:
    """How many titles equal another title under the same parent (all clusters when no parent)."""
    seen: dict[tuple[int, str], int] = {}
    for t, p in zip(titles, parent):
        key = (int(p), norm_title(t))
        seen[key] = seen.get(key, 0) + 1
    return int(sum(c for c in seen.values() if c > 1))


def level_title_quality(h: Any, level: int, title_vectors: np.ndarray | None,
                        item_vectors: np.ndarray | None, texts: MemberTexts | None = None) -> dict[str, Any]:
    """The title-quality figures of one level (see the module docstring); JSON-serialisable.
    ``texts``: :func:`.descriptions.member_texts` of ``h``, prepared once for several levels."""
    lv = h.levels[level]
    k = len(lv)
    titles = list(lv.titles)
    descriptions = list(lv.descriptions or [])
    descriptions += [""] * (k - len(descriptions))
    fallback = np.asarray(lv.fallback, dtype=bool)
    sources = list(lv.sources)
    written = [not fb and s not in ("keywords", "none") for fb, s in zip(fallback, sources)]
    fluency = [title_fluency(t) for t in titles]
    out: dict[str, Any] = {
                "title_self_retrieval_top1": None, "title_self_retrieval_mrr": None,
        "title_model_written": int(sum(written)), "title_model_written_share": float(np.mean(written)) if k else None,
        "title_fallbacks": int(fallback.sum()),
        "title_meta_text": int(sum(meta_reason(t) is not None for t in titles)),
        # the gate's own test, on what the run kept: a title or description that is not plain prose
        "title_junk": int(sum(answer_junk_reason(t, d) is not None for t, d in zip(titles, descriptions))),
        "title_keyword_lists": int(sum(is_keyword_list(t) for t in titles)),
        "title_fluency": float(np.mean(fluency)) if k else None,
        "title_disfluent": int(sum(f < FLUENCY_READABLE for f in fluency)),
        "title_duplicates_among_siblings": _siblings_duplicates(titles, lv.parent),
        "title_parent_equals_child": None,
        "title_notes": [],
    }
    out["title_keyword_list_share"] = out["title_keyword_lists"] / k if k else None
    if level >= 2:
        below = h.levels[level - 1]
        kids: dict[int, set[str]] = {}
        for t, p in zip(below.titles, below.parent):
            kids.setdefault(int(p), set()).add(norm_title(t))
        out["title_parent_equals_child"] = int(sum(norm_title(t) in kids.get(j, set()) for j, t in enumerate(titles)))
    if title_vectors is not None and item_vectors is not None and k >= 2:
        assign = h.assignments(level)
        order = np.argsort(assign, kind="stable")
        bounds = np.searchsorted(assign[order], np.arange(k + 1))
        C = member_centroids(item_vectors, [order[bounds[j]:bounds[j + 1]] for j in range(k)])
        ranks = retrieval_ranks(title_vectors, C)
        out["title_self_retrieval_top1"] = float(np.mean(ranks == 1))
        out["title_self_retrieval_mrr"] = float(np.mean(1.0 / ranks))
    elif k < 2:
        out["title_notes"].append("self-retrieval needs at least 2 clusters.")
    out.update(level_description_quality(h, level, texts))
    return out


def title_quality(h: Any, text_embedder: Any = None) -> dict[int, dict[str, Any]]:
    """Title-quality figures of every level >= 1 (the ``title_*`` keys of each level in ``evaluation.json``).

    Self-retrieval needs a text embedder and the items' text embeddings from it (text runs, images
    with captions, items described by an LLM); otherwise it is None and a note says why, and the
    counts are still given.
    """
    items = h.levels[0].desc_embeddings
    note = None
    if text_embedder is None:
        note = "self-retrieval not computed: the run has no text embedder."
    elif not items_have_text(h.levels[0]):
        note = ("self-retrieval not computed: the items have no text to embed (e.g. images without captions, "
                "numeric rows); the counts below are.")
    vecs: dict[int, np.ndarray] = {}
    if note is None:
        levels = range(1, h.top_level + 1)
        flat = [t for lv in levels for t in h.levels[lv].titles]
        emb = np.asarray(text_embedder.embed(flat), dtype=np.float64) if flat else np.zeros((0, 1))
        if emb.ndim != 2 or emb.shape[1] != np.shape(items)[1]:
            note = "self-retrieval not computed: the item embeddings come from another model than the titles'."
        else:
            start = 0
            for lv in levels:
                n = len(h.levels[lv])
                vecs[lv] = emb[start:start + n]
                start += n
    out = {}
    texts = member_texts(h)  # for the description figures of every level
    for lv in range(1, h.top_level + 1):
        q = level_title_quality(h, lv, vecs.get(lv), items if vecs else None, texts)
        if note:
            q["title_notes"].insert(0, note)
        out[lv] = q
    return out


def format_lines(evaluation: dict[Any, dict[str, Any]]) -> list[str]:
    """Closing lines per level for the CLI: ``titles L1: self-retrieval 0.92 (MRR 0.95), ...`` and
    ``descriptions L1: 0/24 repeat the title, ...``."""
    lines = []
    for lv in sorted(int(k) for k in evaluation):
        q = evaluation.get(lv) or evaluation.get(str(lv)) or {}
        if "title_model_written" not in q:
            continue
        n = q.get("n_clusters") or 0
        sr = ("self-retrieval n/a" if q.get("title_self_retrieval_top1") is None else
              f"self-retrieval {q['title_self_retrieval_top1']:.2f} (MRR {q['title_self_retrieval_mrr']:.2f})")
        parts = [sr]
        if q.get("title_fluency") is not None:  # models saved before the figure existed have none
            parts.append(f"fluency {q['title_fluency']:.2f} ({q['title_disfluent']} read oddly)")
        parts += [f"{q['title_model_written']}/{n} written by the model", f"{q['title_meta_text']} meta-text",
                 f"{q.get('title_junk', 0)} junk",  # models saved before the figure existed have none
                 f"{q['title_keyword_lists']} keyword lists", f"{q['title_duplicates_among_siblings']} duplicates"]
        if q.get("title_parent_equals_child") is not None:
            parts.append(f"{q['title_parent_equals_child']} titled like a child")
        lines.append(f"titles L{lv}: " + ", ".join(parts))
        desc = description_line(lv, q)
        if desc:
            lines.append(desc)
    return lines
