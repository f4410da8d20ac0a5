"""How many clusters each level gets: one plan for ``Hercules.fit`` and for the cost estimate.

Fixed counts (``level_cluster_counts``) are clipped to what is below (:func:`next_level`).
Automatic k (``level_cluster_counts=None``) is decided from the top down, before level 1 is built:
the top level's k is the best-scoring of :func:`top_candidates` (``kmeans.choose_k`` on the items in
the clustering space), and the levels below it follow from that k by :func:`auto_counts` (each level
``auto_k_branching`` times the clusters of the one above). Scoring every level on its own points, as
the paper's basic auto-k did, made the top level a split of whatever stood out most (k = 2 on
fortune_dev8: one isolated group) and each level above a near-halving of the one below, so the
top level was never near the number of topics (docs/benchmarks.md, "Hierarchy quality").
:func:`plan_levels` walks the same plan without data; with automatic k it takes the candidate
whose plan has the most clusters, so an estimate is an upper bound there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Sequence

from .config import HerculesConfig
from .kmeans import k_candidates

_DENSE_UNTIL = 20

__all__ = ["LevelStep", "LevelPlan", "next_level", "plan_levels", "top_candidates", "auto_counts"]


@dataclass(frozen=True)
class LevelStep:
    """Level ``level`` gets ``k`` clusters; ``note`` says why k differs from the one asked for."""

    level: int
    k: int
    note: str | None = None


class LevelPlan(NamedTuple):
    counts: list[int]  # clusters per level, finest first
    upper_bound: bool  # automatic k: the counts are the plan with the most clusters


def top_candidates(n_items: int, config: HerculesConfig) -> tuple[int, ...]:
    """The k values automatic k scores for the top level, on ``n_items`` items."""
    grid = k_candidates(n_items, max(config.auto_k_min, config.min_clusters_per_level), config.auto_k_max,
                        config.auto_k_min_reduction)
    # every k up to 20 (where topic counts usually lie and a geometric grid skips values), then the grid
    dense = range(grid[0], min(grid[-1], _DENSE_UNTIL) + 1) if grid else range(0)
    return tuple(sorted(set(grid) | set(dense)))


def auto_counts(n_items: int, k_top: int, config: HerculesConfig) -> tuple[int, ...]:
    """Clusters per level (finest first) below a top level of ``k_top``: each level has
    ``auto_k_branching`` times the clusters of the level above, as long as level 1 keeps at least
    ``auto_k_min_cluster_size`` items per cluster on average (a summary of fewer items says little,
    and costs an LLM call all the same), and at most ``max_levels`` levels."""
    b = config.auto_k_branching
    counts = [int(k_top)]
    while len(counts) < config.max_levels:
        k = int(round(counts[0] * b))
        if k * config.auto_k_min_cluster_size > n_items:
            break
        counts.insert(0, k)
    return tuple(counts)


def next_level(level: int, n_below: int, config: HerculesConfig,
               counts: Sequence[int] | None = None) -> LevelStep | None:
    """Level ``level`` built on ``n_below`` points (items or the clusters of the level below), or
    None when the hierarchy stops there. ``counts`` (finest first) defaults to the config's
    ``level_cluster_counts``; with automatic k they come from :func:`auto_counts`."""
    counts = config.level_cluster_counts if counts is None else counts
    if counts is None:
        raise ValueError("next_level needs cluster counts: automatic k resolves them with auto_counts first")
    if level > config.max_levels or n_below <= config.min_clusters_per_level or level > len(counts):
        return None
    asked = counts[level - 1]
    k = max(min(asked, n_below - 1), config.min_clusters_per_level)
    if k >= n_below or k <= 1:
        return None
    note = f"L{level}: asked for k={asked} but {n_below} clusters are below; used k={k}." if k != asked else None
    return LevelStep(level, k, note=note)


def _walk(n_items: int, config: HerculesConfig, counts: Sequence[int]) -> list[int]:
    out: list[int] = []
    n_below = n_items
    while (step := next_level(len(out) + 1, n_below, config, counts)) is not None:
        out.append(int(step.k))
        n_below = step.k
    return out


def plan_levels(n_items: int, config: HerculesConfig) -> LevelPlan:
    """Clusters per level (finest first) as ``Hercules.fit`` builds them from ``n_items`` items;
    with automatic k the plan of the candidate top k with the most clusters (an upper bound)."""
    if config.level_cluster_counts is not None:
        return LevelPlan(_walk(n_items, config, config.level_cluster_counts), False)
    plans = [_walk(n_items, config, auto_counts(n_items, k, config)) for k in top_candidates(n_items, config)]
    return LevelPlan(max(plans, key=sum, default=[]), True)
