"""One frozen, validated, JSON-serialisable configuration object holding every parameter."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigError

REPRESENTATION_MODES = ("direct", "description")
AUTO_K_METHODS = ("silhouette", "davies_bouldin", "calinski_harabasz")
SAMPLE_STRATEGIES = ("centroid_closest", "random")
CHILD_SAMPLE_STRATEGIES = ("largest", "centroid_closest", "random")
KMEANS_BACKENDS = ("auto", "sklearn", "faiss", "minibatch")
CENTROID_NORMALIZATION = ("auto", "yes", "no")
PROMPT_STYLES = ("full", "compact", "grounded")
REDUCE_METHODS = ("auto", "none", "umap")


@dataclass(frozen=True)
class HerculesConfig:
    """Every parameter of a HERCULES run (paper §3, with the paper's names where it has one).

    Level lists are bottom-up: ``level_cluster_counts=(100, 20, 5)`` builds L1 with 100 clusters,
    L2 with 20 and L3 with 5. ``None`` chooses k automatically at every level.
    """

    # --- hierarchy shape (§3.3) ---
    level_cluster_counts: tuple[int, ...] | None = (20, 5)
    representation_mode: str = "direct"
    max_levels: int = 5
    min_clusters_per_level: int = 2
    auto_k_method: str = "silhouette"
    # automatic k (level_cluster_counts=None, see levels.py): the top level's k is scored on the items
    # in the clustering space; the levels below have auto_k_branching times the clusters of the one above
    auto_k_min: int = 3  # a top level of 2 is one yes/no split (on fortune_dev8: one isolated group)
    auto_k_max: int = 50
    auto_k_min_reduction: float = 2.0  # the top level has at most n_items / factor clusters
    auto_k_branching: float = 5.0  # children per cluster between levels
    auto_k_min_cluster_size: int = 10  # a level is added below while its clusters hold this many items on average
    auto_k_sample_size: int = 3000  # the metric is computed on at most this many points

    # --- clustering space: a representation step before level 1 (see reduction.py) ---
    # "auto": UMAP for embeddings (text, images, description mode) and for wide numeric tables (16+
    # columns) of at least reduce_min_items items; "umap": always; "none": the vectors as they are.
    # Level 1 clusters the reduced vectors and the levels above cluster their reduced centroids;
    # every stored vector (centroids, summaries' samples, evaluation, PCA views) stays in the
    # original space.
    reduce_method: str = "auto"
    reduce_components: int = 5  # BERTopic's choice: enough for k-means, cheap to cluster
    reduce_neighbors: int = 30  # umap-learn's clustering guide; more = a more global view
    reduce_min_dist: float = 0.0  # packed clusters: what clustering (not plotting) wants
    reduce_min_items: int = 300  # "auto" leaves smaller sets alone: the neighbour graph would
    # span a large share of the items and the manifold estimate is noise
    reduce_max_items: int = 50_000  # ... and larger ones too: UMAP's time grows with n (single-
    # threaded when seeded) until it outweighs the whole run; "umap" still forces it

    # --- k-means (§3.3) ---
    weight_by_size: bool = True  # upper levels: weight each child by its number of L0 items
    normalize_centroids: str = "auto"  # "auto": re-normalise when the L0 vectors are unit length
    kmeans_backend: str = "auto"
    kmeans_large_threshold: int = 20_000_000  # n * k above which "auto" leaves scikit-learn
    kmeans_n_init: int = 1  # k-means++ restarts at level 1 (the expensive level)
    kmeans_upper_n_init: int = 8  # restarts at levels >= 2 (few points, so cheap) ...
    kmeans_upper_work_budget: float = 2e8  # ... capped so that restarts * n * k * dim stays under this
    kmeans_max_iter: int = 100
    # Lloyd steps (at most) that settle level 1, after its k-means, in the stored space that assign
    # uses (nearest level-1 centroid), until the run's own items assign back to their clusters; 0: off
    level1_settle_steps: int = 50
    use_resampling: bool = False  # Vo et al. refinement
    resampling_iterations: int = 3  # m
    resampling_points_per_cluster: int = 20  # r_t

    random_state: int = 0

    # --- level 0 (§3.1) ---
    use_llm_for_l0_descriptions: bool = False
    l0_title_max_chars: int = 80
    l0_description_max_chars: int = 300

    # --- summaries (§3.4, Appendix A) ---
    topic_seed: str | None = None
    prompt_l0_sample_size: int = 5
    prompt_l0_sample_strategy: str = "centroid_closest"
    prompt_l0_sample_trunc_len: int = 200
    prompt_l0_numeric_repr_max_vals: int = 10
    prompt_l0_numeric_repr_precision: int = 2
    prompt_include_immediate_children: bool = True
    prompt_immediate_child_sample_size: int = 5
    prompt_immediate_child_sample_strategy: str = "largest"
    prompt_child_desc_trunc_len: int = 150
    prompt_max_stats_vars: int = 10
    prompt_numeric_stats_precision: int = 2
    prompt_title_max_words: int = 7
    prompt_style: str = "full"  # "full": Appendix A, several clusters per call; "compact": one cluster
    # per call in a short prompt without the JSON example (tiny models copy the example otherwise);
    # "grounded": compact, plus candidate titles built from the cluster's own words (see grounded.py)
    title_gate: bool = True  # LLM titles must pass title_quality.gate_answers (else asked again, then fallback)
    max_prompt_tokens: int = 6000
    prompt_token_safety_margin: float = 0.2  # keep estimated tokens under (1 - margin) * max
    llm_initial_batch_size: int = 8
    llm_batch_reduction_factor: float = 2.0
    llm_min_batch_size: int = 1
    llm_retries: int = 3
    llm_retry_delay: float = 1.0  # base of the exponential backoff, seconds
    llm_retry_max_delay: float = 30.0
    llm_concurrency: int = 4  # batches in flight at once

    # --- reduction and evaluation (§3.6, §3.7) ---
    n_reduction_components: int = 2
    evaluation_sample_size: int = 2000  # silhouette is O(n^2): sampled above this (one shared sample)
    calculate_llm_internal_metrics: bool = True

    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes kept with the model

    def __post_init__(self) -> None:
        if self.level_cluster_counts is not None:
            counts = tuple(self.level_cluster_counts)
            object.__setattr__(self, "level_cluster_counts", counts)
            if not counts:
                raise ConfigError("level_cluster_counts is empty: give at least one k, or None for auto-k.")
            for k in counts:
                if not isinstance(k, int) or isinstance(k, bool) or k < 1:
                    raise ConfigError(f"level_cluster_counts must be positive integers, got {counts!r}.")
            if any(b >= a for a, b in zip(counts, counts[1:])):
                raise ConfigError(
                    f"level_cluster_counts must decrease from the finest level up (e.g. 100,20,5), got {counts!r}."
                )
        self._choice("representation_mode", REPRESENTATION_MODES)
        self._choice("auto_k_method", AUTO_K_METHODS)
        self._choice("prompt_l0_sample_strategy", SAMPLE_STRATEGIES)
        self._choice("prompt_immediate_child_sample_strategy", CHILD_SAMPLE_STRATEGIES)
        self._choice("kmeans_backend", KMEANS_BACKENDS)
        self._choice("normalize_centroids", CENTROID_NORMALIZATION)
        self._choice("prompt_style", PROMPT_STYLES)
        self._choice("reduce_method", REDUCE_METHODS)
        for name in (
            "max_levels", "min_clusters_per_level", "auto_k_min", "auto_k_max", "auto_k_sample_size",
            "auto_k_min_cluster_size",
            "kmeans_n_init", "kmeans_upper_n_init", "kmeans_max_iter", "resampling_iterations",
            "resampling_points_per_cluster", "l0_title_max_chars", "l0_description_max_chars",
            "prompt_l0_sample_trunc_len", "prompt_l0_numeric_repr_max_vals", "prompt_child_desc_trunc_len",
            "prompt_max_stats_vars", "prompt_title_max_words", "max_prompt_tokens",
            "llm_initial_batch_size", "llm_min_batch_size", "llm_concurrency", "evaluation_sample_size",
            "kmeans_large_threshold", "reduce_components", "reduce_min_items", "reduce_max_items",
        ):
            self._positive_int(name)
        for name in ("prompt_l0_sample_size", "prompt_immediate_child_sample_size", "llm_retries",
                     "prompt_l0_numeric_repr_precision", "prompt_numeric_stats_precision", "random_state"):
            self._positive_int(name, minimum=0)
        if self.auto_k_min > self.auto_k_max:
            raise ConfigError(f"auto_k_min ({self.auto_k_min}) is larger than auto_k_max ({self.auto_k_max}).")
        if self.min_clusters_per_level < 1:
            raise ConfigError("min_clusters_per_level must be at least 1.")
        self._positive_int("reduce_neighbors", minimum=2)
        if isinstance(self.reduce_min_dist, bool) or not (isinstance(self.reduce_min_dist, (int, float)) and 0.0 <= self.reduce_min_dist <= 1.0):
            raise ConfigError(f"reduce_min_dist must be a number in [0, 1]; got {self.reduce_min_dist!r}.")
        if not self.kmeans_upper_work_budget > 0:
            raise ConfigError("kmeans_upper_work_budget must be > 0.")
        if isinstance(self.auto_k_branching, bool) or not (isinstance(self.auto_k_branching, (int, float))
                                                            and 1.5 <= self.auto_k_branching <= 1000):
            raise ConfigError(f"auto_k_branching must be a number from 1.5 to 1000 (children per cluster); "
                              f"got {self.auto_k_branching!r}.")
        if not self.auto_k_min_reduction >= 1.0:
            raise ConfigError("auto_k_min_reduction must be >= 1 (each level at most n/factor clusters).")
        if not self.llm_batch_reduction_factor > 1.0:
            raise ConfigError("llm_batch_reduction_factor must be > 1 so that failing batches get smaller.")
        if self.llm_min_batch_size > self.llm_initial_batch_size:
            raise ConfigError("llm_min_batch_size cannot exceed llm_initial_batch_size.")
        if not 0.0 <= self.prompt_token_safety_margin < 0.9:
            raise ConfigError("prompt_token_safety_margin must be in [0, 0.9).")
        if self.llm_retry_delay < 0 or self.llm_retry_max_delay < 0:
            raise ConfigError("llm_retry_delay and llm_retry_max_delay must be >= 0.")
        if self.n_reduction_components not in (2, 3):
            raise ConfigError("n_reduction_components must be 2 or 3.")
        if self.topic_seed is not None and not str(self.topic_seed).strip():
            object.__setattr__(self, "topic_seed", None)

    def _choice(self, name: str, options: tuple[str, ...]) -> None:
        value = getattr(self, name)
        if value not in options:
            raise ConfigError(f"{name} must be one of {', '.join(options)}; got {value!r}.")

    def _positive_int(self, name: str, minimum: int = 1) -> None:
        value = getattr(self, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ConfigError(f"{name} must be an integer >= {minimum}; got {value!r}.")

    # --- serialisation ---
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["level_cluster_counts"] is not None:
            out["level_cluster_counts"] = list(out["level_cluster_counts"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HerculesConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown configuration keys: {', '.join(unknown)}.")
        return cls(**data)

    def replace(self, **changes: Any) -> "HerculesConfig":
        return dataclasses.replace(self, **changes)
