"""Titles people can trust: the title-quality score and the gate on every LLM answer."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from hercules_core.clients.fakes import FakeEmbedder, FakeLLM
from hercules_core.clients.openai_compat import OpenAICompatLLM
from hercules_core.config import HerculesConfig
from hercules_core.hercules import Hercules
from hercules_core.keywords import KeywordSummarizer
from hercules_core.prompts import parse_response
from hercules_core.summarize import LLMSummarizer, build_requests, copied_title
from hercules_core.title_quality import (Grounding, format_lines, is_keyword_list, meta_reason, norm_title,
                                         title_quality)
from devkit.factories import FAST, ListLog, make_text_dataset, title_calls
from devkit.openai_stub_server import StubServer

TOPIC_OF = {"cats": "Cats dogs pets", "stocks": "Stocks bonds market", "rain": "Rain snow weather"}


# --------------------------------------------------------------------------- single titles

@pytest.mark.parametrize("title", [
    "This is a JSON with keys title and description", "The 58 Text Items", "The 70-word summary of the topic",
    "Title", "Description of this cluster", "The topic these examples share", "Image, Png", "Images",
])
def test_meta_text_is_recognised(title):
    assert meta_reason(title)


@pytest.mark.parametrize("title", ["Illegal Driving Laws", "Smoking and Cancer", "Cats and dogs", "Linux kernel",
                                   "Humor in the Court", "Mark Twain on money", "Photos of cats"])
def test_real_titles_are_not_meta(title):
    assert meta_reason(title) is None


def test_keyword_lists_and_title_identity():
    assert is_keyword_list("Eat, Food, Like") and is_keyword_list("Mark twain, Majority")
    assert not is_keyword_list("Smoking and Cancer") and not is_keyword_list("Linux")
    assert norm_title("The Cats!") == norm_title("cats") and norm_title("Cats") != norm_title("Dogs")


def test_raw_newlines_in_strings_are_parsed():
    answer = '{"L1_0": {"title": "Smoking\nand Cancer", "description": "Two\nlines."}}'
    assert parse_response(answer, ["L1_0"]) == {"L1_0": ("Smoking and Cancer", "Two lines.")}


def test_a_short_title_quoting_a_heading_is_not_a_copy():
    samples = [("a", "Humor in the Court: Q. Are you qualified to give a urine sample? A. Yes, since childhood."),
               ("b", "My cat sleeps all day on the sofa.")]
    assert not copied_title("Humor in the Court", samples)
    assert copied_title("My cat sleeps", samples)  # cut mid-sentence: a copied opening


# --------------------------------------------------------------------------- the score

def topic_run(llm=None, levels=(6, 3), **cfg):
    ds = make_text_dataset(90)
    emb = FakeEmbedder()
    h = Hercules(HerculesConfig(level_cluster_counts=levels, **{**FAST, **cfg}), text_embedder=emb,
                 llm=llm).fit(ds).hierarchy_
    return h, emb


def test_score_is_saved_per_level_and_reacts_to_bad_titles():
    h, emb = topic_run()
    for lv in (1, 2):
        ev = h.evaluation[lv]
        assert ev["title_self_retrieval_top1"] is not None and 0 <= ev["title_self_retrieval_mrr"] <= 1
        assert ev["title_model_written"] == 0 and ev["title_fallbacks"] == 0  # the keyword summariser
        assert ev["title_meta_text"] == 0 and ev["title_duplicates_among_siblings"] == 0
    # three topics only: a parent of two clusters of one topic has no other words than its children
    assert 0 <= h.evaluation[2]["title_parent_equals_child"] <= 3 and h.evaluation[1]["title_parent_equals_child"] is None
    good = title_quality(h, emb)[1]["title_self_retrieval_top1"]
    # one title for every cluster: duplicates, and no title can find its own cluster any more
    lv1 = h.levels[1]
    lv1.titles = ["The 58 Text Items"] * len(lv1)
    h.levels[2].titles[0] = "The 58 Text Items"
    q = title_quality(h, emb)
    assert q[1]["title_meta_text"] == len(lv1) and q[1]["title_duplicates_among_siblings"] == len(lv1)
    assert q[1]["title_self_retrieval_top1"] < good
    assert q[2]["title_parent_equals_child"] >= 1
    lines = format_lines({lv: {**h.evaluation[lv], **q[lv]} for lv in q})
    assert lines[0].startswith("titles L1: self-retrieval") and f"{len(lv1)} meta-text" in lines[0]


def test_score_without_a_text_embedder_says_what_is_computed():
    h, _ = topic_run()
    q = title_quality(h, None)
    assert q[1]["title_self_retrieval_top1"] is None and q[1]["title_meta_text"] == 0
    assert "no text embedder" in q[1]["title_notes"][0]
    h.levels[0].desc_embeddings = None  # e.g. images without captions
    assert "no text to embed" in title_quality(h, FakeEmbedder())[1]["title_notes"][0]


def test_evaluation_json_and_model_carry_the_score(tmp_path):
    from hercules_core import io, load_model

    h, _ = topic_run()
    io.save_evaluation(h.evaluation, tmp_path / "evaluation.json")
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["1"]["title_self_retrieval_top1"] == h.evaluation[1]["title_self_retrieval_top1"]
    io.save_model(h, tmp_path / "model.json")
    assert load_model(tmp_path / "model.json").evaluation[2]["title_keyword_lists"] == h.evaluation[2]["title_keyword_lists"]


# --------------------------------------------------------------------------- the gate

def topic_requests():
    ds = make_text_dataset(90)
    labels = sorted(set(ds.labels))
    assign = np.array([labels.index(lab) for lab in ds.labels])
    vecs = FakeEmbedder().embed(ds.texts)
    cent = np.stack([vecs[assign == j].mean(0) for j in range(len(labels))])
    reqs = build_requests(1, [f"L1_{j}" for j in range(len(labels))], cent, assign, vecs, ds, [],
                          HerculesConfig(), np.random.default_rng(0))
    return ds, labels, reqs, vecs


def summarizer(llm, ds, log=None, grounding=None, **cfg):
    s = LLMSummarizer(llm, HerculesConfig(**{**FAST, "llm_concurrency": 1, **cfg}),
                      fallback=KeywordSummarizer(ds, ds.texts), run_log=log)
    s.grounding = grounding
    return s


def test_meta_answer_is_reasked_with_the_reason_then_falls_back():
    ds, labels, reqs, _ = topic_requests()
    meta = {r.key: {"title": "This is a JSON with keys title and description", "description": "JSON."} for r in reqs}
    good = {r.key: {"title": TOPIC_OF[lab], "description": "Fine."} for r, lab in zip(reqs, labels)}
    llm = FakeLLM().queue(json.dumps(meta),
                          json.dumps({"L1_0": meta["L1_0"]}),  # asked again: meta again -> fallback
                          json.dumps({"L1_1": good["L1_1"]}), json.dumps({"L1_2": good["L1_2"]}))
    log = ListLog()
    out = summarizer(llm, ds, log, llm_initial_batch_size=3).summarize(reqs, level_requests=reqs)
    assert len(title_calls(llm)) == 4  # placeholder descriptions are asked again too (test_descriptions.py)
    for call in title_calls(llm)[1:]:  # each re-ask names the reason
        assert 'was rejected: the title mentions "json"' in call["prompt"]
    assert out["L1_0"].fallback and out["L1_0"].source == "keywords" and "json" in out["L1_0"].error
    assert meta_reason(out["L1_0"].title) is None
    for key in ("L1_1", "L1_2"):
        assert not out[key].fallback and out[key].title == good[key]["title"]
    rejected = [r for r in log.records if r["event"] == "title_rejected"]
    assert rejected and set(rejected[0]["keys"]) == {"L1_0", "L1_1", "L1_2"}


def test_parent_titled_like_its_child_and_sibling_duplicates_are_rejected():
    ds, labels, reqs, _ = topic_requests()
    import dataclasses

    reqs = [dataclasses.replace(r, level=2, key=f"L2_{j}", children=[(f"L1_{j}", "Pets at home", "d")])
            for j, r in enumerate(reqs)]
    first = {"L2_0": {"title": "Pets at home", "description": "Child's."},
             "L2_1": {"title": "Money matters", "description": "a"}, "L2_2": {"title": "money matters!", "description": "b"}}
    llm = FakeLLM().queue(json.dumps(first), json.dumps({"L2_0": {"title": "Animals", "description": "ok"}}),
                          json.dumps({"L2_2": {"title": "Money matters", "description": "again"}}))
    out = summarizer(llm, ds, llm_initial_batch_size=3).summarize(reqs, level_requests=reqs)
    assert "subgroups" in llm.history[1]["prompt"] or "subgroups" in llm.history[2]["prompt"]
    assert out["L2_0"].title == "Animals" and not out["L2_0"].fallback
    assert out["L2_1"].title == "Money matters" and not out["L2_1"].fallback
    assert out["L2_2"].fallback and "another group already has that title" in out["L2_2"].error


class MapEmbedder:
    """Titles embedded as given vectors (one dimension per cluster), items as their cluster's axis."""

    model_id = "map"

    def __init__(self, vectors):
        self.vectors = vectors

    def embed(self, texts):  # anything else (the clusters' keywords) is equally close to every cluster
        return np.stack([self.vectors.get(t, np.ones(6)) for t in texts]).astype(np.float32)


def test_ungrounded_title_is_rejected_when_a_text_embedder_exists():
    from hercules_core.summarize_types import SummaryRequest

    k = 6
    eye = np.eye(k)
    items = np.repeat(eye, 10, axis=0)  # 10 items per cluster, each on its cluster's axis
    ds = make_text_dataset(60)
    reqs = [SummaryRequest(f"L1_{j}", 1, 10, "text", np.arange(10 * j, 10 * j + 10),
                           samples=[(ds.ids[10 * j], ds.texts[10 * j])]) for j in range(k)]
    titles = {f"Topic {j}": eye[j] for j in range(k)}
    titles["Everything else"] = eye[1:].sum(0) - eye[0]  # closer to every other cluster than to L1_0
    titles["Topic zero at last"] = eye[0]
    grounding = Grounding(MapEmbedder(titles), items)
    first = {f"L1_{j}": {"title": f"Topic {j}", "description": "d"} for j in range(k)}
    first["L1_0"]["title"] = "Everything else"
    llm = FakeLLM().queue(json.dumps(first), json.dumps({"L1_0": {"title": "Topic zero at last", "description": "d"}}))
    out = summarizer(llm, ds, grounding=grounding, llm_initial_batch_size=k).summarize(reqs, level_requests=reqs)
    assert len(title_calls(llm)) == 2  # placeholder descriptions are asked again too (test_descriptions.py)
    reask = title_calls(llm)[1]["prompt"]
    assert '"Everything else" was rejected: it fits other groups better than this one' in reask
    assert out["L1_0"].title == "Topic zero at last" and not out["L1_0"].fallback
    assert all(out[f"L1_{j}"].title == f"Topic {j}" for j in range(1, k))
    # without a grounding (no text embedder) the same title passes
    llm = FakeLLM().queue(json.dumps(first))
    assert summarizer(llm, ds, llm_initial_batch_size=k).summarize(reqs)["L1_0"].title == "Everything else"


def test_gate_through_the_openai_client_and_the_stub_server():
    """Scripted OpenAI-compatible server: meta answers are re-asked with the reason; a good answer on
    the re-ask is accepted, a second meta answer falls back (marked)."""
    ds, labels, reqs, _ = topic_requests()
    with StubServer(titles=["The 58 Text Items", "JSON title", "Stocks and bonds",  # first request
                            "The 31 text items",  # L1_0 asked again: meta again
                            "Rain and snow"]) as stub:  # L1_1 asked again: accepted
        llm = OpenAICompatLLM(stub.base_url, "stub-model", timeout=10, structured="json_object")
        log = ListLog()
        out = summarizer(llm, ds, log, llm_initial_batch_size=3).summarize(reqs, level_requests=reqs)
        prompts = [r["body"]["messages"][-1]["content"] for r in stub.requests]
    prompts = [p for p in prompts if "Generate the JSON output for" in p]  # placeholder descriptions are asked again too (test_descriptions.py)
    assert len(prompts) == 3
    assert all("was rejected" in p and "describes the request, not the texts" in p for p in prompts[1:])
    assert out["L1_0"].fallback and out["L1_0"].source == "keywords" and "text items" in out["L1_0"].error
    assert out["L1_1"].title == "Rain and snow" and not out["L1_1"].fallback
    assert out["L1_2"].title == "Stocks and bonds" and not out["L1_2"].fallback
    fb = [r for r in log.records if r["event"] == "llm_fallback"]
    assert fb and list(fb[0]["errors"]) == ["L1_0"]


def test_fake_llm_run_passes_the_gate_and_the_cli_prints_the_score(tmp_path):
    import subprocess
    import sys

    data = tmp_path / "d.csv"
    ds = make_text_dataset(60)
    data.write_text("id,text\n" + "\n".join(f"{i},{t}" for i, t in zip(ds.ids, ds.texts)))
    proc = subprocess.run([sys.executable, "-m", "hercules_core", "run", str(data), "--text-column", "text",
                           "--id-column", "id", "--levels", "5,2", "--embedder", "fake-hash", "--llm", "fake",
                           "--out", str(tmp_path / "out"), "--quiet", "--no-cache"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("titles L")]
    assert [line.split(":")[0] for line in lines] == ["titles L1", "titles L2"]
    assert "written by the model" in lines[0] and "self-retrieval" in lines[0]
    ev = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert ev["2"]["title_meta_text"] == 0 and ev["2"]["title_model_written"] >= 1


# --------------------------------------------------------------------------- grounded titles (tiny models)

def test_grounded_answer_keeps_the_best_candidate_and_cleans_repeats():
    import re

    from hercules_core.grounded import NoGroundedTitle, grounded_answer, title_schema
    from hercules_core.summarize_types import SummaryRequest

    req = SummaryRequest("L1_0", 1, 20, "text", np.arange(20), samples=[("a", "Linux kernel hackers"),
                                                                         ("b", "The linux kernel panics")],
                         keywords=["linux kernel", "pudd'nhead wilson's", "unix"])
    schemas = []
    answers = iter(['"Linux kernel and linux in unix"', '"Pudd\'nhead wilson"', '"Unix"', '"About the kernel."'])

    def call(prompt, schema):
        schemas.append(schema)
        return next(answers)

    out = json.loads(grounded_answer(req, HerculesConfig(), call, choose=lambda titles: 0))
    assert out == {"title": "Linux kernel in unix", "description": "About the kernel."}
    leads = [re.match(r"\^([^(]+)", s["pattern"]).group(1) for s in schemas[:3]]
    assert leads == ["Linux kernel", "Pudd'nhead wilson", "Unix"]
    # the description names two keywords the title lacks, in a bounded sentence (no whitespace padding)
    assert schemas[3]["type"] == "string" and "[Pp]udd'nhead" in schemas[3]["pattern"]
    assert not re.search(r"[*+]", schemas[3]["pattern"])
    pattern = re.compile(title_schema("Cats", ["dogs", "pets"])["pattern"])
    assert pattern.match("Cats and dogs") and pattern.match("Cats") and not pattern.match("Cats and dogs and pets too")
    with pytest.raises(NoGroundedTitle):
        grounded_answer(SummaryRequest("L1_1", 1, 3, "text", np.arange(3)), HerculesConfig(), call)


def test_grounded_candidate_named_like_a_child_is_passed_over():
    """"Children and parents in awkward" was an L2 title candidate identical to its child's title: the
    gate rejected it twice and the cluster fell back to keywords; another candidate is taken instead."""
    from hercules_core.grounded import grounded_answer
    from hercules_core.summarize_types import SummaryRequest

    req = SummaryRequest("L2_0", 2, 40, "text", np.arange(40), keywords=["children", "parents", "kids"],
                         children=[("L1_0", "Children and parents in awkward", "d"), ("L1_1", "Kids at school", "d")])
    answers = iter(['"Children and parents in awkward"', '"Parents and kids"', '"Kids"', '"About families."'])
    out = json.loads(grounded_answer(req, HerculesConfig(), lambda prompt, schema: next(answers),
                                     choose=lambda titles: 0))
    assert out["title"] == "Parents and kids"
    only = iter(['"Children and parents in awkward"', '"children and parents in awkward"', '"Kids at school"',
                 '"About families."'])
    out = json.loads(grounded_answer(req, HerculesConfig(), lambda prompt, schema: next(only), choose=lambda t: 0))
    assert out["title"] == "Children and parents"  # the candidate cut before a joining word is not a child's
    only = iter(['"Children and parents in awkward"', '"children and parents in awkward"', '"Kids at school"',
                 '"About families."'])
    req = dataclasses.replace(req, children=[*req.children, ("L1_2", "Children and parents", "d"),
                                             ("L1_3", "Children", "d"), ("L1_4", "Kids", "d")])
    out = json.loads(grounded_answer(req, HerculesConfig(), lambda prompt, schema: next(only), choose=lambda t: 0))
    assert out["title"] == "Children and parents in awkward"  # nothing else: the gate decides


def test_grounded_vocabulary_keeps_words_whole():
    """Titles like "Calendar and nhead in england" or "Tolkien and elves in ain": the vocabulary the
    grammar allows had cut "Pudd'nhead" and "ain't" at the apostrophe."""
    from hercules_core.grounded import vocabulary
    from hercules_core.summarize_types import SummaryRequest

    req = SummaryRequest("L1_0", 1, 4, "text", np.arange(4), keywords=["pudd'nhead wilson's", "calendar"],
                         samples=[("a", "Pudd'nhead Wilson's Calendar: ain't it grand"),
                                  ("b", "Wilson's calendar says it ain't so, grand England")])
    vocab = vocabulary(req)
    assert {"wilson", "calendar", "grand"} <= set(vocab)
    assert not {"nhead", "pudd", "ain", "wilson's"} & set(vocab)


# --------------------------------------------------------------------------- shown in the app

def test_evaluate_page_and_image_mosaic(tmp_path):
    from callbacks import page_evaluate, pane
    from callbacks.explore_model import ExploreModel, make_key
    from devkit.dash_http import component_text

    h, _ = topic_run()
    table = component_text(page_evaluate.metrics_table(h.evaluation))
    assert "Titles (self-retrieval" in table and "title_self_retrieval_top1" in table
    assert f"{h.evaluation[1]['title_self_retrieval_top1']:.4f}" in table
    em = ExploreModel.from_hierarchy(h)
    assert pane.mosaic(em, 1, 0, "run1") is None  # texts: no mosaic
    h.dataset.modality = "image"
    h.dataset.image_paths = [f"/x/{i}.png" for i in range(len(h.dataset.ids))]
    em.path = str(tmp_path / "model.json")
    assert pane.mosaic(em, 1, 0, "run1") is None  # images the run does not hold: no broken pictures
    (tmp_path / "images").mkdir()
    for i in range(len(h.dataset.ids)):
        (tmp_path / "images" / f"{i}.png").write_bytes(b"png")
    h.dataset.image_paths = [str(tmp_path / "images" / f"{i}.png") for i in range(len(h.dataset.ids))]
    shown = pane.mosaic(em, 1, 0, "run1")
    members = set(h.members(1, 0).tolist())
    srcs = [img.src for img in shown.children]
    assert 0 < len(srcs) <= pane.MOSAIC and all(int(s.rsplit("/", 1)[1]) in members for s in srcs)
    assert any(getattr(c, "className", "") == "image-mosaic" for c in pane.cluster_pane(em, make_key(1, 0), "run1").children)


def test_image_clusters_without_captions_get_honest_distinct_titles(tmp_path):
    from hercules_core.dataset import Dataset
    from hercules_core.keywords import image_texts

    # informative folders: titles from them
    paths = [str(tmp_path / "photos" / folder / f"IMG_{i:04d}.png") for folder in ("cats", "boats") for i in range(10)]
    ds = Dataset(ids=[f"p{i}" for i in range(20)], modality="image", image_paths=paths)
    from hercules_core.data import default_l0_descriptions

    texts, captioned = image_texts(ds, default_l0_descriptions(ds))
    assert not captioned and texts[0] == "cats" and texts[-1] == "boats"  # "photos", "img", digits dropped
    reqs = build_requests(1, ["L1_0", "L1_1"], None, np.repeat([0, 1], 10), None, ds, default_l0_descriptions(ds),
                          HerculesConfig(prompt_l0_sample_strategy="random"), np.random.default_rng(0))
    out = KeywordSummarizer(ds, default_l0_descriptions(ds)).summarize(reqs)
    assert [out["L1_0"].title, out["L1_1"].title] == ["Cats", "Boats"]
    # meaningless names: "Images like #..." naming central images, different for every cluster
    paths = [str(tmp_path / f"{i:04d}.png") for i in range(20)]
    ds = Dataset(ids=[f"p{i}" for i in range(20)], modality="image", image_paths=paths)
    out = KeywordSummarizer(ds, default_l0_descriptions(ds)).summarize(reqs)
    titles = [out[k].title for k in ("L1_0", "L1_1")]
    assert all(t.startswith("Images like #p") for t in titles) and len(set(titles)) == 2
    assert "Png" not in " ".join(titles) and all(meta_reason(t) is None for t in titles)
