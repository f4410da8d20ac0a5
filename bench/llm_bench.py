"""LLM summarisation benchmark against the scripted OpenAI-compatible stub server (no real model).

(a) wall time to summarise 200 clusters with the default configuration (4 batches in flight, 8
    clusters per prompt) as a ratio to sequential calls (1 in flight, 1 cluster per prompt), the
    stub answering every request after 200 ms; target >= 4x faster.
(b) number of requests vs the batch arithmetic: ceil(200 / 8) = 25 expected.
(c) warm_cache_ratio(): cold vs warm run time through ``hercules_core.cache.CachedLLM``
    ("skipped: no cache yet" when the cache module does not exist).

Every request goes through the real client (``OpenAICompatLLM``, HTTP on 127.0.0.1).

Usage: .venv/bin/python bench/llm_bench.py [--clusters 200] [--latency 0.2] [--skip-sequential]
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hercules_core.clients.openai_compat import OpenAICompatLLM  # noqa: E402
from hercules_core.config import HerculesConfig  # noqa: E402
from hercules_core.summarize import LLMSummarizer  # noqa: E402
from hercules_core.summarize_types import Summary, SummaryRequest  # noqa: E402
from devkit.openai_stub_server import StubServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MODEL = "stub-model"
TOPICS = ["cats dogs pets", "stocks bonds market", "rain snow weather", "football goals league", "bread flour oven"]


class KeywordStandIn:
    """The fallback summariser (never needed when the stub answers everything)."""

    model_id = "keywords"

    def summarize(self, requests, *, level_requests=None):
        return {r.key: Summary(title=r.key, description="fallback", source="keywords") for r in requests}


def make_requests(n: int) -> list[SummaryRequest]:
    rng = np.random.default_rng(0)
    out = []
    for j in range(n):
        topic = TOPICS[j % len(TOPICS)]
        samples = [(f"id{j}_{s}", f"Item {j}.{s} about {topic}; extra words {int(rng.integers(1000))}.")
                   for s in range(5)]
        out.append(SummaryRequest(key=f"L1_{j}", level=1, n_items=20, modality="text",
                                  member_indices=np.arange(j * 20, j * 20 + 20), samples=samples))
    return out


def run(requests: list[SummaryRequest], latency: float, llm_wrapper=None, **config) -> dict:
    """Summarise ``requests`` once against a fresh stub; wall seconds, requests sent, fallbacks."""
    cfg = HerculesConfig(**config)
    with StubServer(latency=latency) as stub:
        llm = OpenAICompatLLM(stub.base_url, MODEL)
        if llm_wrapper is not None:
            llm = llm_wrapper(llm)
        t0 = time.perf_counter()
        out = LLMSummarizer(llm, cfg, fallback=KeywordStandIn()).summarize(requests)
        seconds = time.perf_counter() - t0
    fallbacks = sum(s.fallback for s in out.values())
    return {"seconds": seconds, "requests": len(stub.requests), "fallbacks": fallbacks,
            "concurrency": cfg.llm_concurrency, "batch_size": cfg.llm_initial_batch_size}


def warm_cache_ratio(requests: list[SummaryRequest] | None = None, latency: float = 0.2) -> dict | None:
    """Cold vs warm run time through the answer cache (``hercules_core.cache.CachedLLM``).

    Prints "skipped: no cache yet" and returns None while ``hercules_core.cache`` does not exist.
    """
    if importlib.util.find_spec("hercules_core.cache") is None:
        print("(c) warm cache: skipped: no cache yet")
        return None
    from hercules_core import cache as cache_mod

    requests = requests if requests is not None else make_requests(200)
    with tempfile.TemporaryDirectory(prefix="hercules-llm-bench-") as tmp:
        # CachedLLM(llm, cache: Cache) today; a directory if the second parameter asks for one
        params = list(inspect.signature(cache_mod.CachedLLM).parameters)
        wants_dir = len(params) > 1 and params[1] in ("cache_dir", "directory") or not hasattr(cache_mod, "Cache")
        store = tmp if wants_dir else cache_mod.Cache(tmp)

        def wrap(llm):
            return cache_mod.CachedLLM(llm, store)

        try:
            cold = run(requests, latency, wrap)
            warm = run(requests, latency, wrap)
        finally:
            close = getattr(store, "close", None)
            if callable(close):
                close()
    ratio = cold["seconds"] / max(warm["seconds"], 1e-9)
    print(f"(c) warm cache: cold {cold['seconds']:.2f} s ({cold['requests']} requests) / warm "
          f"{warm['seconds']:.3f} s ({warm['requests']} requests) = {ratio:.1f}x faster")
    return {"cold": cold, "warm": warm, "ratio": ratio}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds the stub waits before every answer")
    ap.add_argument("--skip-sequential", action="store_true", help="leave out the slow sequential baseline")
    ap.add_argument("--repeats", type=int, default=3, help="default-config runs; the median is reported")
    args = ap.parse_args(argv)

    requests = make_requests(args.clusters)
    defaults = HerculesConfig()
    report: dict = {"clusters": args.clusters, "latency_s": args.latency}
    print(f"LLM bench: {args.clusters} clusters, stub latency {args.latency * 1000:.0f} ms per request")
    run(requests[:2], 0.0)  # warm-up: lazy imports and first connection are not part of any figure

    runs = sorted((run(requests, args.latency) for _ in range(max(1, args.repeats))), key=lambda r: r["seconds"])
    default = runs[len(runs) // 2]  # the median run (the machine may be shared)
    report["default"] = default
    report["default_seconds_all"] = [r["seconds"] for r in runs]
    expected = math.ceil(args.clusters / defaults.llm_initial_batch_size)
    report["expected_requests"] = expected
    print(f"(a) default config (concurrency {default['concurrency']}, batch {default['batch_size']}): "
          f"{default['seconds']:.2f} s (median of {len(runs)}), {default['fallbacks']} fallbacks")
    print(f"(b) requests: {default['requests']} sent, ceil({args.clusters}/{defaults.llm_initial_batch_size}) = "
          f"{expected} expected")
    if not args.skip_sequential:
        seq = run(requests, args.latency, llm_concurrency=1, llm_initial_batch_size=1, llm_min_batch_size=1)
        report["sequential"] = seq
        report["speedup"] = seq["seconds"] / default["seconds"]
        print(f"(a) sequential (concurrency 1, batch 1): {seq['seconds']:.2f} s, {seq['requests']} requests")
        print(f"(a) speed-up: {report['speedup']:.1f}x (target >= 4x)")
    report["warm_cache"] = warm_cache_ratio(requests, args.latency)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "llm_bench.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
