"""The table bombs posted to the real app (serve.py: gunicorn, 2 workers x 8 threads, as deployed; run
from this worktree) through Dash's callback endpoint, as an attacker's script would: each gets a
message naming the file, the server's memory stays bounded (the parse happens in a reader process
that is killed when it goes over its limit) and other requests are answered meanwhile.

(The development server, ``python app.py``, never answers a request body above ~8 MB sent this way,
with or without these changes; gunicorn does, so the 9.9 MB million-column CSV goes through it.)"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import numpy as np
import psutil
import pytest

from devkit import procs
from tests import table_bombs as tb
from devkit.dash_http import DashSession

pytestmark = [pytest.mark.timeout(600)]
READ_MEMORY_MB = 1024  # the reader's limit in this server: the hidden bomb is stopped within seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("budget")
    (folder / "runs").mkdir()
    env = procs.app_env(folder / "runs", "", stage_delay=0, HERCULES_READ_MEMORY_MB=str(READ_MEMORY_MB))
    proc, url = procs.web_server(env, folder, production=True, workers=2, threads=8)
    proc.url, proc.runs_dir = url, folder / "runs"
    yield proc
    proc.stop()


def _serving(master: psutil.Process) -> list[psutil.Process]:
    """gunicorn's master and its workers: the processes that answer requests (not the readers)."""
    return [master, *master.children()]


def _readers(master: psutil.Process) -> list[psutil.Process]:
    """Each worker's children: its fork server and the readers forked from it."""
    return [c for w in master.children() for c in w.children(recursive=True)]


class _Watch:
    """Samples the server's own RSS and its readers' (its child processes') RSS, and asks /healthz."""

    def __init__(self, server):
        self.proc, self.url = psutil.Process(server.pid), server.url
        self.server_rss: list[int] = []
        self.reader_rss: list[int] = []
        self.health: list[tuple[int | None, float]] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._sample, daemon=True),
                        threading.Thread(target=self._healthz, daemon=True)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _sample(self):
        while not self.stop.is_set():
            try:
                self.server_rss.append(max(p.memory_info().rss for p in _serving(self.proc)))
                self.reader_rss.append(max([p.memory_info().rss for p in _readers(self.proc)] or [0]))
            except psutil.Error:
                pass
            time.sleep(0.02)

    def _healthz(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=10) as r:
                    status = r.status
            except OSError:
                status = None
            self.health.append((status, time.monotonic() - t0))
            time.sleep(0.2)


CASES = [
    ("big.xlsx", tb.xlsx_bomb, "big.xlsx declares 1,048,576 rows × 16,384 columns (17 billion cells), more than the"
                               " 50,000,000 cells allowed: save only the data range, or export it as CSV."),
    ("liar.xlsx", lambda p: tb.xlsx_bomb(p, dimension="A1:A3"), "liar.xlsx has at least 1,048,576 rows × 16,384"),
    ("zeros.parquet", tb.zero_rows_parquet, "zeros.parquet declares 60,000,000 rows, more than the 10,000,000"),
    ("wide.csv", tb.wide_csv, "wide.csv: its first line (the header) is longer than 1 MB"),
    ("same.parquet", tb.repeated_string_parquet,
     f"same.parquet needs more than {READ_MEMORY_MB / 1024:.1f} GB of memory to read"),
]


def test_table_bombs_uploaded_to_the_real_app_cost_the_server_little(server, tmp_path):
    master = psutil.Process(server.pid)
    time.sleep(1)
    idle = max(p.memory_info().rss for p in _serving(master))
    report = []
    with _Watch(server) as watch:
        for name, make, expected in CASES:
            path = make(tmp_path / name)
            session = DashSession(server.url, timeout=120).open("/")
            t0 = time.monotonic()
            before = len(watch.reader_rss)
            msg = json.dumps(session.upload(path), ensure_ascii=False)
            elapsed = time.monotonic() - t0
            assert expected in msg, msg
            assert "f00000" not in msg and session.props.get(("data-upload-store", "data")) is None
            assert server.alive(), "the server died"
            report.append(f"{name} ({path.stat().st_size / 1024:,.0f} kB): {elapsed:.1f} s, reader peak"
                          f" {max(watch.reader_rss[before:] or [0]) / 1024**2:,.0f} MB")
        # a legitimate table still goes through afterwards
        ok = tmp_path / "fine.csv"
        ok.write_text("id,text\n" + "\n".join(f"{i},a short text {i}" for i in range(500)) + "\n")
        session = DashSession(server.url).open("/")
        session.upload(ok)
        assert session.props.get(("data-upload-store", "data")), session.props.get(("data-upload-msg", "children"))
    peak = max(watch.server_rss)
    slowest = max(t for _, t in watch.health)
    after = max(p.memory_info().rss for p in _serving(master))
    print(f"\nlargest server process RSS: idle {idle / 1024**2:,.0f} MB, peak {peak / 1024**2:,.0f} MB, after"
          f" {after / 1024**2:,.0f} MB; /healthz x{len(watch.health)}, slowest {slowest:.2f} s")
    print("\n".join(report))
    assert peak < 1.5 * 1024**3 and peak - idle < 300 * 1024**2, peak
    assert after - idle < 200 * 1024**2
    assert max(watch.reader_rss) < (READ_MEMORY_MB + 800) * 1024**2  # the fork server plus one killed reader
    assert watch.health and all(s == 200 for s, _ in watch.health) and slowest < 5


def test_model_bombs_imported_into_the_real_app_cost_the_server_little(server, tmp_path):
    """The model.json attacks on the runs page's import: a header declaring 800,000,000 rows (zlib of
    zeros, 1 MB: refused from the header), a consistent model of 40,000 x 4,096 zeros (655 MB decoded
    from 6 MB: every header check passes, the bounded reader stops it at this server's 1 GB), and
    100,000 nested lists. The web server's own memory never grows by more than 300 MB."""
    from hercules_core import io
    from devkit.factories import make_hierarchy, make_text_dataset
    from tests.test_model_bombs import BOMB_ROWS, deep, zeros_bomb

    shape = tmp_path / "shape-bomb.json"
    good = tmp_path / "good.json"
    io.save_model(make_hierarchy(), good)
    doc = json.loads(good.read_text())
    doc["levels"][1]["fallback"] = zeros_bomb(BOMB_ROWS)
    shape.write_text(json.dumps(doc))
    zeros = tmp_path / "zeros-model.json"
    h = make_hierarchy(make_text_dataset(40_000), (8, 3), dim=4)
    h.levels[0].vectors = np.zeros((40_000, 4096), dtype=np.float32)
    io.save_model(h, zeros, items="inline")  # zeros compress: a small file that decodes to gigabytes
    nested = tmp_path / "nested.json"
    nested.write_text('{"format": "hercules-model", "schema_version": 1, "stats": ' + deep(100_000) + "}")
    cases = [(shape, "shape-bomb.json: levels[1].fallback declares 800,000,000 rows"),
             (zeros, "zeros-model.json needs more than 1.0 GB of memory to read"),
             (nested, "nested.json is not a HERCULES model JSON: it is nested too deeply")]
    master = psutil.Process(server.pid)
    time.sleep(1)
    idle = max(p.memory_info().rss for p in _serving(master))
    report = []
    with _Watch(server) as watch:
        for path, expected in cases:
            session = DashSession(server.url, timeout=120).open("/runs")
            t0 = time.monotonic()
            session.upload(path, component="model-upload")
            msg = json.dumps(session.props.get(("model-upload-msg", "children")), ensure_ascii=False)
            report.append(f"{path.name} ({path.stat().st_size / 1024**2:,.1f} MB): {time.monotonic() - t0:.1f} s")
            assert expected in msg, msg
            assert server.alive(), "the server died"
    peak = max(watch.server_rss)
    print(f"\nlargest server process RSS: idle {idle / 1024**2:,.0f} MB, peak {peak / 1024**2:,.0f} MB")
    print("\n".join(report))
    assert peak - idle < 300 * 1024**2, peak
    assert watch.health and all(s == 200 for s, _ in watch.health)
    assert [p.name for p in server.runs_dir.iterdir() if not p.name.startswith((".", "_"))] == []
