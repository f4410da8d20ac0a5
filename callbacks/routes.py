"""Plain Flask routes: downloads of a run's files and the image thumbnails of image runs.

Run ids are checked with the strict run-id regex and file kinds against a fixed list, so nothing
from the URL reaches a path unchecked. An image is served only when it lies inside the requested
run's own ``images`` folder (``runstore.inside``): never another run's files, the background cache,
or wherever an imported model's paths point.

``model.json`` is the whole model: the JSON itself, or for a model that keeps its items in a
columnar file beside it, a ``.hercules`` bundle of both (streamed: nothing is built on disk).
"""

from __future__ import annotations

from flask import Response, abort, send_file

from hercules_core import HerculesError, columnar
from hercules_core.io import rows_csv

from . import runstore

FILES = {"model.json": "application/json", "memberships.csv": "text/csv", "evaluation.json": "application/json",
         "hierarchy.txt": "text/plain", "run_log.jsonl": "application/x-ndjson"}


def evaluation_csv(evaluation: dict) -> str:
    """One row per level, one column per metric (notes joined with " | "), formula-looking text escaped
    (notes quote cluster titles, and an imported model supplies every name and value)."""
    rows = [dict(v, level=int(k)) for k, v in sorted(evaluation.items(), key=lambda kv: int(kv[0]))]
    cols = ["level"] + sorted({c for r in rows for c in r} - {"level", "notes"}) + ["notes"]
    body = [[" | ".join(map(str, r.get("notes") or [])) if c == "notes" else r.get(c) for c in cols] for r in rows]
    return rows_csv([cols, *body])


def download_name(run_id: str, kind: str) -> str:
    return f"hercules-{run_id}-{kind}"


def model_or_404(ctx, run_id: str):
    """The explorer's model of a finished run named in a URL; a bad id or any other run is a 404."""
    if not runstore.valid_id(run_id):
        abort(404)
    try:
        return ctx.model(run_id)
    except (OSError, HerculesError):
        abort(404)


def attachment(body: str, mimetype: str, run_id: str, kind: str) -> Response:
    """``body`` as a download named after the run."""
    return Response(body, mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{download_name(run_id, kind)}"'})


def register(server, ctx) -> None:
    @server.route("/files/<run_id>/download/<kind>")
    def hercules_download(run_id: str, kind: str):
        if not runstore.valid_id(run_id) or (kind not in FILES and kind != "evaluation.csv"):
            abort(404)
        rdir = runstore.run_dir(ctx.runs_dir, run_id)
        if kind == "evaluation.csv":
            ev = runstore.read_json(rdir / "evaluation.json")
            if ev is None:
                abort(404)
            return attachment(evaluation_csv(ev), "text/csv", run_id, kind)
        path = rdir / kind
        if not path.is_file():
            abort(404)
        if kind == "model.json" and columnar.has_items_file(path):
            name = download_name(run_id, "model" + columnar.BUNDLE_SUFFIX)
            return Response(columnar.iter_bundle(path), mimetype="application/zip",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})
        return send_file(path, mimetype=FILES[kind], as_attachment=True, download_name=download_name(run_id, kind),
                         max_age=0)

    @server.route("/files/<run_id>/image/<int:index>")
    def hercules_image(run_id: str, index: int):
        em = model_or_404(ctx, run_id)
        paths = em.h.dataset.image_paths
        if not paths or not 0 <= index < len(paths):
            abort(404)
        path = runstore.run_image(runstore.run_dir(ctx.runs_dir, run_id), paths[index])
        if path is None:
            abort(404)
        return send_file(path, max_age=3600)

