"""A whole CLI run against its floor, side by side (issue 18's run targets; figures in docs/scaling.md).

For each size and kind it generates a seeded Parquet file in a scratch folder (deleted afterwards
unless --keep), then runs as separate processes, one after the other:
  - the floor: one faiss k-means process at the finest k on the same vectors (read from a .npy;
    faiss's defaults: 25 iterations, trained on at most 256 points per centroid, then every point
    assigned);
  - the CLI: ``python -m hercules_core run FILE --llm keywords --levels ...`` (keyword titles, no
    cache), with ``--vector-column`` for the embedding kind.
Each process's wall time and peak RSS (its whole process tree, polled every 50 ms with psutil) are
printed side by side with the ratios and the targets:
  - embed384 (n x 384 own embeddings + a short text): time <= 2x the floor, peak RSS <= 2.5x the
    vectors' size (n x 384 x 4 bytes) + 1 GB;
  - numeric16 (n x 16 numbers): time <= 3x the floor.
The CLI's own stage timings (model.json stats) follow each row.

Usage: .venv/bin/python bench/scale_bench.py --n 10000 100000 --kind numeric16 embed384 [--keep]
       [--levels 1000,100,10 | --auto-k] [--dir /tmp/hercules_scale]
Check ``free -g`` before --n 1000000 (the embed384 file is ~1.6 GB, the run ~4 GB).
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
import psutil

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
KINDS = ("numeric16", "embed384")
_WORDS = ("billing refund invoice card payment login password account email delivery parcel courier "
          "screen battery charger update crash slow price discount order size colour return warranty").split()
_ROW_GROUP = 100_000

FLOOR = r"""
import sys, time, numpy as np, faiss
X = np.load(sys.argv[1]); k = int(sys.argv[2])
t = time.perf_counter()
km = faiss.Kmeans(X.shape[1], k, niter=25, seed=1, verbose=False)
km.train(X)
_, labels = km.index.search(X, 1)
print(f"{time.perf_counter() - t:.3f}")
"""


def generate(kind: str, n: int, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """A Parquet file of ``n`` items and the same vectors as a float32 .npy (for the floor)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    d, centres = (16, 50) if kind == "numeric16" else (384, 200)
    C = rng.normal(size=(centres, d)).astype(np.float32) * (4.0 if kind == "numeric16" else 1.0)
    path, npy = folder / f"{kind}_{n}.parquet", folder / f"{kind}_{n}.npy"
    vecs = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(n, d))
    writer = None
    words = np.array(_WORDS)
    for start in range(0, n, _ROW_GROUP):
        m = min(_ROW_GROUP, n - start)
        lab = rng.integers(0, centres, m)
        X = C[lab] + rng.normal(size=(m, d)).astype(np.float32)
        if kind == "embed384":
            X /= np.linalg.norm(X, axis=1, keepdims=True)
        vecs[start:start + m] = X
        cols = {"id": pa.array([str(i) for i in range(start, start + m)]), "label": pa.array(lab.astype(str))}
        if kind == "numeric16":
            cols.update({f"x{j}": pa.array(X[:, j]) for j in range(d)})
        else:
            w = words[(lab[:, None] * 7 + rng.integers(0, 4, (m, 5))) % len(words)]
            cols["text"] = pa.array([" ".join(r) for r in w])
            cols["emb"] = pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), d)
        table = pa.table(cols)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()
    vecs.flush()
    del vecs
    return path, npy


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Wall time, peak RSS of the process tree (bytes), exit code and output of ``cmd``."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    ps, peak = psutil.Process(proc.pid), 0
    out_chunks: list[str] = []
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [ps, *ps.children(recursive=True)])
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    out, err = proc.communicate()
    return {"seconds": time.perf_counter() - t, "peak_rss": peak, "rc": proc.returncode, "stdout": out, "stderr": err}


def stage_timings(out_dir: Path) -> dict:
    try:
        with open(out_dir / "model.json") as fh:
            return json.load(fh).get("stats", {}).get("timings", {})
    except (OSError, ValueError):
        return {}


def one(kind: str, n: int, folder: Path, levels: str | None, extra: list[str]) -> dict:
    t = time.perf_counter()
    data, npy = generate(kind, n, folder)
    gen = time.perf_counter() - t
    finest = int(levels.split(",")[0]) if levels else 0
    k = finest or max(2, int(round(n ** 0.5)))  # auto-k: compare against k = sqrt(n)
    floor = measure([PY, "-c", FLOOR, str(npy), str(k)])
    if floor["rc"]:
        raise SystemExit(f"the faiss floor failed: {floor['stderr'][-2000:]}")
    out = folder / f"out_{kind}_{n}"
    cmd = [PY, "-m", "hercules_core", "run", str(data), "--out", str(out), "--llm", "keywords", "--quiet",
           "--no-cache", *(["--levels", levels] if levels else ["--auto-k"]), *extra]
    if kind == "embed384":
        cmd += ["--vector-column", "emb", "--text-column", "text", "--id-column", "id", "--labels-column", "label"]
    else:
        cmd += ["--id-column", "id", "--labels-column", "label"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cli = measure(cmd, env=env)
    if cli["rc"]:
        raise SystemExit(f"the CLI failed: {cli['stderr'][-3000:]}")
    d = 16 if kind == "numeric16" else 384
    vec_bytes = n * d * 4
    row = {"kind": kind, "n": n, "k": k, "generate_s": round(gen, 1), "file_mb": round(data.stat().st_size / 2**20),
           "floor_s": round(floor["seconds"], 2), "floor_rss_gb": round(floor["peak_rss"] / 2**30, 2),
           "cli_s": round(cli["seconds"], 2), "cli_rss_gb": round(cli["peak_rss"] / 2**30, 2),
           "vectors_gb": round(vec_bytes / 2**30, 3), "time_ratio": round(cli["seconds"] / floor["seconds"], 2),
           "rss_bound_gb": round((2.5 * vec_bytes + 2**30) / 2**30, 2),
           "outputs_mb": {p.name: round(p.stat().st_size / 2**20, 1) for p in sorted(out.iterdir())},
           "stages": stage_timings(out),
           "cli_tail": [ln for ln in cli["stderr"].splitlines() if ln.startswith(("time", "peak memory", "note:", "WARNING"))][-12:]}
    row["time_target"] = 2.0 if kind == "embed384" else 3.0
    row["time_met"] = row["time_ratio"] <= row["time_target"]
    row["rss_met"] = row["cli_rss_gb"] <= row["rss_bound_gb"] if kind == "embed384" else None
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000])
    ap.add_argument("--kind", nargs="+", choices=KINDS, default=list(KINDS))
    ap.add_argument("--levels", default="1000,100,10", help="the CLI's --levels (finest first)")
    ap.add_argument("--auto-k", action="store_true", help="run the CLI with --auto-k instead of --levels")
    ap.add_argument("--dir", default="/tmp/hercules_scale", help="scratch folder (deleted unless --keep)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("extra", nargs="*", help="further CLI flags, after --")
    args = ap.parse_args(argv)
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for n in args.n:
            for kind in args.kind:
                levels = None if args.auto_k else ",".join(str(min(int(k), n // 10)) for k in args.levels.split(","))
                row = one(kind, n, folder, levels, args.extra)
                rows.append(row)
                rss = f"{row['cli_rss_gb']:.2f} GB" + (f" (bound {row['rss_bound_gb']:.2f}: "
                                                         f"{'met' if row['rss_met'] else 'MISSED'})"
                                                         if row["rss_met"] is not None else "")
                print(f"{kind:9s} n={n:>9,} k={row['k']:>5}: CLI {row['cli_s']:8.1f} s vs faiss {row['floor_s']:7.1f} s"
                      f" = {row['time_ratio']:5.2f}x (target <= {row['time_target']:g}x: "
                      f"{'met' if row['time_met'] else 'MISSED'}); peak RSS CLI {rss}, faiss "
                      f"{row['floor_rss_gb']:.2f} GB; vectors {row['vectors_gb']:.3f} GB", flush=True)
                print(f"    stages: {json.dumps(row['stages'])}", flush=True)
                print(f"    outputs MB: {json.dumps(row['outputs_mb'])}", flush=True)
                for line in row["cli_tail"]:
                    print(f"    {line}", flush=True)
                shutil.rmtree(folder / f"out_{kind}_{n}", ignore_errors=True) if not args.keep else None
    finally:
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
