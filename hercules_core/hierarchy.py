"""The result model: per level, arrays plus titles and descriptions; ``Cluster`` is a light view.

Level 0 holds the items themselves (its ids are the item ids). Level ``i >= 1`` holds the clusters
built by the i-th k-means; their ids are ``L{i}_{index}``. ``parent[j]`` is the index of cluster
``j``'s parent in level ``i + 1`` (-1 at the top level).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from .config import HerculesConfig
from .dataset import Dataset
from .errors import HerculesError


# what a cluster id looks like (level >= 1 in practice): level and number as its groups
CLUSTER_ID_RE = re.compile(r"L([0-9]{1,2})_([0-9]{1,9})")


def cluster_id(level: int, index: int) -> str:
    return f"L{level}_{index}"


@dataclass
class Level:
    level: int
    ids: list[str]
    parent: np.ndarray  # int32 (n,)
    size: np.ndarray  # int64 (n,) number of L0 items under each cluster (1 at L0)
    vectors: np.ndarray | None  # representation vectors, float32 (n, d)
    desc_embeddings: np.ndarray | None  # float32 (n, d2) or None
    titles: list[str]
    descriptions: list[str]
    fallback: np.ndarray  # bool (n,): summary is a fallback, not the requested model's answer
    sources: list[str]  # what wrote each summary: a model id, "keywords", "snippet", ...
    reductions: dict[str, np.ndarray] = field(default_factory=dict)  # "representation"/"description"
    # per cluster, how its description was obtained (descriptions.MARKS: "", "reasked", "extractive");
    # empty for level 0 and for models saved before it was recorded
    description_marks: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Cluster:
    """A read-only view of one node (an item at level 0, a cluster above)."""

    hierarchy: "Hierarchy"
    level: int
    index: int

    @property
    def _lv(self) -> Level:
        return self.hierarchy.levels[self.level]

    @property
    def id(self) -> str:
        return self._lv.ids[self.index]

    @property
    def title(self) -> str:
        return self._lv.titles[self.index]

    @property
    def description(self) -> str:
        return self._lv.descriptions[self.index]

    @property
    def size(self) -> int:
        return int(self._lv.size[self.index])

    @property
    def fallback(self) -> bool:
        return bool(self._lv.fallback[self.index])

    @property
    def source(self) -> str:
        return self._lv.sources[self.index]

    @property
    def representation_vector(self) -> np.ndarray | None:
        return None if self._lv.vectors is None else self._lv.vectors[self.index]

    @property
    def description_embedding(self) -> np.ndarray | None:
        return None if self._lv.desc_embeddings is None else self._lv.desc_embeddings[self.index]

    @property
    def parent(self) -> "Cluster | None":
        p = int(self._lv.parent[self.index])
        return None if p < 0 else Cluster(self.hierarchy, self.level + 1, p)

    @property
    def children(self) -> list["Cluster"]:
        if self.level == 0:
            return []
        return [Cluster(self.hierarchy, self.level - 1, int(j)) for j in self.hierarchy.children_of(self.level, self.index)]

    def __repr__(self) -> str:
        return f"Cluster({self.id!r}, level={self.level}, size={self.size}, title={self.title!r})"


@dataclass
class Hierarchy:
    """A fitted hierarchy: ``levels[0]`` are the items, ``levels[-1]`` the top clusters."""

    levels: list[Level]
    config: HerculesConfig
    dataset: Dataset
    reducers: dict[str, dict[str, Any]] = field(default_factory=dict)  # space -> PCA parameters
    evaluation: dict[int, dict[str, Any]] = field(default_factory=dict)  # level -> metrics
    stats: dict[str, Any] = field(default_factory=dict)  # timings, token usage, models, notes
    topic_embedding: np.ndarray | None = None  # embedding of config.topic_seed, if any
    # what assigning new items needs (hercules_core.assign.assignment_info); None for old models
    assign_info: dict[str, Any] | None = None
    # cluster id -> {"original": {"title", "description", "source"}, "edited": iso time} (hercules_core.edits)
    edits: dict[str, dict[str, Any]] = field(default_factory=dict)
    # structural and title edits, oldest first (hercules_core.curate): what undo and replay need
    edit_log: list[dict[str, Any]] = field(default_factory=list)
    redo_log: list[dict[str, Any]] = field(default_factory=list)  # undone entries, the next redo last
    # "entry": the next entry's number; "L{level}": the next numeric cluster id issued at that level
    edit_counters: dict[str, int] = field(default_factory=dict)
    _children_cache: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    _id_index: dict[str, tuple[int, int]] | None = field(default=None, repr=False)

    # --- shape ---
    @property
    def top_level(self) -> int:
        return len(self.levels) - 1

    @property
    def n_items(self) -> int:
        return len(self.levels[0])

    def clusters(self, level: int) -> list[Cluster]:
        return [Cluster(self, level, j) for j in range(len(self.levels[level]))]

    def top_clusters(self) -> list[Cluster]:
        return self.clusters(self.top_level)

    def iter_clusters(self) -> Iterator[Cluster]:
        """Every cluster of level >= 1, top level first."""
        for level in range(self.top_level, 0, -1):
            yield from self.clusters(level)

    def cluster(self, cid: str) -> Cluster:
        """The cluster with id ``L{level}_{index}`` (levels >= 1)."""
        if self._id_index is None:
            self._id_index = {
                cid_: (lv.level, j) for lv in self.levels[1:] for j, cid_ in enumerate(lv.ids)
            }
        try:
            level, j = self._id_index[cid]
        except KeyError:
            raise KeyError(f"No cluster with id {cid!r}") from None
        return Cluster(self, level, j)

    def item(self, index: int) -> Cluster:
        return Cluster(self, 0, index)

    # --- structure ---
    def children_of(self, level: int, index: int) -> np.ndarray:
        """Indices (in level - 1) of the children of cluster ``index`` of ``level``."""
        if level not in self._children_cache:
            parent = self.levels[level - 1].parent
            order = np.argsort(parent, kind="stable")
            bounds = np.searchsorted(parent[order], np.arange(len(self.levels[level]) + 1))
            self._children_cache[level] = (order, bounds)
        order, bounds = self._children_cache[level]
        return order[bounds[index]:bounds[index + 1]]

    def assignments(self, level: int) -> np.ndarray:
        """For each L0 item, the index of its cluster at ``level`` (identity at level 0)."""
        idx = np.arange(self.n_items)
        for lv in range(level):
            idx = self.levels[lv].parent[idx]
        return idx

    def members(self, level: int, index: int) -> np.ndarray:
        """Indices of the L0 items under cluster ``index`` of ``level``."""
        return np.flatnonzero(self.assignments(level) == index)

    def validate(self) -> None:
        """Raise HerculesError if an invariant is broken (used after fit and after load)."""
        n = self.n_items
        if not np.array_equal(self.levels[0].size, np.ones(n)):
            raise HerculesError("Level 0 sizes must all be 1.")
        for lv in self.levels:
            m = len(lv)
            for name in ("parent", "size", "fallback"):
                if len(getattr(lv, name)) != m:
                    raise HerculesError(f"Level {lv.level}: {name} has the wrong length.")
            if len(lv.titles) != m or len(lv.descriptions) != m or len(lv.sources) != m:
                raise HerculesError(f"Level {lv.level}: titles/descriptions/sources have the wrong length.")
            if lv.description_marks and len(lv.description_marks) != m:
                raise HerculesError(f"Level {lv.level}: description_marks has the wrong length.")
            if len(set(lv.ids)) != m:
                raise HerculesError(f"Level {lv.level}: ids are not unique.")
            if lv.level == self.top_level:
                if np.any(lv.parent != -1):
                    raise HerculesError("Top-level clusters must have no parent.")
                continue
            above = self.levels[lv.level + 1]
            if np.any(lv.parent < 0) or np.any(lv.parent >= len(above)):
                raise HerculesError(f"Level {lv.level}: a parent index is out of range.")
            counts = np.bincount(lv.parent, weights=lv.size, minlength=len(above))
            if not np.array_equal(counts.astype(np.int64), above.size):
                raise HerculesError(f"Level {above.level}: sizes do not add up to their children's.")
            if np.any(np.bincount(lv.parent, minlength=len(above)) == 0):
                raise HerculesError(f"Level {above.level}: a cluster has no children.")
