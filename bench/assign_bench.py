"""Assignment speed, measured side by side in one run (the figure goes into docs/benchmarks.md).

Assigning 100,000 new numeric rows (10 variables) into a [200, 40, 8] HERCULES model, end to end
(``hercules_core.assign`` on the raw rows: scaling with the model's scaler, nearest level-1
centroid, parents, distances, novelty flags and the result table with ids and titles of every
level) against ONE ``sklearn.cluster.KMeans.predict`` at k=200 on the same rows, already scaled.
Each is timed ``--repeats`` times, interleaved; medians are compared. Target: ratio <= 2.

Usage: .venv/bin/python bench/assign_bench.py [--rows 100000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sklearn.cluster import KMeans  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402

from hercules_core import Hercules, HerculesConfig, assign, prepare  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--train", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()

    X, _ = make_blobs(n_samples=args.train + args.rows, n_features=10, centers=60, cluster_std=3.0, random_state=0)
    X = X * np.linspace(1, 100, 10) + 20  # variables on different scales: the model's scaler matters
    cols = [f"v{j}" for j in range(10)]
    train = pd.DataFrame(X[:args.train], columns=cols)
    new_rows = np.ascontiguousarray(X[args.train:])
    t0 = time.perf_counter()
    h = Hercules(HerculesConfig(level_cluster_counts=(200, 40, 8), random_state=0)).fit(
        prepare(train, numeric_columns=cols)).hierarchy_
    fit_s = time.perf_counter() - t0
    scaled = ((new_rows - h.dataset.scaler_mean) / h.dataset.scaler_scale).astype(np.float32)
    km = KMeans(n_clusters=200, n_init=1, random_state=0).fit(h.dataset.numeric)  # the baseline's own centroids
    frame = pd.DataFrame(new_rows, columns=cols)

    ours, ours_df, theirs = [], [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        km.predict(scaled)
        theirs.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = assign(h, new_rows)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        assign(h, frame)
        ours_df.append(time.perf_counter() - t)
    assert len(result.frame) == args.rows
    a, a_df, b = statistics.median(ours), statistics.median(ours_df), statistics.median(theirs)
    print(f"machine load (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"model: [200, 40, 8] on {args.train:,} x 10 numeric rows (fit {fit_s:.1f} s)")
    print(f"{args.rows:,} new rows, median of {args.repeats}:")
    print(f"  hercules assign (numpy rows)    {a * 1000:8.1f} ms")
    print(f"  hercules assign (DataFrame)     {a_df * 1000:8.1f} ms")
    print(f"  KMeans.predict k=200 (scaled)   {b * 1000:8.1f} ms")
    print(f"  ratio assign / predict: {a / b:.2f}x (DataFrame input {a_df / b:.2f}x); target <= 2x: "
          f"{'met' if a / b <= 2 else 'MISSED'}")
    print(f"  novel share of the new rows: {result.novel.mean():.3f}")


if __name__ == "__main__":
    main()
