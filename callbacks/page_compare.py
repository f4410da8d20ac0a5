"""Callbacks of the compare page: two finished runs side by side through ``hercules_core.curate.compare``."""

from __future__ import annotations

from typing import Any

import dash_bootstrap_components as dbc
from dash import Input, Output, html

from hercules_core import HerculesError

from . import ids, runstore

ROWS_MAX = 200  # rows per table shown (the rest are counted)


def run_options(ctx) -> list[dict[str, str]]:
    """The runs with results, newest first, as select options."""
    out = []
    for st in runstore.list_runs(ctx.runs_dir):
        if not runstore.has_results(st.get("state")):
            continue
        data = st.get("data") if isinstance(st.get("data"), dict) else {}
        label = f"{st['run_id'][:8]} · {data.get('source') or 'data'} · {str(st.get('created', ''))[:16]}"
        out.append({"label": label, "value": st["run_id"]})
    return out


def _title(h, cid: str) -> str:
    try:
        return h.cluster(cid).title
    except KeyError:
        return ""


def _table(header: list[str], rows: list[list[Any]], cls: str):
    shown = rows[:ROWS_MAX]
    return html.Div([
        dbc.Table([html.Thead(html.Tr([html.Th(c) for c in header])),
                   html.Tbody([html.Tr([html.Td(str(v)) for v in r]) for r in shown])],
                  size="sm", striped=True, className=f"small mb-1 {cls}"),
        html.Div(f"… and {len(rows) - len(shown):,} more", className="small text-muted") if len(rows) > len(shown)
        else None])


def comparison(ctx, a: Any, b: Any):
    """The page's body for runs ``a`` and ``b`` (ids from the browser: checked), as text components."""
    from hercules_core.curate import compare

    if not runstore.valid_id(a) or not runstore.valid_id(b):
        return dbc.Alert("Choose two finished runs.", color="info")
    if a == b:
        return dbc.Alert("Choose two different runs.", color="info")
    try:
        ha, hb = ctx.model(a).h, ctx.model(b).h
    except (OSError, HerculesError) as e:
        return dbc.Alert(str(e) if isinstance(e, HerculesError) else "One of the runs has no model.", color="warning")
    result = compare(ha, hb)
    it = result["items"]
    parts: list = [html.P(f"Items: A {it['a']:,}, B {it['b']:,}, shared {it['shared']:,} (only shared items are "
                          "compared). Agreement: item-weighted best-match Jaccard of each A cluster (1 only for "
                          "identical partitions); ARI beside it.", className="small compare-items")]
    parts += [dbc.Alert(n, color="warning", className="small") for n in result.get("notes") or []]
    if not result["levels"]:
        return html.Div(parts)
    summary = [[r["level"], r["clusters_a"], r["clusters_b"], len(r["matched"]), len(r["splits"]), len(r["merges"]),
                len(r["new"]), len(r["vanished"]), len(r["retitled"]), f"{r['agreement']:.3f}", f"{r['ari']:.3f}"]
               for r in result["levels"]]
    parts.append(_table(["level", "A clusters", "B clusters", "matched", "splits", "merges", "new", "vanished",
                         "retitled", "agreement", "ARI"], summary, "compare-summary"))
    for r in result["levels"]:
        lv = r["level"]
        body = [
            html.H6("Matched", className="mt-2"),
            _table(["A", "A title", "B", "B title", "Jaccard"],
                   [[m["a"], _title(ha, m["a"]), m["b"], _title(hb, m["b"]), f"{m['jaccard']:.3f}"]
                    for m in r["matched"]], "compare-matched"),
            html.H6("Split (one A cluster over several B clusters)", className="mt-2"),
            _table(["A", "A title", "into B"], [[s["a"], _title(ha, s["a"]), ", ".join(s["into"])]
                                                 for s in r["splits"]], "compare-splits"),
            html.H6("Merged (several A clusters in one B cluster)", className="mt-2"),
            _table(["B", "B title", "from A"], [[m["b"], _title(hb, m["b"]), ", ".join(m["from"])]
                                                 for m in r["merges"]], "compare-merges"),
            html.H6("New in B / vanished from A", className="mt-2"),
            _table(["new in B", "title"], [[c, _title(hb, c)] for c in r["new"]], "compare-new"),
            _table(["vanished from A", "title"], [[c, _title(ha, c)] for c in r["vanished"]], "compare-vanished"),
            html.H6("Retitled (matched, another title)", className="mt-2"),
            _table(["A", "A title", "B", "B title"], [[x["a"], x["title_a"], x["b"], x["title_b"]]
                                                      for x in r["retitled"]], "compare-retitled"),
        ]
        parts.append(html.Details([html.Summary(f"Level {lv}: {len(r['matched'])} matched, agreement "
                                                f"{r['agreement']:.3f}", className="fw-semibold"), *body],
                                  className="mt-2 compare-level", open=lv == 1))
    return html.Div(parts)


def register(app, ctx) -> None:
    @app.callback(Output(ids.COMPARE_OUT, "children"), Input(ids.COMPARE_A, "value"), Input(ids.COMPARE_B, "value"))
    def _compare(a, b):
        return comparison(ctx, a, b)
