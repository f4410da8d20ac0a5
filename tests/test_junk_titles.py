"""Junk answers (markup, URLs, placeholders, punctuation) never become titles, and the figures count them.

The junk cases are what SmolLM2-135M wrote with the full prompt, 8 clusters per call (issue: "written
by smollm2-135m", 0 meta-text titles on the evaluate page).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from hercules_core.clients.fakes import FakeLLM
from hercules_core.title_quality import answer_junk_reason, gate_answers, junk_reason, meta_reason, title_quality
from devkit.factories import ListLog, title_calls
from tests.test_copied_titles import summarizer, text_requests
from tests.test_title_gate import topic_run

JUNK = [
    ("[<b>Forthcoming, FINISHED!</c><i>", "it contains HTML markup"),
    ("<a href=https://www.youtube/embed?markup={{&#176;", "it contains HTML markup"),
    ("Caf&eacute; culture", "it contains HTML markup"),
    ("Fish &amp; chips", "it contains HTML markup"),
    ("Line<br/>break", "it contains HTML markup"),
    ('Click href="x"', "it contains HTML markup"),
    ("See https://example.org", "it contains a URL"),
    ("Videos at www.youtube", "it contains a URL"),
    ("youtube.com/watch?v=1", "it contains a URL"),
    ("{{title}}", "it is a placeholder"),
    ("{title}", "it is a placeholder"),
    ("[Normal Norms Description]", "it is a placeholder"),
    ("[Norm's Last Name],", "it is a placeholder"),
    ("<title>", "it is a placeholder"),
    ("<Your title here>", "it is a placeholder"),
    ("} } { ... {", "it is mostly punctuation"),
    ("...", "it is mostly punctuation"),
    ("!?!?!? -- ok", "it is mostly punctuation"),
    ("Cats } and dogs", "it has unbalanced brackets"),
    ("Email (spam", "it has unbalanced brackets"),
    ("Lone ] bracket", "it has unbalanced brackets"),
]

PROSE = ["C++ and Java", "R&D budgets", "Q&A in the court", "The 1960s", "Email (spam)", "AT&T", "Node.js",
         "Linux: the kernel and its hackers", "Cats - and dogs", "Parents and children \u2014 awkward moments",
         "Mark Twain on money", "C#", "C++", "Rock & roll", "100% cotton", "$5 deals", "Mother's Day",
         '"Quoted" wisdom', "Amazon.com reviews", "Lists (1) and (2)", "Ratings: 5/5", "Zürich and Genève",
         "日本の猫", "Q&A: doctors, nurses", "Half-price sales"]


@pytest.mark.parametrize("text,why", JUNK)
def test_junk_is_recognised_with_its_reason(text, why):
    assert junk_reason(text) == why


@pytest.mark.parametrize("text", PROSE)
def test_prose_passes(text):
    assert junk_reason(text) is None and junk_reason(text, title=False) is None
    assert answer_junk_reason(text, f"Texts about {text}, mostly jokes.") is None


def test_descriptions_may_leave_a_bracket_open_titles_may_not():
    cut = "Jokes about doctors (and nurses, mostly in hospitals"  # a length limit can cut a description
    assert junk_reason(cut) == "it has unbalanced brackets" and junk_reason(cut, title=False) is None
    assert answer_junk_reason("Temp Hint Dude", "} } { ... {") == "its description is mostly punctuation"
    assert answer_junk_reason("[Norm's Last Name],", "ok") == "its title is a placeholder"


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text())
def test_gate_verdicts_never_raise(title, description):
    for text in (title, description):
        assert junk_reason(text) in (None, *{why for _, why in JUNK})
        meta_reason(text)
    answer_junk_reason(title, description)
    ds, reqs = _requests()
    gate_answers({reqs[0].key: (title, description)}, {r.key: r for r in reqs}, reqs, None)


_CACHE: dict = {}


def _requests():
    if "reqs" not in _CACHE:
        _CACHE["reqs"] = text_requests(2)
    return _CACHE["reqs"]


# --------------------------------------------------------------------------- the gate, end to end

def test_junk_answers_are_reasked_with_the_reason_then_fall_back():
    ds, reqs = text_requests(3)
    junk = {"L1_0": {"title": "[<b>Forthcoming, FINISHED!</c><i>",
                     "description": "<a href=https://www.youtube/embed?markup={{&#176;"},
            "L1_1": {"title": "Temp Hint Dude", "description": "} } { ... {"},
            "L1_2": {"title": "[Norm's Last Name],", "description": "[Normal Norms Description]"}}
    again = {"L1_0": {"title": "Watch at youtube.com/embed", "description": "Links."},  # junk again
             "L1_1": {"title": "Pets and their habits", "description": "Cats and dogs at home."},
             "L1_2": {"title": "{title}", "description": "x"}}
    log = ListLog()
    llm = FakeLLM().queue(json.dumps(junk), *[json.dumps({k: v}) for k, v in again.items()])
    out = summarizer(llm, ds, log, llm_initial_batch_size=3, llm_concurrency=1).summarize(reqs)
    assert len(title_calls(llm)) == 4  # placeholder descriptions are asked again too (test_descriptions.py)
    # each re-ask holds one cluster, named by the prompt's last line ('... ID(s): ["L1_0"]')
    prompts = {json.loads(call["prompt"].rsplit(": ", 1)[1])[0]: call["prompt"] for call in title_calls(llm)[1:]}
    assert "was rejected: its title contains HTML markup" in prompts["L1_0"]
    assert "was rejected: its description is mostly punctuation" in prompts["L1_1"]
    assert "was rejected: its title is a placeholder" in prompts["L1_2"]
    assert "Forthcoming" not in prompts["L1_0"]  # the junk is not quoted back to the model
    assert out["L1_1"].title == "Pets and their habits" and not out["L1_1"].fallback
    for key, first, second in (("L1_0", "contains HTML markup", "contains a URL"),
                               ("L1_2", "is a placeholder", "is a placeholder")):
        s = out[key]
        assert s.fallback and s.source == "keywords" and first in s.error and second in s.error
        assert answer_junk_reason(s.title, s.description) is None
    fb = next(r for r in log.records if r["event"] == "llm_fallback")
    assert set(fb["keys"]) == {"L1_0", "L1_2"}


def test_a_copied_title_is_asked_again_with_the_reason():
    ds, reqs = text_requests(2)
    first = {r.key: {"title": r.samples[0][1], "description": "Copied."} for r in reqs}
    llm = FakeLLM().queue(json.dumps(first))
    summarizer(llm, ds, llm_initial_batch_size=2, llm_concurrency=1).summarize(reqs)
    assert llm.calls == 3
    assert all("it copies the opening of a sample" in call["prompt"] for call in llm.history[1:])


def test_a_first_sentence_is_a_copy_a_heading_is_not():
    from hercules_core.summarize import copied_title

    samples = [("a", "Love is a grave mental disease. -- Plato"), ("b", "Humor in the Court: Q. Are you sure?"),
               ("c", "Linux - the kernel and its hackers")]
    assert copied_title("Love is a grave mental disease.", samples)  # SmolLM2's title, full settings
    assert not copied_title("Humor in the Court", samples) and not copied_title("Linux", samples)
    assert not copied_title("Grave mental diseases", samples)


# --------------------------------------------------------------------------- the figures

def test_title_junk_counts_titles_and_descriptions():
    h, emb = topic_run()
    assert all(h.evaluation[lv]["title_junk"] == 0 for lv in (1, 2))
    lv1 = h.levels[1]
    lv1.titles[0] = "[<b>Forthcoming, FINISHED!</c><i>"
    lv1.descriptions[1] = "[Normal Norms Description]"
    lv1.titles[2] = "C++ and Java"
    q = title_quality(h, emb)
    assert q[1]["title_junk"] == 2 and q[1]["title_meta_text"] == 0  # neither is about the prompt
    from hercules_core.title_quality import format_lines

    assert "2 junk" in format_lines({1: {**h.evaluation[1], **q[1]}})[0]


def test_evaluate_page_shows_title_junk():
    from callbacks.page_evaluate import GROUPS

    assert any("title_junk" in keys for _, keys in GROUPS)
