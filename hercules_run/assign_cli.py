"""``python -m hercules_core assign MODEL.json DATA --out DIR``: put new items into a saved hierarchy.

Kept apart from the ``run`` command: it loads a model, builds the embedder the model was made with
(found in the registry by the id stored in the model, or named with ``--embedder``) behind the
shared cache (:mod:`hercules_run.assigning`, also used by the app), and writes
``DIR/assignments.csv`` (the columns of ``memberships.csv`` plus ``distance`` and ``novel``).
"""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub) -> None:
    a = sub.add_parser("assign", help="assign new items to the clusters of a saved model (no LLM calls)")
    a.add_argument("model", help="a model.json written by `run`, or a .hercules bundle downloaded from the app")
    a.add_argument("data", help="new items: a table, or a folder / ZIP of images for an image model")
    a.add_argument("--out", required=True, help="output directory (created if missing)")
    a.add_argument("--text-column", help="column holding the texts (default: 'text')")
    a.add_argument("--id-column", help="column holding the item ids (default: row numbers)")
    a.add_argument("--embedder", help="text embedder id (default: the one the model was built with)")
    a.add_argument("--image-embedder", help="image embedder id (default: the one the model was built with)")
    a.add_argument("--cache-dir", help="embedding cache (default: $HERCULES_CACHE_DIR or ~/.cache/hercules)")
    a.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    a.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args) -> int:
    from hercules_core.assign import describe, save_assignments
    from hercules_core.io import load_model

    from .assigning import assign_with_models
    from .pipeline import CacheSettings

    h = load_model(args.model)
    describe(h)  # an old model without assignment data stops here, before any work
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = CacheSettings(Path(args.cache_dir).expanduser() if args.cache_dir else None, enabled=not args.no_cache)
    result, stats = assign_with_models(
        h, args.data, chosen={"text_embedder": args.embedder, "image_embedder": args.image_embedder}, cache=cache,
        show_progress=not args.quiet, text_column=args.text_column, id_column=args.id_column,
        extract_dir=out / "images")
    save_assignments(result, out / "assignments.csv")
    n, n_novel = len(result.frame), int(result.novel.sum())
    print(f"{n:,} items assigned to levels 1..{h.top_level}; {n_novel:,} flagged novel (farther from their "
          f"level-1 centroid than 95% of its training items). {result.how} Wrote {out}/assignments.csv",
          file=sys.stderr)
    if stats["enabled"]:
        print(f"cache: {stats['hits']:,} hits, {stats['misses']:,} misses", file=sys.stderr)
    return 0
