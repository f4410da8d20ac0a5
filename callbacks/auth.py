"""Access control for the web app: one shared password (or token) for the whole team.

No password configured (the default, bound to loopback): no login, as before. With ``HERCULES_PASSWORD``
or ``HERCULES_PASSWORD_FILE`` (a secret file, e.g. a Docker secret) every request needs it, except
``/login`` and ``/healthz``:

- browsers log in on ``/login`` (a form with a single-use CSRF token) and get a signed session cookie
  (HttpOnly, SameSite=Strict, so no other site can send it; ``HERCULES_COOKIE_SECURE=1`` behind HTTPS),
  valid 12 h or until its owner logs out;
- scripts send ``Authorization: Bearer <password>``;
- anything else gets 401 (a page navigation is redirected to the login form instead).

The session key is random: ``HERCULES_SECRET_KEY`` if set, else 32 random bytes made once and kept in
``<runs_dir>/.secret_key`` (mode 0600, created with O_EXCL so every gunicorn worker and every web replica
on the runs volume uses the same one). Nothing sent to a browser can be checked against a password guess
offline. A session holds a random id and a mark, an HMAC of the password keyed by that secret: changing the
password logs everyone out, and a logout records the session id as revoked (``callbacks/auth_store.py``).

Failed logins are counted per client address (``request.remote_addr``), over all processes: 5 are free,
then the address waits 1, 2, 4, ... s after each further failure, at most 15 min (a lockout). A locked
address gets HTTP 429 with ``Retry-After`` at once, whether it tries the form or a Bearer token; no thread
sleeps, and nobody else waits. A successful login clears the count; counts are forgotten an hour after
their last wait ended. The password is never logged, echoed, or written anywhere.

Compared with Django's auth and Flask-Login: like Django's ``login()`` a login starts a new session (new
id, new CSRF token), like Django's session auth hash the session carries a keyed HMAC tied to the password,
and ``next`` is checked as ``url_has_allowed_host_and_scheme`` would (backslashes, control characters,
``//``), only stricter: a plain path on this site, never a URL with a host. Unlike Flask-Login's and
Django's signed-cookie sessions a logout revokes the cookie on the server, and unlike both (which leave
throttling to add-ons such as django-axes) failed logins are throttled here. Unlike Django's CSRF token,
which serves every form until the next login, ours is spent by the POST that carries it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import unicodedata
from datetime import timedelta
from urllib.parse import quote, unquote

from flask import Response, redirect, request, session
from markupsafe import escape

from . import auth_store

PASSWORD_ENV, PASSWORD_FILE_ENV = "HERCULES_PASSWORD", "HERCULES_PASSWORD_FILE"
PUBLIC_PATHS = ("/login", "/healthz")
SESSION_MARK, SESSION_ID, CSRF_KEY = "hercules_auth", "hercules_sid", "hercules_csrf"
SESSION_LIFETIME = timedelta(hours=12)
log = logging.getLogger("hercules.auth")


class AuthConfigError(ValueError):
    """The password setting is unusable (message names the variable, never the value)."""


def configured_password() -> str | None:
    """The password from ``HERCULES_PASSWORD_FILE`` (first) or ``HERCULES_PASSWORD``; None if unset."""
    path = os.environ.get(PASSWORD_FILE_ENV, "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.read().strip("\r\n")
        except OSError as e:
            raise AuthConfigError(f"{PASSWORD_FILE_ENV}={path} cannot be read ({e.strerror}).") from None
        if not value.strip():
            raise AuthConfigError(f"{PASSWORD_FILE_ENV}={path} is empty: put the password in it.")
        return value
    value = os.environ.get(PASSWORD_ENV, "")
    return value if value.strip() else None


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def password_matches(given: str | None, password: str) -> bool:
    """Constant-time comparison (of digests, so the length does not leak either)."""
    return isinstance(given, str) and hmac.compare_digest(_digest(given), _digest(password))


def _same_text(a: object, b: object) -> bool:
    """Constant-time equality of two strings (as bytes: compare_digest refuses non-ASCII str)."""
    return isinstance(a, str) and isinstance(b, str) and hmac.compare_digest(a.encode(), b.encode())


def _mark(secret_key: str, password: str) -> str:
    """What a logged-in session holds: ties the cookie to the current password. Keyed by the random
    secret, so knowing the mark does not let anyone test password guesses offline."""
    return hmac.new(secret_key.encode(), b"hercules-login-v2\0" + _digest(password), hashlib.sha256).hexdigest()[:32]


def _plain_path(text: str) -> bool:
    """One single-slash path with nothing a browser could read as another host: no ``//``, no backslash
    (browsers take it for ``/``), no control character or space (browsers drop tabs and newlines)."""
    return (text.startswith("/") and "//" not in text and "\\" not in text
            and not any(ch.isspace() or unicodedata.category(ch)[0] in "CZ" for ch in text))


def safe_next(target: object) -> str:
    """A path on this site to return to after login; anything else (hosts, schemes, tricks) becomes ``/``.

    Checked as sent and after each round of URL-decoding (``/%2F%2Fevil.com``, ``/%09/evil.com``).
    """
    if not isinstance(target, str) or not target or not target.isascii():
        return "/"
    text = target
    for _ in range(3):
        if not _plain_path(text):
            return "/"
        decoded = unquote(text)
        if decoded == text:
            return target
        text = decoded
    return "/"  # still encoded after three rounds: no page of ours needs that


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HERCULES · log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;background:#f4f5f7;display:flex;justify-content:center;
padding-top:12vh}}form{{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002;width:20rem}}
input{{width:100%;padding:.5rem;margin:.5rem 0 1rem;box-sizing:border-box}}button{{padding:.5rem 1rem}}
.error{{color:#b00020;margin-bottom:1rem}}</style></head>
<body><form method="post" action="/login" class="login-form">
<h1>HERCULES</h1><div class="error" id="login-error">{error}</div>
<label for="password">Team password</label>
<input type="password" id="password" name="password" autocomplete="current-password" autofocus required>
<input type="hidden" name="csrf_token" value="{csrf}"><input type="hidden" name="next" value="{next}">
<button type="submit" id="login-submit">Log in</button></form></body></html>"""


def _too_many(wait: int) -> str:
    return f"Too many failed logins from your address: try again in {wait} s."


def _login_page(error: str = "", status: int = 200, retry_after: int = 0) -> Response:
    token = session.get(CSRF_KEY) or secrets.token_urlsafe(32)
    session[CSRF_KEY] = token
    nxt = safe_next(request.values.get("next"))
    body = LOGIN_PAGE.format(error=escape(error), csrf=escape(token), next=escape(nxt))
    resp = Response(body, status=status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def same_origin() -> bool:
    """A login POST must come from this site's own form (Origin, when the browser sends it)."""
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    return origin.split("://", 1)[-1] == request.host


def _refused(message: str, status: int, retry_after: int = 0) -> Response:
    resp = Response(message + "\n", status=status, mimetype="text/plain")
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="HERCULES"'
    if retry_after:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def register(server, runs_dir: str | os.PathLike, password: str | None = None) -> bool:
    """Add ``/healthz`` and, when a password is configured, the login and the check of every request.

    ``runs_dir`` holds the session key and the login state shared by all processes. Returns whether
    access control is on. Raises AuthConfigError for an unreadable password file or key file.
    """
    @server.route("/healthz")
    def hercules_healthz():
        return Response("ok\n", mimetype="text/plain")

    password = password if password is not None else configured_password()
    if not password:
        return False
    try:
        server.secret_key = auth_store.session_secret(runs_dir)
    except auth_store.KeyFileError as e:
        raise AuthConfigError(str(e)) from None
    server.config.update(SESSION_COOKIE_NAME="hercules_session", SESSION_COOKIE_HTTPONLY=True,
                         SESSION_COOKIE_SAMESITE="Strict",
                         SESSION_COOKIE_SECURE=os.environ.get("HERCULES_COOKIE_SECURE", "") == "1",
                         PERMANENT_SESSION_LIFETIME=SESSION_LIFETIME)
    mark = _mark(server.secret_key, password)
    state_dir = os.path.join(runs_dir, ".cache")
    throttle = auth_store.LoginThrottle(os.path.join(state_dir, "auth-throttle"))
    ledger = auth_store.SessionLedger(os.path.join(state_dir, "auth-sessions"), SESSION_LIFETIME.total_seconds())
    server.extensions["hercules_auth"] = {"throttle": throttle, "ledger": ledger}

    def logged_in() -> bool:
        sid = session.get(SESSION_ID)
        return _same_text(session.get(SESSION_MARK), mark) and isinstance(sid, str) and not ledger.revoked(sid)

    def bearer_refusal(token: str) -> Response | None:
        """None if the token is the password; else 429 (address locked) or 401."""
        addr = request.remote_addr
        accepted, wait = throttle.attempt(addr, lambda: password_matches(token, password))
        if accepted:
            return None
        if wait:
            return _refused(_too_many(wait), 429, wait)
        log.warning("wrong bearer token from %s", addr)
        return _refused("Wrong token: send 'Authorization: Bearer <the team password>'.", 401, throttle.wait(addr))

    @server.before_request
    def hercules_require_login():
        if request.path in PUBLIC_PATHS:
            return None
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return bearer_refusal(header[7:].strip())
        if logged_in():
            return None
        if request.method == "GET" and "text/html" in request.headers.get("Accept", ""):
            return redirect("/login?next=" + quote(safe_next(request.full_path.rstrip("?")), safe="/"))
        return _refused("Authentication required: log in at /login, or send 'Authorization: Bearer <password>'.", 401)

    @server.route("/login", methods=["GET", "POST"])
    def hercules_login():
        if request.method == "GET":
            return _login_page()
        addr = request.remote_addr
        token = session.pop(CSRF_KEY, None)  # single use: spent by this POST, whatever its outcome
        wait = throttle.wait(addr)
        if wait:  # checked first: a locked address's guesses are not even read
            return _login_page(_too_many(wait), 429, wait)
        if not (token and same_origin() and _same_text(request.form.get("csrf_token"), token)
                and ledger.use_token(token)):  # the ledger refuses a token replayed with an old cookie
            return _login_page("The login form expired: please try again.", 400)
        accepted, wait = throttle.attempt(addr, lambda: password_matches(request.form.get("password"), password))
        if wait:
            return _login_page(_too_many(wait), 429, wait)
        if not accepted:
            log.warning("failed login from %s", addr)
            wait = throttle.wait(addr)
            return _login_page("Wrong password." + (f" {_too_many(wait)}" if wait else ""), 401, wait)
        nxt = safe_next(request.form.get("next"))
        session.clear()  # a new session: new id, new CSRF token, nothing kept from before the login
        session[SESSION_ID] = secrets.token_urlsafe(24)
        session[SESSION_MARK] = mark
        session.permanent = True
        return redirect(nxt)

    @server.route("/logout", methods=["POST"])
    def hercules_logout():
        if not same_origin():
            return _refused("Cross-site logout refused.", 400)
        sid = session.get(SESSION_ID)
        if logged_in():
            ledger.revoke(sid)  # the cookie stays in the browser's past: refuse it from now on
        session.clear()
        return redirect("/login")

    return True
