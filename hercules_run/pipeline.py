"""One run, start to end: a data spec, a config and model ids in; a saved run directory out.

Both front doors are thin adapters over :func:`run_pipeline`: the command line
(``hercules_run.cli``) and the web app's background job (``callbacks.job``). The pipeline prepares
the data, builds the models from their registry ids (in the calling process: SDK clients do not
pickle), estimates the cost, wraps the models with the shared on-disk cache, fits, and writes the
run's files. Whichever door started a run, its directory holds the same files and its
``model.json`` the same stats (``stats["cost"]``: the report and the estimate; ``stats["cache"]``:
the cache counters).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

import model_registry as registry
from hercules_core import Dataset, Hercules, HerculesConfig, Hierarchy, RunLog, cost, io
from hercules_core.cache import Cache, default_cache_dir, wrap
from hercules_core.hercules import describes_items, uses_text_embedder

from . import timings

__all__ = ["CacheSettings", "ModelIds", "OUTPUT_FILES", "RunRequest", "RunResult", "build_models", "open_cache",
           "run_pipeline", "save_outputs"]

# what a finished run directory holds (besides run_log.jsonl, written while the run goes)
OUTPUT_FILES = ("model.json", "memberships.csv", "hierarchy.txt", "evaluation.json")
_NONE = (None, "", "none")

ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ModelIds:
    """Registry ids of the models a run uses; ``None`` (or ``"none"``) for a model it does without.
    The LLM id ``"keywords"`` is the keyword summariser (no LLM)."""

    text_embedder: str | None = None
    image_embedder: str | None = None
    llm: str | None = None
    captioner: str | None = None

    def __post_init__(self):
        for f in fields(self):
            if getattr(self, f.name) in _NONE:
                object.__setattr__(self, f.name, None)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "ModelIds":
        values = values or {}
        return cls(**{f.name: values.get(f.name) for f in fields(cls)})

    def as_dict(self) -> dict[str, str | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class CacheSettings:
    """Where the cache of embeddings and LLM answers lives. ``directory`` None is the default folder
    (``HERCULES_CACHE_DIR`` or ``~/.cache/hercules``); ``enabled=False`` (or ``HERCULES_CACHE=off``,
    which ``Cache`` itself reads) bypasses it."""

    directory: Path | None = None
    enabled: bool = True


@dataclass(frozen=True)
class RunRequest:
    """Everything a run needs.

    ``prepare(out_dir)`` is the data spec: it returns the ``Dataset`` (and may write into the run
    directory, e.g. the images of a ZIP). ``show_progress`` lets the models draw their own progress
    bars (the command line); the app never does.
    """

    prepare: Callable[[Path], Dataset]
    config: HerculesConfig
    models: ModelIds
    out_dir: Path
    cache: CacheSettings = field(default_factory=CacheSettings)
    show_progress: bool = False


@dataclass
class RunResult:
    hierarchy: Hierarchy
    dataset: Dataset
    estimate: dict[str, Any]
    report: dict[str, Any]
    timings: dict[str, float]
    memory: dict[str, dict[str, float]] = field(default_factory=dict)  # peak RSS per stage (timings.StageMemory)


def build_models(ids: ModelIds, modality: str, *, show_progress: bool = False,
                 needs_text_embedder: bool = True) -> dict[str, Any]:
    """The model objects of a run, keyed like ``Hercules``' arguments (None where not needed:
    ``needs_text_embedder=False`` leaves the text embedder unbuilt, see ``hercules.uses_text_embedder``)."""
    out: dict[str, Any] = {"text_embedder": None, "image_embedder": None, "llm": None, "captioner": None}
    if ids.text_embedder and not needs_text_embedder:
        registry.get_entry(ids.text_embedder, "text_embedder")  # a mistyped id is an error even when unused
    if ids.text_embedder and needs_text_embedder:
        out["text_embedder"] = registry.get_text_embedder(ids.text_embedder, show_progress=show_progress)
    if modality == "image" and ids.image_embedder:
        out["image_embedder"] = registry.get_image_embedder(ids.image_embedder, show_progress=show_progress)
    if modality == "image" and ids.captioner:
        out["captioner"] = registry.get_captioner(ids.captioner)
    if ids.llm:
        out["llm"] = registry.get_llm(ids.llm)  # None for "keywords"
    return out


def timings_directory(settings: CacheSettings) -> Path:
    """Where the measured timings live (``timings.json``): the cache's directory."""
    return Path(settings.directory).expanduser() if settings.directory is not None else default_cache_dir()


def open_cache(settings: CacheSettings) -> Cache:
    return Cache(settings.directory if settings.directory is not None else default_cache_dir(),
                 enabled=settings.enabled)


def save_outputs(h: Hierarchy, out_dir: str | Path, *, write_model: bool = True) -> None:
    """Write a run's result files (:data:`OUTPUT_FILES`); ``write_model=False`` keeps an existing
    ``model.json`` (an imported model)."""
    out = Path(out_dir)
    if write_model:
        io.save_model(h, out / "model.json")
    io.save_memberships(h, out / "memberships.csv")
    io.save_hierarchy_text(h, out / "hierarchy.txt")
    io.save_evaluation(h.evaluation, out / "evaluation.json")


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def run_pipeline(request: RunRequest, *, progress: ProgressFn | None = None, cancel: Callable[[], bool] | None = None,
                 run_log: RunLog | None = None, on_data: Callable[[Dataset], None] | None = None,
                 on_estimate: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
    """Run ``request`` to the end and write its files into ``request.out_dir``.

    ``progress(stage, done, total)`` follows every stage; ``cancel()`` is polled between steps
    (``Cancelled`` stops the run, nothing is saved); ``run_log`` receives every LLM call (default: a
    ``RunLog`` on ``out_dir/run_log.jsonl``). ``on_data(dataset)`` is called once the data is
    prepared, ``on_estimate(estimate)`` before the fit starts. Errors propagate (``HerculesError``
    for anything a user can fix).
    """
    # peak RSS per stage: the caller's StageMemory (the CLI's resets the process peak), else one that does not
    memory = progress if isinstance(progress, timings.StageMemory) else timings.StageMemory(progress or _no_progress)
    progress = memory
    out = Path(request.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = request.config
    progress("preparing data", 0, 1)
    t_prepare = time.perf_counter()
    ds = request.prepare(out)
    t_prepare = time.perf_counter() - t_prepare
    if on_data is not None:
        on_data(ds)
    ids = request.models
    described = describes_items(ds, cfg, has_llm=ids.llm not in cost.NO_LLM,
                                has_captioner=ds.modality == "image" and bool(ids.captioner))
    needs_text = uses_text_embedder(ds, cfg, described=described)
    if ids.text_embedder and not needs_text:
        ds.notes.append(f"The text embedder {ids.text_embedder} was not loaded: this run embeds no text "
                        f"({'own vectors' if ds.embeddings is not None else ds.modality + ' items'} in "
                        f"{cfg.representation_mode} mode), so its cluster descriptions are not embedded.")
        logging.getLogger("hercules_core").warning(ds.notes[-1])
    models = build_models(ids, ds.modality, show_progress=request.show_progress, needs_text_embedder=needs_text)
    estimate = cost.estimate_run(ds, cfg, llm_id=request.models.llm if models["llm"] is not None else None,
                                 with_text_embedder=models["text_embedder"] is not None,
                                 with_captioner=models["captioner"] is not None)
    timings_dir = timings_directory(request.cache)
    estimate = cost.annotate_estimate(estimate, cfg, timings.rates_for(request.models, timings_dir))
    if on_estimate is not None:
        on_estimate(estimate)
    if run_log is None:
        run_log = RunLog(out / "run_log.jsonl")
    cache = open_cache(request.cache)
    try:
        # timed under the cache: only what reached the model counts (hercules_run/timings.py)
        timed = {kind: timings.Timed(m) for kind, m in models.items() if m is not None and kind != "llm"}
        wrapped = {kind: wrap(timed.get(kind, m), cache) for kind, m in models.items()}
        model = Hercules(cfg, **wrapped, run_log=run_log, progress=progress, cancel=cancel, cache=cache).fit(ds)
    finally:
        cache_stats = cache.stats()
        cache.close()
    h = model.hierarchy_
    usage = cost.summary_with_usage(run_log)
    report = cost.run_report(h, usage, cache_stats, model.timings_)
    report["duration"] = cost.compare_duration(estimate, report["total_seconds"])  # estimate beside actual
    h.stats["cost"] = dict(report, estimate=estimate)
    if request.cache.enabled:  # --no-cache: neither read nor write the cache directory's files
        timings.record(timings.measure_run(request.models.as_dict(), timed, usage, cache_stats, model.timings_,
                                           estimate.get("work")), timings_dir)
    h.stats["cache"] = cache_stats
    progress("saving results", 0, 1)
    t_save = time.perf_counter()
    save_outputs(h, out)
    progress("saving results", 1, 1)
    peaks = memory.finish()
    # outside the fit (not in model.json's stats): reading the data and writing the files
    outside = {"preparing data": t_prepare, "saving": time.perf_counter() - t_save}
    return RunResult(hierarchy=h, dataset=ds, estimate=estimate, report=report, timings={**model.timings_, **outside},
                     memory=peaks)
