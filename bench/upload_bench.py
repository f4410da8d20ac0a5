"""Server memory and time of uploads through the real upload callback, legitimate files and bombs.

Starts the app (``python app.py``) on a free loopback port with its own runs folder, then posts each
file exactly as the new-run page's ``dcc.Upload`` does (one ``/_dash-update-component`` request with
the file as a base64 data URL) and samples the server's resident memory (its process and children)
every 20 ms. Prints one row per file: size, answer, seconds, peak RSS above idle, and the stated bound
(docs/security.md: 2 GB plus the table's own size in memory, as pandas holds it).

    .venv/bin/python bench/upload_bench.py            # 10, 50 and 190 MB CSV, 95 MB Parquet, the bombs
    .venv/bin/python bench/upload_bench.py --quick    # 10 MB CSV and the bombs
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from devkit.browser_support import free_port, texts_table  # noqa: E402

GB = 1024**3
MB = 1024**2


def start_app(runs: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HERCULES_CACHE_DIR=str(runs.parent / "cache"))
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


def rss(proc: psutil.Process) -> int:
    try:
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
    except psutil.Error:
        return 0


def upload_body(url: str, name: str, data: bytes) -> bytes:
    """The request body of the new-run page's upload callback for one file (as dash-renderer sends it)."""
    with urllib.request.urlopen(url + "/_dash-dependencies") as resp:
        deps = json.load(resp)
    cb = next(d for d in deps if any(i["id"] == "data-upload" and i["property"] == "contents" for i in d["inputs"]))
    outputs = [dict(zip(("id", "property"), o.rsplit(".", 1))) for o in cb["output"].strip(".").split("...")]
    head = json.dumps({"output": cb["output"], "outputs": outputs})[:-1]
    mime = "text/csv" if name.endswith(".csv") else "application/octet-stream"
    tail = json.dumps({"changedPropIds": ["data-upload.contents"],
                       "state": [{"id": "data-upload", "property": "filename", "value": [name]}]})[1:]
    return (head.encode() + b',"inputs":[{"id":"data-upload","property":"contents","value":["data:' + mime.encode()
            + b';base64,' + base64.b64encode(data) + b'"]}],' + tail.encode())


def post(url: str, body: bytes, timeout: float = 900) -> tuple[int, str]:
    req = urllib.request.Request(url + "/_dash-update-component", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc = json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, e.read(300).decode("utf-8", "replace")
    return 200, "".join(_texts(doc["response"].get("data-upload-msg", {}).get("children")))[:160]


def _texts(node) -> list[str]:
    """The text of a Dash component tree as the page shows it."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [t for child in node for t in _texts(child)]
    if isinstance(node, dict):
        return _texts(node.get("props", {}).get("children"))
    return []


def legit_files(quick: bool) -> list[tuple[str, bytes, int]]:
    """(name, bytes, the table's size in memory) of the legitimate uploads."""
    out = []
    for mb in ([10] if quick else [10, 50, 190]):
        frame = texts_table(mb, seed=mb)
        out.append((f"texts-{mb}MB.csv", frame.to_csv(index=False).encode(), int(frame.memory_usage(deep=True).sum())))
    if not quick:
        rng = np.random.default_rng(1)
        frame = pd.DataFrame(rng.normal(size=(500_000, 24)).astype("float64"), columns=[f"x{i}" for i in range(24)])
        buf = io.BytesIO()
        frame.to_parquet(buf)
        out.append(("numeric-500k-x24.parquet", buf.getvalue(), int(frame.memory_usage(deep=True).sum())))
    return out


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
    ap.add_argument("--quick", action="store_true", help="only the 10 MB CSV and the bombs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_app(Path(tmp) / "runs")
        server = psutil.Process(proc.pid)
        try:
            time.sleep(2)
            print(f"{'file':<28} {'MB':>7} {'answer':<60} {'s':>6} {'RSS peak above idle':>20} {'bound':>9}")
            for name, data, in_memory in legit_files(args.quick) + bomb_files():
                body = upload_body(url, name, data)
                idle, samples, stop = rss(server), [], threading.Event()

                def watch() -> None:
                    while not stop.is_set():
                        samples.append(rss(server))
                        time.sleep(0.02)

                watcher = threading.Thread(target=watch, daemon=True)
                watcher.start()
                t0 = time.monotonic()
                status, answer = post(url, body)
                seconds = time.monotonic() - t0
                time.sleep(0.5)
                stop.set()
                watcher.join()
                del body
                peak = max(samples, default=idle) - idle
                bound = 2 * GB + in_memory
                verdict = "met" if peak <= bound and proc.poll() is None else "MISSED"
                print(f"{name:<28} {len(data) / MB:>7.1f} {(str(status) + ' ' + answer)[:60]:<60} {seconds:>6.1f} "
                      f"{peak / MB:>17.0f} MB {bound / MB:>6.0f} MB {verdict}", flush=True)
                if proc.poll() is not None:
                    print("the server died")
                    break
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
