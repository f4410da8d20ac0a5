"""How good a finished run is, and how every page shows a run's outcome.

**The rule** (:func:`assess`). A run that used an LLM *finishes with warnings* when more than
:data:`WARN_SHARE` of its LLM-summarised clusters (levels >= 1) fell back to keyword titles, or more
than :data:`WARN_SHARE` of its LLM calls failed. A run without an LLM (the keyword summariser) never
warns for fallbacks: keyword titles are what it was asked for. The warning carries the counts, the
main reason (the most frequent fallback or error reason of the run log, grouped: "Requested tokens
exceed context window", "the gate rejected the answer: ...", "LLM call failed: ...") and what to do.

It is recorded in ``status.json`` as ``warnings`` next to the state ``done`` (``runstore.DONE``): the
run has all its files, so the explorer and the downloads treat it as any finished run
(``runstore.has_results``); :func:`outcome` names what to show: ``"warnings"`` or the state.

**The view.** :func:`result_alert` (the job panel and the run page), :func:`state_badge` (the runs
table) and :func:`warnings_block` (also the explore overview) render an outcome: green for done,
amber (Bootstrap ``warning``) for finished with warnings and cancelled, red for failed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import dash_bootstrap_components as dbc
from dash import html

from . import runstore

WARN_SHARE = 0.10  # a share of fallbacks or failed LLM calls above this makes a run finish with warnings
WARNINGS = "warnings"  # the outcome (not a state) of a DONE run with a warnings record

ADVICE_CONTEXT = "use a larger model (a longer context window) or lower max_prompt_tokens"
ADVICE_ANSWERS = "choose the grounded prompt style (Configure: prompt style) or use a larger model"
ADVICE_ENDPOINT = "check the endpoint: its address, model name and key, and that the server is up"

LABEL = {runstore.DONE: "done", WARNINGS: "finished with warnings", runstore.FAILED: "failed",
         runstore.CANCELLED: "cancelled", runstore.INTERRUPTED: "interrupted", runstore.QUEUED: "queued",
         runstore.RUNNING: "running"}
COLOR = {runstore.DONE: "success", WARNINGS: "warning", runstore.RUNNING: "primary", runstore.QUEUED: "secondary",
         runstore.FAILED: "danger", runstore.CANCELLED: "warning", runstore.INTERRUPTED: "dark"}

_CONTEXT = re.compile(r"context (window|length|size)|maximum context|too many tokens|exceeds? (the )?max",
                      re.IGNORECASE)
_ATTEMPTS = re.compile(r"^LLM call failed after \d+ attempt\(s\):\s*")
_GATE = "; asked again:"
_LOG_SCAN_BYTES = 256 * 1024**2  # a run log is read line by line; beyond this, what was read decides


# --------------------------------------------------------------------------- reasons

def reason_label(text: Any) -> str:
    """A short, groupable label of one fallback or error reason of the run log."""
    t = " ".join(str(text or "no answer").split())
    if _CONTEXT.search(t):
        return "Requested tokens exceed context window"
    if _GATE in t:
        return "the gate rejected the answer: " + t.split(_GATE, 1)[0].strip()[:120]
    if _ATTEMPTS.match(t):
        return "LLM call failed: " + _ATTEMPTS.sub("", t)[:160]
    return t[:160]


def _group(label: str) -> str:
    """Labels that differ only in quoted words or numbers count as one reason."""
    return re.sub(r'"[^"]*"|\d+', "…", label)


def advice_for(label: str) -> str:
    if label.startswith("Requested tokens exceed"):
        return ADVICE_CONTEXT
    if label.startswith("LLM call failed"):
        return ADVICE_ENDPOINT
    return ADVICE_ANSWERS


def log_reasons(path: str | Path) -> dict[str, Counter]:
    """Counts of reason labels in a run log: ``fallback`` (one per cluster that fell back, from the
    ``llm_fallback`` records) and ``error`` (one per failed ``llm_call``). A missing log gives none."""
    out = {"fallback": Counter(), "error": Counter()}
    try:
        fh = open(path, "rb")
    except OSError:
        return out
    read = 0
    with fh:
        for raw in fh:
            read += len(raw)
            if read > _LOG_SCAN_BYTES:
                break
            if b'"llm_fallback"' not in raw and b'"error"' not in raw:
                continue
            try:
                rec = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            if rec.get("event") == "llm_fallback" and isinstance(rec.get("errors"), dict):
                out["fallback"].update(reason_label(v) for v in rec["errors"].values())
            elif rec.get("event") == "llm_call" and rec.get("error"):
                err = " ".join(str(rec["error"]).split())
                out["error"][reason_label(err) if _CONTEXT.search(err) else "LLM call failed: " + err[:160]] += 1
    return out


def main_reason(counts: Mapping[str, int]) -> tuple[str, int] | None:
    """The most frequent reason (grouped by :func:`_group`) and how many times it occurred."""
    groups: dict[str, list] = {}
    for label, n in counts.items():
        g = groups.setdefault(_group(label), [0, label, 0])
        g[0] += n
        if n > g[2]:
            g[1], g[2] = label, n
    if not groups:
        return None
    total, label, _ = max(groups.values(), key=lambda g: g[0])
    return label, total


# --------------------------------------------------------------------------- the rule

def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def assess(*, llm_used: bool, n_clusters: int, n_fallback: int, llm_calls: int, llm_errors: int,
           fallback_reasons: Mapping[str, int] | None = None, error_reasons: Mapping[str, int] | None = None,
           threshold: float = WARN_SHARE) -> dict[str, Any] | None:
    """The ``warnings`` record of a finished run, or None when it is fine (see the module docstring)."""
    fb_share = _share(n_fallback, n_clusters) if llm_used else 0.0
    err_share = _share(llm_errors, llm_calls)
    fb_warn, err_warn = fb_share > threshold, err_share > threshold
    if not (fb_warn or err_warn):
        return None
    parts = []
    if fb_warn:
        parts.append(f"{n_fallback} of {n_clusters} summaries fell back to keyword titles ({fb_share:.0%})")
    if err_warn:
        parts.append(f"{llm_errors} of {llm_calls} LLM calls failed ({err_share:.0%})")
    found = (main_reason(fallback_reasons or {}) if fb_warn else None) or main_reason(error_reasons or {})
    reason = found[0] if found else "unknown (the run log has no reason)"
    advice = advice_for(reason) if found else (ADVICE_ENDPOINT if err_warn else ADVICE_ANSWERS)
    return {"fallbacks": n_fallback if llm_used else 0, "clusters": n_clusters,
            "fallback_share": round(fb_share, 4), "llm_errors": llm_errors, "llm_calls": llm_calls,
            "error_share": round(err_share, 4), "threshold": threshold, "reason": reason,
            "reason_count": found[1] if found else 0, "advice": advice, "text": "; ".join(parts) + "."}


def assess_run(stats: Mapping[str, Any], run_log: str | Path | None, threshold: float = WARN_SHARE):
    """:func:`assess` for a fitted hierarchy's ``stats`` and the run's log file."""
    models = stats.get("models") or {}
    usage = stats.get("usage") or {}
    counts = stats.get("clusters_per_level") or []
    reasons = log_reasons(run_log) if run_log is not None else {"fallback": Counter(), "error": Counter()}
    return assess(llm_used=bool(models.get("llm")), n_clusters=int(sum(counts)),
                  n_fallback=int(stats.get("n_fallback_summaries") or 0),
                  llm_calls=int(usage.get("llm_calls") or 0), llm_errors=int(usage.get("llm_errors") or 0),
                  fallback_reasons=reasons["fallback"], error_reasons=reasons["error"], threshold=threshold)


def title_quality(evaluation: Mapping[Any, Any] | None) -> list[dict[str, Any]]:
    """Per level: the share of titles written by the model and the title self-retrieval top-1
    (``hercules_core.title_quality``), as stored in the status and shown beside a warning."""
    out = []
    for key in sorted((evaluation or {}), key=lambda k: int(k) if str(k).isdigit() else 0):
        q = evaluation[key]
        if not str(key).isdigit() or not isinstance(q, dict) or "title_model_written_share" not in q:
            continue
        out.append({"level": int(key), "written_share": q.get("title_model_written_share"),
                    "top1": q.get("title_self_retrieval_top1")})
    return out


def title_lines(tq: Iterable[Any] | None) -> list[str]:
    lines = []
    for q in tq or []:
        if not isinstance(q, dict) or not isinstance(q.get("level"), int):
            continue
        ws, top1 = q.get("written_share"), q.get("top1")
        lines.append(f"L{q['level']}: " + (f"{ws:.0%} of titles written by the model" if isinstance(ws, (int, float))
                                          else "titles written by the model n/a")
                     + ", self-retrieval top-1 " + (f"{top1:.2f}" if isinstance(top1, (int, float)) else "n/a"))
    return lines


# --------------------------------------------------------------------------- the view

def outcome(status: Mapping[str, Any] | None) -> str:
    """What to show for a run: its effective state, or ``"warnings"`` for a DONE run with warnings."""
    status = status or {}
    state = runstore.effective_state(dict(status)) if status else "unknown"
    if runstore.has_results(state) and isinstance(status.get("warnings"), dict):
        return WARNINGS
    return state


def state_badge(status: Mapping[str, Any]):
    key = outcome(status)
    return dbc.Badge(LABEL.get(key, str(key)), color=COLOR.get(key, "light"),
                     className="run-state" + (" run-state-warnings" if key == WARNINGS else ""))


def warnings_block(warnings: Any, tq: Any = None, *, title: bool = True):
    """The amber block of a run that finished with warnings (None without warnings)."""
    if not isinstance(warnings, dict):
        return None
    lines = title_lines(tq)
    return dbc.Alert([
        html.Strong("Finished with warnings. ") if title else None,
        html.Span(str(warnings.get("text", "")), className="warn-counts"),
        html.Div([html.Span("Main reason: ", className="fw-semibold"),
                  html.Span(str(warnings.get("reason", "")), className="warn-reason")], className="small"),
        html.Div([html.Span("What to do: ", className="fw-semibold"),
                  html.Span(str(warnings.get("advice", "")), className="warn-advice")], className="small"),
        html.Div([html.Span("Title quality: ", className="fw-semibold"),
                  html.Ul([html.Li(x) for x in lines], className="mb-0")], className="small title-quality")
        if lines else None,
    ], color="warning", className="mb-2 py-2 run-warnings")


def result_alert(run_id: str, status: Mapping[str, Any] | None, *, explore_id: str | None = None):
    """The alert of a run that ended (None while it is queued or running)."""
    status = status or {}
    key = outcome(status)
    if key in (runstore.DONE, WARNINGS):
        kw = {"id": explore_id} if explore_id else {}
        buttons = [dbc.Button("Explore", href=f"/explore?run={run_id}", size="sm",
                              color="success" if key == runstore.DONE else "primary",
                              className="ms-2 result-explore-link", **kw),
                   dbc.Button("Evaluate", href=f"/evaluate?run={run_id}", color="secondary", size="sm",
                              className="ms-2 result-evaluate-link")]
        if key == WARNINGS:
            return html.Div([warnings_block(status.get("warnings"), status.get("title_quality")),
                             html.Div([html.Span("Run finished with warnings.", className="small"), *buttons])],
                            className="run-result run-result-warnings")
        return dbc.Alert([html.Strong("Run finished. "), *buttons], color="success",
                         className="mb-0 py-2 run-result run-result-done")
    if key == runstore.CANCELLED:
        return dbc.Alert("Run cancelled: the work was stopped.", color="warning",
                         className="mb-0 py-2 run-result run-result-cancelled")
    if key in (runstore.FAILED, runstore.INTERRUPTED):
        message = status.get("error")
        return dbc.Alert([html.Strong("Run failed: " if key == runstore.FAILED else "Run interrupted: "),
                          html.Span(message if isinstance(message, str) and message else "unknown error",
                                    className="run-error")],
                         color="danger", className="mb-0 py-2 run-result run-result-failed")
    return None
