"""Paged item lists (tree and pane): one page of a cluster's items at a time, with ‹ › buttons.

A response never carries more than ``PAGE`` items, whatever the cluster's size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from dash import html

PAGE = 100


def clamp(page: Any, total: int) -> int:
    pages = max(1, -(-int(total) // PAGE))
    return min(max(page if isinstance(page, int) and not isinstance(page, bool) else 0, 0), pages - 1)


def page_of(items: np.ndarray, page: Any) -> tuple[np.ndarray, int]:
    """(the items of page ``page``, that page clamped to the existing ones)."""
    p = clamp(page, len(items))
    return items[p * PAGE:(p + 1) * PAGE], p


def pager(type_: str, key: str, page: int, total: int):
    """"items a–b of n" with previous / next buttons (ids ``{"type": type_, "key": key, "page": p}``);
    nothing when everything fits on one page."""
    if total <= PAGE:
        return None
    last = clamp(total, total)
    start = page * PAGE

    def button(label: str, to: int, enabled: bool):
        return html.Button(label, id={"type": type_, "key": key, "page": to}, n_clicks=0, disabled=not enabled,
                           className="btn btn-sm btn-link p-0 mx-1 pager-button", title=f"page {to + 1}")
    return html.Div([button("‹ previous", max(page - 1, 0), page > 0),
                     html.Span(f"{start + 1:,}–{min(start + PAGE, total):,} of {total:,}", className="pager-range"),
                     button("next ›", min(page + 1, last), page < last)], className="small text-muted pager")


def clicked_page(trigger: Any, value: Any) -> int | None:
    """The page a pager button click asks for (None for anything else, e.g. a button that just appeared)."""
    if not isinstance(trigger, dict) or not value:
        return None
    page = trigger.get("page")
    return page if isinstance(page, int) and not isinstance(page, bool) and page >= 0 else None
