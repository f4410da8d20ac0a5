"""Readable titles: the fluency figure, its use in choosing among grounded candidates, and where it is shown."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hercules_core.config import HerculesConfig
from hercules_core.grounded import grounded_answer, shorter_titles
from hercules_core.summarize_types import SummaryRequest
from hercules_core.title_quality import (FLUENCY_READABLE, FLUENCY_REFERENCE, GROUNDED_TOLERANCE, choose_title,
                                         fluency_faults, format_lines, gate_answers, title_fluency)

# titles the offline default wrote (issue 19, docs/models.md) and word salads of readable ones
ODD = ["Oz of cup and price", "Bartender and dog in replied", "Health and disease in medical",
       "Children and parents in awkward", "Door and stay with love", "Linux and linux in unix"]


def test_reference_titles_score_one_and_odd_ones_less():
    assert all(title_fluency(t) == 1.0 for t in FLUENCY_REFERENCE)
    for t in ODD:
        assert title_fluency(t) < 1.0, (t, fluency_faults(t))
    assert title_fluency("Bartender and dog in replied") < FLUENCY_READABLE


@pytest.mark.parametrize("readable,salad", [
    ("Smoking and cancer", "Cancer smoking and"), ("Smoking and cancer", "And smoking cancer"),
    ("Price of a cup of coffee", "Price of and cup coffee of"), ("Kids at school", "Kids school at"),
    ("Love and marriage", "Love marriage and and"), ("Eat food", "Eat, Food"),
])
def test_a_readable_title_scores_above_a_salad_of_its_words(readable, salad):
    assert title_fluency(readable) > title_fluency(salad)
    assert title_fluency(readable) == title_fluency(readable)  # deterministic: no model, no randomness


def test_shorter_candidates_are_the_model_words_cut_before_a_joining_word():
    assert shorter_titles("Oz of cup and price") == ["Oz of cup", "Oz"]
    assert shorter_titles("Linux kernel") == []


def test_the_readable_candidate_wins_when_retrieval_is_close_not_when_it_is_far():
    titles = ["Oz of cup and price", "Oz of cup", "Oz"]
    # close margins (within the gate's noise): the most readable, then the larger margin
    assert choose_title(titles, [0.20, 0.19, 0.10]) == 1
    # the readable one retrieves much worse: self-retrieval wins
    assert choose_title(["Children and parents in awkward", "Parents"], [0.20, 0.20 - 2 * GROUNDED_TOLERANCE]) == 0
    # a readable candidate whose own cluster is not first never replaces one whose own cluster is
    assert choose_title(["Door and stay with love", "Love letters"], [0.01, -0.01]) == 0
    # without margins (no text embedder): the most readable, the first among equals
    assert choose_title(["Bartender and dog in replied", "Bartender and dog", "Bartender"]) == 1


def test_grounded_answer_keeps_the_readable_candidate():
    req = SummaryRequest("L1_0", 1, 20, "text", np.arange(20), keywords=["oz", "coffee", "bartender"],
                         samples=[("a", "The price of a cup of coffee in Oz"), ("b", "A bartender in Oz")])
    answers = iter(['"Oz of cup and price"', '"Coffee and oz in bartender"', '"Bartender and price"',
                    '"About coffee."'])
    seen = []

    def choose(titles):
        seen.extend(titles)
        margins = {"Oz of cup and price": 0.30, "Oz of cup": 0.28, "Bartender and price": 0.27}
        return choose_title(titles, [margins.get(t, 0.0) for t in titles])

    out = json.loads(grounded_answer(req, HerculesConfig(), lambda prompt, schema: next(answers), choose))
    assert out["title"] == "Oz of cup"
    assert seen[:3] == ["Oz of cup and price", "Coffee and Oz in bartender", "Bartender and price"]  # "Oz": cased


def test_the_gate_still_rejects_a_readable_title_that_does_not_retrieve():
    from tests.test_title_gate import topic_requests
    from hercules_core.clients.fakes import FakeEmbedder
    from hercules_core.title_quality import Grounding

    ds, labels, reqs, vecs = topic_requests()
    more = reqs + [SummaryRequest(f"L1_x{j}", 1, 0, "text", np.arange(0)) for j in range(2)]  # > GROUNDED_TOP
    grounding = Grounding(FakeEmbedder(), vecs)
    by_key = {r.key: r for r in reqs}
    # a fluent title about another cluster's topic is rejected however readable it is
    other = {"cats": "Rain and snow", "stocks": "Cats and dogs", "rain": "Stocks and bonds"}
    answers = {r.key: (other[lab], "d") for r, lab in zip(reqs, labels)}
    assert all(title_fluency(t) == 1.0 for t, _ in answers.values())
    reasons = gate_answers(answers, by_key, more, grounding)
    assert len(reasons) >= 2 and all("fits other groups better" in why for why in reasons.values())
    # and choose_title never prefers it to the cluster's own (less readable) title
    for r, lab in zip(reqs, labels):
        titles = [{"cats": "Cats of dogs and pets", "stocks": "Stocks of bonds and market",
                   "rain": "Rain of snow and weather"}[lab], other[lab]]
        assert choose_title(titles, grounding.margins(r.key, titles, more)) == 0


def test_the_figure_is_in_the_evaluation_and_the_closing_lines():
    from tests.test_title_gate import topic_run

    h, emb = topic_run()
    ev = h.evaluation[1]
    assert 0.0 <= ev["title_fluency"] <= 1.0 and isinstance(ev["title_disfluent"], int)
    lv1 = h.levels[1]
    lv1.titles = ["Bartender and dog in replied"] * len(lv1)
    from hercules_core.title_quality import title_quality

    q = title_quality(h, emb)[1]
    assert q["title_fluency"] == title_fluency("Bartender and dog in replied") and q["title_disfluent"] == len(lv1)
    line = format_lines({1: {**ev, **q}})[0]
    assert f"fluency {q['title_fluency']:.2f} ({len(lv1)} read oddly)" in line
    old = {k: v for k, v in ev.items() if k not in ("title_fluency", "title_disfluent")}  # a model saved before
    assert "fluency" not in format_lines({1: old})[0]
