"""How many clusters each level gets: one plan for ``Hercules.fit`` and for the cost estimate.

:func:`next_level` decides, from the number of points below, whether a level is built and with
which k (fixed counts, clipped to what is below) or among which candidates (automatic k, chosen by
a score during the fit). :func:`plan_levels` walks it from the items upwards without data, taking
the largest candidate for automatic k, so an estimate is an upper bound there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .config import HerculesConfig
from .kmeans import k_candidates

__all__ = ["LevelStep", "LevelPlan", "next_level", "plan_levels"]


@dataclass(frozen=True)
class LevelStep:
    """Level ``level``: a fixed ``k``, or (automatic k) ``k`` None and the ``candidates`` to score.
    ``note`` says why a fixed k differs from the one asked for."""

    level: int
    k: int | None
    candidates: tuple[int, ...] = ()
    note: str | None = None

    @property
    def k_max(self) -> int:
        return self.k if self.k is not None else max(self.candidates)


class LevelPlan(NamedTuple):
    counts: list[int]  # clusters per level, finest first
    upper_bound: bool  # automatic k: the counts are the largest candidates


def next_level(level: int, n_below: int, config: HerculesConfig) -> LevelStep | None:
    """Level ``level`` built on ``n_below`` points (items or the clusters of the level below), or
    None when the hierarchy stops there."""
    if level > config.max_levels or n_below <= config.min_clusters_per_level:
        return None
    counts = config.level_cluster_counts
    if counts is not None:
        if level > len(counts):
            return None
        asked = counts[level - 1]
        k = max(min(asked, n_below - 1), config.min_clusters_per_level)
        if k >= n_below or k <= 1:
            return None
        note = f"L{level}: asked for k={asked} but {n_below} clusters are below; used k={k}." if k != asked else None
        return LevelStep(level, k, note=note)
    candidates = k_candidates(n_below, max(config.auto_k_min, config.min_clusters_per_level), config.auto_k_max,
                              config.auto_k_min_reduction)
    return LevelStep(level, None, tuple(candidates)) if candidates else None


def plan_levels(n_items: int, config: HerculesConfig) -> LevelPlan:
    """Clusters per level (finest first) as ``Hercules.fit`` builds them from ``n_items`` items;
    with automatic k the largest candidate at every level (an upper bound)."""
    counts: list[int] = []
    n_below = n_items
    while (step := next_level(len(counts) + 1, n_below, config)) is not None:
        counts.append(int(step.k_max))
        n_below = step.k_max
    return LevelPlan(counts, config.level_cluster_counts is None)
