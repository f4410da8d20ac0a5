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
