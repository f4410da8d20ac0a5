"""The keyword (c-TF-IDF / z-score) summariser."""

from __future__ import annotations

import numpy as np

from hercules_core.config import HerculesConfig
from hercules_core.dataset import Dataset
from hercules_core.keywords import KeywordSummarizer
from hercules_core.summarize import build_l0_requests, build_requests
from devkit.factories import make_numeric_dataset, make_text_dataset

TOPICS = {"cats": {"cats", "dogs", "pets"}, "stocks": {"stocks", "bonds", "market"},
          "rain": {"rain", "snow", "weather"}}


def topic_requests(ds, config=None):
    labels = sorted(set(ds.labels))
    assign = np.array([labels.index(lab) for lab in ds.labels])
    vecs = np.random.default_rng(0).normal(size=(len(ds), 4))
    cent = np.stack([vecs[assign == j].mean(0) for j in range(len(labels))])
    reqs = build_requests(1, [f"L1_{j}" for j in range(len(labels))], cent, assign, vecs, ds, [],
                          config or HerculesConfig(), np.random.default_rng(0))
    return labels, reqs


def test_titles_name_the_topic_words():
    ds = make_text_dataset(150)
    labels, reqs = topic_requests(ds)
    out = KeywordSummarizer(ds, ds.texts).summarize(reqs)
    assert set(out) == {r.key for r in reqs}
    for lab, r in zip(labels, reqs):
        s = out[r.key]
        # words or two-word phrases ("Cats dogs, Pets"): the topic's words and nothing else
        title_words = set(s.title.lower().replace(",", " ").split())
        assert title_words == TOPICS[lab], s.title
        assert s.title == ", ".join(w.capitalize() for w in s.title.lower().split(", "))
        assert s.description.startswith("Items about ") and 'Most central: "' in s.description
        assert s.source == "keywords" and not s.fallback


def test_level_requests_give_the_corpus_statistics():
    ds = make_text_dataset(150)
    labels, reqs = topic_requests(ds)
    kw = KeywordSummarizer(ds, ds.texts)
    alone = kw.summarize(reqs[:1], level_requests=reqs)
    assert alone[reqs[0].key] == kw.summarize(reqs)[reqs[0].key]  # same statistics, same answer
    assert kw.summarize(reqs) == kw.summarize(reqs)  # deterministic


def test_numeric_titles_name_the_distinctive_variable():
    ds = make_numeric_dataset(90, p=4)
    ds.numeric_raw[:30, 2] += 60.0  # the first 30 items have a very high v2
    ds.numeric_raw[30:60, 0] -= 60.0  # the next 30 a very low v0 (in kg)
    ds.numeric = ((ds.numeric_raw - ds.numeric_raw.mean(0)) / ds.numeric_raw.std(0)).astype(np.float32)
    assign = np.repeat(np.arange(3), 30)
    reqs = build_requests(1, ["L1_0", "L1_1", "L1_2"], np.zeros((3, 4)), assign, ds.numeric, ds, [],
                          HerculesConfig(), np.random.default_rng(0))
    out = KeywordSummarizer(ds, []).summarize(reqs)
    assert out["L1_0"].title.startswith("High v2")
    assert out["L1_1"].title.startswith("Low v0")
    mean_v0 = ds.numeric_raw[30:60, 0].mean()
    assert f"low v0 (mean {mean_v0:.2f} kg" in out["L1_1"].description


def test_level0_titles_are_first_words():
    ds = make_text_dataset(4)
    reqs = build_l0_requests(ds, HerculesConfig())
    out = KeywordSummarizer(ds, ds.texts).summarize(reqs)
    for i, r in enumerate(reqs):
        assert ds.texts[i].startswith(out[r.key].title) and out[r.key].description == ds.texts[i]


def test_stop_words_only_fall_back_to_sample_words():
    ds = Dataset(ids=["a", "b", "c"], modality="text", texts=["the and of", "it is the", "of to be"])
    reqs = build_requests(1, ["L1_0"], np.zeros((1, 2)), np.zeros(3, int), np.zeros((3, 2)), ds, [],
                          HerculesConfig(), np.random.default_rng(0))
    s = KeywordSummarizer(ds, ds.texts).summarize(reqs)["L1_0"]
    assert s.title == "the and of" and "Most central" in s.description


def test_numeric_level0_and_typical_cluster():
    ds = make_numeric_dataset(20, p=3)
    kw = KeywordSummarizer(ds, [])
    item = kw.summarize(build_l0_requests(ds, HerculesConfig())[:1])["item_0"]
    assert item.title and item.title[0].isupper()
    everyone = build_requests(1, ["L1_0"], np.zeros((1, 3)), np.zeros(20, int), ds.numeric, ds, [],
                              HerculesConfig(), np.random.default_rng(0))
    assert kw.summarize(everyone)["L1_0"].title == "Typical values"


def test_possessives_are_the_same_term():
    """A title listed "Linux, Microsoft, Linux's": the possessive was a term of its own."""
    from hercules_core.keywords import _terms_of

    terms = _terms_of("Linux's kernel beats Microsoft's; it's linux. Pudd'nhead Wilson's calendar")
    assert "linux's" not in terms and terms.count("linux") == 2 and "microsoft" in terms
    assert "it" not in terms and "pudd'nhead wilson" in terms and "wilson calendar" in terms


def _reference_terms(text):
    """The analyser before it was made faster (clause split, then words per clause): the reference."""
    import re

    from hercules_core.keywords import STOP_WORDS

    token = re.compile(r"(?u)\b[^\W\d_]{2,}(?:['’][^\W\d_]+)*\b")
    out = []
    for clause in re.split(r"[.,;:!?()\[\]\"“”…/\n\t-]+|\s--\s|\d+", str(text).lower()):
        prev = None
        for m in token.finditer(clause):
            w = re.sub(r"['’]s$", "", m.group(0))
            if w in STOP_WORDS:
                prev = None
                continue
            out.append(w)
            if prev is not None and prev[1] == m.start() - 1:
                out.append(f"{prev[0]} {w}")
            prev = (w, m.end())
    return out


def test_terms_and_counts_match_the_reference_analyser():
    """The document-term matrix equals scikit-learn's CountVectorizer with the reference analyser:
    the same terms (words and phrases) per text, vocabulary and cut at max_terms (ties included)."""
    from sklearn.feature_extraction.text import CountVectorizer

    from hercules_core.keywords import _document_terms, _terms_of

    rng = np.random.default_rng(7)
    words = ["Linux's", "kernel", "don't", "pudd'nhead", "rock'n'roll", "O’Brien’s", "café", "naïve", "İstanbul",
             "Straße", "данные", "数据", "abc_def", "covid19", "x", "a", "the", "It's", "MARK", "twain", "dogs",
             "cats", "''quoted''", "ab'", "'tis", "x'yz", "élan", "٣٤", "²nd", "q2", "mid-term", "well—known"]
    seps = [" ", "  ", ", ", ". ", " -- ", "\t", "\n", "-", "/", "…", "’", "'", "*", "\u00a0", "_", "7", "٣",
            "“", "” ", "; ", "(", ") ", "&", "\r\n"]
    texts = []
    for _ in range(3000):
        k = int(rng.integers(0, 12))
        texts.append("".join(str(rng.choice(words)) + str(rng.choice(seps)) for _ in range(k)))
    texts += texts[:500] + ["", "the and of", "   ", "12 34"]  # repeats count once per occurrence
    for t in texts:
        assert _terms_of(t) == _reference_terms(t), t
    for limit in (40, 300, 50000):  # a small limit cuts among tied counts
        ref = CountVectorizer(analyzer=_reference_terms, max_features=limit, dtype=np.float64, binary=True)
        expected = ref.fit_transform(texts).tocsr()
        dtm, vocab = _document_terms(texts, limit)
        assert list(vocab) == list(ref.get_feature_names_out())
        assert dtm.shape == expected.shape and (dtm != expected).nnz == 0 and dtm.has_sorted_indices
