"""The HERCULES web app behind gunicorn, the production WSGI server (what the Docker image runs).

    python serve.py [--host 127.0.0.1] [--port 8050] [--workers 2] [--threads 8] [--runs-dir runs]

(or ``HERCULES_HOST``, ``HERCULES_PORT``, ``HERCULES_WORKERS``, ``HERCULES_THREADS``,
``HERCULES_RUNS_DIR``; ``scripts/serve.sh`` sets up the venv first). Threaded workers suit Dash: a
callback is a short request, and a few processes use both cores despite the GIL. ``python app.py``
stays the one-user development server. Runs go to Celery workers when ``REDIS_URL`` is set, else to
a background process of the web worker that received them. Bound to anything but loopback, it
refuses to start without ``HERCULES_PASSWORD`` (see ``callbacks/auth.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _int_env(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        print(f"error: {name} must be a whole number.", file=sys.stderr)
        raise SystemExit(2) from None


def gunicorn_options(args: argparse.Namespace) -> dict:
    return {
        "bind": f"[{args.host}]:{args.port}" if ":" in args.host else f"{args.host}:{args.port}",
        "workers": args.workers, "threads": args.threads, "worker_class": "gthread",
        # uploads of up to 200 MB and loading a big model take a while; a stop must be quick (≤ 3 s)
        "timeout": 300, "graceful_timeout": 1, "keepalive": 5,
        "accesslog": "-" if os.environ.get("HERCULES_ACCESS_LOG", "1") != "0" else None, "errorlog": "-",
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
        "forwarded_allow_ips": os.environ.get("HERCULES_FORWARDED_ALLOW_IPS", "127.0.0.1"),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Serve the HERCULES web app with gunicorn.")
    p.add_argument("--host", default=os.environ.get("HERCULES_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=_int_env("HERCULES_PORT", 8050))
    p.add_argument("--workers", type=int, default=_int_env("HERCULES_WORKERS", 2), help="processes (default 2)")
    p.add_argument("--threads", type=int, default=_int_env("HERCULES_THREADS", 8), help="threads per process")
    p.add_argument("--runs-dir", default=os.environ.get("HERCULES_RUNS_DIR"), help="where runs are stored")
    args = p.parse_args(argv)

    sys.path.insert(0, str(HERE))
    from callbacks import startup

    runs_dir = startup.runs_dir_of(args.runs_dir, HERE / "runs")
    startup.run_or_exit("web", host=args.host, runs_dir=runs_dir)
    # the app of every gunicorn worker reads these (the Host check needs the bind address)
    os.environ.update(HERCULES_RUNS_DIR=str(runs_dir), HERCULES_HOST=args.host)

    from gunicorn.app.base import BaseApplication

    class HerculesServer(BaseApplication):
        def load_config(self):
            for key, value in gunicorn_options(args).items():
                if value is not None:
                    self.cfg.set(key, value)

        def load(self):
            import app

            return app.create_app(runs_dir).server

    print(f"HERCULES is serving on http://{args.host}:{args.port}/ (gunicorn, {args.workers} workers × "
          f"{args.threads} threads).", flush=True)
    HerculesServer().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
