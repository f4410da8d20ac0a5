"""Core benchmarks, measured side by side in one run (numbers go into docs/benchmarks.md).

(a) time of a full HERCULES run (all levels, PCA, evaluation, fake LLM) as a ratio to ONE flat
    scikit-learn KMeans at the finest k on the same data:
      - 5,000 x 8 numeric, levels [20, 5]
      - 200,000 x 384 clustered unit vectors, levels [1000, 100, 10]   (--skip-large to leave out)
(b) peak memory (max RSS) of the 200k run and of the flat baseline, each in its own process.
(c) top-level ARI as a ratio to flat k-means with the same k on fortune_dev8 with MiniLM
    embeddings, levels [100, 20, 8] and [40, 8], mean over seeds; weighted vs unweighted.
(d) the stability step (hercules_core/stability.py) of each run, as a share of its clustering
    time (the "clustering level *" stages); target <= 30%.

Usage: .venv/bin/python bench/core_bench.py [--skip-large] [--seeds 6]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hercules_core.clients.fakes import FakeEmbedder, FakeLLM  # noqa: E402
from hercules_core.config import HerculesConfig  # noqa: E402
from hercules_core.dataset import Dataset  # noqa: E402
from hercules_core.hercules import Hercules  # noqa: E402

RESULTS = ROOT / "bench" / "results"
FORTUNE = ROOT.parent / "shared" / "data" / "fortune_dev8.csv"


class LookupEmbedder:
    """Returns precomputed vectors for known texts, and asks ``fallback`` for the others."""

    def __init__(self, texts, vectors, fallback, model_id="precomputed"):
        self.table = {t: i for i, t in enumerate(texts)}
        self.vectors = vectors
        self.fallback = fallback
        self.model_id = model_id

    def embed(self, texts):
        idx = [self.table.get(t, -1) for t in texts]
        if all(i >= 0 for i in idx):
            return self.vectors[idx]
        return np.asarray(self.fallback.embed(list(texts)), dtype=np.float32)


def numeric_data(n=5000, p=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, p)) * 4
    raw = centers[rng.integers(0, 20, n)] + rng.normal(size=(n, p)) + 50
    mean, scale = raw.mean(0), raw.std(0)
    return Dataset(ids=[str(i) for i in range(n)], modality="numeric", numeric=((raw - mean) / scale).astype(np.float32),
                   numeric_raw=raw, feature_names=[f"x{j}" for j in range(p)], scaler_mean=mean, scaler_scale=scale)


def embedding_data(n=200_000, d=384, n_topics=300, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_topics, d)).astype(np.float32)
    X = centers[rng.integers(0, n_topics, n)] * 0.35 + rng.normal(size=(n, d)).astype(np.float32) / np.sqrt(d) * 3
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32)


def flat_kmeans_seconds(X, k, seed=0):
    from sklearn.cluster import KMeans

    t = time.perf_counter()
    KMeans(n_clusters=k, random_state=seed).fit(X)
    return time.perf_counter() - t


def hercules_seconds(case: str, seed=0):
    if case == "numeric":
        ds = numeric_data()
        cfg = HerculesConfig(level_cluster_counts=(20, 5), random_state=seed)
        model = Hercules(cfg, text_embedder=FakeEmbedder(64), llm=FakeLLM())
    else:
        X = embedding_data()
        texts = [f"item {i}" for i in range(len(X))]
        ds = Dataset(ids=[str(i) for i in range(len(X))], modality="text", texts=texts)
        cfg = HerculesConfig(level_cluster_counts=(1000, 100, 10), random_state=seed)
        model = Hercules(cfg, text_embedder=LookupEmbedder(texts, X, FakeEmbedder(384)), llm=FakeLLM())
    t = time.perf_counter()
    model.fit(ds)
    return time.perf_counter() - t, model.timings_


def child(args):
    """Run one measurement in this process and print JSON (so max RSS is this measurement's)."""
    if args.child_what == "flat":
        X = numeric_data().numeric if args.child_case == "numeric" else embedding_data()
        k = 20 if args.child_case == "numeric" else 1000
        secs, timings = flat_kmeans_seconds(X, k), {}
    else:
        secs, timings = hercules_seconds(args.child_case)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": secs, "max_rss_mb": rss_mb, "timings": timings}))


def measure(case, what):
    out = subprocess.run([sys.executable, __file__, "--child-case", case, "--child-what", what],
                         capture_output=True, text=True, check=True, env={**os.environ, "TQDM_DISABLE": "1"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def fortune_ari(seeds: int):
    import pandas as pd
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    from hercules_core.clients.sentence_transformer import minilm

    df = pd.read_csv(FORTUNE)
    texts = df.text.astype(str).tolist()
    cache = RESULTS / "fortune_minilm.npy"
    emb = minilm(show_progress=False)
    if cache.exists():
        X = np.load(cache)
    else:
        X = emb.embed(texts)
        np.save(cache, X)
    ds = Dataset(ids=df.id.astype(str).tolist(), modality="text", texts=texts, labels=df.label.astype(str).tolist())
    lookup = LookupEmbedder(texts, X, FakeEmbedder(384))
    flat = {8: np.mean([adjusted_rand_score(ds.labels, KMeans(8, random_state=s).fit(X).labels_) for s in range(seeds)])}
    rows = []
    for levels in [(100, 20, 8), (40, 8)]:
        for weighted in (True, False):
            aris = []
            for s in range(seeds):
                cfg = HerculesConfig(level_cluster_counts=levels, random_state=s, weight_by_size=weighted)
                h = Hercules(cfg, text_embedder=lookup).fit(ds).hierarchy_
                aris.append(h.evaluation[h.top_level]["adjusted_rand_score"])
            rows.append({"levels": list(levels), "weighted": weighted, "top_ari": float(np.mean(aris)),
                         "flat_ari": flat[8], "ratio": float(np.mean(aris) / flat[8])})
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--skip-large", action="store_true")
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--child-case")
    p.add_argument("--child-what")
    args = p.parse_args()
    if args.child_case:
        return child(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {}
    cases = ["numeric"] + ([] if args.skip_large else ["large"])
    for case in cases:
        flat = measure(case, "flat")
        herc = measure(case, "hercules")
        t = herc["timings"]
        clustering = sum(v for k, v in t.items() if k.startswith("clustering level"))
        stab = t.get("stability", 0.0)
        report[case] = {"flat_seconds": flat["seconds"], "hercules_seconds": herc["seconds"],
                        "clustering_seconds": clustering, "stability_seconds": stab,
                        "stability_ratio": stab / clustering if clustering else None,
                        "ratio": herc["seconds"] / flat["seconds"], "flat_max_rss_mb": flat["max_rss_mb"],
                        "hercules_max_rss_mb": herc["max_rss_mb"], "hercules_timings": herc["timings"]}
        print(f"(a) {case}: hercules {herc['seconds']:.2f} s / flat KMeans {flat['seconds']:.2f} s "
              f"= {report[case]['ratio']:.2f}x   (b) max RSS hercules {herc['max_rss_mb']:.0f} MB, "
              f"flat {flat['max_rss_mb']:.0f} MB   (d) stability {stab:.2f} s / clustering {clustering:.2f} s "
              f"= {report[case]['stability_ratio']:.0%}", flush=True)
    if FORTUNE.exists():
        report["fortune"] = fortune_ari(args.seeds)
        for row in report["fortune"]:
            print(f"(c) fortune_dev8 MiniLM levels {row['levels']} weighted={row['weighted']}: top ARI "
                  f"{row['top_ari']:.3f} / flat k=8 {row['flat_ari']:.3f} = {row['ratio']:.2f}x "
                  f"(mean of {args.seeds} seeds)", flush=True)
    else:
        print(f"(c) skipped: {FORTUNE} not found")
    (RESULTS / "core_bench.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
