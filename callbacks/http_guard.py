"""HTTP hardening of the app's Flask server: Host check, security headers, early size refusal.

``install(server, bind_host)`` is called once from ``app.create_app``:

- **Host check** (DNS rebinding): Flask's ``TRUSTED_HOSTS`` answers 400 to a request whose ``Host``
  is not ours. Allowed: the loopback names, the address the app binds (and this machine's name and
  addresses when it binds all interfaces), plus ``HERCULES_ALLOWED_HOSTS`` (comma-separated names;
  ``.example.org`` allows subdomains; ``*`` turns the check off, e.g. behind a proxy that checks).
- **Headers**: no framing (``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'``), no MIME
  sniffing, no referrer to other sites.
- **Size before reading**: a callback request over :data:`SMALL_REQUEST` is refused with 413 from its
  ``Content-Length`` before its body is read: no callback carries a file (files arrive in chunks over
  ``/upload``, :mod:`callbacks.upload_route`). A rejected 400 MB request costs kilobytes of memory.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, Callable

LOOPBACK = ("localhost", "127.0.0.1", "::1")
HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
SMALL_REQUEST = 8 * 1024**2  # any callback: none carries a file
logger = logging.getLogger("hercules.http")


def allowed_hosts(bind_host: str | None, env: str | None = None) -> list[str] | None:
    """The Host names to accept (None: accept any)."""
    extra = [h.strip() for h in (env if env is not None else os.environ.get("HERCULES_ALLOWED_HOSTS", "")).split(",")
             if h.strip()]
    if "*" in extra:
        return None
    hosts = list(LOOPBACK) + extra
    if bind_host in ("0.0.0.0", "::", ""):
        name = socket.gethostname()
        hosts.append(name)
        try:
            hosts += sorted({info[4][0] for info in socket.getaddrinfo(name, None)})
        except OSError:
            pass
    elif bind_host:
        hosts.append(bind_host)
    # werkzeug compares the Host without its port (and cannot match IPv6 literals: use a name)
    return sorted(set(hosts))


def _too_large(start_response, limit: int):
    body = (f"Request too large: this action accepts at most {limit // 1024**2} MB. Files are sent "
            "through the upload boxes.").encode()
    start_response("413 Request Entity Too Large", [("Content-Type", "text/plain; charset=utf-8"),
                                                    ("Content-Length", str(len(body))), ("Connection", "close")])
    return [body]


class SizeGuard:
    """WSGI middleware: refuse an oversized callback request from its Content-Length alone."""

    def __init__(self, app: Callable, path: str = "/_dash-update-component"):
        self.app, self.path = app, path

    def __call__(self, environ: dict[str, Any], start_response):
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO", "").endswith(self.path):
            try:
                length = int(environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > SMALL_REQUEST:
                environ["wsgi.input_terminated"] = False
                return _too_large(start_response, SMALL_REQUEST)
        return self.app(environ, start_response)


def callback_error(err: Exception) -> None:
    """Dash's ``on_error``: a callback that still raises on a browser value answers "no update".

    Every callback of the app validates its inputs; this is the backstop (Dash's own page router
    raises on a tampered pathname). The traceback goes to the server log, never to the client; the
    callback fuzzer fails on any such line for one of our callbacks.
    """
    import dash

    try:
        outputs = dash.ctx.outputs_list
    except Exception:  # no callback context: nothing to name
        outputs = None
    logger.warning("callback error: %s: %s: %s", json_ids(outputs), type(err).__name__, err, exc_info=err)
    return None


def json_ids(outputs: Any) -> str:
    items = outputs if isinstance(outputs, list) else [outputs]
    flat = [o for i in items for o in (i if isinstance(i, list) else [i]) if isinstance(o, dict)]
    return ",".join(f"{o.get('id')}.{o.get('property')}" for o in flat)[:300]


def install(server, bind_host: str | None) -> None:
    """Host check, security headers and the size guard on ``server`` (a Flask app)."""
    server.config["TRUSTED_HOSTS"] = allowed_hosts(bind_host)

    @server.after_request
    def _security_headers(response):
        for k, v in HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    server.wsgi_app = SizeGuard(server.wsgi_app)
