"""Oversized uploads (issue 7, defect 8): refused in the browser before sending, and a request that
still arrives over the limit is refused from its Content-Length, costing the server ≤ 100 MB."""

from __future__ import annotations

import http.client
import os
import threading
import time

import psutil
import pytest

from callbacks import uploads
from tests import browser_support as bs

pytestmark = [pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = bs.AppServer(tmp_path_factory.mktemp("limits") / "runs", stage_delay=0)
    yield srv
    srv.stop()


def _peak_rss(pid: int, stop: threading.Event, out: list[int]) -> None:
    proc = psutil.Process(pid)
    while not stop.is_set():
        try:
            out.append(sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]))
        except psutil.Error:
            pass
        time.sleep(0.02)


def test_a_rejected_oversized_request_costs_the_server_little_memory(server):
    """398 MB posted as an upload callback (as a script, not the page, would): 413, RSS + ≤ 100 MB."""
    proc = psutil.Process(server.proc.pid)
    time.sleep(1)  # the upload reader's fork server starts with the app; measured like the samples, with it
    idle = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    total = 398 * 1024**2
    head = ('{"output":"..data-upload-store.data...data-upload-msg.children..","outputs":[],"inputs":'
            '[{"id":"data-upload","property":"contents","value":["data:text/csv;base64,')
    assert head and total > uploads.MAX_UPLOAD_BYTES * 4 // 3
    stop, samples = threading.Event(), []
    watcher = threading.Thread(target=_peak_rss, args=(server.proc.pid, stop, samples), daemon=True)
    watcher.start()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    status = None
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
    try:
        status = conn.getresponse().status
    except (http.client.HTTPException, OSError):
        status = None
    finally:
        conn.close()
        time.sleep(0.3)
        stop.set()
        watcher.join()
    assert server.proc.poll() is None  # still serving
    peak = max(samples) - idle
    print(f"rejected 398 MB request: server RSS peak {peak / 1024**2:.1f} MB above idle")
    assert peak <= 100 * 1024**2, f"{peak / 1024**2:.0f} MB above idle"
    assert status in (413, None), status
    # a normal small callback still works afterwards
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", "/_dash-dependencies")
    assert conn.getresponse().status == 200


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(bs.CHROMIUM), reason=f"{bs.CHROMIUM} is missing (apt-get install chromium)")
def test_the_browser_refuses_an_oversized_file_before_sending_it(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")
    big = tmp_path / "huge table.csv"
    with open(big, "wb") as fh:  # sparse: 201 MB to the browser, nothing on disk
        fh.truncate(uploads.MAX_UPLOAD_BYTES + 1024**2)
    small = tmp_path / "small.csv"
    small.write_text("id,text\n1,a text\n2,another text\n")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=bs.CHROMIUM, args=bs.CHROMIUM_ARGS)
        page = browser.new_page()
        errors, upload_posts = [], []
        bs.watch_console(page, errors)
        page.on("request", lambda r: upload_posts.append(r.url) if r.method == "POST" and "_dash-update-component"
                in r.url and (r.post_data or "").startswith('{"output":"..data-upload-store.data') else None)
        page.goto(server.url + "/")
        t0 = time.monotonic()
        page.set_input_files("#data-upload input[type=file]", str(big))
        page.wait_for_selector(".upload-too-large", state="visible", timeout=10_000)
        elapsed = time.monotonic() - t0
        text = page.inner_text(".upload-too-large")
        assert "huge table.csv" in text and "200.0 MB" in text and "Nothing was sent" in text
        page.wait_for_timeout(1500)
        assert upload_posts == [] and page.query_selector(".upload-ok, .upload-error") is None
        assert elapsed < 5
        # a file within the limit goes through, and the warning goes away
        page.set_input_files("#data-upload input[type=file]", str(small))
        page.wait_for_selector(".upload-ok", timeout=30_000)
        assert not page.is_visible(".upload-too-large") and len(upload_posts) == 1
        assert errors == [], errors
        browser.close()
