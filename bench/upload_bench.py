"""Uploads through the chunked route: time against a plain loopback copy, and server memory.

Starts the app (``python app.py``) on a free loopback port with its own runs folder.

- **Browser** (the issue-18 target): headless Chromium uploads each file through the new-run page
  (chunks over ``/upload``, assets/03_upload_limit.js) until every byte has arrived; the time is
  compared with copying the same file over loopback (``curl -T`` to a trivial HTTP server that writes
  it to disk), and the server's memory (its process tree, PSS) above idle is sampled every 20 ms
  during the transfer. Target: <= 3x the copy, <= 300 MB above idle.
- **Staging** of legitimate files and the bombs of issue 16: sent over the route by a script, then
  staged by the page's callback (the bounded parse); peak memory against the stated bound
  (docs/security.md: 2 GB plus the table's own size in memory).

    .venv/bin/python bench/upload_bench.py                 # 50 MB, 300 MB, 1.6 GB through Chromium; staging
    .venv/bin/python bench/upload_bench.py --quick         # 50 MB through Chromium; 10 MB CSV and the bombs
    .venv/bin/python bench/upload_bench.py --sizes 50,300  # these sizes (MB) through Chromium only
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from devkit.browser_support import CHROMIUM, CHROMIUM_ARGS, RssWatch, free_port, texts_table  # noqa: E402
from devkit.dash_http import DashSession  # noqa: E402

GB = 1024**3
MB = 1024**2
SINK = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_PUT(self):
        left = int(self.headers["Content-Length"])
        with open(sys.argv[2], "wb") as fh:
            while left:
                b = self.rfile.read(min(1 << 20, left))
                if not b:
                    break
                fh.write(b)
                left -= len(b)
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def start_app(runs: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HERCULES_CACHE_DIR=str(runs.parent / "cache"),
               HERCULES_MAX_READ_SECONDS="900")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--runs-dir", str(runs)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the app did not start")


def loopback_copy(path: Path, tmp: Path) -> float:
    """Seconds to copy ``path`` over loopback: ``curl -T`` to a trivial server writing it to disk."""
    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port), str(tmp / "sink.bin")])
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            except urllib.error.HTTPError:
                break  # it answers (501 for GET): ready
            except OSError:
                time.sleep(0.1)
        t0 = time.monotonic()
        subprocess.run(["curl", "-sS", "-T", str(path), f"http://127.0.0.1:{port}/f", "-o", "/dev/null"], check=True)
        return time.monotonic() - t0
    finally:
        sink.kill()
        sink.wait()
        (tmp / "sink.bin").unlink(missing_ok=True)


def browser_upload(url: str, pid: int, path: Path) -> tuple[float, int, str]:
    """(seconds until every byte arrived, server memory peak above idle, the page's progress line)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url + "/")
        page.wait_for_selector("#data-upload input[type=file]", state="attached")
        text = "(document.querySelector('#data-upload ~ .upload-progress .upload-progress-text')||{}).innerText"
        with RssWatch(pid) as rss:
            t0 = time.monotonic()
            page.set_input_files("#data-upload input[type=file]", str(path))
            page.wait_for_function(f"({text}||'').indexOf('sent in') !== -1 || "
                                   "!!document.querySelector('.upload-too-large[style*=block]')",
                                   timeout=3_600_000, polling=50)
            seconds = time.monotonic() - t0
        line = page.evaluate(f"{text}||''") or page.inner_text(".upload-too-large")
        browser.close()
    return seconds, rss.peak_above_idle, line


def table_file(megabytes: int, folder: Path) -> Path:
    """A CSV of short texts of about ``megabytes`` MiB (1.6 GB: a Parquet of 1M x 384 float32 vectors
    and a short text, the issue's own data; written in parts)."""
    if megabytes >= 1000:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = folder / "1M-x384-vectors.parquet"
        rng = np.random.default_rng(0)
        with pq.ParquetWriter(path, pa.schema([("id", pa.int64()), ("text", pa.string()),
                                               ("vector", pa.list_(pa.float32(), 384))]),
                              compression="none") as w:
            for start in range(0, 1_000_000, 100_000):
                vec = rng.normal(size=(100_000, 384)).astype("float32")
                w.write_table(pa.table({
                    "id": np.arange(start, start + 100_000), "text": [f"item {i}" for i in range(start, start + 100_000)],
                    "vector": pa.FixedSizeListArray.from_arrays(pa.array(vec.ravel()), 384)}))
        return path
    path = folder / f"texts-{megabytes}MB.csv"
    texts_table(megabytes, seed=megabytes).to_csv(path, index=False)
    return path


def legit_files(quick: bool, folder: Path) -> list[tuple[Path, int]]:
    """(file, the table's size in memory) of the legitimate uploads to stage."""
    out = []
    for mb in ([10] if quick else [10, 50, 190]):
        frame = texts_table(mb, seed=mb)
        path = folder / f"texts-{mb}MB.csv"
        frame.to_csv(path, index=False)
        out.append((path, int(frame.memory_usage(deep=True).sum())))
    if not quick:
        rng = np.random.default_rng(1)
        frame = pd.DataFrame(rng.normal(size=(500_000, 24)).astype("float64"), columns=[f"x{i}" for i in range(24)])
        path = folder / "numeric-500k-x24.parquet"
        frame.to_parquet(path)
        out.append((path, int(frame.memory_usage(deep=True).sum())))
    return out


def _texts(node) -> list[str]:
    """The text of a Dash component tree as the page shows it."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [t for child in node for t in _texts(child)]
    if isinstance(node, dict):
        return _texts(node.get("props", {}).get("children"))
    return []


def bomb_files() -> list[tuple[str, bytes, int]]:
    """The attacks of issue 16, made here (each small on disk): bound 2 GB (no legitimate data)."""
    import zipfile

    import pyarrow as pa
    import pyarrow.parquet as pq

    out = []
    # an xlsx whose sheet declares the whole sheet (A1:XFD1048576) with one far cell
    sheet = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.'
             'org/spreadsheetml/2006/main"><dimension ref="A1:XFD1048576"/><sheetData><row r="1"><c r="A1" t="inlineStr">'
             '<is><t>text</t></is></c></row><row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData></worksheet>')
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.'
                   'openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/'
                   'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/'
                   'xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
                   'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" '
                   'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>')
        z.writestr("_rels/.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
                   'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.'
                   'openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
                   '</Relationships>')
        z.writestr("xl/workbook.xml", '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.'
                   'openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/'
                   'officeDocument/2006/relationships"><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets>'
                   '</workbook>')
        z.writestr("xl/_rels/workbook.xml.rels", '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http:'
                   '//schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://'
                   'schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/'
                   'sheet1.xml"/></Relationships>')
        z.writestr("xl/worksheets/sheet1.xml", sheet)
    out.append(("dimension-bomb.xlsx", buf.getvalue(), 0))
    # 60 million zero rows, zstd: about half a megabyte
    buf = io.BytesIO()
    pq.write_table(pa.table({"x": np.zeros(60_000_000, dtype=np.int64)}), buf, compression="zstd")
    out.append(("60M-zero-rows.parquet", buf.getvalue(), 0))
    # one header line of a million columns
    out.append(("1M-columns.csv", (",".join(f"c{i}" for i in range(1_000_000)) + "\n" +
                                   ",".join("1" for _ in range(1_000_000)) + "\n").encode(), 0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="50 MB through Chromium; the 10 MB CSV and the bombs")
    ap.add_argument("--sizes", help="comma-separated MB sent through Chromium (default 50,300,1600); no staging")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")] if args.sizes else ([50] if args.quick else [50, 300, 1600])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        proc, url = start_app(tmp / "runs")
        try:
            time.sleep(2)
            print(f"{'browser upload':<28} {'MB':>7} {'copy s':>7} {'page s':>7} {'ratio':>6} {'RSS above idle':>15}  "
                  "target (<= 3x, <= 300 MB)")
            for mb in sizes:
                path = table_file(mb, tmp)
                copy = loopback_copy(path, tmp)
                seconds, peak, line = browser_upload(url, proc.pid, path)
                ratio = seconds / copy
                verdict = "met" if ratio <= 3 and peak <= 300 * MB and "sent in" in line else "MISSED"
                print(f"{path.name:<28} {path.stat().st_size / MB:>7.0f} {copy:>7.1f} {seconds:>7.1f} {ratio:>6.1f} "
                      f"{peak / MB:>12.0f} MB  {verdict}  ({line})", flush=True)
                path.unlink()
                for d in (tmp / "runs" / "_uploads").iterdir():  # the disk is shared
                    subprocess.run(["rm", "-rf", str(d)])
            if args.sizes:
                return
            print(f"\n{'staged file':<28} {'MB':>7} {'answer':<60} {'s':>6} {'RSS peak above idle':>20} {'bound':>9}")
            files = legit_files(args.quick, tmp) + [(tmp / name, 0) for name, _ in _write_bombs(tmp)]
            for path, in_memory in files:
                session = DashSession(url, timeout=900).open("/")
                with RssWatch(proc.pid) as rss:
                    t0 = time.monotonic()
                    try:
                        answer = "".join(_texts(session.upload(path)))[:60]
                    except RuntimeError as e:
                        answer = str(e)[:60]
                    seconds = time.monotonic() - t0
                    time.sleep(0.5)
                peak, bound = rss.peak_above_idle, 2 * GB + in_memory
                verdict = "met" if peak <= bound and proc.poll() is None else "MISSED"
                print(f"{path.name:<28} {path.stat().st_size / MB:>7.1f} {answer:<60} {seconds:>6.1f} "
                      f"{peak / MB:>17.0f} MB {bound / MB:>6.0f} MB {verdict}", flush=True)
                if proc.poll() is not None:
                    print("the server died")
                    break
        finally:
            proc.terminate()
            proc.wait(10)


def _write_bombs(folder: Path) -> list[tuple[str, int]]:
    out = []
    for name, data, _ in bomb_files():
        (folder / name).write_bytes(data)
        out.append((name, 0))
    return out


if __name__ == "__main__":
    main()
