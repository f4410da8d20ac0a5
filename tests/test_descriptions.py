"""Descriptions that add information (hercules_core/descriptions.py): the test, the re-ask, the
extractive fallback, the marks and the description_* figures."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from hercules_core import load_model, save_model
from hercules_core.clients.fakes import FakeEmbedder, FakeLLM, is_description_request
from hercules_core.config import HerculesConfig
from hercules_core.descriptions import (EXTRACTIVE, REASKED, description_problem, extractive_description,
                                        is_sample_copy, is_title_copy, level_description_quality, terms_to_name)
from hercules_core.grounded import description_schema, grounded_answer
from hercules_core.hercules import Hercules
from hercules_core.io import hierarchy_text
from hercules_core.keywords import KeywordSummarizer
from hercules_core.summarize import LLMSummarizer
from hercules_core.title_quality import format_lines
from devkit.factories import FAST, ListLog, make_text_dataset
from tests.test_title_gate import summarizer, topic_requests

SAMPLE = "In Tennessee, it is illegal to shoot any game other than whales from a moving automobile."
KEYWORDS = ["illegal", "tennessee", "automobile", "law"]


# --------------------------------------------------------------------------- the test

@pytest.mark.parametrize("description", [
    "Stardate unknown and kirk.", "stardate UNKNOWN, and Kirk", "The stardate unknown and kirk", "",
])
def test_the_title_again_is_a_copy(description):
    assert is_title_copy(description, "Stardate unknown and kirk")
    assert description_problem(description, "Stardate unknown and kirk", [], []) is not None


def test_the_title_reworded_with_stop_words_is_a_copy():
    assert is_title_copy("War and violence in war", "War and violence")
    assert is_title_copy("Items about wars and the violence", "War and violence")  # plural, filler words
    assert not is_title_copy("War, violence and the soldiers who come home", "War and violence")


def test_one_sample_copied_is_a_copy():
    assert is_sample_copy(SAMPLE, [SAMPLE])
    assert is_sample_copy("In Tennessee, it is illegal to shoot any game …", ["Other text.", SAMPLE])
    # a long stretch of one sample with a word or two around it is still a copy
    assert is_sample_copy("Laws: it is illegal to shoot any game other than whales from a moving car", [SAMPLE])
    # quoting a few words among one's own is not
    assert not is_sample_copy("Odd state laws, such as Tennessee's ban on shooting game from a car", [SAMPLE])
    assert description_problem(SAMPLE, "Illegal laws", [SAMPLE], KEYWORDS) == "it copies one of the examples"


def test_the_member_copy_figure_finds_exactly_the_copies_of_one_member():
    """The description_sample_copies figure checks every member; its prefilter (the description's
    middle words in a row in one member's text, searched in all the members' texts at once) may skip
    only members that are no copy: the same answers as is_sample_copy against each member (for
    descriptions of two words or more), across case, possessives, digits, punctuation, runs split
    between two members, at every level."""
    from hercules_core.descriptions import MemberTexts, _copies_a_member, _tokens
    rng = np.random.default_rng(0)
    vocab = ["law", "game", "car", "kirk", "log", "ban", "o'neil", "whale", "state", "Car", "LAW", "Kirk’s"]
    seps = [" ", ", ", " - ", " 2nd ", "'s ", "’s; ", "_", "\n", " (", ") "]

    def text(n):
        return "".join(str(rng.choice(vocab)) + str(rng.choice(seps)) for _ in range(n)).strip()

    texts = [text(int(rng.integers(1, 14))) for _ in range(400)]
    texts[7], texts[8] = None, ""
    fine = rng.integers(0, 40, len(texts))  # level-1 cluster 40 stays empty
    parent = rng.integers(0, 6, 41)

    class Levels:  # the two things MemberTexts asks of a hierarchy
        top_level = 2

        @staticmethod
        def assignments(level):
            return fine if level == 1 else parent[fine]

    prepared = MemberTexts(Levels, texts)
    spans = {1: prepared.spans(1, 41), 2: prepared.spans(2, 6)}
    assert tuple(spans[1][40]) == (0, 0)
    found = 0
    for trial in range(400):
        level = int(rng.integers(1, 3))
        j = int(rng.choice(np.unique(Levels.assignments(level))))
        members = np.flatnonzero(Levels.assignments(level) == j)
        start, end = spans[level][j]
        assert sorted(map(str, prepared.texts[start:end])) == sorted(str(texts[i]) for i in members)
        words = (texts[int(rng.choice(members))] or "law").split()
        a = int(rng.integers(0, len(words)))
        piece = " ".join(words[a:a + int(rng.integers(1, 14))])
        description = rng.choice([piece, "Items: " + piece, piece + " and more", text(int(rng.integers(1, 12)))])
        expected = len(_tokens(description)) >= 2 and any(is_sample_copy(description, [texts[i]]) for i in members)
        found += expected
        assert _copies_a_member(description, prepared, start, end) == expected, (description, level, j)
    assert 40 < found < 360  # both answers were exercised
    # the copied words end the last member's text (a whole two-word sample)
    two = MemberTexts(type("One", (), {"top_level": 1, "assignments": staticmethod(lambda lv: np.zeros(2, int))}),
                      ["Alpha beta gamma", "KIRK'S log"])
    assert _copies_a_member("Kirk log today", two, 0, 2) and not _copies_a_member("Kirk log today", two, 0, 1)


def test_a_description_must_name_two_distinctive_terms():
    title = "Strange laws"
    assert description_problem("Odd rules people once wrote down somewhere.", title, [SAMPLE], KEYWORDS)
    assert description_problem("Odd rules of Tennessee people once wrote down.", title, [SAMPLE], KEYWORDS)
    # stems: "laws" names "law"
    assert description_problem("Odd laws of Tennessee that people once wrote down.", title, [SAMPLE], KEYWORDS) \
        is None
    assert description_problem("Odd rules people once wrote down.", title, [SAMPLE], ["law"])  # all of one
    assert description_problem("Odd rules people once wrote down.", title, [SAMPLE], []) is None  # none known


def test_extractive_descriptions_pass_by_construction():
    samples = [SAMPLE, "It is illegal in Tennessee to lasso a fish.", "A third sample."]
    desc = extractive_description(KEYWORDS, samples)
    assert desc.startswith("Items about illegal, tennessee") and desc.count('"') == 4  # two central samples
    assert "third" not in desc
    assert description_problem(desc, "Illegal tennessee", samples, KEYWORDS) is None
    one = extractive_description(KEYWORDS[:2], samples[:1])
    assert description_problem(one, "Illegal tennessee", samples[:1], KEYWORDS[:2]) is None


def test_keyword_descriptions_pass_by_construction():
    ds, labels, reqs, _ = topic_requests()
    kw = KeywordSummarizer(ds, ds.texts)
    terms = kw.keywords_for(reqs)
    for r in reqs:
        s = kw.summarize(reqs)[r.key]
        assert len(terms[r.key]) >= 2
        assert description_problem(s.description, s.title, [t for _, t in r.samples], terms[r.key]) is None


# --------------------------------------------------------------------------- the summariser

def _summarizer(llm, ds, log=None):
    return LLMSummarizer(llm, HerculesConfig(**{**FAST, "llm_concurrency": 1}),
                         fallback=KeywordSummarizer(ds, ds.texts), run_log=log)


def test_rejected_descriptions_are_reasked_once_then_extractive():
    ds, labels, reqs, _ = topic_requests()
    terms = KeywordSummarizer(ds, ds.texts).keywords_for(reqs)
    first = {"L1_0": {"title": "Pets at home", "description": "Pets at home."},  # the title
             "L1_1": {"title": "Money talk", "description": reqs[1].samples[0][1]},  # one sample
             "L1_2": {"title": "Weather talk",
                      "description": f"Reports on {terms['L1_2'][0]} and {terms['L1_2'][1]} outside."}}
    good = json.dumps(f"Short notes about {terms['L1_0'][0]} and {terms['L1_0'][1]} in daily life.")
    llm = FakeLLM().queue(json.dumps(first), good, json.dumps(reqs[1].samples[0][1]))
    log = ListLog()
    out = _summarizer(llm, ds, log).summarize(reqs, level_requests=reqs)
    asked = [c for c in llm.history if is_description_request(c["prompt"], c["schema"])]
    assert llm.calls == 3 and len(asked) == 2  # one re-ask each for L1_0 and L1_1, none for L1_2
    assert "Your description was rejected: it only repeats the title" in asked[0]["prompt"]
    assert "Your description was rejected: it copies one of the examples" in asked[1]["prompt"]
    assert 'Title: "Pets at home"' in asked[0]["prompt"]
    assert terms["L1_0"][0] in asked[0]["prompt"].rsplit("rejected", 1)[1]  # the words to use are named

    assert out["L1_0"].description_mark == REASKED and out["L1_0"].description == json.loads(good)
    assert out["L1_1"].description_mark == EXTRACTIVE and not out["L1_1"].fallback
    assert out["L1_1"].title == "Money talk" and out["L1_1"].source == "fake-llm"  # the title stays the model's
    assert out["L1_1"].description.startswith("Items about " + terms["L1_1"][0])
    assert out["L1_2"].description_mark == "" and out["L1_2"].description == first["L1_2"]["description"]
    events = [r["event"] for r in log.records if r.get("event", "").startswith("description")]
    assert events == ["description_rejected", "description_extractive"]


class CopyingLLM(FakeLLM):
    """Answers like FakeLLM but every description repeats its title, also when asked again."""

    def complete(self, prompt, *, schema=None):
        if is_description_request(prompt, schema):
            self.history.append({"prompt": prompt, "schema": schema})
            return json.dumps({"description": re.search(r'Title: "(.*?)"\.', prompt).group(1)})
        return json.dumps({k: {"title": v["title"], "description": v["title"]}
                           for k, v in json.loads(super().complete(prompt, schema=schema)).items()})


def _fit(llm, tmp_path=None):
    ds = make_text_dataset(90)
    cfg = HerculesConfig(level_cluster_counts=(6, 3), **FAST)
    return Hercules(cfg, text_embedder=FakeEmbedder(), llm=llm).fit(ds).hierarchy_


def test_a_run_counts_and_marks_its_descriptions(tmp_path):
    h = _fit(CopyingLLM())
    for lv in (1, 2):
        level, ev = h.levels[lv], h.evaluation[lv]
        k = len(level)
        assert level.description_marks == [EXTRACTIVE] * k
        assert ev["description_extractive"] == k and ev["description_extractive_share"] == 1.0
        assert ev["description_reasked"] == 0 and ev["description_title_copies"] == 0
        assert ev["description_sample_copies"] == 0
    assert any(line.startswith("descriptions L1: 0/6 repeat the title") and "6/6 extractive" in line
               for line in format_lines(h.evaluation))
    assert "extractive description" in hierarchy_text(h)
    # saved and loaded with the model; a model saved before the marks existed has none
    path = tmp_path / "m.json"
    save_model(h, path)
    assert load_model(path).levels[1].description_marks == [EXTRACTIVE] * 6
    doc = json.loads(path.read_text())
    for lv in doc["levels"]:
        lv.pop("description_marks", None)
    path.write_text(json.dumps(doc))
    old = load_model(path)
    assert old.levels[1].description_marks == []
    q = level_description_quality(old, 1)
    assert q["description_extractive"] is None and q["description_title_copies"] == 0


def test_without_the_check_descriptions_repeat_the_title():
    """What the figures measure: the same fake without the gate keeps its title copies."""
    ds = make_text_dataset(90)
    cfg = HerculesConfig(level_cluster_counts=(6, 3), title_gate=False, **FAST)
    h = Hercules(cfg, text_embedder=FakeEmbedder(), llm=CopyingLLM()).fit(ds).hierarchy_
    assert h.evaluation[1]["description_title_copies"] == 6 and h.evaluation[1]["description_extractive"] == 0


def test_good_fake_descriptions_are_kept_without_reasks():
    llm = FakeLLM()
    h = _fit(llm)
    assert not any(is_description_request(c["prompt"], c["schema"]) for c in llm.history)
    assert h.evaluation[1]["description_reasked"] == 0 and h.evaluation[1]["description_extractive"] == 0


# --------------------------------------------------------------------------- the grounded style's grammar

def test_terms_to_name_prefers_terms_the_title_lacks():
    kw = ["kernel", "linus torvalds", "2.4 patch", "release"]
    assert terms_to_name("Kernel bugs", kw) == ["linus torvalds", "release"]  # "2.4 patch" is no literal
    assert terms_to_name("Linus Torvalds and release", kw) == ["kernel", "linus torvalds"]
    assert terms_to_name("Kernel bugs", ["kernel"]) == []


def test_the_grounded_description_grammar_makes_a_sentence_that_passes():
    """A 135M model asked for "one sentence using the words ..." mostly forgot them (20 of 32 clusters
    of fortune_dev8 ended extractive); the pattern makes every sentence it accepts pass the test."""
    title, keywords = "Kernel bugs", ["kernel", "linus torvalds", "release", "debian"]
    terms = terms_to_name(title, keywords)
    pattern = re.compile(description_schema(terms)["pattern"])
    for text in ["Mailing list posts where Linus Torvalds announces a new release.", "Linus torvalds release.",
                 "Jokes by Linus Torvalds, mostly about the release, with some anger."]:
        assert pattern.fullmatch(text) and description_problem(text, title, [SAMPLE], keywords) is None, text
    # a term is a word of its own (a budget in characters made SmolLM2 write "unixtreme", "f knowledge")
    for text in ["Mailing list posts about kernel bugs.", "Kernel bugs.", "Posts by Linus Torvalds.",
                 "Linus Torvalds releasey.", "Plinus torvalds on a release."]:
        assert not pattern.fullmatch(text), text
    assert not re.search(r"[*+]", pattern.pattern)  # bounded: a tiny model cannot pad until max_tokens
    assert description_schema([])["maxLength"] <= 200  # no usable terms: a plain bounded string


def test_grounded_description_is_asked_for_with_the_terms():
    ds, _, reqs, _ = topic_requests()
    keywords = KeywordSummarizer(ds, ds.texts).keywords_for(reqs)["L1_0"]
    req = dataclasses.replace(reqs[0], keywords=keywords)
    calls = []

    def call(prompt, schema):
        calls.append((prompt, schema))
        return json.dumps(keywords[0].capitalize() if len(calls) <= 3 else "Fine.")

    out = json.loads(grounded_answer(req, HerculesConfig(), call, choose=lambda titles: 0))
    prompt, schema = calls[-1]
    terms = terms_to_name(out["title"], keywords)
    assert len(terms) == 2 and all(f'"{t}"' in prompt.rsplit("\n", 1)[-1] for t in terms)
    assert schema == description_schema(terms)


class GroundedFake(FakeLLM):
    """Grounded titles: the pattern's opening phrase. Descriptions: the title again on the first ask, the
    requested terms in a sentence when asked again."""

    def complete(self, prompt, *, schema=None):
        self.history.append({"prompt": prompt, "schema": schema})
        if not is_description_request(prompt, schema):
            return json.dumps(re.match(r"\^([^(]+)", schema["pattern"]).group(1))
        title = re.search(r'Title: "(.*?)"\.', prompt).group(1)
        terms = re.findall(r'"([^"]+)"(?= and "|\.$)', prompt.rsplit("\n", 1)[-1])
        return json.dumps(f"Notes on {terms[0]} and {terms[1]}." if "rejected" in prompt else f"{title}.")


def test_grounded_reask_uses_the_grammar_and_is_accepted():
    ds, _, reqs, _ = topic_requests()
    llm = GroundedFake()
    out = summarizer(llm, ds, prompt_style="grounded").summarize(reqs, level_requests=reqs)
    keywords = KeywordSummarizer(ds, ds.texts).keywords_for(reqs)
    asked = [c for c in llm.history if is_description_request(c["prompt"], c["schema"])]
    assert len(asked) == 2 * len(reqs)  # the first ask and one re-ask per cluster
    for r in reqs:
        terms = terms_to_name(out[r.key].title, keywords[r.key])
        reask = [c for c in asked if f'Title: "{out[r.key].title}"' in c["prompt"]][-1]
        assert reask["schema"] == description_schema(terms) and "rejected" in reask["prompt"]
        assert out[r.key].description_mark == REASKED
        assert re.fullmatch(reask["schema"]["pattern"], out[r.key].description)
