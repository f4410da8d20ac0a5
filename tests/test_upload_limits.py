"""Upload sizes through the real page and the real server.

Oversized uploads (issue 7, defect 8): refused in the browser before sending, and a callback request
over the small limit is refused from its Content-Length, costing the server ≤ 100 MB. Files travel in
chunks over /upload (issue 18): 50 MB and 300 MB tables arrive through the page with server memory
independent of the file's size, a transfer cut on the way resumes, and a refusal on the way (a
proxy's 413) is said on the page."""

from __future__ import annotations

import http.client
import os
import time
from contextlib import contextmanager

import pandas as pd
import pytest

from callbacks import uploads
from devkit import browser_support as bs

pytestmark = [pytest.mark.timeout(600)]
needs_chromium = pytest.mark.skipif(not os.path.exists(bs.CHROMIUM),
                                    reason=f"{bs.CHROMIUM} is missing (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # the machine running the tests is shared: a 300 MB parse may take longer than the default 120 s
    srv = bs.AppServer(tmp_path_factory.mktemp("limits") / "runs", stage_delay=0,
                       env={"HERCULES_MAX_READ_SECONDS": "900"})
    yield srv
    srv.stop()


@contextmanager
def new_run_page(server):
    """A fresh Chromium on the new-run page, its upload box ready; console errors in ``page.errors``."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=bs.CHROMIUM, args=bs.CHROMIUM_ARGS)
        try:
            page = bs.new_page(browser)
            page.goto(server.url + "/")
            page.wait_for_selector("#data-upload input[type=file]", state="attached")
            yield page
        finally:
            browser.close()


def test_a_rejected_oversized_request_costs_the_server_little_memory(server):
    """398 MB posted as a callback (as a script, not the page, would): 413, RSS + ≤ 100 MB."""
    time.sleep(1)  # the upload reader's fork server starts with the app: idle is measured with it
    total = 398 * 1024**2
    head = ('{"output":"..data-upload-store.data...data-upload-msg.children..","outputs":[],"inputs":'
            '[{"id":"data-upload","property":"contents","value":["data:text/csv;base64,')
    assert head and total > 50 * 1024**2
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    status = None
    with bs.RssWatch(server.proc.pid) as rss:
        _post_without_reading(conn, head, total)
        try:
            status = conn.getresponse().status
        except (http.client.HTTPException, OSError):
            status = None
        finally:
            conn.close()
            time.sleep(0.3)
    assert server.proc.poll() is None  # still serving
    peak = rss.peak_above_idle
    print(f"rejected 398 MB request: server RSS peak {peak / 1024**2:.1f} MB above idle")
    assert peak <= 100 * 1024**2, f"{peak / 1024**2:.0f} MB above idle"
    assert status in (413, None), status
    # a normal small callback still works afterwards
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/_dash-dependencies")
    assert conn.getresponse().status == 200


def _post_without_reading(conn, head: str, total: int) -> None:
    """Announce ``total`` bytes and send them; the server may answer and close before the end."""
    try:
        conn.putrequest("POST", "/_dash-update-component")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(total))
        conn.endheaders()
        conn.send(head.encode())
        chunk = b"A" * (1 << 20)
        sent = len(head)
        while sent < total:
            conn.send(chunk[:min(len(chunk), total - sent)])
            sent += min(len(chunk), total - sent)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed without reading the rest: what we want


@pytest.mark.browser
@needs_chromium
def test_the_browser_refuses_an_oversized_file_before_sending_it(server, tmp_path):
    big = tmp_path / "huge table.csv"
    with open(big, "wb") as fh:  # sparse: 201 MB to the browser, nothing on disk
        fh.truncate(uploads.MAX_UPLOAD_BYTES + 1024**2)
    small = tmp_path / "small.csv"
    small.write_text("id,text\n1,a text\n2,another text\n")
    with new_run_page(server) as page:
        errors, upload_posts = page.errors, []
        page.on("request", lambda r: upload_posts.append(r.url) if r.method == "POST" and r.url.endswith("/upload")
                else None)
        t0 = time.monotonic()
        page.set_input_files("#data-upload input[type=file]", str(big))
        page.wait_for_selector(".upload-too-large", state="visible", timeout=10_000)
        elapsed = time.monotonic() - t0
        text = page.inner_text(".upload-too-large")
        limit = f"{uploads.MAX_UPLOAD_BYTES / 1024**3:.1f} GB"
        assert "huge table.csv" in text and limit in text and "Nothing was sent" in text, text
        page.wait_for_timeout(1500)
        assert upload_posts == [] and page.query_selector(".upload-ok, .upload-error") is None
        assert elapsed < 5
        # a file within the limit goes through, and the warning goes away
        page.set_input_files("#data-upload input[type=file]", str(small))
        page.wait_for_selector(".upload-ok", timeout=30_000)
        assert not page.is_visible(".upload-too-large") and len(upload_posts) == 1
        assert errors == [], errors


# ----------------------------------------------------------------------------- uploads within the limit
def test_a_callback_request_over_the_small_limit_is_refused_unread():
    """No callback carries a file now: one over the small limit is refused from its Content-Length,
    before a byte of its body is read (a read would block on the raw socket)."""
    from callbacks import http_guard

    class Socket:
        def read(self, n: int = -1) -> bytes:
            raise AssertionError("the body was read")

    def app(environ, start_response):
        raise AssertionError("the app was called")

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/_dash-update-component",
               "CONTENT_LENGTH": str(http_guard.SMALL_REQUEST + 1), "wsgi.input": Socket()}
    statuses = []
    body = http_guard.SizeGuard(app)(environ, lambda status, headers: statuses.append(status))
    assert statuses == ["413 Request Entity Too Large"] and b"at most 8 MB" in b"".join(body)


def _texts_csv(path, megabytes: float) -> pd.DataFrame:
    """A table of short texts (id, text) of about ``megabytes`` MiB, written to ``path``; returns it."""
    frame = bs.texts_table(megabytes, seed=int(megabytes))
    frame.to_csv(path, index=False)
    return frame


def _rss_bound(frame: pd.DataFrame) -> int:
    """The stated bound on server memory for an upload (docs/security.md): 2 GB plus the table's size."""
    return 2 * 1024**3 + int(frame.memory_usage(deep=True).sum())


_OK = "(document.querySelector('#data-upload-msg .upload-ok, #data-upload-msg .upload-error')||{}).innerText"
_SENT = "(document.querySelector('#data-upload ~ .upload-progress .upload-progress-text')||{}).innerText"


@pytest.mark.browser
@needs_chromium
@pytest.mark.parametrize("megabytes", [50, 300])
def test_tables_of_hundreds_of_megabytes_upload_through_the_page(server, tmp_path, megabytes):
    """Chunks over /upload: the transfer costs the server ≤ 300 MB above idle whatever the file's size;
    staging (the bounded parse) stays within the stated bound."""
    path = tmp_path / f"tickets {megabytes} MB.csv"
    frame = _texts_csv(path, megabytes)
    with new_run_page(server) as page:
        errors = page.errors
        with bs.RssWatch(server.proc.pid) as rss:
            t0 = time.monotonic()
            page.set_input_files("#data-upload input[type=file]", str(path))
            page.wait_for_function(f"({_SENT}||'').indexOf('sent in') !== -1", timeout=600_000, polling=50)
            sent_s, transfer_peak = time.monotonic() - t0, rss.peak_above_idle
            progress = page.inner_text(".upload-progress-text")
            percent = page.inner_text(".upload-progress .progress-bar")
            message = page.wait_for_function(_OK, timeout=900_000).json_value()
            seconds = time.monotonic() - t0
            assert message.startswith("Uploaded:"), message
            page.wait_for_selector("#data-preview .ag-row", timeout=60_000)
            page.wait_for_timeout(1000)
    size = path.stat().st_size
    print(f"{size / 1024**2:.0f} MB CSV through the page: sent in {sent_s:.1f} s ({progress}), server memory peak "
          f"{transfer_peak / 1024**2:.0f} MB above idle while sending; accepted after {seconds:.1f} s, peak "
          f"{rss.peak_above_idle / 1024**2:.0f} MB with staging")
    assert message.startswith("Uploaded:") and f"{len(frame):,} rows" in message, message
    assert "MB/s" in progress and "sent in" in progress and percent == "100%", (progress, percent)
    assert errors == [], errors
    assert transfer_peak <= 300 * 1024**2
    assert rss.peak_above_idle < _rss_bound(frame)


@pytest.mark.browser
@needs_chromium
def test_a_transfer_cut_on_the_way_resumes_and_arrives_whole(server, tmp_path):
    """The connection drops during a chunk (twice): the page retries, asks the server what it holds,
    resumes from there, and the file arrives once, byte for byte. A proxy's body limit below the chunk
    size (a plain 413) makes the page send smaller chunks."""
    path = tmp_path / "survey answers.csv"
    frame = _texts_csv(path, 40)
    cuts, shrunk = [], []
    with new_run_page(server) as page:
        errors = page.errors

        def network(route):
            url = route.request.url
            if "offset=" in url and len(cuts) < 2 and "offset=0" not in url:
                cuts.append(url)
                return route.abort("connectionreset")
            body = route.request.post_data_buffer or b""
            if len(cuts) == 2 and len(body) > 3 * 1024**2:  # then a proxy with a 3 MB body limit
                shrunk.append(len(body))
                return route.fulfill(status=413, body="413 Request Entity Too Large", content_type="text/html")
            return route.continue_()

        page.route("**/upload/*/chunk*", network)
        page.set_input_files("#data-upload input[type=file]", str(path))
        message = page.wait_for_function(_OK, timeout=300_000).json_value()
    assert len(cuts) == 2 and shrunk, (cuts, shrunk)
    assert message.startswith("Uploaded:") and f"{len(frame):,} rows" in message, message
    staged = [d for d in (server.runs_dir / "_uploads").iterdir() if (d / "upload.json").is_file()
              and "survey answers.csv" in (d / "upload.json").read_text()]
    assert len(staged) == 1 and (staged[0] / "f00000.csv").read_bytes() == path.read_bytes()
    # the browser logs each request the test cut or refused; nothing else went wrong
    assert [e for e in errors if "Failed to load resource" not in e] == [], errors


@pytest.mark.browser
@needs_chromium
def test_an_upload_refused_on_the_way_says_so_on_the_page(server, tmp_path):
    """A proxy in front of the app (or the app itself) answers 413: the page says so, then works on."""
    path = tmp_path / "survey.csv"
    _texts_csv(path, 2)
    refusal = "Request too large: this proxy accepts at most 1 MB."
    with new_run_page(server) as page:

        def proxy(route):
            return route.fulfill(status=413, body=refusal, content_type="text/plain")

        page.route("**/upload", proxy)
        page.set_input_files("#data-upload input[type=file]", str(path))
        page.wait_for_selector(".upload-too-large", state="visible", timeout=30_000)
        text = page.inner_text(".upload-too-large")
        assert "survey.csv" in text and "413" in text and refusal in text and "Nothing was stored" in text
        assert page.query_selector(".upload-ok") is None
        page.unroute("**/upload")  # "Try again": the same file, now let through
        page.set_input_files("#data-upload input[type=file]", str(path))
        page.wait_for_selector(".upload-ok", timeout=60_000)
        assert not page.is_visible(".upload-too-large")
