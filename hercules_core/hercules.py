"""The HERCULES estimator: level 0 initialisation and the hierarchical loop (Algorithms 1-3)."""

from __future__ import annotations

import logging
import time
from typing import Callable

import numpy as np

from . import kmeans as km
from .clients.base import Captioner, ImageEmbedder, LLM, TextEmbedder, embed_with_progress
from .assign import assignment_info
from .config import HerculesConfig
from .data import default_l0_descriptions, default_l0_titles
from .dataset import Dataset
from .errors import Cancelled, ConfigError, InputError
from .evaluation import evaluate_all
from .hierarchy import Hierarchy, Level, cluster_id
from .keywords import KeywordSummarizer
from . import reduction
from . import stability
from .levels import auto_counts, next_level, top_candidates
from .reduction import reduce_hierarchy
from .summarize import LLMSummarizer, build_l0_requests, build_requests
from .summarize_types import RunLogLike, Summarizer
from .title_quality import Grounding, MemoEmbedder, attach_grounding

log = logging.getLogger("hercules_core")

ProgressFn = Callable[[str, int, int], None]  # (stage, done, total)


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def build_summarizer(ds: Dataset, l0_texts: list[str], config: HerculesConfig, llm: LLM | None, *,
                     run_log: RunLogLike | None = None, cancel: Callable[[], bool] | None = None) -> Summarizer:
    """A run's summariser: keywords, or the LLM with keywords as its fallback (the fit, and the
    re-titling of curated clusters)."""
    keyword = KeywordSummarizer(ds, l0_texts, config=config)
    if llm is None:
        return keyword
    return LLMSummarizer(llm, config, fallback=keyword, run_log=run_log, cancel=cancel)


def describes_items(ds: Dataset, config: HerculesConfig, *, has_llm: bool, has_captioner: bool) -> bool:
    """Whether level 0 gets descriptions beyond the raw item: image captions, or LLM-written ones."""
    return (ds.modality == "image" and has_captioner) or (
        config.use_llm_for_l0_descriptions and has_llm and ds.modality in ("text", "numeric"))


def uses_text_embedder(ds: Dataset, config: HerculesConfig, *, described: bool) -> bool:
    """Whether a run on ``ds`` embeds text: texts without their own vectors, described items
    (:func:`describes_items`), description mode or a topic seed. Otherwise nothing would use the
    embeddings of the cluster descriptions (no item has a text embedding to compare them with), so
    they are not computed and the pipeline builds no text embedder."""
    return ((ds.modality == "text" and ds.embeddings is None) or described
            or config.representation_mode == "description" or bool(config.topic_seed))


class Hercules:
    """Build a hierarchy of titled clusters from a prepared ``Dataset``.

    Parameters
    ----------
    config : every algorithm parameter.
    text_embedder : embeds texts (text items, descriptions, the topic seed). Needed for text data,
        for ``description`` mode and for description embeddings; optional for numeric data.
    image_embedder : embeds images (image data in ``direct`` mode).
    llm : writes titles and descriptions; ``None`` uses the keyword summariser (no LLM).
    captioner : captions images for their level-0 descriptions.
    run_log : receives one record per LLM call and per stage (see ``io.RunLog``).
    progress : called as ``progress(stage, done, total)``.
    cancel : polled between steps; returning True stops the run with ``Cancelled``.
    cache : a ``hercules_core.cache.Cache`` for results other than model answers (the reduced
        vectors of the clustering space); ``None`` recomputes them.

    After ``fit``: ``hierarchy_`` (the result), ``timings_`` (seconds per stage).
    """

    def __init__(self, config: HerculesConfig | None = None, *, text_embedder: TextEmbedder | None = None,
                 image_embedder: ImageEmbedder | None = None, llm: LLM | None = None,
                 captioner: Captioner | None = None, run_log: RunLogLike | None = None,
                 progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None,
                 cache=None):
        self.config = config or HerculesConfig()
        self.text_embedder = text_embedder
        self.image_embedder = image_embedder
        self.llm = llm
        self.captioner = captioner
        self.run_log = run_log
        self.progress = progress or _no_progress
        self.cancel = cancel
        self.cache = cache

    # ------------------------------------------------------------------ helpers
    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled("The run was cancelled.")

    def _log(self, event: str, **fields) -> None:
        log.info("%s %s", event, fields)
        if self.run_log is not None:
            self.run_log.write({"event": event, **fields})

    def _stage(self, name: str):
        outer = self

        class _Timer:
            def __enter__(self):
                outer._check_cancel()
                self.t = time.perf_counter()
                return self

            def __exit__(self, *exc):
                outer.timings_[name] = outer.timings_.get(name, 0.0) + time.perf_counter() - self.t
                return False

        return _Timer()

    def _embed_texts(self, texts: list[str], stage: str) -> np.ndarray:
        self.progress(stage, 0, len(texts))
        def batch_done(done: int, total: int) -> None:
            self.progress(stage, done, total)
            self._check_cancel()  # between batches: a cancel need not wait for a million texts

        vecs = np.asarray(embed_with_progress(self.text_embedder, list(texts), batch_done), dtype=np.float32)
        if vecs.shape[0] != len(texts):
            raise ConfigError(f"The text embedder returned {vecs.shape[0]} vectors for {len(texts)} texts.")
        self.progress(stage, len(texts), len(texts))
        return vecs

    def _validate(self, ds: Dataset) -> None:
        cfg = self.config
        if len(ds) < 2:
            raise InputError("Need at least 2 items to cluster.")
        if ds.modality == "text" and ds.embeddings is None and self.text_embedder is None:
            raise ConfigError("Text data needs a text embedder (e.g. {setting}).", param="text_embedder", value="minilm")
        if ds.modality == "image" and cfg.representation_mode == "direct" and self.image_embedder is None:
            raise ConfigError("Image data in direct mode needs an image embedder.")
        if ds.modality == "text" and ds.embeddings is not None and cfg.representation_mode == "description" \
                and self.text_embedder is None:
            raise ConfigError("Description mode embeds the items' texts and ignores their own vectors: it needs a "
                              "text embedder; choose one, or use {setting} to cluster the vectors given.",
                              param="representation_mode", value="direct")
        if cfg.representation_mode == "description" and self.text_embedder is None:
            raise ConfigError("Description mode embeds the descriptions: it needs a text embedder.")
        if cfg.use_llm_for_l0_descriptions and self.llm is None:
            raise ConfigError("use_llm_for_l0_descriptions needs an LLM.")

    def _summarizer(self, ds: Dataset, l0_texts: list[str]) -> Summarizer:
        return build_summarizer(ds, l0_texts, self.config, self.llm, run_log=self.run_log, cancel=self.cancel)

    # ------------------------------------------------------------------ level 0
    def _level0(self, ds: Dataset, summarizer: Summarizer, descriptions: list[str]) -> tuple[Level, np.ndarray]:
        """Algorithm 2: titles, descriptions, description embeddings, representation vectors."""
        cfg = self.config
        n = len(ds)
        titles = default_l0_titles(ds, cfg.l0_title_max_chars)
        descriptions = list(descriptions)
        sources = ["snippet" if ds.modality == "text" else "values" if ds.modality == "numeric" else "file name"] * n
        fallback = np.zeros(n, dtype=bool)
        described = False  # descriptions carry content beyond the raw item (captions, LLM)
        if ds.modality == "image" and self.captioner is not None:
            with self._stage("captioning"):
                self.progress("captioning", 0, n)
                descriptions = list(self.captioner.caption(list(ds.image_paths)))
                sources = [self.captioner.model_id] * n
                described = True
                self.progress("captioning", n, n)
        elif cfg.use_llm_for_l0_descriptions and ds.modality in ("text", "numeric"):
            with self._stage("summarizing level 0"):
                requests = build_l0_requests(ds, cfg)
                answers = summarizer.summarize(requests)
                for i, req in enumerate(requests):
                    s = answers[req.key]
                    descriptions[i] = s.description
                    sources[i] = s.source
                    fallback[i] = s.fallback
                described = True

        item_vectors = None
        own = ds.embeddings is not None  # the items' own vectors, given with the data
        with self._stage("embedding"):
            if own:
                item_vectors = np.asarray(ds.embeddings, dtype=np.float32)
            elif ds.modality == "text" and (cfg.representation_mode == "direct" or not described):
                item_vectors = self._embed_texts(ds.texts, "embedding items")
            elif ds.modality == "image" and cfg.representation_mode == "direct":
                self.progress("embedding items", 0, n)
                item_vectors = np.asarray(self.image_embedder.embed_images(list(ds.image_paths)), dtype=np.float32)
                self.progress("embedding items", n, n)
            elif ds.modality == "numeric" and cfg.representation_mode == "direct":
                item_vectors = np.asarray(ds.numeric, dtype=np.float32)

            # Description embeddings of L0. A text item's default description is a snippet of the
            # text itself, so its embedding is the item's (embedding it again would be wasted work).
            desc_emb = None
            if described and self.text_embedder is not None:
                desc_emb = self._embed_texts(descriptions, "embedding descriptions")
            elif ds.modality == "text" and not own:
                desc_emb = item_vectors
            elif cfg.representation_mode == "description":
                desc_emb = self._embed_texts(descriptions, "embedding descriptions")
        vectors = item_vectors if cfg.representation_mode == "direct" else desc_emb
        if vectors is None or not np.all(np.isfinite(vectors)):
            raise ConfigError("The level-0 representation vectors are missing or contain NaN/inf.")
        level0 = Level(0, list(ds.ids), np.full(n, -1, np.int32), np.ones(n, np.int64), vectors, desc_emb,
                       titles, descriptions, fallback, sources)
        return level0, vectors

    # ------------------------------------------------------------------ clustering space
    def _clustering_space(self, ds: Dataset, vectors: np.ndarray, notes: list[str]):
        """The representation step before level 1: the vectors level 1 clusters, and how they were made.

        Returns ``(vectors, method, params)``; ``method`` is ``"none"`` (the vectors as they are) or
        ``"umap"``. Everything stored in the hierarchy stays in the original space.
        """
        cfg = self.config
        method, why = reduction.choose_method(cfg, ds.modality, len(vectors), vectors.shape[1])
        embeddings = ds.modality != "numeric" or cfg.representation_mode == "description"
        params = reduction.umap_params(cfg, len(vectors), "cosine" if embeddings else "euclidean")
        if method == "none":
            self._log("clustering_space", method="none", reason=why)
            return vectors, "none", {}
        stage = f"reducing {len(vectors)} vectors to {params['n_components']} dimensions (UMAP)"
        with self._stage("clustering space"):
            # UMAP's first use in a process compiles numba code (~20 s): say so while it happens
            self.progress(stage + ": the first run in a process compiles code, ~20 s", 0, 1)
            reduced, cached = reduction.fit_umap(vectors, params, cache=self.cache, fit_sample=cfg.reduce_fit_sample)
            self.progress(stage, 1, 1)
        sampled = reduction.fit_rows(len(vectors), cfg.reduce_fit_sample, params["random_state"]) is not None
        fitted = (f"; fitted on a sample of {cfg.reduce_fit_sample:,} items, the other {len(vectors) - cfg.reduce_fit_sample:,} "
                  f"placed by its transform (reduce_fit_sample)" if sampled else "")
        notes.append(f"Level 1 clustered {params['n_components']}-d UMAP vectors ({why}; "
                     f"{params['n_neighbors']} neighbours, {params['metric']}{fitted}){' from the cache' if cached else ''}.")
        self._log("clustering_space", method="umap", reason=why, cached=cached,
                  fit_sample=cfg.reduce_fit_sample if sampled else None,
                  seconds=round(self.timings_.get("clustering space", 0.0), 3), **params)
        return reduced, "umap", params

    # ------------------------------------------------------------------ k per level
    def _level_counts(self, X: np.ndarray, rng: np.random.Generator, notes: list[str]) -> tuple[int, ...] | None:
        """Clusters per level (finest first): the configured counts, or with automatic k the top
        level's best-scoring k on ``X`` (the items in the clustering space) and the levels below it
        (``levels.auto_counts``). None when no candidate k fits these items."""
        cfg = self.config
        if cfg.level_cluster_counts is not None:
            return tuple(cfg.level_cluster_counts)
        candidates = list(top_candidates(len(X), cfg))
        k, scores = km.choose_k(X, candidates, method=cfg.auto_k_method, rng=rng, sample_size=cfg.auto_k_sample_size)
        if k is None:
            return None
        counts = auto_counts(len(X), k, cfg)
        self.auto_k_scores_[len(counts)] = {str(c): round(s, 6) for c, s in scores.items()}
        rule = ", the smallest within one standard error of the best" if cfg.auto_k_method == "silhouette" else ""
        notes.append(f"Automatic k: top level k={k} by {cfg.auto_k_method} on {min(len(X), cfg.auto_k_sample_size)} "
                     f"items ({len(scores)} candidates {min(scores)}-{max(scores)}{rule}); levels "
                     f"{list(counts)}, about {cfg.auto_k_branching:g} children per cluster.")
        return counts

    # ------------------------------------------------------------------ stability
    def _stability(self, levels: list[Level], inputs: list[stability.LevelInput], notes: list[str]):
        """A separate step after the levels are final: re-cluster subsamples of every level
        (``stability.measure``) and time it against the clustering it re-does."""
        if self.config.stability_runs <= 0 or not inputs:
            return None
        with self._stage("stability"):
            self.progress("stability", 0, 1)
            record = stability.measure(levels, inputs, self.config)
            self.progress("stability", 1, 1)
        if record is None:
            return None
        clustering = sum(v for k, v in self.timings_.items() if k.startswith("clustering level"))
        record["seconds"] = round(self.timings_["stability"], 4)
        record["share_of_clustering"] = round(self.timings_["stability"] / clustering, 4) if clustering > 0 else None
        fraction = record["sample_fraction"].get("1")
        if fraction is not None and fraction < stability.SAMPLE_FRACTION:
            notes.append(f"Stability: {record['runs']} re-runs of level 1 on {fraction:.0%} samples of the items "
                         f"(stability_budget={self.config.stability_budget:g}).")
        self._log("stability", seconds=record["seconds"], share_of_clustering=record["share_of_clustering"],
                  sample_fraction=record["sample_fraction"])
        return record

    # ------------------------------------------------------------------ main loop
    def fit(self, dataset: Dataset, labels=None) -> "Hercules":
        cfg = self.config
        self._validate(dataset)
        self.timings_: dict[str, float] = {}
        self.auto_k_scores_: dict[int, dict[str, float]] = {}
        t_start = time.perf_counter()
        rng = np.random.default_rng(cfg.random_state)
        notes = list(dataset.notes)

        l0_descriptions = default_l0_descriptions(dataset, cfg.l0_description_max_chars,
                                                  cfg.prompt_l0_numeric_repr_precision,
                                                  cfg.prompt_l0_numeric_repr_max_vals)
        summarizer = self._summarizer(dataset, dataset.texts if dataset.modality == "text" else l0_descriptions)
        self._log("run_start", n_items=len(dataset), modality=dataset.modality, summarizer=summarizer.model_id,
                  mode=cfg.representation_mode)

        level0, item_vectors = self._level0(dataset, summarizer, l0_descriptions)
        if dataset.modality == "image":  # keywords come from the captions when there are captions
            summarizer = self._summarizer(dataset, level0.descriptions)
        # titles are embedded once: by the gate (LLM runs), then read back by the title-quality score
        title_embedder = MemoEmbedder(self.text_embedder) if self.text_embedder is not None else None
        attach_grounding(summarizer, Grounding.build(title_embedder, level0))
        levels = [level0]
        normalize = cfg.normalize_centroids == "yes" or (
            cfg.normalize_centroids == "auto" and np.allclose(np.linalg.norm(item_vectors[:1000], axis=1), 1.0, atol=1e-3))

        described = describes_items(dataset, cfg, has_llm=self.llm is not None, has_captioner=self.captioner is not None)
        embed_descriptions = self.text_embedder is not None and uses_text_embedder(dataset, cfg, described=described)
        if self.text_embedder is not None and not embed_descriptions:
            notes.append("Cluster descriptions were not embedded: no item has a text embedding to compare them with "
                         "(numeric rows, own vectors or uncaptioned images in direct mode).")
        current, space, space_params = self._clustering_space(dataset, item_vectors, notes)
        reduced_items, reduced_centroids = current, {}
        item_assign = np.arange(len(dataset))
        level1_agreement = None  # measured by level 1's settle when its last search covered every centroid
        level_inputs: list[stability.LevelInput] = []  # what each level clustered (for the stability step)
        with self._stage("clustering level 1"):
            counts = self._level_counts(current, rng, notes)
        while counts is not None and (step := next_level(len(levels), len(current), cfg, counts)) is not None:
            self._check_cancel()
            li = step.level
            below = levels[-1]
            weights = below.size.astype(np.float64) if (cfg.weight_by_size and li > 1) else None
            with self._stage(f"clustering level {li}"):
                k = step.k
                if step.note:
                    notes.append(step.note)
                self.progress(f"clustering level {li}", 0, 1)
                n_init = cfg.kmeans_n_init
                if li > 1:  # restarts are cheap on the few points of an upper level, but not free
                    n_init = int(np.clip(cfg.kmeans_upper_work_budget / (current.size * k), 1, cfg.kmeans_upper_n_init))
                result = km.kmeans(current, k, rng=rng, sample_weight=weights, n_init=n_init,
                                   max_iter=cfg.kmeans_max_iter, backend=cfg.kmeans_backend,
                                   large_threshold=cfg.kmeans_large_threshold,
                                   settled=li == 1 and cfg.level1_settle_steps > 0 and not cfg.use_resampling)
                level_inputs.append(stability.LevelInput(current, weights, n_init, result.backend))
                if cfg.use_resampling:
                    result = km.resample_refine(current, result, rng=rng, iterations=cfg.resampling_iterations,
                                                points_per_cluster=cfg.resampling_points_per_cluster,
                                                sample_weight=weights)
                members, centroids = result.labels, result.centroids
                if li == 1:
                    # assign places an item at its nearest stored level-1 centroid (original space):
                    # settle level 1 to that rule, so that the run's own items assign back to it
                    start = members
                    settled = km.settle_to_nearest(item_vectors, members, k, normalize=normalize,
                                                   max_steps=cfg.level1_settle_steps)
                    members, centroids, steps, moved = settled.labels, settled.centroids, settled.steps, settled.moved
                    level1_agreement = settled.agreement
                    if space != "none":  # the level above clusters level 1's reduced centroids
                        reduced_centroids[li] = km.weighted_means(current, members, k)
                    if moved:
                        notes.append(f"Level 1 settled to nearest centroids in the stored space (what assign "
                                     f"uses): {moved} items ({moved / len(members):.1%}) moved in {steps} steps.")
                    self._log("level1_settled", steps=steps, moved=moved,
                              changed_clusters=int(np.unique(start[members != start]).size))
                else:
                    if space != "none" and cfg.representation_mode == "direct":
                        # clustered in the reduced space: keep its centroids for the next level, and
                        # store the original-space centroids (weighted means of what is below)
                        reduced_centroids[li] = centroids
                        centroids = km.weighted_means(below.vectors, members, k, below.size.astype(np.float64))
                    if normalize:
                        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
                        centroids = centroids / np.where(norms > 0, norms, 1.0)
                below.parent = members.astype(np.int32)
                item_assign = below.parent[item_assign]
                size = np.bincount(members, weights=below.size, minlength=k).astype(np.int64)
                ids = [cluster_id(li, j) for j in range(k)]
                self.progress(f"clustering level {li}", 1, 1)
            self._log("level_clustered", level=li, k=k, backend=result.backend)

            with self._stage(f"summarizing level {li}"):
                requests = build_requests(li, ids, centroids, item_assign, item_vectors, dataset,
                                          level0.descriptions, cfg, rng, lower_level=below if li > 1 else None)
                stage = f"summarizing level {li}"
                self.progress(stage, 0, k)
                answers = summarizer.summarize(requests, level_requests=requests,
                                               progress=lambda done, total: self.progress(stage, done, total))
                self.progress(f"summarizing level {li}", k, k)
                summaries = [answers[r.key] for r in requests]
            desc_emb = None
            if embed_descriptions:
                with self._stage("embedding descriptions"):
                    desc_emb = self._embed_texts([f"{s.title}. {s.description}" for s in summaries],
                                                 f"embedding level {li} descriptions")
            levels.append(Level(li, ids, np.full(k, -1, np.int32), size, centroids.astype(np.float32), desc_emb,
                                [s.title for s in summaries], [s.description for s in summaries],
                                np.array([s.fallback for s in summaries], dtype=bool),
                                [s.source for s in summaries],
                                description_marks=[s.description_mark for s in summaries]))
            current = desc_emb if cfg.representation_mode == "description" else reduced_centroids.get(li, centroids)

        if len(levels) == 1:
            auto = (f"automatic k tries k from auto_k_min={cfg.auto_k_min} up to n_items / "
                    f"{cfg.auto_k_min_reduction:g}" if cfg.level_cluster_counts is None
                    else f"min_clusters_per_level={cfg.min_clusters_per_level}")
            raise InputError(f"No clusters could be built from {len(dataset)} items with these settings ({auto}); "
                             "give more items or smaller k.")

        h = Hierarchy(levels=levels, config=cfg, dataset=dataset)
        stability_record = self._stability(levels, level_inputs, notes)
        if space != "none":
            h.reducers[reduction.CLUSTERING] = reduction.clustering_record(
                space, space_params, reduced_items, reduced_centroids, f"levels[0].vectors: {len(dataset)} rows")
        if cfg.topic_seed and self.text_embedder is not None:
            h.topic_embedding = self._embed_texts([cfg.topic_seed], "embedding topic seed")[0]
        with self._stage("reduction"):
            self.progress("reduction", 0, 1)
            reduce_hierarchy(h, cfg.n_reduction_components, cfg.random_state)
            self.progress("reduction", 1, 1)
        with self._stage("evaluation"):
            self.progress("evaluation", 0, 1)
            evaluate_all(h, labels, text_embedder=title_embedder)
            self.progress("evaluation", 1, 1)
        h.validate()
        self.timings_["total"] = time.perf_counter() - t_start
        n_fallback = int(sum(lv.fallback.sum() for lv in levels[1:]))
        if n_fallback:
            notes.append(f"{n_fallback} cluster summaries are keyword fallbacks (the LLM failed for them).")
        h.stats = {
            "timings": {k: round(v, 4) for k, v in self.timings_.items()},
            "models": {
                "text_embedder": getattr(self.text_embedder, "model_id", None),
                "image_embedder": getattr(self.image_embedder, "model_id", None),
                "llm": getattr(self.llm, "model_id", None),
                "summarizer": summarizer.model_id,
                "captioner": getattr(self.captioner, "model_id", None),
            },
            "clusters_per_level": [len(lv) for lv in levels[1:]],
            "auto_k_scores": {str(k): v for k, v in self.auto_k_scores_.items()},
            "centroids_normalized": bool(normalize),
            "clustering_space": {"method": space, **space_params},
            "n_fallback_summaries": n_fallback,
            "notes": notes,
        }
        if stability_record is not None:
            h.stats["stability"] = stability_record
        if hasattr(self.run_log, "summary"):
            h.stats["usage"] = self.run_log.summary()
        # what assigning new items later needs (saved with the model); the settle measured its agreement
        h.assign_info = assignment_info(h, agreement=level1_agreement)
        self._log("run_end", seconds=round(self.timings_["total"], 3), levels=len(levels) - 1)
        self.hierarchy_ = h
        return self
