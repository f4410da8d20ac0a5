"""Data passed between the hierarchy builder and the summarisers (kept apart to avoid cycles)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np


@dataclass
class SummaryRequest:
    """Everything a summariser may use for one cluster (or one L0 item).

    ``key`` is the id used inside prompts and answers: the cluster id (``L2_7``) for clusters,
    ``item_{index}`` for L0 items (user ids are untrusted and may contain anything).
    """

    key: str
    level: int
    n_items: int
    modality: str
    member_indices: np.ndarray  # indices of all L0 items under the cluster
    samples: list[tuple[str, str]] = field(default_factory=list)  # (L0 item id, rendered sample)
    children: list[tuple[str, str, str]] = field(default_factory=list)  # (child id, title, description)
    numeric_stats: list[dict[str, Any]] = field(default_factory=list)
    # numeric_stats entries: {"name", "unit", "description", "mean", "std", "min", "max"}
    n_numeric_vars: int = 0  # how many variables exist (to say "... more variables exist")
    keywords: list[str] = field(default_factory=list)  # distinctive words, shown as a "Keywords:" line
    # the nearest other clusters' keywords ("Not about:" in the compact prompts), set by the summariser
    sibling_keywords: list[str] = field(default_factory=list)
    feedback: str = ""  # why the previous answer was rejected, shown when the cluster is asked again


@dataclass
class Summary:
    title: str
    description: str
    source: str  # the model id that wrote it, or "keywords"
    fallback: bool = False  # True when the requested model failed and another source wrote it
    error: str | None = None  # why it is a fallback
    # "" when the description passed descriptions.description_problem at once, "reasked" when it did
    # when asked again, "extractive" when it was built from keywords and samples instead
    description_mark: str = ""


ProgressFn = Callable[[int, int], None]  # (requests answered, requests in all)


class RunLogLike(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...


class Summarizer(Protocol):
    model_id: str

    def summarize(
        self, requests: list[SummaryRequest], *, level_requests: list[SummaryRequest] | None = None,
        progress: ProgressFn | None = None,
    ) -> dict[str, Summary]:
        """Return a Summary for every request key. ``level_requests`` are all requests of the level
        (for corpus statistics such as c-TF-IDF); defaults to ``requests``. ``progress(done, total)``
        may be called as answers arrive."""


@runtime_checkable
class KeywordSource(Protocol):
    """A summariser that can name each cluster's distinctive words (the LLM prompt shows them)."""

    def keywords_for(self, requests: list[SummaryRequest],
                     level_requests: list[SummaryRequest] | None = None) -> dict[str, list[str]]:
        """Keywords per request key, best first; keys without keywords may be missing."""
