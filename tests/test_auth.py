"""Access control (callbacks/auth.py) and the startup checks (callbacks/startup.py): what a team relies on
when the app is reachable from other machines. Flask test client for the rules, real processes for the
"refuses to start" lines."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import stat
import subprocess
import sys
import threading
import time

import pytest

from callbacks import runstore
from hercules_core import io, save_model
from devkit import browser_support as bs
from devkit.factories import make_hierarchy, run_in_state

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "model-cache"))
    for var in ("HERCULES_PASSWORD", "HERCULES_PASSWORD_FILE", "HERCULES_SECRET_KEY", "HERCULES_COOKIE_SECURE"):
        monkeypatch.delenv(var, raising=False)


def _app_with_run(runs, monkeypatch, password: str | None = PASSWORD):
    from app import create_app

    if password is not None:
        monkeypatch.setenv("HERCULES_PASSWORD", password)
    app = create_app(runs, include_test_models=True)
    run_id = runstore.new_id()
    rdir = runs / run_id
    if not rdir.exists():
        rdir.mkdir(parents=True)
        h = make_hierarchy(ks=(6, 2))
        save_model(h, rdir / "model.json")
        io.save_memberships(h, rdir / "memberships.csv")
        run_in_state(rdir, runstore.DONE)
    return app, run_id


def _login(client, password: str = PASSWORD, next_path: str = "/", headers=None):
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post("/login", data={"password": password, "csrf_token": token, "next": next_path},
                       headers=headers or {})


def test_without_a_password_nothing_asks_for_one(tmp_path, monkeypatch):
    app, run_id = _app_with_run(tmp_path / "runs", monkeypatch, password=None)
    c = app.server.test_client()
    assert c.get("/").status_code == 200
    assert c.get("/_dash-layout").status_code == 200
    assert c.get(f"/files/{run_id}/download/model.json").status_code == 200


def test_every_page_callback_and_download_needs_the_password(tmp_path, monkeypatch):
    app, run_id = _app_with_run(tmp_path / "runs", monkeypatch)
    c = app.server.test_client()
    deps_body = {"output": "runs-table.children", "outputs": {"id": "runs-table", "property": "children"},
                 "inputs": [], "state": [], "changedPropIds": []}
    refused = [c.get("/_dash-layout"), c.get("/_dash-dependencies"), c.post("/_dash-update-component", json=deps_body),
               c.get(f"/files/{run_id}/download/model.json"), c.get(f"/files/{run_id}/download/memberships.csv"),
               c.get(f"/files/{run_id}/image/0"), c.get("/assets/02_hercules.css"), c.get("/runs"),
               c.get("/_dash-component-suites/dash/dcc/dash_core_components.js")]
    for r in refused:
        assert r.status_code == 401, (r.request.path, r.status_code)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert PASSWORD not in r.get_data(as_text=True)
    # a browser navigating to a page is sent to the login form, and back afterwards
    r = c.get("/explore?run=" + run_id, headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 302 and r.headers["Location"].startswith("/login?next=/explore")
    assert c.get("/healthz").status_code == 200  # the container's health check needs no login


def test_bearer_token_for_scripts(tmp_path, monkeypatch):
    app, run_id = _app_with_run(tmp_path / "runs", monkeypatch)
    c = app.server.test_client()
    ok = {"Authorization": f"Bearer {PASSWORD}"}
    assert c.get("/_dash-layout", headers=ok).status_code == 200
    r = c.get(f"/files/{run_id}/download/model.json", headers=ok)
    assert r.status_code == 200 and r.get_json()["format"]
    for bad in (f"Bearer {PASSWORD}x", "Bearer ", f"Basic {PASSWORD}", PASSWORD):
        assert c.get("/_dash-layout", headers={"Authorization": bad}).status_code == 401, bad


def test_browser_login_sets_a_strict_httponly_session(tmp_path, monkeypatch):
    app, run_id = _app_with_run(tmp_path / "runs", monkeypatch)
    c = app.server.test_client()
    r = _login(c, next_path=f"/explore?run={run_id}")
    assert r.status_code == 302 and r.headers["Location"] == f"/explore?run={run_id}"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and PASSWORD not in cookie
    assert c.get("/_dash-layout").status_code == 200
    assert c.get(f"/files/{run_id}/download/memberships.csv").status_code == 200
    c.post("/logout")
    assert c.get("/_dash-layout").status_code == 401


def test_login_refuses_wrong_password_missing_csrf_and_other_sites(tmp_path, monkeypatch, caplog):
    app, _ = _app_with_run(tmp_path / "runs", monkeypatch)
    c = app.server.test_client()
    with caplog.at_level(logging.DEBUG):
        r = _login(c, password="guess")
    assert r.status_code == 401 and "Wrong password." in r.get_data(as_text=True)
    assert c.get("/_dash-layout").status_code == 401
    # no CSRF token (a forged form): refused even with the right password
    r = c.post("/login", data={"password": PASSWORD})
    assert r.status_code == 400 and c.get("/_dash-layout").status_code == 401
    # the right token, but posted from another site
    r = _login(c, headers={"Origin": "http://evil.example"})
    assert r.status_code == 400 and c.get("/_dash-layout").status_code == 401
    # an open redirect is not possible through ?next=
    r = _login(c, next_path="//evil.example/x")
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert PASSWORD not in caplog.text and "guess" not in caplog.text


def test_one_login_works_on_every_replica_until_the_password_changes(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    a, _ = _app_with_run(runs, monkeypatch)
    b, _ = _app_with_run(runs, monkeypatch)  # a second web process over the same runs
    ca, cb = a.server.test_client(), b.server.test_client()
    r = _login(ca)
    cookie = re.search(r"hercules_session=([^;]+)", r.headers["Set-Cookie"]).group(1)
    cb.set_cookie("hercules_session", cookie)
    assert cb.get("/_dash-layout").status_code == 200
    c2, _ = _app_with_run(runs, monkeypatch, password="a new password")
    cc = c2.server.test_client()
    cc.set_cookie("hercules_session", cookie)
    assert cc.get("/_dash-layout").status_code == 401


# --- hardening: session key, throttling, CSRF, logout, next= ----------------------------------------

def _cookie(resp) -> str:
    return re.search(r"hercules_session=([^;]+)", resp.headers["Set-Cookie"]).group(1)


def _token(client, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _session(cookie: str, key: str) -> dict:
    """The session in ``cookie`` if it is signed with ``key`` (itsdangerous.BadSignature otherwise)."""
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface

    probe = Flask("probe")
    probe.secret_key = key
    return SecureCookieSessionInterface().get_signing_serializer(probe).loads(cookie)


def _client_at(app, address: str):
    """A test client whose requests come from ``address`` (Flask's ``environ_base``)."""
    client = app.server.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


@pytest.fixture
def clock(monkeypatch):
    """The login throttle's clock, stopped (tests move it by hand): locks last exactly as long as the test
    says, however slow the machine."""
    from callbacks import auth_store

    now = [time.time()]
    monkeypatch.setattr(auth_store, "_now", lambda: now[0])
    return now


def test_session_key_is_random_kept_in_the_runs_dir_and_not_derived_from_the_password(tmp_path, monkeypatch):
    from itsdangerous import BadSignature

    from callbacks import auth

    runs = tmp_path / "runs"
    a, _ = _app_with_run(runs, monkeypatch)
    cookie = _cookie(a.server.test_client().get("/login"))  # what anyone gets without a password
    # the old key, or anything else computed from a password guess, cannot verify it: no offline guessing
    pw = PASSWORD.encode()
    for guess in (hmac.new(hashlib.sha256(pw).digest(), b"hercules-session-key-v1", hashlib.sha256).hexdigest(),
                  PASSWORD, hashlib.sha256(pw).hexdigest()):
        with pytest.raises(BadSignature):
            _session(cookie, guess)
    key_file = runs / ".secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert auth.CSRF_KEY in _session(cookie, key)  # signed with the file's key
    # a second web process on the same runs volume signs with the same key; another runs dir has its own
    b, _ = _app_with_run(runs, monkeypatch)
    other, _ = _app_with_run(tmp_path / "other-runs", monkeypatch)
    assert a.server.secret_key == b.server.secret_key == key != other.server.secret_key
    # the mark tying a session to the password is keyed by the secret: same password, other mark elsewhere
    marks = [_session(_cookie(_login(app.server.test_client())), app.server.secret_key)[auth.SESSION_MARK]
             for app in (a, other)]
    old_mark = hmac.new(hashlib.sha256(pw).digest(), b"hercules-login-v1", hashlib.sha256).hexdigest()[:32]
    assert marks[0] != marks[1] and old_mark not in marks


def test_session_key_file_is_made_once_when_processes_race(tmp_path, monkeypatch):
    from callbacks import auth_store, startup

    runs = tmp_path / "runs"
    runs.mkdir()
    barrier, keys = threading.Barrier(8), []

    def start():
        barrier.wait()
        keys.append(auth_store.session_secret(runs))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(keys) == 8 and len(set(keys)) == 1 and (runs / ".secret_key").read_text().strip() == keys[0]
    # HERCULES_SECRET_KEY wins and writes nothing
    monkeypatch.setenv("HERCULES_SECRET_KEY", "k" * 40)
    assert auth_store.session_secret(tmp_path / "elsewhere") == "k" * 40
    monkeypatch.delenv("HERCULES_SECRET_KEY")
    # a damaged key file stops the server before it starts, in one line that says what to do
    monkeypatch.setattr(auth_store, "KEY_FILE_WAIT", 0.1)
    (runs / ".secret_key").write_text("\n")
    monkeypatch.setenv("HERCULES_PASSWORD", PASSWORD)
    with pytest.raises(startup.StartupError, match="does not hold a key: delete it"):
        startup.preflight("web", host="0.0.0.0", runs_dir=runs)


def test_failed_logins_are_throttled_per_address_without_sleeping(tmp_path, monkeypatch, clock):
    from callbacks import auth_store

    app, _ = _app_with_run(tmp_path / "runs", monkeypatch)
    c = app.server.test_client()

    def wrong(client=c, password="guess"):
        token = _token(client)
        t0 = time.perf_counter()
        r = client.post("/login", data={"password": password, "csrf_token": token})
        assert time.perf_counter() - t0 < 0.5  # answered at once: no request thread sleeps
        return r

    for _ in range(auth_store.FREE_FAILURES):
        r = wrong()
        assert r.status_code == 401 and "Retry-After" not in r.headers
    r = wrong()  # one too many: still checked (and wrong), and the address now waits 1 s
    assert r.status_code == 401 and r.headers["Retry-After"] == "1"
    assert "Too many failed logins from your address: try again in 1 s." in r.get_data(as_text=True)
    r = wrong()
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert "Too many failed logins from your address: try again in 1 s." in r.get_data(as_text=True)
    assert wrong(password=PASSWORD).status_code == 429  # while locked, even the right password is not read
    # nobody else waits: the health check, and a login from another address
    assert c.get("/healthz").status_code == 200
    other = _client_at(app, "10.0.0.2")
    t0 = time.perf_counter()
    assert _login(other).status_code == 302 and time.perf_counter() - t0 < 0.5
    # each further failure doubles the wait
    for expected in ("2", "4"):
        clock[0] += int(r.headers["Retry-After"])
        r = wrong()
        assert r.status_code == 401 and r.headers["Retry-After"] == expected
    assert [auth_store.lock_seconds(n) for n in (5, 6, 7, 15, 16, 100)] == [0, 1, 2, 512, 900, 900]
    # a successful login clears the address's record: the free failures are free again
    clock[0] += 4
    assert _login(c).status_code == 302
    for _ in range(auth_store.FREE_FAILURES):
        r = wrong(client=app.server.test_client())
        assert r.status_code == 401 and "Retry-After" not in r.headers


def test_parallel_wrong_logins_get_no_more_than_the_free_guesses(tmp_path, monkeypatch, clock):
    from callbacks import auth_store

    app, _ = _app_with_run(tmp_path / "runs", monkeypatch)
    n = 32
    clients = [app.server.test_client() for _ in range(n)]
    tokens = [_token(c) for c in clients]
    barrier, results = threading.Barrier(n), []

    def guess(client, token):
        barrier.wait()
        t0 = time.perf_counter()
        r = client.post("/login", data={"password": "guess", "csrf_token": token})
        results.append((r.status_code, time.perf_counter() - t0))

    threads = [threading.Thread(target=guess, args=pair) for pair in zip(clients, tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(s for s, _ in results)
    # counted before they are checked: only the free guesses and the one that starts the wait are read
    assert statuses == [401] * (auth_store.FREE_FAILURES + 1) + [429] * (n - auth_store.FREE_FAILURES - 1)
    assert max(t for _, t in results) < 1.0


def test_wrong_bearer_tokens_are_throttled_too(tmp_path, monkeypatch, clock):
    from callbacks import auth_store

    app, _ = _app_with_run(tmp_path / "runs", monkeypatch)
    c = app.server.test_client()
    for _ in range(auth_store.FREE_FAILURES + 1):
        assert c.get("/_dash-layout", headers={"Authorization": "Bearer guess"}).status_code == 401
    ok = {"Authorization": f"Bearer {PASSWORD}"}
    r = c.get("/_dash-layout", headers=ok)  # locked: the right token is not even looked at
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert "Too many failed logins from your address" in r.get_data(as_text=True)
    other = _client_at(app, "10.0.0.3")
    assert other.get("/_dash-layout", headers=ok).status_code == 200


def test_throttle_records_expire_and_are_bounded(tmp_path, monkeypatch, clock):
    from callbacks import auth_store

    app, _ = _app_with_run(tmp_path / "runs", monkeypatch)
    throttle = app.server.extensions["hercules_auth"]["throttle"]
    for i in range(3):
        client = _client_at(app, f"10.0.1.{i}")
        client.post("/login", data={"password": "guess", "csrf_token": _token(client)})
    assert len(throttle.cache) == 3
    assert throttle.cache.size_limit == auth_store.THROTTLE_SIZE_LIMIT
    assert throttle.cache.eviction_policy == "least-recently-stored"
    later = time.time() + auth_store.FORGET_AFTER + 1
    assert throttle.cache.expire(now=later) == 3 and len(throttle.cache) == 0


def test_csrf_token_is_single_use(tmp_path, monkeypatch):
    app, _ = _app_with_run(tmp_path / "runs", monkeypatch)
    c = app.server.test_client()
    first = c.get("/login")
    old_cookie = _cookie(first)
    token = re.search(r'name="csrf_token" value="([^"]+)"', first.get_data(as_text=True)).group(1)
    r = c.post("/login", data={"password": "guess", "csrf_token": token})
    assert r.status_code == 401
    fresh = re.search(r'name="csrf_token" value="([^"]+)"', r.get_data(as_text=True)).group(1)
    assert fresh != token  # the re-rendered form has a new token
    # the spent token again, with the browser's current cookie or with the old cookie that still holds it
    r = c.post("/login", data={"password": PASSWORD, "csrf_token": token})
    assert r.status_code == 400 and "The login form expired: please try again." in r.get_data(as_text=True)
    replay = app.server.test_client()
    replay.set_cookie("hercules_session", old_cookie)
    assert replay.post("/login", data={"password": PASSWORD, "csrf_token": token}).status_code == 400
    assert replay.get("/_dash-layout").status_code == 401
    # a token that is not ASCII is refused like any wrong one, not with an error
    c.get("/login")
    assert c.post("/login", data={"password": PASSWORD, "csrf_token": "é"}).status_code == 400
    assert _login(c).status_code == 302


def test_logout_revokes_the_session_on_every_replica(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    a, _ = _app_with_run(runs, monkeypatch)
    b, _ = _app_with_run(runs, monkeypatch)
    ca = a.server.test_client()
    cookie = _cookie(_login(ca))
    r = ca.post("/logout")
    assert r.status_code == 302 and r.headers["Location"] == "/login"
    for app in (a, b):  # the copied cookie, replayed after the logout
        thief = app.server.test_client()
        thief.set_cookie("hercules_session", cookie)
        assert thief.get("/_dash-layout").status_code == 401
        r = thief.get("/runs", headers={"Accept": "text/html"})
        assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    # logging in again gives a new session that works
    new_cookie = _cookie(_login(ca))
    assert new_cookie != cookie and ca.get("/_dash-layout").status_code == 200


@pytest.mark.parametrize("target", ["/%09/evil.com", "/\t/evil.com", "//evil.com", "/\\evil.com", "/%5Cevil.com",
                                    "https://evil.com", "http:evil.com", "/\n", "/\r\nLocation: https://evil.com",
                                    "/%2F%2Fevil.com", "/%252F%252Fevil.com", " /x", "/\u2028", "evil.com"])
def test_next_accepts_only_a_plain_path_on_this_site(tmp_path, monkeypatch, target):
    app, _ = _app_with_run(tmp_path / "runs", monkeypatch)
    c = app.server.test_client()
    # sent in the query string (the form carries it on) and posted directly
    page = c.get("/login", query_string={"next": target})
    assert page.status_code == 200 and 'name="next" value="/"' in page.get_data(as_text=True)
    r = _login(c, next_path=target)
    assert r.status_code == 302 and r.headers["Location"] == "/"


def test_next_survives_the_round_trip_through_the_login(tmp_path, monkeypatch):
    app, run_id = _app_with_run(tmp_path / "runs", monkeypatch)
    c = app.server.test_client()
    html = {"Accept": "text/html"}
    r = c.get(f"/explore?run={run_id}&level=1", headers=html)
    login_url = r.headers["Location"]
    page = c.get(login_url).get_data(as_text=True)
    assert f'name="next" value="/explore?run={run_id}&amp;level=1"' in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = c.post(login_url, data={"password": PASSWORD, "csrf_token": token, "next": f"/explore?run={run_id}&level=1"})
    assert r.headers["Location"] == f"/explore?run={run_id}&level=1"
    # a path that is itself a trick is not carried to the form at all
    r = app.server.test_client().get("/%09/evil.com", headers=html)
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/"


def test_password_file(tmp_path, monkeypatch):
    from callbacks import auth

    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    monkeypatch.setenv("HERCULES_PASSWORD_FILE", str(secret))
    assert auth.configured_password() == PASSWORD
    secret.write_text("\n")
    with pytest.raises(auth.AuthConfigError, match="is empty"):
        auth.configured_password()
    monkeypatch.setenv("HERCULES_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(auth.AuthConfigError, match="cannot be read"):
        auth.configured_password()


# --- bad configuration ends with one clear line ------------------------------------------------------

def _start(cmd: list[str], tmp_path, **env) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HERCULES_PASSWORD", "REDIS_URL"))}
    return subprocess.run([sys.executable, *cmd], cwd=bs.ROOT, env=dict(base, HF_HUB_OFFLINE="1", **env),
                          capture_output=True, text=True, timeout=120)


def _one_error_line(res: subprocess.CompletedProcess, *words: str) -> str:
    assert res.returncode == 2, (res.returncode, res.stdout[-500:], res.stderr[-2000:])
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("entry", ["app.py", "serve.py"])
def test_public_bind_without_password_refuses_to_start(entry, tmp_path):
    res = _start([entry, "--host", "0.0.0.0", "--port", str(bs.free_port()), "--runs-dir", str(tmp_path / "runs")],
                 tmp_path)
    _one_error_line(res, "0.0.0.0", "HERCULES_PASSWORD")


def test_unwritable_runs_dir_and_unreachable_redis_refuse_to_start(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    res = _start(["serve.py", "--port", str(bs.free_port()), "--runs-dir", str(blocker / "runs")], tmp_path)
    _one_error_line(res, "not writable", "HERCULES_RUNS_DIR")
    url = f"redis://:s3cret-redis@127.0.0.1:{bs.free_port()}/0"
    res = _start(["app.py", "--port", str(bs.free_port()), "--runs-dir", str(tmp_path / "runs")], tmp_path,
                 REDIS_URL=url, HERCULES_REDIS_WAIT="1")
    line = _one_error_line(res, "Redis at", "unreachable", "REDIS_URL")
    assert "s3cret-redis" not in line
    res = _start(["-m", "callbacks.startup", "worker"], tmp_path, HERCULES_RUNS_DIR=str(tmp_path / "runs"))
    _one_error_line(res, "REDIS_URL")


@pytest.mark.browser
@pytest.mark.timeout(300)
def test_browser_logs_in_and_the_app_works_behind_gunicorn(tmp_path):
    """Headless Chromium against serve.py with a password: the login form, then the Dash app itself
    (its callbacks carry the SameSite=Strict cookie), and a wrong password stays out."""
    if not os.path.exists(bs.CHROMIUM):
        pytest.skip(f"{bs.CHROMIUM} is missing (scripts/setup.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    from devkit import procs

    env = procs.app_env(tmp_path / "runs", redis_url="", HERCULES_PASSWORD=PASSWORD)
    env.pop("REDIS_URL")
    (tmp_path / "runs").mkdir()
    web, url = procs.web_server(env, tmp_path)
    try:
        with sync_api.sync_playwright() as p:
            b = p.chromium.launch(executable_path=bs.CHROMIUM, args=bs.CHROMIUM_ARGS)
            page = b.new_page()
            page.goto(url + "/runs")
            assert "/login" in page.url
            page.fill("#password", "not it")
            page.click("#login-submit")
            assert "Wrong password." in page.inner_text("#login-error")
            page.fill("#password", PASSWORD)
            page.click("#login-submit")
            page.wait_for_url(url + "/runs")
            # the runs table is filled by a callback: it ran with the session cookie
            page.wait_for_selector("#runs-table", timeout=60_000)
            page.wait_for_function("document.querySelector('#runs-table').innerText.includes('No runs yet')",
                                   timeout=60_000)
            cookies = {c["name"]: c for c in page.context.cookies()}
            assert cookies["hercules_session"]["httpOnly"] and cookies["hercules_session"]["sameSite"] == "Strict"
            b.close()
        assert PASSWORD not in web.tail(100_000)
    finally:
        web.stop()
