"""Hierarchy quality, measured side by side in one run (numbers go into docs/benchmarks.md).

Texts: fortune_dev8 (1,225 short texts, 8 labels), MiniLM embeddings computed once and cached in
bench/results/. For seeds 0..N-1, every row uses the same embeddings:
  - flat KMeans(8) on the embeddings, and UMAP (HERCULES's default parameters) + flat KMeans(8);
  - HERCULES [100,20,8] and [20,8] with the default settings (UMAP clustering space), and with
    --reduce none (the previous default), top-level and level-1 ARI / NMI;
  - HERCULES --auto-k: the top level's k (against the number of labels) and its ARI.
Numeric (sklearn wine, digits as a table) and images (digits saved as PNGs, image-features
embedder): flat KMeans(#labels) against HERCULES with its defaults and with the other setting.
Every HERCULES row also gives the assign self-agreement: the share of the run's own items that
``hercules_core.assign`` puts back into their level-1 cluster (mean over seeds, and the lowest seed);
the closing lines repeat, per data set, the defaults' top ARI against flat k-means beside it.
Optionally (--cli) a whole CLI run on fortune_dev8 with a cold and then a warm cache, against the
same with --reduce none.

Usage: .venv/bin/python bench/quality_bench.py [--seeds 5] [--cli]
       .venv/bin/python bench/quality_bench.py --fit-samples 600,300,120 [--seeds 3]
       .venv/bin/python bench/quality_bench.py --fit-samples 50000,25000,10000 --data docstrings.csv \
           [--text-column text --label-column label --levels 200,40,34 --no-full-fit]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from core_bench import FORTUNE, RESULTS, LookupEmbedder  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.metrics import adjusted_rand_score as ari  # noqa: E402
from sklearn.metrics import normalized_mutual_info_score as nmi  # noqa: E402

from hercules_core import reduction  # noqa: E402
from hercules_core.assign import assign  # noqa: E402
from hercules_core.clients.fakes import FakeEmbedder  # noqa: E402
from hercules_core.config import HerculesConfig  # noqa: E402
from hercules_core.dataset import Dataset  # noqa: E402
from hercules_core.hercules import Hercules  # noqa: E402


class MemoryCache:
    """The get/set part of hercules_core.cache.Cache, in memory: one UMAP per (vectors, seed) per run."""

    def __init__(self):
        self.store = {}

    def get(self, key, default=None):
        return self.store.get(key, default)

    def set(self, key, value):
        self.store[key] = value


CACHE = MemoryCache()


def labelled_texts(path=FORTUNE, text_column="text", label_column="label"):
    """A labelled text CSV as (Dataset, MiniLM vectors, embedder that looks them up). The vectors are
    computed once and cached in bench/results/ (fortune_dev8's file is shared with core_bench.py;
    another set's file name carries the SHA-256 of its texts, so an edited CSV is embedded again)."""
    import hashlib

    import pandas as pd

    from hercules_core.clients.sentence_transformer import minilm

    df = pd.read_csv(path)
    texts = df[text_column].astype(str).tolist()
    if Path(path) == FORTUNE:
        cache = RESULTS / "fortune_minilm.npy"
    else:
        digest = hashlib.sha256("\0".join(texts).encode()).hexdigest()[:12]
        cache = RESULTS / f"{Path(path).stem}_{digest}_minilm.npy"
    if cache.exists():
        X = np.load(cache)
    else:
        t = time.perf_counter()
        X = np.asarray(minilm(show_progress=len(texts) > 10_000).embed(texts), np.float32)
        print(f"  embedded {len(texts):,} texts with MiniLM in {time.perf_counter() - t:.0f} s -> {cache}", flush=True)
        RESULTS.mkdir(parents=True, exist_ok=True)
        np.save(cache, X)
    ids = df["id"].astype(str).tolist() if "id" in df.columns else [str(i) for i in range(len(df))]
    ds = Dataset(ids=ids, modality="text", texts=texts, labels=df[label_column].astype(str).tolist())
    return ds, X, LookupEmbedder(texts, X, FakeEmbedder(384))


def hercules(ds, seed, embedder=None, image_embedder=None, **cfg):
    t = time.perf_counter()
    model = Hercules(HerculesConfig(random_state=seed, **cfg), text_embedder=embedder, image_embedder=image_embedder,
                     cache=CACHE).fit(ds, labels=ds.labels)
    seconds = time.perf_counter() - t
    h = model.hierarchy_
    top, one = h.evaluation[h.top_level], h.evaluation[1]
    # the run's own items assigned back, as a user would (embedder / scaler, nearest level-1 centroid)
    placed = assign(h, ds, text_embedder=embedder, image_embedder=image_embedder).labels[:, 0]
    return {"top_ari": top["adjusted_rand_score"], "top_nmi": top["normalized_mutual_info_score"],
            "l1_ari": one["adjusted_rand_score"], "l1_nmi": one["normalized_mutual_info_score"],
            "self_agreement": float(np.mean(placed == h.levels[0].parent)),
            "ks": [len(lv) for lv in h.levels[1:]], "seconds": seconds}


def flat(X, y, k, seed):
    lab = KMeans(k, random_state=seed).fit(X).labels_
    return {"top_ari": ari(y, lab), "top_nmi": nmi(y, lab)}


def umap_flat(X, y, k, seed, metric, n):
    params = reduction.umap_params(HerculesConfig(random_state=seed), n, metric)
    R, _ = reduction.fit_umap(X, params, cache=CACHE)
    return flat(R, y, k, seed)


def summarize(name, runs, base=None):
    out = {"name": name}
    for key in ("top_ari", "top_nmi", "l1_ari", "l1_nmi", "self_agreement", "seconds"):
        vals = [r[key] for r in runs if key in r]
        if vals:
            out[key], out[key + "_sd"] = float(np.mean(vals)), float(np.std(vals))
    if "ks" in runs[0]:
        out["ks"] = [r["ks"] for r in runs]
    if base is not None:
        out["ratio"] = out["top_ari"] / base
    line = f"  {name:<44} top ARI {out['top_ari']:.3f} ± {out['top_ari_sd']:.3f}  NMI {out['top_nmi']:.3f}"
    if "l1_ari" in out:
        line += f"  L1 ARI {out['l1_ari']:.3f} NMI {out['l1_nmi']:.3f}"
    if base is not None:
        line += f"  = {out['ratio']:.2f}x flat"
    if "self_agreement" in out:
        out["self_agreement_min"] = float(min(r["self_agreement"] for r in runs))
        line += f"  self-agreement {out['self_agreement']:.2%} (min {out['self_agreement_min']:.2%})"
    if "seconds" in out:
        line += f"  {out['seconds']:.1f} s"
    if "ks" in out and name.endswith("auto-k"):
        out["top_k"] = [ks[-1] for ks in out["ks"]]
        line += f"  top k {out['top_k']}, levels {out['ks'][0]} (seed 0)"
    print(line, flush=True)
    return out


def umap_threads(X):
    """Seconds of one UMAP fit (compiled already) with random_state (one thread, repeatable) and
    without it (all cores, a different result every run)."""
    import umap

    params = reduction.umap_params(HerculesConfig(), len(X), "cosine")
    out = {}
    for label, extra in (("random_state (1 thread)", {}), ("no random_state (all cores)", {"random_state": None})):
        times = []
        for _ in range(2):  # the first multi-threaded fit also compiles numba's parallel code
            t = time.perf_counter()
            umap.UMAP(**{**params, **extra}).fit_transform(X)
            times.append(time.perf_counter() - t)
        out[label] = min(times)
    print("  UMAP fit after compilation: " + ", ".join(f"{k} {v:.1f} s" for k, v in out.items()), flush=True)
    return out


def text_rows(seeds):
    ds, X, emb = labelled_texts()
    y = ds.labels
    print(f"fortune_dev8: {len(ds)} texts, {len(set(y))} labels, MiniLM, seeds 0..{seeds - 1}", flush=True)
    rows = [summarize("flat KMeans(8)", [flat(X, y, 8, s) for s in range(seeds)])]
    base = rows[0]["top_ari"]
    rows.append(summarize("UMAP + flat KMeans(8)", [umap_flat(X, y, 8, s, "cosine", len(X)) for s in range(seeds)], base))
    for k in (20, 100):  # what the finer levels of a hierarchy compare with
        rows.append(summarize(f"flat KMeans({k})", [flat(X, y, k, s) for s in range(seeds)]))
        rows.append(summarize(f"UMAP + flat KMeans({k})", [umap_flat(X, y, k, s, "cosine", len(X)) for s in range(seeds)]))
    for levels in ((100, 20, 8), (20, 8)):
        for reduce in ("auto", "none"):
            label = f"HERCULES {list(levels)} " + ("defaults (UMAP)" if reduce == "auto" else "--reduce none")
            runs = [hercules(ds, s, emb, level_cluster_counts=levels, reduce_method=reduce) for s in range(seeds)]
            rows.append(summarize(label, runs, base))
    for reduce in ("auto", "none"):
        label = "HERCULES " + ("defaults (UMAP)" if reduce == "auto" else "--reduce none") + " auto-k"
        runs = [hercules(ds, s, emb, level_cluster_counts=None, reduce_method=reduce) for s in range(seeds)]
        rows.append(summarize(label, runs, base))
    rows.append({"umap_seconds": umap_threads(X)})
    return rows


def fit_sample_rows(seeds, samples, data=None, levels=None, full_fit=True):
    """UMAP fitted on a sample and placed by transform (reduce_fit_sample) against a full fit and none:
    does a sample fit keep UMAP's gain? (the question behind reduce_max_items; docs/scaling.md).
    ``data``: (csv, text column, label column), fortune_dev8 by default; ``levels`` default to
    [100, 20, 8] on fortune_dev8, else [200, 40, number of labels]."""
    ds, X, emb = labelled_texts(*data) if data else labelled_texts()
    y = ds.labels
    k = len(set(y))
    levels = tuple(levels) if levels else ((100, 20, 8) if data is None else (200, 40, k))
    name = Path(data[0]).name if data else "fortune_dev8"
    print(f"{name}: {len(ds):,} texts, {k} labels, MiniLM, levels {list(levels)}, seeds 0..{seeds - 1}, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    rows = [summarize(f"flat KMeans({k})", [flat(X, y, k, s) for s in range(seeds)])]
    base = rows[0]["top_ari"]
    for fit in ((0,) if full_fit else ()) + tuple(samples):
        runs = [hercules(ds, s, emb, level_cluster_counts=levels, reduce_method="umap", reduce_fit_sample=fit)
                for s in range(seeds)]
        rows.append(summarize(f"HERCULES {list(levels)} UMAP fitted on {fit or 'all'} of {len(X)}", runs, base))
    runs = [hercules(ds, s, emb, level_cluster_counts=levels, reduce_method="none") for s in range(seeds)]
    rows.append(summarize(f"HERCULES {list(levels)} --reduce none", runs, base))
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    return rows


def digits_pngs(folder: Path):
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(d.images):
        p = folder / f"d{i:04d}.png"
        if not p.exists():
            Image.fromarray((img * 255 / 16).astype(np.uint8)).resize((32, 32), Image.NEAREST).save(p)
        paths.append(str(p))
    return paths, [str(t) for t in d.target]


def other_rows(seeds):
    from sklearn.datasets import load_breast_cancer, load_digits, load_wine

    from hercules_core.clients.image_features import ImageFeatureEmbedder

    rows = []
    for name, loader, levels in (("wine (numeric)", load_wine, (12, 3)), ("breast_cancer (numeric)", load_breast_cancer, (20, 2)),
                                 ("digits (numeric)", load_digits, (50, 10))):
        d = loader()
        raw = np.asarray(d.data, np.float64)
        mean, scale = raw.mean(0), np.where(raw.std(0) > 0, raw.std(0), 1.0)
        X = ((raw - mean) / scale).astype(np.float32)
        y = [str(t) for t in d.target]
        ds = Dataset(ids=[str(i) for i in range(len(X))], modality="numeric", numeric=X, numeric_raw=raw,
                     feature_names=[f"x{j}" for j in range(X.shape[1])], scaler_mean=mean, scaler_scale=scale, labels=y)
        k = levels[-1]
        print(f"{name}: {X.shape[0]} x {X.shape[1]}, {k} labels", flush=True)
        base_row = summarize(f"flat KMeans({k})", [flat(X, y, k, s) for s in range(seeds)])
        rows.append({"set": name, **base_row})
        default = reduction.choose_method(HerculesConfig(), "numeric", *X.shape)[0]
        other = "none" if default == "umap" else "umap"
        for reduce in ("auto", other):
            label = f"HERCULES {list(levels)} " + (f"defaults ({'UMAP' if default == 'umap' else 'no UMAP'})"
                                                   if reduce == "auto" else f"--reduce {other}")
            runs = [hercules(ds, s, level_cluster_counts=levels, reduce_method=reduce) for s in range(seeds)]
            rows.append({"set": name, **summarize(label, runs, base_row["top_ari"])})
        runs = [hercules(ds, s, level_cluster_counts=None) for s in range(seeds)]
        rows.append({"set": name, **summarize("HERCULES defaults auto-k", runs, base_row["top_ari"])})
    paths, y = digits_pngs(RESULTS / "digits_png")
    emb = ImageFeatureEmbedder(show_progress=False)
    X = np.asarray(emb.embed_images(paths), np.float32)
    print(f"digits (PNG images, image-features): {len(paths)} images, 10 labels", flush=True)
    ds = Dataset(ids=[Path(p).stem for p in paths], modality="image", image_paths=paths, labels=y)

    class Precomputed:  # the features computed above, looked up by path (embedding is not measured here)
        model_id = emb.model_id
        table = {p: i for i, p in enumerate(paths)}

        def embed_images(self, ps):
            return X[[self.table[p] for p in ps]]

    base_row = summarize("flat KMeans(10)", [flat(X, y, 10, s) for s in range(seeds)])
    rows.append({"set": "digits (images)", **base_row})
    for reduce in ("auto", "none"):
        label = "HERCULES [50, 10] " + ("defaults (UMAP)" if reduce == "auto" else "--reduce none")
        runs = [hercules(ds, s, image_embedder=Precomputed(), level_cluster_counts=(50, 10), reduce_method=reduce)
                for s in range(seeds)]
        rows.append({"set": "digits (images)", **summarize(label, runs, base_row["top_ari"])})
    runs = [hercules(ds, s, image_embedder=Precomputed(), level_cluster_counts=None) for s in range(seeds)]
    rows.append({"set": "digits (images)", **summarize("HERCULES defaults auto-k", runs, base_row["top_ari"])})
    return rows


def cli_rows():
    """Whole CLI runs on fortune_dev8 (keyword titles, no LLM): cold cache, then warm, per setting."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for reduce in ("none", "auto"):
            cache = Path(tmp) / f"cache-{reduce}"
            times = []
            for attempt in ("cold", "warm", "warm"):
                cmd = [sys.executable, "-m", "hercules_core", "run", str(FORTUNE), "--out", str(Path(tmp) / reduce),
                       "--text-column", "text", "--labels-column", "label", "--levels", "100,20,8",
                       "--llm", "keywords", "--quiet", "--cache-dir", str(cache), "--reduce", reduce]
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
                times.append(time.perf_counter() - t)
            out[reduce] = {"cold": times[0], "warm": min(times[1:])}
            print(f"  CLI --reduce {reduce}: cold {times[0]:.1f} s, warm {min(times[1:]):.1f} s", flush=True)
    print(f"  warm CLI time, default / --reduce none = {out['auto']['warm'] / out['none']['warm']:.2f}x", flush=True)
    return out


def closing_lines(report):
    """Per data set, the default settings' top ARI against flat k-means beside the assign self-agreement
    (targets: >= 1.05x on fortune_dev8, >= 99% self-agreement everywhere)."""
    rows = [{"set": "fortune_dev8 (texts)", **r} for r in report.get("fortune", [])] + report.get("other", [])
    rows = [r for r in rows if "defaults" in r.get("name", "") and "self_agreement" in r]
    if not rows:
        return
    print("Defaults: top ARI vs flat k-means | assign self-agreement (mean, lowest seed)", flush=True)
    for r in rows:
        print(f"  {r['set']:<26} {r['name']:<36} {r['ratio']:.2f}x flat | "
              f"{r['self_agreement']:.2%} (min {r['self_agreement_min']:.2%})", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--cli", action="store_true", help="also time whole CLI runs (cold and warm cache)")
    p.add_argument("--skip-other", action="store_true", help="fortune_dev8 only")
    p.add_argument("--fit-samples", default="", help="only: UMAP fitted on these sample sizes of fortune_dev8 "
                                                       "(e.g. 600,300,120) against a full fit and none")
    p.add_argument("--data", help="with --fit-samples: a labelled text CSV instead of fortune_dev8 "
                                  "(e.g. from bench/docstring_corpus.py)")
    p.add_argument("--text-column", default="text")
    p.add_argument("--label-column", default="label")
    p.add_argument("--levels", help="with --fit-samples: e.g. 200,40,34 (default [100, 20, 8] on fortune_dev8, "
                                    "[200, 40, number of labels] on --data)")
    p.add_argument("--no-full-fit", action="store_true", help="with --fit-samples: leave out the fit on all items")
    args = p.parse_args()
    if args.fit_samples:
        data = (args.data, args.text_column, args.label_column) if args.data else None
        rows = fit_sample_rows(args.seeds, [int(x) for x in args.fit_samples.split(",")], data,
                               [int(x) for x in args.levels.split(",")] if args.levels else None, not args.no_full_fit)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = "quality_bench_fit_sample.json" if data is None else f"quality_bench_fit_sample_{Path(args.data).stem}.json"
        (RESULTS / out).write_text(json.dumps(rows, indent=2))
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    report = {}
    if FORTUNE.exists():
        report["fortune"] = text_rows(args.seeds)
    else:
        print(f"fortune_dev8 skipped: {FORTUNE} not found")
    if not args.skip_other:
        report["other"] = other_rows(args.seeds)
    if args.cli and FORTUNE.exists():
        report["cli"] = cli_rows()
    closing_lines(report)
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    (RESULTS / "quality_bench.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
