"""What the explorer needs from a saved model, computed once per loaded file.

Nodes are addressed by a *key* ``"L<level>:<index>"`` (level 0 = items): unlike item ids, keys are
always safe to put in a component id and are parsed back with a strict regex and bounds checks.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hercules_core import Hierarchy, load_model
from hercules_core.reduction import cluster_positions

from . import search_index

KEY_RE = re.compile(r"L(\d{1,2}):(\d{1,9})")
SPACES = ("representation", "description")


def make_key(level: int, index: int) -> str:
    return f"L{int(level)}:{int(index)}"


def structure_token(h: Hierarchy) -> str:
    """A short digest of the cluster ids of every level in order: equal tokens mean every key
    ``L<level>:<index>`` names the same cluster (title edits keep it, structural edits change it)."""
    digest = hashlib.blake2b(digest_size=8)
    for lv in h.levels[1:]:
        digest.update("\x1f".join(map(str, lv.ids)).encode())
        digest.update(b"\x1e")
    return digest.hexdigest()


@dataclass
class ExploreModel:
    """A loaded hierarchy plus derived arrays: ancestors per level, item assignments, search text."""

    h: Hierarchy
    path: str = ""
    # up[a][b] for a < b: index at level b of each node of level a
    up: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    _clusters: search_index.MemoryIndex | None = None  # rowid -> _cluster_rows[rowid] (top level first)
    _cluster_rows: list[tuple[int, int]] = field(default_factory=list)
    items_index: search_index.ItemIndex | None = None
    _xy: dict[tuple[int, str], np.ndarray | None] = field(default_factory=dict)
    _extent: dict[tuple[int, str], tuple[np.ndarray, np.ndarray] | None] = field(default_factory=dict)
    # which cluster each key names: a structural edit (callbacks/curate.py) shifts indices, and a page
    # drawn before it carries the old token, so its keys are refused rather than read against the new order
    structure: str = ""

    @classmethod
    def load(cls, path: str | Path) -> "ExploreModel":
        """The model of a run directory; the items' search index (``search.sqlite``) starts building in
        the background now, when the run is opened, so that the first search does not wait for it."""
        em = cls.from_hierarchy(load_model(path), str(path))
        em.items_index.ready(0)
        return em

    @classmethod
    def from_hierarchy(cls, h: Hierarchy, path: str = "") -> "ExploreModel":
        em = cls(h=h, path=path, structure=structure_token(h))
        top = h.top_level
        for a in range(top):
            idx = np.arange(len(h.levels[a]))
            for b in range(a + 1, top + 1):
                idx = h.levels[b - 1].parent[idx]
                em.up[(a, b)] = idx.astype(np.int64)
        em._cluster_rows = [(level, j) for level in range(top, 0, -1) for j in range(len(h.levels[level]))]
        em._clusters = search_index.MemoryIndex(
            (r, f"{h.levels[lv].titles[j]}\n{h.levels[lv].descriptions[j]}".lower())
            for r, (lv, j) in enumerate(em._cluster_rows))
        ids0, texts = h.levels[0].ids, search_index.item_texts(h)
        em.items_index = search_index.ItemIndex(Path(path).parent if path else None,
                                                lambda: search_index.rows_of(ids0, texts), len(ids0),
                                                search_index.fingerprint(ids0), model_path=path or None)
        return em

    # ------------------------------------------------------------------ structure
    @property
    def top(self) -> int:
        return self.h.top_level

    def parse(self, key: Any) -> tuple[int, int] | None:
        """(level, index) of a key, or None for anything that is not a valid node of this model."""
        if not isinstance(key, str):
            return None
        m = KEY_RE.fullmatch(key)
        if not m:
            return None
        level, index = int(m.group(1)), int(m.group(2))
        if level > self.top or index >= len(self.h.levels[level]):
            return None
        return level, index

    def ancestor(self, level: int, index: int, at: int) -> int:
        """Index at level ``at`` (>= level) of the ancestor of node (level, index)."""
        if at == level:
            return index
        return int(self.up[(level, at)][index])

    def ancestors(self, level: int, index: int) -> list[tuple[int, int]]:
        """Parent, grandparent, ... up to the top level."""
        return [(b, int(self.up[(level, b)][index])) for b in range(level + 1, self.top + 1)]

    def map_to(self, level: int, at: int) -> np.ndarray:
        """For each node of ``level`` (< ``at``), its ancestor index at ``at``."""
        return self.up[(level, at)] if at > level else np.arange(len(self.h.levels[level]))

    def in_subtree(self, level: int, sel_level: int, sel_index: int) -> np.ndarray:
        """Boolean mask over the nodes of ``level`` that lie in the subtree of the selection."""
        n = len(self.h.levels[level])
        if level > sel_level:
            return np.zeros(n, dtype=bool)
        if level == sel_level:
            mask = np.zeros(n, dtype=bool)
            mask[sel_index] = True
            return mask
        return self.up[(level, sel_level)] == sel_index

    def related(self, level: int, sel_level: int, sel_index: int) -> np.ndarray:
        """Mask over ``level``: the selection, its descendants, or its ancestor at that level."""
        if level > sel_level:
            mask = np.zeros(len(self.h.levels[level]), dtype=bool)
            mask[self.ancestor(sel_level, sel_index, level)] = True
            return mask
        return self.in_subtree(level, sel_level, sel_index)

    def members(self, level: int, index: int) -> np.ndarray:
        """L0 item indices under node (level, index)."""
        if level == 0:
            return np.array([index])
        return np.flatnonzero(self.up[(0, level)] == index)

    def children(self, level: int, index: int) -> np.ndarray:
        if level == 0:
            return np.empty(0, dtype=np.int64)
        kids = self.h.children_of(level, index)
        return kids[np.argsort(-self.h.levels[level - 1].size[kids], kind="stable")]

    def xy(self, level: int, space: str) -> np.ndarray | None:
        """2-D positions of the nodes of ``level`` in ``space``: items at their projection, clusters
        as :func:`hercules_core.reduction.cluster_positions` places them (representation: at their
        items' mean)."""
        key = (int(level), space)
        if key not in self._xy:
            self._xy[key] = cluster_positions(self.h, level, space) if level else \
                self.h.levels[0].reductions.get(space)
        return self._xy[key]

    def extent(self, level: int, space: str) -> tuple[np.ndarray, np.ndarray] | None:
        """``(min, max)`` of ``xy(level, space)`` (kept: over 1M items it takes ~65 ms), None if empty."""
        key = (int(level), space)
        if key not in self._extent:
            p = self.xy(level, space)
            self._extent[key] = (p.min(axis=0), p.max(axis=0)) if p is not None and len(p) else None
        return self._extent[key]

    def spaces(self) -> list[str]:
        return [s for s in SPACES if all(s in lv.reductions for lv in self.h.levels[1:])]

    # ------------------------------------------------------------------ search
    def search(self, query: str, limit: int = 25, wait: float = 0.1) -> list[dict[str, Any]]:
        """Case-insensitive substring search over titles and descriptions (clusters first, top level
        first), then items (from ``search_index.ITEM_MIN_CHARS`` characters, once their index is ready:
        ``item_search_note`` says when they were not searched)."""
        q = search_index.normalize(query)
        if len(q) < 2:
            return []
        hits: list[dict[str, Any]] = []
        for rowid, text in self._clusters.find(q, limit):
            level, j = self._cluster_rows[rowid]
            hits.append(self._hit(level, j, text, q))
        if len(hits) < limit and self.item_search_note(q, wait) is None:
            for j, text in self.items_index.find(q, limit - len(hits)):
                hits.append(self._hit(0, j, text, q))
        return hits

    def item_search_note(self, query: str, wait: float = 0.0) -> str | None:
        """Why items are not searched for ``query`` (None when they are)."""
        q = search_index.normalize(query)
        if len(q) < search_index.ITEM_MIN_CHARS:
            return f"Items are searched from {search_index.ITEM_MIN_CHARS} characters on."
        if not self.items_index.ready(wait):
            return self.items_index.error or \
                f"The {self.h.n_items:,} items are still being indexed for search: try again in a moment."
        return None

    def _hit(self, level: int, j: int, text: str, q: str) -> dict[str, Any]:
        lv = self.h.levels[level]
        return {"key": make_key(level, j), "level": level, "id": lv.ids[j], "title": lv.titles[j],
                "snippet": _snippet(text, q), "size": int(lv.size[j])}


def _snippet(text: str, q: str, width: int = 90) -> str:
    i = text.find(q)
    start = max(0, i - width // 3)
    s = " ".join(text[start:start + width].split())
    return ("…" if start else "") + s + ("…" if start + width < len(text) else "")
