"""Dash callbacks, one module per page (``page_*``) plus the app shell, over plain functions.

``register(app, ctx)`` attaches them to one app: nothing is registered at import time, so tests can
build several apps in one process.
"""

from __future__ import annotations


def register(app, ctx) -> None:
    from . import page_compare, page_evaluate, page_explore, page_new_run, page_run, page_runs, routes, shell

    shell.register(app, ctx)
    page_new_run.register(app, ctx)
    page_runs.register(app, ctx)
    page_run.register(app, ctx)
    page_explore.register(app, ctx)
    page_evaluate.register(app, ctx)
    page_compare.register(app, ctx)
    routes.register(app.server, ctx)
    from . import assign_panel, curate, edit, reuse_routes, upload_route

    edit.register(app, ctx)
    curate.register(app, ctx)
    assign_panel.register(app, ctx)
    reuse_routes.register(app.server, ctx)
    upload_route.register(app.server, ctx)
