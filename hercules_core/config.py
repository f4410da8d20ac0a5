"""One frozen, validated, JSON-serialisable configuration object holding every parameter.

Every field declares its parameter once, in ``field(metadata=...)`` (see :func:`_param`): a one-line
help, a constraint checked by :func:`validate`, and, for the settings offered to users, a form label
and group; those get a CLI flag too (``flag`` where it differs from ``--name-with-dashes``). The app's
form, the CLI's flags and the README's parameter table are generated from :data:`PARAMETERS`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, get_type_hints

from .errors import ConfigError

# the form's groups, in the order the form shows them
GROUPS = ("Hierarchy", "Summaries", "Resampling", "LLM batching", "Reproducibility", "Advanced")


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


@dataclass(frozen=True)
class Interval:
    """Numbers of ``kind`` (int or float) from ``low`` to ``high`` (None: unbounded); ``closed``
    says which ends belong: "both", "left", "right" or "neither"."""

    kind: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float) if self.kind is float else int):
            return False
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.low is not None and not (value >= self.low if left else value > self.low):
            return False
        if self.high is not None and not (value <= self.high if right else value < self.high):
            return False
        return not (isinstance(value, float) and math.isnan(value))

    def describe(self) -> str:
        what = "an integer" if self.kind is int else "a number"
        low, high = self.low, self.high
        if low is not None and high is not None:
            if self.closed == "both":
                if self.kind is int and high - low == 1:
                    return f"{low} or {high}"
                return f"{what} from {_num(low)} to {_num(high)}"
            return (f"{what} in {'[' if self.closed == 'left' else '('}{_num(low)}, {_num(high)}"
                    f"{']' if self.closed == 'right' else ')'}")
        if low is not None:
            return f"{what} {'>=' if self.closed in ('both', 'left') else '>'} {_num(low)}"
        if high is not None:
            return f"{what} {'<=' if self.closed in ('both', 'right') else '<'} {_num(high)}"
        return what


@dataclass(frozen=True)
class Choices:
    """One of ``options``."""

    options: tuple

    def accepts(self, value: Any) -> bool:
        return value in self.options

    def describe(self) -> str:
        return f"one of {', '.join(map(str, self.options))}"


@dataclass(frozen=True)
class Custom:
    """A rule of its own: ``problem(value)`` is None when the value is fine, else what is wrong."""

    problem: Callable[[Any], str | None]
    text: str

    def accepts(self, value: Any) -> bool:
        return self.problem(value) is None

    def describe(self) -> str:
        return self.text


POSITIVE = Interval(int, 1)
NON_NEGATIVE = Interval(int, 0)


def _levels_problem(counts: Any) -> str | None:
    if counts is None:
        return None
    if not isinstance(counts, tuple):
        return f"{{param}} must be positive integers, got {counts!r}."
    if not counts:
        return "{param} is empty: give at least one k, or None for auto-k."
    if any(not isinstance(k, int) or isinstance(k, bool) or k < 1 for k in counts):
        return f"{{param}} must be positive integers, got {counts!r}."
    if any(b >= a for a, b in zip(counts, counts[1:])):
        return f"{{param}} must decrease from the finest level up (e.g. 100,20,5), got {counts!r}."
    return None


LEVELS = Custom(_levels_problem, "decreasing positive integers, finest level first (e.g. 100,20,5); "
                                 "null (--auto-k): automatic k")


def _param(default: Any = dataclasses.MISSING, help: str = "", check: Interval | Choices | Custom | None = None, *,
           label: str | None = None, group: str | None = None, flag: str | None = None,
           factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field with its parameter's metadata. ``label`` and ``group`` put it in the app's
    form and give it a CLI flag (``flag``, else ``--name-with-dashes``)."""
    assert group is None or group in GROUPS, group
    meta = {"help": help, "check": check, "label": label, "group": group, "flag": flag}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class HerculesConfig:
    """Every parameter of a HERCULES run (paper §3, with the paper's names where it has one).

    Level lists are bottom-up: ``level_cluster_counts=(100, 20, 5)`` builds L1 with 100 clusters,
    L2 with 20 and L3 with 5. ``None`` chooses k automatically at every level.
    """

    # --- hierarchy shape (§3.3) ---
    level_cluster_counts: tuple[int, ...] | None = _param(
        (20, 5), "Clusters per level, finest first (e.g. 100,20,5 builds three levels).", LEVELS,
        label="Clusters per level", group="Hierarchy", flag="--levels")
    representation_mode: str = _param(
        "direct", "Cluster the items' own vectors (direct) or the embeddings of their descriptions (description).",
        Choices(("direct", "description")), label="Representation", group="Hierarchy", flag="--mode")
    min_clusters_per_level: int = _param(2, "Stop when a level would be smaller.", POSITIVE,
                                         label="Min clusters per level", group="Advanced")
    auto_k_method: str = _param(
        "silhouette", "Score used to pick the top level's k (on the items).",
        Choices(("silhouette", "davies_bouldin", "calinski_harabasz")), label="Auto-k method", group="Hierarchy")
    # automatic k (level_cluster_counts=None, see levels.py): the top level's k is scored on the items
    # in the clustering space; the levels below have auto_k_branching times the clusters of the one above
    auto_k_min: int = _param(3, "Lower end of the top level's k range.", POSITIVE,  # a top level of 2 is one
                             label="Auto-k: smallest k", group="Hierarchy")  # yes/no split (on fortune_dev8)
    auto_k_max: int = _param(50, "Upper end of the top level's k range.", POSITIVE,
                             label="Auto-k: largest k", group="Hierarchy")
    auto_k_min_reduction: float = _param(2.0, "Auto-k: the top level has at most n_items / this many clusters.",
                                         Interval(float, 1))
    auto_k_branching: float = _param(
        5.0, "Levels below the top have about this many times the clusters of the level above.",
        Interval(float, 1.5, 1000), label="Auto-k: children per cluster", group="Hierarchy")
    max_levels: int = _param(5, "Stop after this many levels (auto-k).", POSITIVE, label="Max levels",
                             group="Hierarchy")
    auto_k_min_cluster_size: int = _param(
        10, "Auto-k: a level is added below while its clusters hold this many items on average.", POSITIVE)
    auto_k_sample_size: int = _param(3000, "Points the auto-k score is computed on.", POSITIVE,
                                     label="Auto-k sample", group="Advanced")

    # --- clustering space: a representation step before level 1 (see reduction.py) ---
    # "auto": UMAP for embeddings (text, images, description mode) and for wide numeric tables (16+
    # columns) of at least reduce_min_items items; "umap": always; "none": the vectors as they are.
    # Level 1 clusters the reduced vectors and the levels above cluster their reduced centroids;
    # every stored vector (centroids, summaries' samples, evaluation, PCA views) stays in the
    # original space.
    reduce_method: str = _param(
        "auto", "auto: level 1 clusters a UMAP of text and image embeddings (and of tables with 16+ columns) of "
        "at least 300 items; none: the vectors as they are.", Choices(("auto", "none", "umap")),
        label="Clustering space", group="Hierarchy", flag="--reduce")
    # BERTopic's choice: enough for k-means, cheap to cluster
    reduce_components: int = _param(5, "Dimensions of the clustering space.", POSITIVE, label="UMAP dimensions",
                                    group="Advanced", flag="--reduce-dims")
    # umap-learn's clustering guide
    reduce_neighbors: int = _param(30, "More = a more global view of the data.", Interval(int, 2),
                                   label="UMAP neighbours", group="Advanced")
    reduce_min_dist: float = _param(0.0, "UMAP min_dist: 0 packs clusters tightly, what clustering wants.",
                                    Interval(float, 0.0, 1.0))
    # below it, the neighbour graph would span a large share of the items and the manifold estimate is noise
    reduce_min_items: int = _param(300, "reduce_method auto leaves sets of fewer items as they are.", POSITIVE)
    # UMAP's time grows with n (single-threaded when seeded); above reduce_fit_sample it is fitted on a
    # sample and the other items are placed by transform, which grows more slowly (docs/scaling.md).
    # auto still stops at 50,000 items: the sample fit's quality and time above that are not measured yet
    reduce_max_items: int = _param(50_000, "reduce_method auto leaves sets of more items as they are "
                                           "(umap still reduces them, fitted on reduce_fit_sample items).", POSITIVE)
    reduce_fit_sample: int = _param(50_000, "UMAP is fitted on a seeded sample of this many items and places the "
                                            "others with its transform; 0 fits on all items.", NON_NEGATIVE,
                                    label="UMAP fit sample", group="Advanced")

    # --- k-means (§3.3) ---
    weight_by_size: bool = _param(
        True, "Upper levels weight each child by its items (off = the paper's unweighted variant).",
        label="Weight centroids by size", group="Advanced", flag="--weights")
    normalize_centroids: str = _param("auto", "auto: when the item vectors are unit length.",
                                      Choices(("auto", "yes", "no")), label="Re-normalise centroids", group="Advanced")
    kmeans_backend: str = _param("auto", "auto picks by problem size.",
                                 Choices(("auto", "sklearn", "faiss", "minibatch")), label="k-means backend",
                                 group="Advanced")
    kmeans_large_threshold: int = _param(20_000_000, "n * k above which kmeans_backend auto leaves scikit-learn.",
                                         POSITIVE)
    kmeans_n_init: int = _param(1, "k-means++ restarts at the finest level.", POSITIVE,
                                label="k-means restarts (level 1)", group="Advanced")
    # few points, so cheap ...
    kmeans_upper_n_init: int = _param(8, "Restarts at levels 2 and up.", POSITIVE, label="k-means restarts (upper)",
                                      group="Advanced")
    # ... capped by this budget
    kmeans_upper_work_budget: float = _param(
        2e8, "Upper-level restarts are capped so that restarts * n * k * dim stays under this.",
        Interval(float, 0, closed="neither"))
    kmeans_max_iter: int = _param(100, "Maximum Lloyd iterations.", POSITIVE, label="k-means iterations",
                                  group="Advanced")
    # after level 1's k-means, Lloyd steps in the stored space that assign uses (nearest level-1
    # centroid) until the run's own items assign back to their clusters (kmeans.settle_to_nearest)
    level1_settle_steps: int = _param(
        50, "Lloyd steps (at most) that settle level 1 in the space assign uses, so that a run's own items "
        "assign back to their clusters; 0: off.", NON_NEGATIVE, label="Level-1 settle steps", group="Advanced")
    use_resampling: bool = _param(False, "Vo et al. resampling after k-means (slower, steadier clusters).",
                                  label="Resampling refinement", group="Resampling", flag="--resampling")
    resampling_iterations: int = _param(3, "Rounds of resampling.", POSITIVE,  # m
                                        label="Resampling iterations", group="Resampling")
    resampling_points_per_cluster: int = _param(20, "Points drawn per cluster and round.", POSITIVE,  # r_t
                                                label="Points per cluster", group="Resampling")

    # --- per-cluster stability (stability.py): re-clusterings of subsamples, best-match Jaccard ---
    stability_runs: int = _param(5, "Re-clusterings of subsamples that measure each cluster's stability (0: off).",
                                 Interval(int, 0, 50), label="Stability re-runs", group="Advanced")
    # Hennig (clusterboot): mean Jaccard above 0.75 = a valid, stable cluster; 0.6-0.75 = a pattern
    stability_threshold: float = _param(0.75, "A cluster is stable when its mean best-match Jaccard reaches this.",
                                        Interval(float, 0.0, 1.0, "right"), label="Stability threshold",
                                        group="Advanced")
    stability_budget: float = _param(
        0.3, "Unless tiny, the level-1 re-runs cluster samples sized to cost about this share of level 1's k-means.",
        Interval(float, 0.0, 1.0, "right"))

    random_state: int = _param(0, "Same data + seed + settings = same hierarchy.", NON_NEGATIVE,
                               label="Random seed", group="Reproducibility", flag="--seed")

    # --- level 0 (§3.1) ---
    use_llm_for_l0_descriptions: bool = _param(False, "One LLM answer per item (slow and costly).",
                                               label="LLM description of every item", group="Advanced",
                                               flag="--llm-l0")
    l0_title_max_chars: int = _param(80, "Item titles are cut to this many characters.", POSITIVE)
    l0_description_max_chars: int = _param(300, "Item descriptions are cut to this many characters.", POSITIVE)

    # --- summaries (§3.4, Appendix A) ---
    topic_seed: str | None = _param(
        None, "Optional theme the titles are oriented towards; topic alignment is measured against it.",
        label="Topic seed", group="Summaries")
    prompt_l0_sample_size: int = _param(5, "Items shown to the summariser per cluster.", NON_NEGATIVE,
                                        label="Samples per cluster", group="Summaries")
    prompt_l0_sample_strategy: str = _param("centroid_closest", "Items closest to the centroid, or random.",
                                            Choices(("centroid_closest", "random")), label="Sample choice",
                                            group="Summaries")
    prompt_l0_sample_trunc_len: int = _param(200, "Samples are cut to this length.", POSITIVE,
                                             label="Sample length (chars)", group="Advanced")
    prompt_l0_numeric_repr_max_vals: int = _param(10, "Numeric items show at most this many values in prompts.",
                                                  POSITIVE)
    prompt_l0_numeric_repr_precision: int = _param(2, "Decimals of numeric item values in prompts.", NON_NEGATIVE)
    prompt_include_immediate_children: bool = _param(True, "Include child summaries in upper-level prompts.",
                                                     label="Show child summaries", group="Advanced")
    prompt_immediate_child_sample_size: int = _param(5, "Child cluster summaries shown for upper levels.",
                                                     NON_NEGATIVE, label="Child summaries shown", group="Summaries")
    prompt_immediate_child_sample_strategy: str = _param(
        "largest", "Which children are shown.", Choices(("largest", "centroid_closest", "random")),
        label="Child choice", group="Summaries")
    prompt_child_desc_trunc_len: int = _param(150, "Child descriptions are cut to this.", POSITIVE,
                                              label="Child description length", group="Advanced")
    prompt_max_stats_vars: int = _param(10, "Numeric clusters show statistics of at most this many variables.",
                                        POSITIVE)
    prompt_numeric_stats_precision: int = _param(2, "Decimals of the statistics in prompts.", NON_NEGATIVE)
    prompt_title_max_words: int = _param(7, "Upper bound asked of the model.", POSITIVE,
                                         label="Title length (words)", group="Summaries")
    # "grounded": see grounded.py
    prompt_style: str = _param(
        "full", "full: the paper's prompt, several clusters per call; compact: one cluster per call, for tiny "
        "models; grounded: compact, with candidate titles from the cluster's own words kept by self-retrieval.",
        Choices(("full", "compact", "grounded")), label="Prompt style", group="Advanced")
    title_gate: bool = _param(True, "LLM titles must pass the title-quality gate (else asked again, then the "
                                    "fallback), and descriptions must add to the title (else asked again, then "
                                    "extractive).")
    max_prompt_tokens: int = _param(6000, "Batches are split to stay below this.", POSITIVE,
                                    label="Max prompt tokens", group="Advanced")
    prompt_token_safety_margin: float = _param(0.2, "Estimated prompt tokens stay under (1 - margin) * "
                                                    "max_prompt_tokens.", Interval(float, 0.0, 0.9, "left"))
    llm_initial_batch_size: int = _param(8, "Batch size; halved on failures.", POSITIVE,
                                         label="Clusters per LLM call", group="LLM batching")
    llm_batch_reduction_factor: float = _param(2.0, "A failing batch is divided by this (so it gets smaller).",
                                               Interval(float, 1.0, closed="neither"))
    llm_min_batch_size: int = _param(1, "Batches are not made smaller than this.", POSITIVE)
    llm_concurrency: int = _param(4, "Batches in flight at once.", POSITIVE, label="Parallel LLM calls",
                                  group="LLM batching")
    llm_retries: int = _param(3, "Retries of a failing batch before falling back to keywords.", NON_NEGATIVE,
                              label="Retries", group="LLM batching")
    llm_retry_delay: float = _param(1.0, "Base of the exponential backoff between retries, seconds.",
                                    Interval(float, 0.0))
    llm_retry_max_delay: float = _param(30.0, "Longest wait between retries, seconds.", Interval(float, 0.0))

    # --- reduction and evaluation (§3.6, §3.7) ---
    n_reduction_components: int = _param(2, "Dimensions of the PCA views of each level.", Interval(int, 2, 3))
    evaluation_sample_size: int = _param(2000, "Silhouette is computed on at most this many points.", POSITIVE,
                                         label="Silhouette sample", group="Advanced")  # O(n^2)
    calculate_llm_internal_metrics: bool = _param(True, "Also score clusters in the description embedding space.",
                                                  label="Description-space metrics", group="Advanced")

    extra: dict[str, Any] = _param(help="Free-form notes kept with the model.", factory=dict)

    def __post_init__(self) -> None:
        if self.level_cluster_counts is not None and isinstance(self.level_cluster_counts, (list, tuple)):
            object.__setattr__(self, "level_cluster_counts", tuple(self.level_cluster_counts))
        validate(self)
        if self.topic_seed is not None:  # as the form gives it: stripped, blank = none
            object.__setattr__(self, "topic_seed", str(self.topic_seed).strip() or None)

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


@dataclass(frozen=True)
class Parameter:
    """One field of :class:`HerculesConfig` with its metadata, as the front doors and docs read it."""

    name: str
    kind: type  # int, float, str, bool, tuple (level_cluster_counts) or dict (extra)
    default: Any
    help: str
    check: Interval | Choices | Custom | None
    label: str | None  # in the app's form (and the CLI) when set
    group: str | None
    flag: str | None  # the CLI flag: every labelled parameter has one

    @property
    def advanced(self) -> bool:
        return self.group == "Advanced"

    @property
    def options(self) -> tuple:
        return self.check.options if isinstance(self.check, Choices) else ()


def _kind(hint: Any) -> type:
    for t in (bool, int, float, str, tuple, dict):
        if hint is t or getattr(hint, "__origin__", None) is t:
            return t
    return _kind(next(a for a in hint.__args__ if a is not type(None)))  # X | None


def _parameters() -> dict[str, Parameter]:
    hints = get_type_hints(HerculesConfig)
    out = {}
    for f in fields(HerculesConfig):
        m = f.metadata
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        flag = m["flag"] or ("--" + f.name.replace("_", "-") if m["label"] else None)
        out[f.name] = Parameter(f.name, _kind(hints[f.name]), default, m["help"], m["check"], m["label"], m["group"],
                                flag)
    return out


# the fields' declared order: the form shows each group's fields in this order
PARAMETERS: dict[str, Parameter] = _parameters()

# rules between fields: (broken(cfg), message(cfg))
CROSS_FIELD_RULES: tuple[tuple[Callable[[HerculesConfig], bool], Callable[[HerculesConfig], str]], ...] = (
    (lambda c: c.auto_k_min > c.auto_k_max,
     lambda c: f"auto_k_min ({c.auto_k_min}) is larger than auto_k_max ({c.auto_k_max})."),
    (lambda c: c.llm_min_batch_size > c.llm_initial_batch_size,
     lambda c: "llm_min_batch_size cannot exceed llm_initial_batch_size."),
)


def validate(cfg: HerculesConfig) -> None:
    """Check every field against its declared constraint, then the rules between fields; the
    ConfigError names the parameter (``param``) so that a front door can say it its own way."""
    for p in PARAMETERS.values():
        value = getattr(cfg, p.name)
        if p.check is None or p.check.accepts(value):
            continue
        if isinstance(p.check, Custom):
            raise ConfigError(p.check.problem(value), param=p.name)
        raise ConfigError(f"{{param}} must be {p.check.describe()}; got {value!r}.", param=p.name)
    for broken, message in CROSS_FIELD_RULES:
        if broken(cfg):
            raise ConfigError(message(cfg))
