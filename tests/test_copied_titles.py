"""What a tiny LLM needs around it: keywords in the prompt, copied titles rejected, recommended config."""

from __future__ import annotations

import json

import numpy as np
import pytest

import model_registry as registry
from hercules_run.cli import _config, build_parser, default_llm
from hercules_core.clients.fakes import FakeLLM
from hercules_core.config import HerculesConfig
from hercules_core.keywords import KeywordSummarizer, _title_terms
from hercules_core.summarize import COPIED_TITLE, LLMSummarizer, build_prompt, build_requests, copied_title
from hercules_core.summarize_types import SummaryRequest
from devkit.factories import FAST, ListLog, make_text_dataset, title_calls


def text_requests(n_clusters=4, n_items=40, level=1):
    ds = make_text_dataset(n_items)
    assign = np.arange(n_items) % n_clusters
    vecs = np.random.default_rng(0).normal(size=(n_items, 8)).astype(np.float32)
    cent = np.stack([vecs[assign == j].mean(0) for j in range(n_clusters)])
    reqs = build_requests(level, [f"L{level}_{j}" for j in range(n_clusters)], cent, assign, vecs, ds, [],
                          HerculesConfig(), np.random.default_rng(0))
    return ds, reqs


def summarizer(llm, ds, run_log=None, **cfg):
    return LLMSummarizer(llm, HerculesConfig(**{**FAST, **cfg}), fallback=KeywordSummarizer(ds, ds.texts),
                         run_log=run_log)


# --------------------------------------------------------------------------- copied_title

SAMPLES = [("a", "My cat sleeps all day on the sofa, and at night she hunts mice in the garden."),
           ("b", "Dogs need a walk twice a day."), ("c", "Item 4 about cats dogs pets. Extra words 813.")]


@pytest.mark.parametrize("title", [
    "My cat sleeps all day on the sofa.",  # the opening, punctuation aside
    "my cat sleeps",  # a prefix of three words
    "MY CAT SLEEPS ALL DAY!",
    "Dogs need a walk twice a day",  # the whole sample
    "The cat sleeps all day on sofa",  # 6 of 7 words from the opening
])
def test_copied_titles_are_detected(title):
    assert copied_title(title, SAMPLES)


@pytest.mark.parametrize("title", [
    "Pets and their habits",
    "Cats",  # a short title may open a sample
    "My cat",
    "Fake My cat sleeps all",  # 4 of 5 words: the test fakes' titles stay accepted
    "Sleeping cats and walked dogs",
    "Cat sleeps day",  # short titles may reuse opening words: "Linux operating system"
    "Extra, Item, Words",
    "",
])
def test_own_titles_are_accepted(title):
    assert not copied_title(title, SAMPLES)


def test_copied_titles_are_reasked_then_fall_back():
    ds, reqs = text_requests(4)
    copy = {r.key: {"title": r.samples[0][1], "description": "Copied."} for r in reqs}
    copy["L1_1"] = {"title": "Money and markets", "description": "Own words."}
    log = ListLog()
    llm = FakeLLM().queue(json.dumps(copy), *[json.dumps({k: v}) for k, v in copy.items() if k != "L1_1"])
    out = summarizer(llm, ds, log, llm_initial_batch_size=4, llm_batch_reduction_factor=4,
                     llm_concurrency=1).summarize(reqs)
    # batch of 4, then the three copied keys re-asked one by one (copied again), then keyword titles
    assert len(title_calls(llm)) == 4  # placeholder descriptions are asked again too (test_descriptions.py)
    assert out["L1_1"].title == "Money and markets" and not out["L1_1"].fallback
    for key in ("L1_0", "L1_2", "L1_3"):
        s = out[key]
        assert s.fallback and s.source == "keywords" and s.error == COPIED_TITLE
        assert not copied_title(s.title, next(r for r in reqs if r.key == key).samples)
    fb = [r for r in log.records if r["event"] == "llm_fallback"]
    assert fb and fb[0]["errors"] == {k: COPIED_TITLE for k in ("L1_0", "L1_2", "L1_3")}


def test_a_reasked_key_can_still_succeed():
    ds, reqs = text_requests(2)
    first = {r.key: {"title": r.samples[0][1], "description": "Copied."} for r in reqs}
    llm = FakeLLM().queue(json.dumps(first))  # then the default answers ("Fake" + four words): accepted
    out = summarizer(llm, ds, llm_initial_batch_size=2, llm_concurrency=1).summarize(reqs)
    assert llm.calls == 3 and all(not s.fallback and s.title.startswith("Fake") for s in out.values())


def test_level0_descriptions_may_repeat_the_item():
    from hercules_core.summarize import build_l0_requests

    ds = make_text_dataset(3)
    reqs = build_l0_requests(ds, HerculesConfig())
    answer = {r.key: {"title": ds.texts[i][:40], "description": ds.texts[i]} for i, r in enumerate(reqs)}
    out = summarizer(FakeLLM().queue(json.dumps(answer)), ds, llm_initial_batch_size=3).summarize(reqs)
    assert all(not s.fallback for s in out.values())


# --------------------------------------------------------------------------- keywords in the prompt

def test_keywords_for_reuses_the_keyword_titles():
    ds, reqs = text_requests(4)
    kw = KeywordSummarizer(ds, ds.texts)
    words = kw.keywords_for(reqs, reqs)
    titles = kw.summarize(reqs, level_requests=reqs)
    assert set(words) == {r.key for r in reqs}
    for r in reqs:
        assert 0 < len(words[r.key]) <= kw.n_desc_words
        # the title is the first keywords (words or phrases) holding at most n_title_words words
        assert titles[r.key].title == ", ".join(w[:1].upper() + w[1:] for w in _title_terms(words[r.key], kw.n_title_words))
    assert kw.keywords_for([], reqs) == {}
    from hercules_core.summarize import build_l0_requests
    assert kw.keywords_for(build_l0_requests(ds, HerculesConfig())) == {}


def test_prompt_shows_keywords_only_when_given():
    ds, reqs = text_requests(2)
    assert "Keywords:" not in build_prompt(reqs, HerculesConfig())
    import dataclasses
    with_kw = [dataclasses.replace(reqs[0], keywords=["cats", "dogs\nGenerate", "pets"])] + reqs[1:]
    prompt = build_prompt(with_kw, HerculesConfig())
    assert "Keywords: cats, dogs Generate, pets" in prompt.splitlines()
    assert prompt.count("Keywords:") == 1


def test_llm_summarizer_sends_the_fallback_keywords():
    ds, reqs = text_requests(3)
    llm = FakeLLM()
    summarizer(llm, ds, llm_initial_batch_size=3).summarize(reqs, level_requests=reqs)
    words = KeywordSummarizer(ds, ds.texts).keywords_for(reqs, reqs)
    prompt = llm.history[0]["prompt"]
    for r in reqs:
        assert f"Keywords: {', '.join(words[r.key])}" in prompt
    assert all(not r.keywords for r in reqs)  # the caller's requests are left alone


def test_no_keywords_without_a_keyword_fallback():
    ds, reqs = text_requests(2)

    class Plain:
        model_id = "plain"

        def summarize(self, requests, *, level_requests=None):
            return {}

    llm = FakeLLM()
    LLMSummarizer(llm, HerculesConfig(**FAST), fallback=Plain()).summarize(reqs)
    assert "Keywords:" not in llm.history[0]["prompt"]
    assert SummaryRequest("k", 1, 1, "text", np.array([0])).keywords == []


# --------------------------------------------------------------------------- registry and CLI

def test_recommended_config_and_hashable_entries():
    rec = registry.recommended_config("smollm2")
    assert rec["llm_initial_batch_size"] == rec["llm_min_batch_size"] == rec["llm_concurrency"] == 1
    assert registry.recommended_config("keywords") == {} and registry.recommended_config("nope") == {}
    assert len({hash(e) for e in registry.entries()}) == len(registry.entries())
    entry = registry.ModelEntry("x", "llm", "X", lambda **kw: None, config_overrides={"llm_concurrency": 2})
    assert entry.config_overrides == (("llm_concurrency", 2),) and hash(entry)


def _args(*extra):
    return build_parser().parse_args(["run", "data.csv", "--out", "o", *extra])


def test_cli_applies_recommended_config_unless_the_user_set_it(tmp_path):
    cfg = _config(_args("--llm", "smollm2"))
    assert cfg.llm_initial_batch_size == 1 and cfg.llm_concurrency == 1
    user = tmp_path / "c.json"
    user.write_text(json.dumps({"llm_concurrency": 3}))
    cfg = _config(_args("--llm", "smollm2", "--config", str(user)))
    assert cfg.llm_concurrency == 3 and cfg.llm_initial_batch_size == 1
    default = HerculesConfig()
    cfg = _config(_args("--llm", "keywords"))
    assert cfg.llm_initial_batch_size == default.llm_initial_batch_size and cfg.llm_concurrency == default.llm_concurrency


def test_default_llm(monkeypatch):
    assert _args().llm is None  # resolved at run time
    monkeypatch.delenv("HERCULES_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("HERCULES_LLM_MODEL", raising=False)
    expected = "smollm2" if registry.get_entry("smollm2", "llm").availability()[0] else "keywords"
    assert default_llm() == expected
    # a configured endpoint (URL and model) is what the user gets without choosing
    monkeypatch.setenv("HERCULES_LLM_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("HERCULES_LLM_MODEL", "some-model")
    assert default_llm() == "openai"
    monkeypatch.setattr(registry.ModelEntry, "availability", lambda self: (False, "absent"))
    assert default_llm() == "keywords"


def test_the_prompt_example_copied_verbatim_falls_back():
    from hercules_core.summarize import COPIED_EXAMPLE, copied_example

    assert copied_example("Title A", "Something.") and copied_example("Pets", "Desc B.")
    assert copied_example("Title 2", "Pets.") and copied_example("title", "Pets.") and copied_example("P", "Desc A")
    assert not copied_example("Title Ideas", "Desc of A.") and not copied_example("A", "B")
    assert not copied_example("Title deeds", "Property titles.")
    ds, reqs = text_requests(2)
    llm = FakeLLM().queue(json.dumps({"L1_0": {"title": "Title A", "description": "Desc A."},
                                      "L1_1": {"title": "Money", "description": "Markets."}}))
    out = summarizer(llm, ds, llm_initial_batch_size=2, llm_min_batch_size=2).summarize(reqs)
    assert out["L1_0"].fallback and out["L1_0"].error == COPIED_EXAMPLE and out["L1_0"].title != "Title A"
    assert not out["L1_1"].fallback and out["L1_1"].title == "Money"
