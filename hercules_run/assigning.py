"""Assigning new items to a saved hierarchy, for both front doors (the ``assign`` command and the
app's "Assign new data"): the model's embedders from the registry, wrapped in the shared cache.

``hercules_core.assign`` does the work; this layer only builds what it is given, as the run
pipeline does for a fit.
"""

from __future__ import annotations

from typing import Any

import model_registry as registry
from hercules_core import AssignResult, Hierarchy, assign
from hercules_core.assign import embedders_needed
from hercules_core.cache import wrap

from .pipeline import CacheSettings, open_cache


def assign_embedders(h: Hierarchy, chosen: dict[str, str | None] | None = None, *,
                     show_progress: bool = False) -> dict[str, Any]:
    """The embedders assigning to ``h`` needs (``{"text_embedder": ..., "image_embedder": ...}``):
    the registry ids in ``chosen`` when given, else the entries that make the ids the model saved."""
    chosen, info = chosen or {}, h.assign_info or {}
    picks = {kind: None if chosen.get(kind) in (None, "", "none") else chosen[kind] for kind in embedders_needed(h)}
    return {kind: registry.embedder_for_model(pick, info.get(kind), kind, show_progress=show_progress)
            for kind, pick in picks.items()}


def assign_with_models(h: Hierarchy, data: Any, *, chosen: dict[str, str | None] | None = None,
                       cache: CacheSettings | None = None, show_progress: bool = False,
                       **kwargs: Any) -> tuple[AssignResult, dict[str, Any]]:
    """``hercules_core.assign`` with the model's embedders behind the cache; (result, cache stats).
    ``kwargs`` go to ``assign`` (``text_column``, ``id_column``, ``extract_dir``)."""
    models = assign_embedders(h, chosen, show_progress=show_progress)  # an old model fails here, before work
    store = open_cache(cache or CacheSettings())
    try:
        wrapped = {kind: wrap(m, store) for kind, m in models.items()}
        result = assign(h, data, **wrapped, **kwargs)
    finally:
        stats = store.stats()
        store.close()
    return result, stats
