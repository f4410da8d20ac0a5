"""The collapsible hierarchy tree; children are rendered lazily.

Only the top level and the path to the selection are rendered up front; a node's children are
rendered when its toggle (▸) is clicked, and removed again when it is collapsed. Items (level 0) are
listed one page (``paging.PAGE``) at a time, with previous / next buttons.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from dash import html

from hercules_core.stability import cluster_stability, describe

from . import ids, paging
from .explore_model import ExploreModel, make_key

CHILDREN_PER_NODE = 200


def _label(em: ExploreModel, level: int, index: int, selected: bool, on_path: bool, marks: dict | None = None):
    lv = em.h.levels[level]
    cls = "tree-label" + (" tree-selected" if selected else " tree-path" if on_path else "")
    key = make_key(level, index)
    parts = [html.Span(lv.ids[index], className="tree-id"), " ", html.Span(lv.titles[index], className="tree-title")]
    if level > 0:
        parts.append(html.Span(f"{int(lv.size[index]):,}", className="badge bg-light text-dark ms-1 tree-size"))
        info = cluster_stability(em.h, level, index)
        if info is not None and not info["stable"]:  # a marker on clusters a re-run would not reproduce
            parts.append(html.Span("unstable", className="badge bg-warning text-dark ms-1 tree-unstable", title=describe(info)))
        mark = (marks or {}).get(str(lv.ids[index]))
        if mark:  # callbacks/curate.py: "re-titling…" or "children changed since your edit"
            parts.append(html.Span(mark, className="badge bg-info text-dark ms-1 tree-mark"))
    return html.Span(parts, id={"type": ids.TREE_SELECT_T, "key": key}, n_clicks=0, className=cls,
                     title=f"{lv.ids[index]}: {lv.titles[index]}")


def node(em: ExploreModel, level: int, index: int, path: set[tuple[int, int]], selected: tuple[int, int] | None,
         marks: dict | None = None):
    """One tree node; expanded (children rendered) when it lies on the path to the selection."""
    key = make_key(level, index)
    is_sel = selected == (level, index)
    if level == 0:
        return html.Div(_label(em, 0, index, is_sel, False), className="tree-leaf")
    open_ = (level, index) in path  # the path holds the selection's ancestors and the selection itself
    kids = children(em, level, index, path, selected, marks=marks) if open_ else []
    return html.Div([
        html.Span("▾" if open_ else "▸", id={"type": ids.TREE_TOGGLE_T, "key": key}, n_clicks=0,
                  className="tree-toggle", role="button", title="expand / collapse"),
        _label(em, level, index, is_sel, (level, index) in path, marks),
        html.Div(kids, id={"type": ids.TREE_KIDS_T, "key": key}, className="tree-kids"),
    ], className="tree-node", **{"data-key": key})


def children(em: ExploreModel, level: int, index: int, path: set[tuple[int, int]] | None = None,
             selected: tuple[int, int] | None = None, page: int | None = None, marks: dict | None = None) -> list:
    """A node's children; a level-1 node's items one page at a time (by default the selected item's page)."""
    path = path or set()
    kids = em.children(level, index)
    if level == 1:
        if page is None and selected is not None and selected[0] == 0:
            where = np.flatnonzero(kids == selected[1])
            page = int(where[0]) // paging.PAGE if len(where) else 0
        shown, page = paging.page_of(kids, page)
        out = [node(em, 0, int(k), path, selected) for k in shown]
        return out + [paging.pager(ids.TREE_PAGE_T, make_key(level, index), page, len(kids))]
    shown = kids[:CHILDREN_PER_NODE]
    out = [node(em, level - 1, int(k), path, selected, marks) for k in shown]
    if len(kids) > len(shown):
        out.append(html.Div(f"… and {len(kids) - len(shown):,} more", className="tree-note"))
    return out


def tree(em: ExploreModel, selection: str | None = None, marks: dict | None = None) -> list:
    """The tree with the top level rendered and the path to ``selection`` opened; ``marks`` (cluster id
    -> short text) are badges beside those clusters."""
    sel = em.parse(selection)
    path: set[tuple[int, int]] = set()
    if sel is not None:
        path = set(em.ancestors(*sel))
        if sel[0] > 0:
            path.add(sel)
    top = em.h.levels[em.top]
    order = sorted(range(len(top)), key=lambda j: -int(top.size[j]))
    return [node(em, em.top, j, path, sel, marks) for j in order]


def turn_page(em: ExploreModel, key: Any, page: int) -> list | None:
    """A level-1 node's children showing page ``page`` of its items."""
    parsed = em.parse(key)
    if parsed is None or parsed[0] != 1:
        return None
    return children(em, *parsed, page=page)


def toggle(em: ExploreModel, key: Any, current: Any, marks: dict | None = None) -> tuple[list, str] | None:
    """(children, toggle glyph) after a click on a node's toggle: expand if collapsed, else collapse."""
    parsed = em.parse(key)
    if parsed is None or parsed[0] == 0:
        return None
    if current:
        return [], "▸"
    return children(em, *parsed, marks=marks), "▾"
