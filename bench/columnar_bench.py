"""Model storage at scale: all-JSON (schema 1) against the columnar items file (schema 2).

Synthesises a text-run Hierarchy of N items with their own 384-d vectors (L0 description
embeddings = the vectors, as in a text run), keyword titles, levels 1000/100/10 and 2-D
coordinates, then measures: save time and file sizes per format, load time and peak RSS of
``load_model`` and of the explorer's ``ExploreModel.load`` (each in a fresh process), and the
memberships.csv writer before (pandas through csv_safe_frame) and after (Arrow).

    .venv/bin/python bench/columnar_bench.py 100000 [1000000] [--out /tmp/colbench]

Writes bench/results/columnar_bench.json (and prints a table).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hercules_core import io  # noqa: E402
from hercules_core.config import HerculesConfig  # noqa: E402
from hercules_core.dataset import Dataset  # noqa: E402
from hercules_core.hierarchy import Hierarchy, Level, cluster_id  # noqa: E402

WORDS = ("billing refund account password login delivery parcel late broken screen battery price discount "
         "order cancel subscription invoice warranty repair support").split()


def synth(n: int, dim: int = 384, ks=(1000, 100, 10), seed: int = 0) -> Hierarchy:
    rng = np.random.default_rng(seed)
    ids = [f"ticket-{i}" for i in range(n)]
    w = np.array(WORDS, dtype=object)
    picks = rng.integers(0, len(WORDS), size=(n, 6))
    texts = [" ".join(row) + f" #{i}" for i, row in enumerate(w[picks].tolist())]
    X = rng.standard_normal((n, dim), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    xy = rng.standard_normal((n, 2)).astype(np.float32)
    ds = Dataset(ids=ids, modality="text", texts=texts, source="synthetic")
    levels = [Level(0, list(ids), np.zeros(n, np.int32), np.ones(n, np.int64), X, X,
                    [t[:60] for t in texts], list(texts), np.zeros(n, bool), ["snippet"] * n,
                    {"representation": xy, "description": xy.copy()})]
    below_x, below_xy = X, xy
    for li, k in enumerate(ks, start=1):
        m = len(levels[-1])
        parent = np.concatenate([np.arange(k), rng.integers(0, k, size=m - k)]).astype(np.int32)
        rng.shuffle(parent)
        levels[-1].parent = parent
        size = np.bincount(parent, weights=levels[-1].size, minlength=k).astype(np.int64)
        cent = np.zeros((k, dim), np.float32)
        np.add.at(cent, parent, below_x)
        cent /= np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)
        cxy = np.zeros((k, 2), np.float32)
        np.add.at(cxy, parent, below_xy)
        titles = [" ".join(w[rng.integers(0, len(WORDS), 3)].tolist()) for _ in range(k)]
        levels.append(Level(li, [cluster_id(li, j) for j in range(k)], np.full(k, -1, np.int32), size, cent,
                            rng.standard_normal((k, dim)).astype(np.float32), titles,
                            [f"Items about {t}." for t in titles], np.zeros(k, bool), ["keywords"] * k,
                            {"representation": cxy, "description": cxy.copy()}))
        below_x, below_xy = cent, cxy
    h = Hierarchy(levels=levels, config=HerculesConfig(level_cluster_counts=ks), dataset=ds)
    h.validate()
    return h


def rss_mb(field: str = "VmRSS") -> float:
    """Resident MB of this process; ``VmHWM``: its peak (per process image: unlike ru_maxrss, it does
    not inherit the peak of the parent that forked it)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def load_child(path: str, what: str) -> None:
    """In a fresh process: open the model, print seconds, peak and final RSS as JSON."""
    if what == "explore":
        from callbacks.explore_model import ExploreModel

        import pyarrow  # noqa: F401
        base = rss_mb()
        t0 = time.perf_counter()
        em = ExploreModel.load(path)
        n = em.h.n_items
    else:
        import pyarrow  # noqa: F401  (imported by the server long before a model is opened)

        base = rss_mb()
        t0 = time.perf_counter()
        h = io.load_model(path, verify=(what == "load"))
        n = h.n_items
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": round(rss_mb("VmHWM")),
                      "rss_mb": round(rss_mb()), "base_rss_mb": round(base), "n": n}))


def child(path: Path, what: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(path), what], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def sizes(d: Path) -> dict[str, float]:
    return {p.name.split(".items-")[0] + (".items.arrow" if ".items-" in p.name else ""): round(p.stat().st_size / 1e6, 1)
            for p in sorted(d.iterdir()) if p.is_file()}


def measure(n: int, out: Path) -> dict:
    t0 = time.perf_counter()
    h = synth(n)
    result: dict = {"n": n, "synth_seconds": round(time.perf_counter() - t0, 1)}
    for fmt in ("inline", "columnar"):
        d = out / f"n{n}" / fmt
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        t0 = time.perf_counter()
        io.save_model(h, d / "model.json", items=fmt)
        r = {"save_seconds": round(time.perf_counter() - t0, 2), "files_mb": sizes(d)}
        if fmt == "columnar":
            t0 = time.perf_counter()
            from hercules_core import columnar

            columnar.write_bundle(d / "model.json", d.parent / "model.hercules")
            r["bundle_seconds"] = round(time.perf_counter() - t0, 2)
            r["bundle_mb"] = round((d.parent / "model.hercules").stat().st_size / 1e6, 1)
            (d.parent / "model.hercules").unlink()
        whats = ("load", "explore") if fmt == "inline" else ("load", "load_noverify", "explore")
        for what in whats:
            r[what] = child(d / "model.json", what)
        result[fmt] = r
        print(json.dumps({fmt: r}), flush=True)
    # memberships.csv: before (pandas through csv_safe_frame) and after (Arrow, vectorised escaping)
    d = out / f"n{n}"
    t0 = time.perf_counter()
    io.atomic_write(d / "memberships_old.csv", io.frame_csv(io.membership_frame(h)))
    old = time.perf_counter() - t0
    t0 = time.perf_counter()
    io.save_memberships(h, d / "memberships.csv")
    new = time.perf_counter() - t0
    import pandas as pd

    same = pd.read_csv(d / "memberships_old.csv", dtype=str, keep_default_na=False).equals(
        pd.read_csv(d / "memberships.csv", dtype=str, keep_default_na=False))
    result["memberships_csv"] = {"old_seconds": round(old, 2), "new_seconds": round(new, 2), "same_cells": same,
                                 "old_mb": round((d / "memberships_old.csv").stat().st_size / 1e6, 1),
                                 "new_mb": round((d / "memberships.csv").stat().st_size / 1e6, 1)}
    print(json.dumps({"memberships_csv": result["memberships_csv"]}), flush=True)
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        load_child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="+", type=int)
    ap.add_argument("--out", default="/tmp/colbench")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args()
    out = Path(args.out)
    results_path = ROOT / "bench" / "results" / "columnar_bench.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for n in args.n:
        results[str(n)] = measure(n, out)
        results_path.parent.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=1) + "\n")
        if not args.keep:
            shutil.rmtree(out / f"n{n}", ignore_errors=True)


if __name__ == "__main__":
    main()
