"""The HERCULES web app: upload → configure → run in the background → explore, evaluate, download.

    python app.py [--host 127.0.0.1] [--port 8050] [--runs-dir runs]

(or ``HERCULES_HOST`` / ``HERCULES_PORT`` / ``HERCULES_RUNS_DIR``). ``create_app()`` builds the app;
``server`` (for a WSGI server) is the Flask server of a default app; ``serve.py`` runs it behind gunicorn.
Background runs use Dash's DiskcacheManager (cache under the runs directory) unless ``REDIS_URL`` is
set, in which case they go to Celery workers (``celery -A app:celery_app worker``).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_manager(runs_dir: Path):
    """DiskcacheManager (default) or CeleryManager when REDIS_URL is set."""
    from dash import CeleryManager, DiskcacheManager

    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        try:
            from celery import Celery
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise SystemExit("REDIS_URL is set but Celery is not installed: pip install 'dash[celery]'.") from e
        celery = Celery(__name__, broker=redis_url, backend=redis_url)
        return CeleryManager(celery)
    import diskcache

    return DiskcacheManager(diskcache.Cache(str(runs_dir / ".cache" / "background")))


def create_app(runs_dir: str | os.PathLike | None = None, *, include_test_models: bool | None = None,
               manager=None, host: str | None = None):
    """A new app whose runs live in ``runs_dir`` (default ``$HERCULES_RUNS_DIR`` or ``./runs``).

    ``host`` is the address the server binds (default ``$HERCULES_HOST``): requests must name it, a
    loopback name or one of ``$HERCULES_ALLOWED_HOSTS`` in their Host header (``callbacks.http_guard``).
    """
    import dash
    import dash_bootstrap_components as dbc
    from dash import dcc, html

    import callbacks
    from callbacks import auth, bounded, chunked, configform, http_guard, ids
    from callbacks.context import AppContext

    runs_dir = Path(runs_dir or os.environ.get("HERCULES_RUNS_DIR") or HERE / "runs").resolve()
    runs_dir.mkdir(parents=True, exist_ok=True)
    if include_test_models is None:
        include_test_models = configform.include_test_models()
    app = dash.Dash(__name__, use_pages=True, pages_folder=str(HERE / "pages"), assets_folder=str(HERE / "assets"),
                    background_callback_manager=manager or make_manager(runs_dir), suppress_callback_exceptions=True,
                    title="HERCULES", update_title=None, serve_locally=True, on_error=http_guard.callback_error)
    ctx = AppContext(runs_dir=runs_dir, include_test_models=include_test_models)
    app.server.config["HERCULES"] = ctx
    # files arrive in chunks (callbacks/upload_route.py): no request needs to be larger than one chunk
    app.server.config["MAX_CONTENT_LENGTH"] = chunked.MAX_CHUNK_BYTES + 1024**2
    http_guard.install(app.server, host or os.environ.get("HERCULES_HOST"))
    bounded.warm()  # the process that reads uploads, started now rather than on the first upload

    nav = dbc.NavbarSimple(brand="HERCULES", brand_href="/", color="dark", dark=True, className="mb-2", fluid=True,
                           children=[dbc.NavItem(dbc.NavLink("New run", href="/", id="nav-new")),
                                     dbc.NavItem(dbc.NavLink("Runs", href="/runs", id="nav-runs")),
                                     dbc.NavItem(dbc.NavLink("Compare", href="/compare", id="nav-compare"))])
    job_panel = html.Div(id=ids.JOB_PANEL, className="job-panel card mb-3", style={"display": "none"}, children=[
        html.Div(className="card-body py-2", children=[
            html.Div([html.Span(id=ids.JOB_TITLE, className="me-3 small"),
                      html.Span("Waiting…", id=ids.STAGE, className="small fw-semibold job-stage"),
                      dbc.Button("Cancel", id=ids.CANCEL, color="danger", size="sm", outline=True,
                                 className="float-end", disabled=True)]),
            dbc.Progress(id=ids.PROGRESS, value=0, label="0%", striped=True, animated=True, className="my-2",
                         style={"height": "20px"}),
            html.Details([html.Summary("Live log", className="small"),
                          html.Pre(id=ids.LOG, className="job-log")]),
            html.Div(id=ids.JOB_RESULT),
        ])])
    app.layout = html.Div([
        # the run started in this tab (id and start token only) survives a reload: the panel rejoins it
        dcc.Location(id=ids.URL), dcc.Store(id=ids.ACTIVE_RUN, storage_type="session"), dcc.Store(id=ids.JOB_DONE),
        dcc.Store(id=ids.JOB_START), dcc.Interval(id=ids.JOB_POLL, interval=1000, disabled=True),
        dcc.Store(id=ids.JOB_SCROLL),
        nav, dbc.Container(job_panel, fluid="lg"), dash.page_container,
    ])
    callbacks.register(app, ctx)
    auth.register(app.server, runs_dir)  # a login for every request when HERCULES_PASSWORD(_FILE) is set
    return app


@functools.lru_cache(maxsize=1)
def default_app():
    return create_app()


def __getattr__(name: str):
    """``app.server`` / ``app.app`` / ``app.celery_app`` build the default app on first use only."""
    if name == "server":
        return default_app().server
    if name == "app":
        return default_app()
    if name == "celery_app":
        return default_app()._background_manager.handle
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Start the HERCULES web app.")
    p.add_argument("--host", default=os.environ.get("HERCULES_HOST", "127.0.0.1"),
                   help="address to bind (default 127.0.0.1: only this machine)")
    p.add_argument("--port", type=int, default=int(os.environ.get("HERCULES_PORT", "8050")))
    p.add_argument("--runs-dir", default=os.environ.get("HERCULES_RUNS_DIR"), help="where runs are stored")
    p.add_argument("--debug", action="store_true", help="Dash debug mode (reloader, dev tools)")
    args = p.parse_args(argv)
    from callbacks import startup

    # a public bind without a password, an unwritable runs directory, an unreachable Redis: one line, exit 2
    runs_dir = startup.runs_dir_of(args.runs_dir, HERE / "runs")
    startup.run_or_exit("web", host=args.host, runs_dir=runs_dir)
    app = create_app(runs_dir, host=args.host)
    print(f"HERCULES is running: open http://{args.host}:{args.port}/ in a browser (Ctrl+C stops it).",
          flush=True)
    app.run(host=args.host, port=args.port, debug=args.debug)
    return 0


if __name__ == "__main__":
    sys.exit(main())
