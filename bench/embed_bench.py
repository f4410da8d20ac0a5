"""Text embeddings through an OpenAI-compatible server: batches at once, and the per-batch cache.

100,000 short texts against the scripted stub server (``devkit/openai_stub_server.py``, HTTP on
127.0.0.1) answering every request after 50 ms, through the real client (``OpenAICompatEmbedder``,
128 texts per request) wrapped by the disk cache as a run wraps it:

(a) wall time at concurrency 1, 4 and 8 (a fresh cache each: every batch is sent), and the speed-up
    over concurrency 1 (the stub runs in a process of its own here, as a real server would);
(b) a resumed run: the server fails for good after half the batches; the rerun sends only the
    batches the cache does not hold (requests counted at the stub);
(c) a warm rerun: every batch from the cache, no request.

The stub's vectors have 16 dimensions (its hash gives at most 32); a real server's 384 or 1024 make
each answer larger, not the request count.

Usage: .venv/bin/python bench/embed_bench.py [--texts 100000] [--latency 0.05] [--concurrency 1,4,8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hercules_core.cache import Cache, wrap  # noqa: E402
from hercules_core.clients.openai_compat import OpenAICompatEmbedder  # noqa: E402
from hercules_core.errors import EmbeddingError  # noqa: E402
from devkit.openai_stub_server import StubServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
MODEL = "stub-embed"
WORDS = ["refund", "delivery", "late", "broken", "screen", "battery", "invoice", "password", "login", "order",
         "parcel", "colour", "size", "exchange", "warranty", "charger", "app", "crash", "update", "account"]


def make_texts(n: int) -> list[str]:
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(WORDS), size=(n, 6))
    return [f"ticket {i}: " + " ".join(WORDS[j] for j in row) for i, row in enumerate(picks)]


def embedder(stub: StubServer, concurrency: int) -> OpenAICompatEmbedder:
    emb = OpenAICompatEmbedder(stub.base_url, MODEL, batch_size=128, concurrency=concurrency)
    emb.retry_wait = 0.01
    return emb


def _serve(latency: float, port, stop) -> None:
    with StubServer(models=(MODEL,), latency=latency) as s:
        port.put(s.port)
        stop.wait()


@contextlib.contextmanager
def stub_process(latency: float):
    """The stub in a process of its own: its JSON work does not share the client's interpreter lock
    (as a real server would not); yields its base URL."""
    ctx = mp.get_context("fork")
    port, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_serve, args=(latency, port, stop), daemon=True)
    proc.start()
    try:
        yield f"http://127.0.0.1:{port.get(timeout=30)}/v1"
    finally:
        stop.set()
        proc.join(timeout=10)


def timed_run(texts: list[str], latency: float, concurrency: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp, stub_process(latency) as url:
        cache = Cache(Path(tmp) / "cache")
        cold = OpenAICompatEmbedder(url, MODEL, batch_size=128, concurrency=concurrency)
        t0 = time.perf_counter()
        vecs = wrap(cold, cache).embed(texts)
        seconds = time.perf_counter() - t0
        requests = cold.requests
        warm_client = OpenAICompatEmbedder(url, MODEL, batch_size=128, concurrency=concurrency)
        t0 = time.perf_counter()
        warm = wrap(warm_client, cache).embed(texts)
        warm_seconds = time.perf_counter() - t0
        assert np.array_equal(vecs, warm) and warm_client.requests == 0
        cache.close()
    return {"concurrency": concurrency, "seconds": round(seconds, 2), "requests": requests,
            "texts_per_second": round(len(texts) / seconds), "warm_rerun_seconds": round(warm_seconds, 2),
            "warm_rerun_requests": 0}


def resumed_run(texts: list[str], latency: float, concurrency: int) -> dict:
    n_batches = -(-len(texts) // 128)
    with tempfile.TemporaryDirectory() as tmp, \
            StubServer(script=["ok"] * (n_batches // 2), default="401", models=(MODEL,), latency=latency) as s:
        cache = Cache(Path(tmp) / "cache")
        t0 = time.perf_counter()
        try:
            wrap(embedder(s, concurrency), cache).embed(texts)
            raise AssertionError("the stub should have failed the run")
        except EmbeddingError:
            failed_after = time.perf_counter() - t0
        first = len(s.requests)
        kept = len(cache.keys())
        s.default = "ok"
        t0 = time.perf_counter()
        wrap(embedder(s, concurrency), cache).embed(texts)
        seconds = time.perf_counter() - t0
        resent = len(s.requests) - first
        cache.close()
    return {"concurrency": concurrency, "batches": n_batches, "failed_after_seconds": round(failed_after, 2),
            "batches_kept_by_the_failed_run": kept, "rerun_requests": resent,
            "rerun_sends_only_missing": resent == n_batches - kept, "rerun_seconds": round(seconds, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=100_000)
    ap.add_argument("--latency", type=float, default=0.05, help="seconds the stub waits before every answer")
    ap.add_argument("--concurrency", default="1,4,8", help="comma-separated batches under way at once")
    args = ap.parse_args(argv)
    texts = make_texts(args.texts)
    levels = [int(c) for c in args.concurrency.split(",")]
    runs = []
    for c in levels:
        runs.append(timed_run(texts, args.latency, c))
        print(json.dumps(runs[-1]), flush=True)
    base = runs[0]["seconds"]
    for r in runs:
        r["speedup_vs_first"] = round(base / r["seconds"], 2)
    resume = resumed_run(texts, args.latency, 4)
    print(json.dumps(resume), flush=True)
    report = {"texts": args.texts, "latency_s": args.latency, "batch_size": 128, "runs": runs, "resume": resume}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "embed_bench.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
