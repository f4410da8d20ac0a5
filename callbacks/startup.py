"""Checks made before a server or a worker starts, so a bad configuration ends with one clear line
(and exit code 2), never a traceback or a server that fails later:

- bound to an address other than loopback without a password (``callbacks/auth.py``);
- a runs directory (volume) that cannot be written, or a damaged session key file in it;
- ``REDIS_URL`` set but Redis unreachable (waits ``HERCULES_REDIS_WAIT`` seconds, default 30, so a
  compose stack may start in any order).

``python -m callbacks.startup worker`` runs the worker's checks (the Docker entrypoint does).
"""

from __future__ import annotations

import ipaddress
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from . import auth, auth_store


class StartupError(Exception):
    """A configuration problem, said in one line (what is wrong, what to do)."""


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_access(host: str) -> bool:
    """Whether a login is required; StartupError for a public bind without a password."""
    try:
        password = auth.configured_password()
    except auth.AuthConfigError as e:
        raise StartupError(str(e)) from None
    if password is None and not is_loopback(host):
        raise StartupError(f"refusing to serve on {host} without a password: anyone who can reach it could use "
                           f"the app. Set {auth.PASSWORD_ENV} (or {auth.PASSWORD_FILE_ENV}, a file holding it), "
                           "or bind 127.0.0.1.")
    return password is not None


def runs_dir_of(runs_dir: str | os.PathLike | None, default: Path) -> Path:
    return Path(runs_dir or os.environ.get("HERCULES_RUNS_DIR") or default).resolve()


def check_runs_dir(runs_dir: Path) -> None:
    """The runs directory exists (or is created) and a file can be written in it."""
    try:
        runs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=runs_dir, prefix=".write-check-"):
            pass
    except OSError as e:
        raise StartupError(f"the runs directory {runs_dir} is not writable ({e.strerror or e}): fix its "
                           "permissions (a Docker volume must be writable by uid 10001) or set "
                           "HERCULES_RUNS_DIR.") from None


def check_session_key(runs_dir: Path) -> None:
    """The session key exists (made now if missing) before any worker starts: one line if it is unusable."""
    try:
        auth_store.session_secret(runs_dir)
    except auth_store.KeyFileError as e:
        raise StartupError(str(e)) from None


def redacted(url: str) -> str:
    """``url`` without its password (Redis URLs may carry one)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_redis(url: str | None, wait: float | None = None) -> None:
    """Redis at ``url`` answers PING (retried for ``wait`` seconds)."""
    if not url:
        return
    try:
        import redis
    except ImportError:
        raise StartupError("REDIS_URL is set but the redis package is missing: pip install -r requirements.txt") \
            from None
    if wait is None:
        wait = float(os.environ.get("HERCULES_REDIS_WAIT", "30") or 0)
    deadline = time.monotonic() + wait
    while True:
        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
            client.ping()
            client.close()
            return
        except (redis.RedisError, ValueError, OSError) as e:
            if time.monotonic() >= deadline:
                reason = str(e).replace(url, redacted(url)).splitlines()[0] if str(e) else type(e).__name__
                raise StartupError(f"Redis at {redacted(url)} is unreachable ({reason[:200]}): start it, or fix "
                                   "REDIS_URL (unset it to run jobs in the web process).") from None
            time.sleep(1)


def preflight(role: str, *, host: str | None = None, runs_dir: Path) -> None:
    """All checks of a ``web`` (needs ``host``) or ``worker`` process; StartupError on the first problem."""
    login = False
    if role == "web":
        login = check_access(host or "127.0.0.1")
    elif role == "worker" and not os.environ.get("REDIS_URL"):
        raise StartupError("a worker needs REDIS_URL (e.g. redis://redis:6379/0) to receive runs.")
    check_runs_dir(runs_dir)
    if login:
        check_session_key(runs_dir)
    check_redis(os.environ.get("REDIS_URL"))


def run_or_exit(role: str, **kw) -> None:
    """``preflight`` that prints ``error: ...`` on stderr and exits with code 2 on a problem."""
    try:
        preflight(role, **kw)
    except StartupError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    _role = sys.argv[1] if len(sys.argv) > 1 else "worker"
    run_or_exit(_role, host=os.environ.get("HERCULES_HOST", "127.0.0.1"),
                runs_dir=runs_dir_of(None, Path(__file__).resolve().parent.parent / "runs"))
