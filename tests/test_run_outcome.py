"""The outcome of a run: the "finished with warnings" rule, its reason and advice, the status
transitions of a run, and what the job panel, the run page and the runs table show for each."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from callbacks import job, outcome, page_run, page_runs, runstore, shell, uploads
from callbacks.context import AppContext
from hercules_core import HerculesConfig, LLMError
from hercules_core.clients import fakes
from tests.test_app_logic import data_url
from devkit.dash_http import component_text


@pytest.fixture(autouse=True)
def _private_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "model-cache"))


def _classes(component) -> str:
    if component is None or isinstance(component, (str, int, float)):
        return ""
    if isinstance(component, (list, tuple)):
        return " ".join(_classes(c) for c in component)
    return " ".join([str(getattr(component, "className", "") or ""), str(getattr(component, "color", "") or ""),
                     _classes(getattr(component, "children", None))])


# ----------------------------------------------------------------------------- the rule
def _assess(**kw):
    args = dict(llm_used=True, n_clusters=100, n_fallback=0, llm_calls=100, llm_errors=0)
    args.update(kw)
    return outcome.assess(**args)


def test_the_threshold_is_one_named_constant_and_strict():
    assert outcome.WARN_SHARE == 0.10
    assert _assess() is None
    assert _assess(n_fallback=10) is None  # exactly 10%: not above the threshold
    assert _assess(llm_errors=10) is None
    w = _assess(n_fallback=11)
    assert w["fallbacks"] == 11 and w["clusters"] == 100 and w["threshold"] == 0.10
    assert w["text"] == "11 of 100 summaries fell back to keyword titles (11%)."
    w = _assess(llm_errors=24, llm_calls=62)
    assert w["text"] == "24 of 62 LLM calls failed (39%)."
    w = _assess(n_fallback=21, n_clusters=32, llm_errors=24, llm_calls=62)
    assert w["text"] == ("21 of 32 summaries fell back to keyword titles (66%); 24 of 62 LLM calls failed (39%).")
    # a custom threshold
    assert _assess(n_fallback=5, threshold=0.04) is not None and _assess(n_fallback=5) is None


def test_a_keyword_run_never_warns_for_fallbacks():
    assert _assess(llm_used=False, n_fallback=32, n_clusters=32, llm_calls=0) is None
    assert outcome.assess_run({"models": {"llm": None, "summarizer": "keywords"}, "n_fallback_summaries": 5,
                               "clusters_per_level": [6, 2], "usage": {"llm_calls": 0, "llm_errors": 0}},
                              None) is None
    assert _assess(llm_used=True, n_fallback=0, n_clusters=0, llm_calls=0) is None  # nothing to divide by


def test_reason_labels_group_and_give_advice():
    ctx = "LLM call failed after 4 attempt(s): LLMError: Requested tokens (2312) exceed context window of 2048"
    assert outcome.reason_label(ctx) == "Requested tokens exceed context window"
    gate = 'title mentions "json"; asked again: title mentions "cluster"'
    assert outcome.reason_label(gate) == 'the gate rejected the answer: title mentions "json"'
    assert outcome.reason_label("LLM call failed after 4 attempt(s): LLMError: HTTP 500") == \
        "LLM call failed: LLMError: HTTP 500"
    assert outcome.reason_label("the LLM answer could not be parsed") == "the LLM answer could not be parsed"
    # reasons differing only in quoted words or numbers count as one; the commonest wording is shown
    counts = Counter({'the gate rejected the answer: title mentions "json"': 5,
                      'the gate rejected the answer: title mentions "cluster"': 3,
                      "the LLM answer could not be parsed": 6})
    assert outcome.main_reason(counts) == ('the gate rejected the answer: title mentions "json"', 8)
    assert outcome.main_reason({}) is None
    w = _assess(n_fallback=21, n_clusters=32, fallback_reasons={"Requested tokens exceed context window": 21})
    assert w["reason"] == "Requested tokens exceed context window" and w["reason_count"] == 21
    assert w["advice"] == outcome.ADVICE_CONTEXT and "larger model" in w["advice"]
    w = _assess(n_fallback=21, n_clusters=32, fallback_reasons=counts)
    assert w["advice"] == outcome.ADVICE_ANSWERS and "grounded prompt style" in w["advice"]
    # only calls failed: the reason comes from the errors; the advice is about the endpoint
    w = _assess(llm_errors=30, error_reasons={"LLM call failed: APIConnectionError: Connection refused": 30})
    assert w["reason"].startswith("LLM call failed") and w["advice"] == outcome.ADVICE_ENDPOINT
    assert "check the endpoint" in w["advice"]
    w = _assess(llm_errors=30)
    assert w["reason"].startswith("unknown") and w["advice"] == outcome.ADVICE_ENDPOINT


def test_log_reasons_reads_fallbacks_and_failed_calls(tmp_path):
    log = tmp_path / "run_log.jsonl"
    recs = [{"event": "llm_call", "error": None, "prompt": "x"},
            {"event": "llm_call", "error": "LLMError: Requested tokens (3000) exceed context window of 2048"},
            {"event": "llm_call", "error": "LLMError: HTTP 500 from the server"},
            {"event": "title_rejected", "keys": ["L1:0"], "reasons": {"L1:0": "x"}},
            {"event": "llm_fallback", "errors": {"L1:0": 'title says "these items"; asked again: no answer',
                                                 "L1:1": "the LLM answer could not be parsed",
                                                 "L1:2": "the LLM answer could not be parsed"}}]
    log.write_text("\n".join(json.dumps(r) for r in recs) + "\n{broken\n")
    got = outcome.log_reasons(log)
    assert got["fallback"] == Counter({"the LLM answer could not be parsed": 2,
                                       'the gate rejected the answer: title says "these items"': 1})
    assert got["error"] == Counter({"Requested tokens exceed context window": 1,
                                    "LLM call failed: LLMError: HTTP 500 from the server": 1})
    assert outcome.log_reasons(tmp_path / "missing.jsonl") == {"fallback": Counter(), "error": Counter()}


def test_title_quality_figures_per_level():
    ev = {"1": {"title_model_written_share": 0.25, "title_self_retrieval_top1": 0.5, "title_model_written": 2},
          "2": {"title_model_written_share": 1.0, "title_self_retrieval_top1": None}, "x": {}, "3": {"ari": 1}}
    tq = outcome.title_quality(ev)
    assert tq == [{"level": 1, "written_share": 0.25, "top1": 0.5}, {"level": 2, "written_share": 1.0, "top1": None}]
    assert outcome.title_lines(tq) == ["L1: 25% of titles written by the model, self-retrieval top-1 0.50",
                                       "L2: 100% of titles written by the model, self-retrieval top-1 n/a"]
    assert outcome.title_lines([{"level": "L1"}, None, "x"]) == []  # a tampered status shows nothing


# ----------------------------------------------------------------------------- runs, end to end
ROWS = "id,text\n" + "\n".join(f"{i},text about {['cats dogs', 'stock market', 'rain snow'][i % 3]} number {i}"
                               for i in range(60))


def _create(runs, llm: str, **cfg):
    desc = uploads.stage(runs, ["d.csv"], [data_url(ROWS.encode())])
    spec = uploads.data_spec(desc, what="text", text_column="text", id_column="id")
    config = HerculesConfig(level_cluster_counts=[6, 2], llm_retries=0, llm_retry_delay=0.01, **cfg)
    return job.create_run(runs, spec, config, {"text_embedder": "fake-hash", "llm": llm})


class JunkLLM(fakes.FakeLLM):
    """Answers that never parse: every LLM summary falls back to keywords."""

    def complete(self, prompt, *, schema=None):
        super().complete(prompt, schema=schema)
        return "Sure! Here are the titles: {not valid json"


class TooLongLLM(fakes.FakeLLM):
    """Every other call fails as a small local model does when the prompt is too long."""

    def complete(self, prompt, *, schema=None):
        if len(self.history) % 2 == 0:
            self.history.append({"prompt": prompt})
            raise LLMError("Requested tokens (2300) exceed context window of 2048")
        return super().complete(prompt, schema=schema)


def test_status_transitions_of_a_run_and_its_cancel(tmp_path):
    runs = tmp_path
    run_id = _create(runs, "keywords")
    rdir = runstore.run_dir(runs, run_id)
    assert runstore.read_status(rdir)["state"] == runstore.QUEUED
    token = runstore.issue_token(rdir)
    assert not runstore.claim_start(rdir, "forged") and runstore.read_status(rdir)["state"] == runstore.QUEUED
    assert runstore.claim_start(rdir, token) and not runstore.claim_start(rdir, token)  # once
    assert runstore.read_status(rdir)["state"] == runstore.RUNNING
    active = {"run_id": run_id, "token": token}
    # another browser (no token, a wrong one, a forged id) sees the run and cannot cancel it
    for other in (None, {"run_id": run_id}, {"run_id": run_id, "token": "x" * 43}, {"run_id": "0" * 32, "token": token},
                  {"run_id": "../" + run_id, "token": token}, [run_id, token], "x"):
        v = page_run.run_view(runs, run_id, other)
        assert v["other_browser"] and not v["can_cancel"] and not v["final"] and v["result"] is None
        assert page_run.cancel_run(runs, run_id, other) is None
    assert runstore.read_status(rdir)["state"] == runstore.RUNNING
    v = page_run.run_view(runs, run_id, active)
    assert v["can_cancel"] and not v["other_browser"]
    for bad in ("../x", "0" * 32, None, 5, {"run_id": run_id}):
        assert page_run.run_view(runs, bad, active) is None and page_run.cancel_run(runs, bad, active) is None
    status = page_run.cancel_run(runs, run_id, active)
    assert status["state"] == runstore.CANCELLED and runstore.cancel_requested(rdir)
    for late in (runstore.start, runstore.progress, runstore.heartbeat, runstore.finish):  # the dying job's
        late(rdir)
    assert runstore.read_status(rdir)["state"] == runstore.CANCELLED
    assert job.run(runs, run_id)["state"] == runstore.CANCELLED  # a cancelled run is never executed
    v = page_run.run_view(runs, run_id, active)
    assert v["final"] and not v["can_cancel"] and "cancelled" in component_text(v["result"])
    assert page_run.cancel_run(runs, run_id, active) is None  # nothing left to cancel


def test_a_keyword_run_finishes_done_without_warnings(tmp_path):
    run_id = _create(tmp_path, "keywords")
    status = job.run(tmp_path, run_id)
    assert status["state"] == runstore.DONE and status["warnings"] is None
    assert outcome.outcome(status) == runstore.DONE and status["stage"] == "Done"
    assert [q["level"] for q in status["title_quality"]] == [1, 2]
    alert = shell.result_message({"run_id": run_id}, tmp_path)
    assert "Run finished" in component_text(alert) and "success" in _classes(alert) and "warning" not in _classes(alert)
    assert "Done" in status["log"]  # the live log's tail is kept for a rejoined page


def test_junk_answers_finish_with_warnings_and_stay_explorable(tmp_path, monkeypatch):
    monkeypatch.setattr(fakes, "FakeLLM", JunkLLM)
    run_id = _create(tmp_path, "fake")
    status = job.run(tmp_path, run_id)
    assert status["state"] == runstore.DONE and runstore.has_results(status)
    w = status["warnings"]
    assert w["fallbacks"] == 8 and w["clusters"] == 8 and w["fallback_share"] == 1.0
    assert w["reason"] == "the LLM answer could not be parsed" and w["advice"] == outcome.ADVICE_ANSWERS
    assert w["text"].startswith("8 of 8 summaries fell back to keyword titles")
    assert status["stage"] == "Finished with warnings" and "Finished with warnings" in status["log"]
    assert outcome.outcome(status) == outcome.WARNINGS
    on_disk = runstore.read_status(runstore.run_dir(tmp_path, run_id))
    assert on_disk["warnings"] == w and on_disk["title_quality"][0]["written_share"] == 0.0
    # the explorer opens it as any finished run
    em = AppContext(runs_dir=tmp_path).model(run_id)
    assert em.h.stats["n_fallback_summaries"] == 8
    # amber everywhere, with the counts, the reason, the advice and the title figures
    alert = shell.result_message({"run_id": run_id, "state": "done"}, tmp_path)
    text = component_text(alert)
    assert "finished with warnings" in text.lower() and "8 of 8 summaries" in text
    assert "could not be parsed" in text and "grounded prompt style" in text and "L1: 0% of titles" in text
    assert "warning" in _classes(alert) and "success" not in _classes(alert)
    table = page_runs.runs_table(runstore.list_runs(tmp_path))
    assert "finished with warnings" in component_text(table) and "8 of 8 summaries" in component_text(table)
    v = page_run.run_view(tmp_path, run_id, None)
    assert v["final"] and v["state"] == outcome.WARNINGS and "8 of 8" in component_text(v["result"])


def test_failed_calls_finish_with_warnings_and_name_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(fakes, "FakeLLM", TooLongLLM)
    run_id = _create(tmp_path, "fake", llm_initial_batch_size=1, llm_min_batch_size=1, title_gate=False)
    status = job.run(tmp_path, run_id)
    w = status["warnings"]
    assert status["state"] == runstore.DONE and w is not None
    assert w["llm_errors"] > 0 and w["error_share"] > outcome.WARN_SHARE and w["llm_calls"] >= w["llm_errors"]
    assert f"{w['llm_errors']} of {w['llm_calls']} LLM calls failed" in w["text"]
    assert w["reason"] == "Requested tokens exceed context window" and w["advice"] == outcome.ADVICE_CONTEXT


def test_a_cancel_after_the_last_check_still_ends_cancelled(tmp_path, monkeypatch):
    """A run cancelled (flag only: a rejoined page or the runs page) while it saves its results ends
    cancelled, without results: never a "cancelled" that later turns into "done"."""
    run_id = _create(tmp_path, "keywords")
    rdir = runstore.run_dir(tmp_path, run_id)
    real = job.run_pipeline

    def late_cancel(*a, **kw):
        out = real(*a, **kw)
        runstore.request_cancel(rdir)
        return out

    monkeypatch.setattr(job, "run_pipeline", late_cancel)
    status = job.run(tmp_path, run_id)
    assert status["state"] == runstore.CANCELLED and runstore.read_status(rdir)["state"] == runstore.CANCELLED
    assert not (rdir / "model.json").exists() and not (rdir / "memberships.csv").exists()
    assert "Cancelled." in status["log"]
