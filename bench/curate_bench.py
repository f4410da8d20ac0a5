"""Curation speed, re-titling calls and replay (issue 20; the figures go into docs/benchmarks.md).

A 20,000-item text run (synthetic: 40 topics, own 64-d vectors, levels [200, 40, 8], keyword titles)
is fitted once per seed and saved; then every edit goes through ``curate.edit_model`` as the app
does it: lock, load the model, edit, save it (and, like the app, memberships.csv and hierarchy.txt in
``on_saved``). Reported per edit type: the median server time of ``--repeats`` edits (each undone
after, so every repeat edits the same model) split into the edit itself and the whole locked
read-modify-write; then the LLM calls of re-titling each edit (``curate.resummarize`` with the run's
LLM summariser over a counting fake LLM: only the touched clusters and their ancestors are asked)
and the estimate ``curate.retitle_cost`` shows before; finally a log of 10 edits made on seed 0 is
replayed onto seed 1: how many apply, and the agreement (``curate.compare``) of the result with the
curated original, next to the agreement of the two uncurated runs.

Usage: .venv/bin/python bench/curate_bench.py [--items 20000] [--repeats 5] [--columnar] [--dim 64] [--no-replay]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hercules_core import Hercules, HerculesConfig, curate, io  # noqa: E402
from hercules_core.clients.fakes import FakeLLM  # noqa: E402
from hercules_core.dataset import Dataset  # noqa: E402
from hercules_core.keywords import KeywordSummarizer  # noqa: E402
from hercules_core.summarize import LLMSummarizer  # noqa: E402


def dataset(n: int, topics: int = 40, dim: int = 64, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(2000)]
    words = [rng.choice(vocab, size=12, replace=False) for _ in range(topics)]
    centres = rng.normal(size=(topics, dim))
    t = rng.integers(topics, size=n)
    sub = rng.normal(size=(topics, 5, dim)) * 0.5  # sub-topics inside each topic
    s = rng.integers(5, size=n)
    X = centres[t] + sub[t, s] + rng.normal(size=(n, dim)) * 0.6
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    texts = [" ".join(rng.choice(words[a], size=6)) + f" item {i} sub {b}" for i, (a, b) in enumerate(zip(t, s))]
    return Dataset(ids=[f"i{i}" for i in range(n)], modality="text", texts=texts, embeddings=X,
                   labels=[f"t{a}" for a in t], source="synthetic")


def fit(ds: Dataset, seed: int):
    cfg = HerculesConfig(level_cluster_counts=(200, 40, 8), random_state=seed, reduce_method="none")
    t = time.perf_counter()
    h = Hercules(cfg).fit(ds).hierarchy_
    return h, time.perf_counter() - t


def ops_for(h, i: int):
    """The i-th instance of each edit type on ``h`` (different clusters for different repeats)."""
    l1, l2 = h.levels[1], h.levels[2]
    by_size = sorted(range(len(l1)), key=lambda j: -int(l1.size[j]))
    j = by_size[i % 20]
    sib = [s for s in np.flatnonzero(l1.parent == l1.parent[j]) if s != j]
    other_parent = next(p for p in l2.ids if p != l2.ids[l1.parent[j]])
    return {
        "merge L1": ("merge", {"ids": [l1.ids[j], l1.ids[sib[0] if sib else by_size[-1 - i]]]}),
        "merge L2": ("merge", {"ids": [l2.ids[i % len(l2)], l2.ids[(i + 7) % len(l2)]]}),
        "split L1 (k=3)": ("split", {"id": l1.ids[j], "k": 3}),
        "split L2 (k=2)": ("split", {"id": max(l2.ids, key=lambda c: len(h.children_of(2, l2.ids.index(c)))), "k": 2}),
        "move L1": ("move", {"id": l1.ids[j], "parent": other_parent}),
        "dissolve L1": ("dissolve", {"id": l1.ids[j if sib else by_size[1]]}),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--columnar", action="store_true", help="save the model with its items file (as above 20,000)")
    ap.add_argument("--dim", type=int, default=64, help="dimensions of the item vectors (384: MiniLM's)")
    ap.add_argument("--no-replay", action="store_true", help="only the edit timings")
    args = ap.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} (1, 5 min); {os.cpu_count()} CPUs")
    ds = dataset(args.items, dim=args.dim)
    h0, t0 = fit(ds, 0)
    print(f"fit seed 0: {t0:.1f} s, clusters {[len(lv) for lv in h0.levels[1:]]}")
    tmp = Path(tempfile.mkdtemp(prefix="curate_bench_"))
    path = tmp / "model.json"
    items = "columnar" if args.columnar else "auto"
    io.save_model(h0, path, items=items)
    size = sum(f.stat().st_size for f in tmp.iterdir())
    print(f"model: {size / 1e6:.1f} MB ({'columnar' if io.load_model(path) and args.columnar else 'inline'})")

    def on_saved(g):
        io.save_memberships(g, tmp / "memberships.csv")
        io.save_hierarchy_text(g, tmp / "hierarchy.txt")

    print("\nedit: the edit itself; edit_model: lock, load, edit, save, memberships.csv + hierarchy.txt (of which "
          "load / save / files, measured apart); undo: the same for undo")
    print(f"{'edit':<16} {'edit ms':>8} {'edit_model ms':>14} {'load':>5} {'save':>5} {'files':>5} {'undo ms':>8} "
          f"{'items moved L1':>15} {'re-titled':>9} {'LLM calls':>9} {'estimate':>8}")
    rows = {}
    for i in range(args.repeats):
        for name, (op, a) in ops_for(io.load_model(path), i).items():
            t = time.perf_counter()
            h = io.load_model(path, verify=False)
            t_load = time.perf_counter() - t
            t = time.perf_counter()
            try:
                change = curate.apply_op(h, op, a)
            except curate.InputError as e:  # pragma: no cover - a choice that is not valid on this run
                print(f"{name}: {e}")
                continue
            pure = time.perf_counter() - t
            t = time.perf_counter()
            io.save_model(change.hierarchy, tmp / "scratch.json", items="columnar" if args.columnar else "inline")
            t_save = time.perf_counter() - t
            t = time.perf_counter()
            on_saved(change.hierarchy)
            t_files = time.perf_counter() - t
            t = time.perf_counter()
            change = curate.edit_model(path, op, a, on_saved=on_saved)
            whole = time.perf_counter() - t
            t = time.perf_counter()
            curate.edit_model(path, "undo", {}, on_saved=on_saved)
            und = time.perf_counter() - t
            r = rows.setdefault(name, {"pure": [], "whole": [], "undo": [], "moved": [], "retitle": [], "calls": [],
                                       "estimate": [], "load": [], "save": [], "files": []})
            r["load"].append(t_load)
            r["save"].append(t_save)
            r["files"].append(t_files)
            r["pure"].append(pure)
            r["whole"].append(whole)
            r["undo"].append(und)
            r["moved"].append(change.entry["effect"]["items_moved"].get("1", 0))
            if i == 0:  # re-titling once per edit type: the LLM calls of the run's summariser
                g = change.hierarchy
                ids = curate.to_retitle(g, change.entry)
                llm = FakeLLM()  # counts its calls
                summ = LLMSummarizer(llm, g.config, fallback=KeywordSummarizer(g.dataset, g.dataset.texts,
                                                                               config=g.config))
                curate.resummarize(g, ids, summ)
                r["retitle"].append(len(ids))
                r["calls"].append(llm.calls)
                r["estimate"].append(curate.retitle_cost(g, ids, llm_id="fake")["llm_calls"])
    for name, r in rows.items():
        med = lambda xs: statistics.median(xs) * 1000  # noqa: E731
        print(f"{name:<16} {med(r['pure']):>8.0f} {med(r['whole']):>14.0f} {med(r['load']):>5.0f} {med(r['save']):>5.0f} "
              f"{med(r['files']):>5.0f} {med(r['undo']):>8.0f} "
              f"{int(statistics.median(r['moved'])):>15} {r['retitle'][0]:>9} {r['calls'][0]:>9} {r['estimate'][0]:>8}")

    if args.no_replay:
        shutil.rmtree(tmp)
        return
    # replay: 10 edits on seed 0, replayed onto seed 1
    h = io.load_model(path)
    l1 = h.levels[1]
    order = sorted(range(len(l1)), key=lambda j: -int(l1.size[j]))
    log_ops = []
    g = h
    for i in range(10):
        kind = ["merge", "split", "move", "dissolve", "retitle"][i % 5]
        ids1 = g.levels[1].ids
        j = ids1.index(l1.ids[order[3 * i]]) if l1.ids[order[3 * i]] in ids1 else 0
        cid = ids1[j]
        if kind == "merge":
            sib = [s for s in np.flatnonzero(g.levels[1].parent == g.levels[1].parent[j]) if s != j]
            c = curate.merge(g, [cid, ids1[sib[0]]]) if sib else None
        elif kind == "split":
            c = curate.split(g, cid, 2)
        elif kind == "move":
            p = g.cluster(cid).parent.id
            c = curate.move(g, cid, next(x for x in g.levels[2].ids if x != p))
        elif kind == "dissolve":
            c = curate.dissolve(g, cid)
        else:
            from hercules_core.edits import apply_edit
            g = curate._copy(g)
            apply_edit(g, cid, f"Curated title {i}", "Written by hand.")
            c = None
            log_ops.append(kind)
            continue
        if c is not None:
            g = c.hierarchy
            log_ops.append(kind)
    curated = g
    h1, t1 = fit(ds, 1)
    t = time.perf_counter()
    replayed, report = curate.replay(curated, h1)
    t_replay = time.perf_counter() - t
    print(f"\nreplay: {len(curated.edit_log)} edits ({', '.join(log_ops)}) made on seed 0, replayed onto seed 1 "
          f"(fit {t1:.1f} s) in {t_replay:.2f} s: {report['applied']} applied, {report['skipped']} not")
    for r in report["results"]:
        if r["status"] != "applied":
            print(f"  not applied: {r['op']} {r['args'] if r['op'] != 'retitle' else r['args']['id']}: {r['reason']}")
    base = curate.compare(h0, h1)
    cur = curate.compare(curated, replayed)
    origin = curate.compare(curated, curate.replay(curated, h0)[0])
    print(f"{'level':>5} {'seed0 vs seed1':>15} {'curated vs replayed':>20} {'replay on origin':>17}   (weighted Jaccard / ARI)")
    for a, b, c in zip(base["levels"], cur["levels"], origin["levels"]):
        print(f"{a['level']:>5} {a['weighted_jaccard']:>8.3f}/{a['ari']:.3f} {b['weighted_jaccard']:>12.3f}/{b['ari']:.3f} "
              f"{c['weighted_jaccard']:>10.3f}/{c['ari']:.3f}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
