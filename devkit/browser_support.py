"""Helpers of the browser tests: a real app server in a subprocess, headless Chromium, data files."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
# pixel position of point ``idx`` of trace ``trace`` of the explore scatter, in page coordinates
JS_POINT = """([trace, idx]) => {
  const gd = document.querySelector('#explore-scatter .js-plotly-plot');
  const fl = gd._fullLayout, t = gd._fullData[trace];
  const r = gd.getBoundingClientRect();
  return [r.left + fl._size.l + fl.xaxis.l2p(t.x[idx]), r.top + fl._size.t + fl.yaxis.l2p(t.y[idx])];
}"""
JS_TRACE = "(i) => document.querySelector('#explore-scatter .js-plotly-plot').data[i]"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """``python app.py`` on a free port with its own runs directory; test models enabled; ``env``
    adds environment variables (e.g. ``HERCULES_LLM_BASE_URL`` of a stub server)."""

    def __init__(self, runs_dir: Path, stage_delay: float = 0.4, env: dict[str, str] | None = None):
        self.runs_dir = runs_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, HERCULES_TEST_MODELS="1", HERCULES_TEST_STAGE_DELAY=str(stage_delay),
                   HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1",
                   HERCULES_CACHE_DIR=str(runs_dir.parent / "model-cache"), **(env or {}))
        self.log = open(runs_dir.parent / f"server-{self.port}.log", "w")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(self.port),
                                      "--runs-dir", str(runs_dir)], cwd=ROOT, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(self.url + "/", timeout=2)
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"the app did not start; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def tree_memory(proc) -> int:
    """Memory of ``proc`` and its children: the sum of their proportional set sizes (PSS).

    Not the sum of their RSS: the upload readers are forked from a fork server that holds pandas and
    pyarrow, and each one's RSS counts those shared pages again (two readers at once: +470 MB that
    nobody uses). PSS gives each shared page to its processes in equal parts, so the sum is the memory
    the tree really holds. (RSS where PSS cannot be read.)
    """
    import psutil

    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            try:
                total += p.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                total += p.memory_info().rss
        except psutil.Error:
            pass  # gone since it was listed
    return total


class RssWatch:
    """Peak memory (:func:`tree_memory`) of a process and its children, sampled every 20 ms while in
    the block."""

    def __init__(self, pid: int):
        import psutil

        self._proc = psutil.Process(pid)
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now(self) -> int:
        return tree_memory(self._proc)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.now())
            time.sleep(0.02)

    def __enter__(self) -> "RssWatch":
        self.idle = self.now()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_above_idle(self) -> int:
        return max(self.samples, default=self.idle) - self.idle


def text_data() -> Path:
    shared = ROOT.parent / "shared" / "data" / "fortune_dev8.csv"
    return shared if shared.is_file() else ROOT / "tests" / "data" / "fortune_sample.csv"


def texts_table(megabytes: float, seed: int = 0) -> pd.DataFrame:
    """Short texts (id, text) whose CSV is about ``megabytes`` MiB."""
    rng = np.random.default_rng(seed)
    words = np.array("river mountain price market court judge planet orbit recipe garden engine season player "
                     "music ticket doctor".split())

    def table(n: int, first_id: int = 0) -> pd.DataFrame:
        picks = words[rng.integers(0, len(words), size=(n, 6))]
        text = pd.Series(picks[:, 0])
        for k in range(1, 6):
            text = text + " " + picks[:, k]
        return pd.DataFrame({"id": np.arange(first_id, first_id + n), "text": text})

    guess = int(megabytes * 1024**2 / 50)
    per_row = len(table(10_000, guess).to_csv(index=False)) / 10_000  # ids as long as the last ones
    return table(int(megabytes * 1024**2 / per_row))


def numeric_data(folder: Path) -> Path:
    """scikit-learn's wine table as an Excel file with an id and a label column."""
    from sklearn.datasets import load_wine

    d = load_wine(as_frame=True)
    df = d.data.copy()
    df.insert(0, "id", [f"w{i:03d}" for i in range(len(df))])
    df["label"] = [d.target_names[t] for t in d.target]
    path = folder / "wine.xlsx"
    df.to_excel(path, index=False)
    return path


def image_data(folder: Path, n: int = 400) -> tuple[Path, Path]:
    """scikit-learn digits as PNG files in a ZIP of a folder, and a separate id,label file."""
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    zpath, lpath = folder / "digits.zip", folder / "digit_labels.csv"
    rows = []
    with zipfile.ZipFile(zpath, "w") as zf:
        for i in range(n):
            img = Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8)).resize((32, 32), Image.NEAREST)
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            name = f"digits/{i:04d}.png"
            zf.writestr(name, buf.getvalue())
            rows.append((name, str(d.target[i])))
    pd.DataFrame(rows, columns=["id", "label"]).to_csv(lpath, index=False)
    return zpath, lpath


def skip_without_browser() -> None:
    """Skip the calling test module (at import) when Chromium or playwright is missing."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (scripts/setup.sh installs it: apt-get install chromium)",
                    allow_module_level=True)
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements-dev.txt)")


def serve_module(tmp_path_factory, **kw):
    """The body of a module-scoped ``server`` fixture: an app on fresh runs (``yield from``)."""
    srv = AppServer(tmp_path_factory.mktemp("app") / "runs", **kw)
    yield srv
    srv.stop()


def small_text_model(folder: Path) -> Path:
    """A saved model of 600 texts of the bundled sample (fake 64-d embedder, levels [20, 5])."""
    from hercules_core import Hercules, HerculesConfig, prepare, save_model
    from hercules_core.clients.fakes import FakeEmbedder

    ds = prepare(pd.read_csv(text_data()).iloc[:600], text_column="text", id_column="id")
    h = Hercules(HerculesConfig(level_cluster_counts=(20, 5)), text_embedder=FakeEmbedder(64)).fit(ds).hierarchy_
    path = Path(folder) / "model.json"
    save_model(h, path)
    return path


def import_run(runs_dir: Path, model_file: Path) -> str:
    """A new run of the app's runs folder holding ``model_file`` (through the runs page's import)."""
    import base64

    from callbacks import page_runs

    url = "data:application/json;base64," + base64.b64encode(Path(model_file).read_bytes()).decode()
    run_id, message = page_runs.import_model(runs_dir, "model.json", url)
    assert run_id, message
    return run_id


def watch_console(page, errors: list[str]) -> None:
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))


# ----------------------------------------------------------------------------- shared fixtures
# A browser test module imports these (``from devkit.browser_support import browser, page``) after its
# ``skip_without_browser()`` (a missing Chromium or playwright skips the module).

@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium, one per test module."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def new_page(browser):
    """A page in its own context (1400 x 1000, downloads accepted); console and page errors collect in
    ``page.errors``. Close it with ``page.context.close()``."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.errors = []
    watch_console(page, page.errors)
    return page


@pytest.fixture
def page(browser):
    pg = new_page(browser)
    yield pg
    pg.context.close()
