"""Grounded titles for tiny local models (``prompt_style="grounded"``).

A 135M-parameter model asked for a title mostly copies a sample or writes about the prompt ("The 58
Text Items"). Here it writes a few short candidate titles, each grammar-constrained (a regex pattern
in the JSON schema, which llama.cpp turns into a grammar) to open with one of the cluster's own
distinctive phrases and to continue with at most two more of the cluster's own words, optionally
joined by a function word: "Doctor patient health", "Linux kernel", "Cats and dogs". The candidate
whose embedding is closest to its own cluster, relative to the nearest other cluster (self-retrieval
margin), is kept, the most readable one (``title_quality.title_fluency``) among those within noise of
the best margin; the candidates include each one cut before a joining word ("Oz of cup and price" ->
"Oz of cup"), and words the samples capitalise are capitalised. Then one more call writes the
description for that title, constrained to name two of the cluster's keywords the title lacks
(:func:`description_schema`). Without a text embedder the most readable candidate is kept.

The model still chooses the words, their order and the joining words; the grammar only keeps it on
the cluster's vocabulary. Titles are therefore short and literal, not idiomatic.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Callable, Sequence

from .config import HerculesConfig
from .descriptions import description_prompt, terms_to_name
from .prompts import build_compact_prompt, clean_text
from .summarize_types import SummaryRequest
from .title_quality import choose_title, norm_title

CANDIDATES = 3  # candidate titles per cluster (one call each; the prompt prefix is reused by llama.cpp)
MAX_EXTRA_WORDS = 2  # words after the opening phrase
VOCABULARY = 60  # distinct words of the cluster offered to the grammar
DESCRIPTION_MAX_CHARS = 160
DESCRIPTION_GAP_WORDS = 8  # words of the model's own before, between and after the terms a description names
_WORD_CHARS = "[A-Za-z',-]"
_FREE_WORD = _WORD_CHARS + "{1,24}"
FUNCTION_WORDS = ("and", "of", "in", "for", "with")
_WORD = re.compile(r"[a-z]+(?:['’][a-z]+)*")


def _words(text: str) -> list[str]:
    """Whole words of 3-14 letters, possessive 's dropped; a word with another apostrophe
    ("pudd'nhead", "ain't") is skipped whole, not cut into fragments ("nhead", "ain")."""
    out = []
    for w in _WORD.findall(str(text).lower()):
        w = re.sub(r"['’]s$", "", w)
        if w.isalpha() and 3 <= len(w) <= 14:
            out.append(w)
    return out


def _stop_words() -> frozenset[str]:
    from .keywords import STOP_WORDS

    return STOP_WORDS


class NoGroundedTitle(Exception):
    """The grounded path produced no answer; the message says why (the cluster falls back)."""


def lead_phrases(req: SummaryRequest, count: int = CANDIDATES) -> list[str]:
    """The cluster's first keywords (phrases), letters and spaces only, as title openings."""
    out: list[str] = []
    for k in req.keywords:
        phrase = " ".join(re.findall(r"[A-Za-z]+(?:'[A-Za-z]+)*", re.sub(r"['’]s\b", "", k)))
        if phrase and phrase.lower() not in (p.lower() for p in out):
            out.append(phrase[:1].upper() + phrase[1:])
        if len(out) == count:
            break
    return out


def vocabulary(req: SummaryRequest, limit: int = VOCABULARY) -> list[str]:
    """Content words of the cluster: its keywords' words, then the words that two or more of its
    samples (or child titles) use; a word of one sample only is too often a stray."""
    stop = _stop_words()
    counts: Counter = Counter()
    texts = [t for _, t in req.samples] + [t for _, t, _ in req.children]
    for text in texts:
        counts.update({w for w in _words(text) if w not in stop})
    words = [w for k in req.keywords for w in _words(k)]
    words += [w for w, c in counts.most_common(limit) if c >= 2]
    return sorted(dict.fromkeys(words[:limit]))


def title_schema(lead: str, vocab: list[str]) -> dict[str, Any]:
    """A JSON string schema: ``lead`` then up to MAX_EXTRA_WORDS words of ``vocab``, each optionally
    preceded by a function word."""
    step = "(( (" + "|".join(FUNCTION_WORDS) + "))?( (" + "|".join(vocab) + ")))"
    return {"type": "string", "pattern": "^" + re.escape(lead).replace("\\ ", " ") + step + "{0," +
            str(MAX_EXTRA_WORDS) + "}$"}


def _literal(term: str) -> str:
    """``term`` as a regex literal whose words may be capitalised ("linus torvalds" -> [Ll]inus [Tt]orvalds)."""
    # terms_to_name keeps only letters, spaces, apostrophes and hyphens: literal outside a class
    return " ".join(f"[{w[0].upper()}{w[0].lower()}]{w[1:]}" if w[0].isalpha() else w for w in term.split())


def description_schema(terms: Sequence[str] = ()) -> dict[str, Any]:
    """A JSON string schema for a description. With ``terms`` (descriptions.terms_to_name) a pattern
    makes the sentence name each of them, in order, with the model's own words around them ("Jokes
    about kernel patches and bug reports." for "kernel" and "bug"): asked to use two words, a tiny
    model mostly forgets one."""
    # a bare JSON string: an object lets a tiny model pad with whitespace until max_tokens cuts it off
    if not terms:
        return {"type": "string", "minLength": 1, "maxLength": DESCRIPTION_MAX_CHARS}
    # whole words around the terms, each term a word of its own: a budget in characters made the model
    # stop mid-word when it ran out ("f knowledge") and run on after a term ("unixtreme")
    gap = "( " + _FREE_WORD + "){0," + str(DESCRIPTION_GAP_WORDS) + "}"
    after = "('s)?,?" + gap
    opening = "[A-Z]" + _WORD_CHARS + "{0,23}( " + _FREE_WORD + "){0," + str(DESCRIPTION_GAP_WORDS - 1) + "}"
    pattern = "^(" + opening + " )?" + (after + " ").join(_literal(t) for t in terms) + after + "[.]$"
    return {"type": "string", "pattern": pattern}


def _title_prompt(req: SummaryRequest, config: HerculesConfig) -> str:
    base = build_compact_prompt(req, config).rsplit("\n\n", 1)[0]
    return base + "\n\nWrite a short title (2 to 4 words) naming the topic these examples share."




def _titled(text: str) -> str:
    """Capitalised, without repeated words: the grammar cannot forbid "Linux and linux in unix", so a
    repeated word is dropped with the function word before it ("Linux in unix")."""
    out: list[str] = []
    seen: set[str] = set()
    for w in clean_text(text, 80).split():
        low = w.lower()
        if low in seen and low not in FUNCTION_WORDS:
            if out and out[-1].lower() in FUNCTION_WORDS:
                out.pop()
            continue
        seen.add(low)
        out.append(w)
    while len(out) > 1 and out[-1].lower() in FUNCTION_WORDS:
        out.pop()
    t = " ".join(out)
    return t[:1].upper() + t[1:]


def shorter_titles(title: str) -> list[str]:
    """The title cut before each joining word, longest first: "Oz of cup and price" gives "Oz of cup"
    and "Oz". The model's own words, fewer of them: candidates when the whole reads oddly."""
    w = title.split()
    return [" ".join(w[:i]) for i in range(len(w) - 1, 0, -1) if w[i].lower() in FUNCTION_WORDS]


def _cased(title: str, req: SummaryRequest) -> str:
    """``title`` with the words its samples capitalise inside a sentence capitalised too ("Stardate
    unknown and kirk" -> "... and Kirk"): the grammar's vocabulary is lower-case."""
    upper: Counter = Counter()
    lower: Counter = Counter()
    for _, text in req.samples:
        for sentence in re.split(r"[.!?:;\n\"“”]+", str(text)):
            for w in re.findall(r"[A-Za-z]+", sentence)[1:]:  # the first word of a sentence is capitalised anyway
                (upper if w[0].isupper() and w[1:].islower() else lower)[w.lower()] += 1
    out = title.split()
    for i, w in enumerate(out[1:], 1):
        if w.islower() and upper[w] > lower[w]:
            out[i] = w.capitalize()
    return " ".join(out)


def _json_string(raw: str) -> str | None:
    """The non-empty string a JSON-string answer holds; None when it is not one (e.g. cut short)."""
    try:
        value = json.loads(raw, strict=False)
    except ValueError:
        return None
    return value if isinstance(value, str) and value.strip() else None


def grounded_answer(req: SummaryRequest, config: HerculesConfig, call: Callable[[str, dict], str | None],
                    choose: Callable[[list[str]], int] | None = None) -> str | None:
    """The answer for one cluster as a ``{"title", "description"}`` JSON string; None if a call failed
    (``call`` returned None), :class:`NoGroundedTitle` if there was nothing usable.

    ``call(prompt, schema)`` asks the model (None when it failed for good); ``choose(titles)`` picks
    the index of the best candidate (e.g. by self-retrieval margin and fluency,
    ``Grounding.best``); default: the most readable (``title_quality.choose_title``).
    """
    leads = lead_phrases(req)
    if not leads:
        raise NoGroundedTitle("no distinctive words to ground a title on")
    vocab = vocabulary(req)
    prompt = _title_prompt(req, config)
    titles = []
    for lead in leads:
        raw = call(prompt, title_schema(lead, vocab))
        if raw is None:
            return None
        value = _json_string(raw)
        if value is not None:
            titles.append(_cased(_titled(value), req))
    # the shortened candidates come after the whole ones: a chooser that keeps the first keeps the model's
    titles += [t for title in titles for t in shorter_titles(title)]
    seen: set[str] = set()
    titles = [t for t in titles if not (norm_title(t) in seen or seen.add(norm_title(t)))]
    if not titles:
        raise NoGroundedTitle("no candidate title was valid")
    # a candidate naming one of the cluster's children would be rejected by the title gate (and asked
    # again, from the same openings): keep the other candidates when there are any
    kids = {norm_title(t) for _, t, _ in req.children if t}
    titles = [t for t in titles if norm_title(t) not in kids] or titles
    title = titles[(choose or choose_title)(titles) if len(titles) > 1 else 0]
    terms = terms_to_name(title, req.keywords)
    raw = call(description_prompt(req, config, title, terms=terms), description_schema(terms))
    if raw is None:
        return None
    desc = _json_string(raw)
    if desc is None:
        raise NoGroundedTitle("the description was cut short or empty")
    return json.dumps({"title": title, "description": clean_text(desc, DESCRIPTION_MAX_CHARS)})
