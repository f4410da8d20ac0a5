"""Text embeddings through an OpenAI-compatible server at scale (issue 18 item 6): batches under way
at once, each kept by the disk cache as it arrives, so a run that fails half-way resumes with only
the batches it had not finished; progress per batch; no secret in the cache or the logs.

Every test talks HTTP to ``devkit.openai_stub_server`` on 127.0.0.1."""

import logging
import time
from pathlib import Path

import numpy as np
import pytest

import model_registry as registry
from hercules_core import Hercules, HerculesConfig
from hercules_core.cache import Cache, CachedBatchedEmbedder, wrap
from hercules_core.clients.base import BatchedEmbedder
from hercules_core.clients.openai_compat import OpenAICompatEmbedder, public_url
from hercules_core.errors import Cancelled, EmbeddingError
from devkit.factories import make_text_dataset
from devkit.openai_stub_server import StubServer

KEY = "sk-embed-secret-0123456789"
TEXTS = [f"support ticket {i} about topic {i % 7}" for i in range(40)]


def _embedder(stub: StubServer, **kw) -> OpenAICompatEmbedder:
    kw.setdefault("batch_size", 4)
    emb = OpenAICompatEmbedder(stub.base_url, "emb", KEY, **kw)
    emb.retry_wait = 0.01
    return emb


def test_batches_overlap_and_keep_their_order():
    """8 batches against a server answering in 0.25 s: one at a time takes >= 2 s, four at a time
    about a quarter of that; the vectors are the same, in the texts' order."""
    texts = TEXTS[:32]
    with StubServer(models=("emb",), api_key=KEY, latency=0.25) as s:
        t0 = time.monotonic()
        one = _embedder(s, concurrency=1).embed(texts)
        serial = time.monotonic() - t0
        t0 = time.monotonic()
        four = _embedder(s, concurrency=4).embed(texts)
        parallel = time.monotonic() - t0
        singles = np.vstack([_embedder(s, concurrency=1).embed([t]) for t in texts[:5]])
    assert serial >= 8 * 0.25
    assert parallel < serial / 2.5, (serial, parallel)
    assert one.shape == four.shape == (32, 16)
    assert np.array_equal(one, four)
    assert np.allclose(four[:5], singles, atol=1e-6)  # row i is text i's vector


def test_a_failed_run_resumes_with_only_the_missing_batches(tmp_path):
    """The server fails for good after a few batches; the rerun against the same server (now well)
    sends only the batches the cache does not hold, and returns what an uncached run returns."""
    cache = Cache(tmp_path / "cache")
    n_batches = len(TEXTS) // 4
    with StubServer(script=["ok"] * 4, default="401", models=("emb",), api_key=KEY) as s:
        emb = wrap(_embedder(s, concurrency=2), cache)
        assert isinstance(emb, CachedBatchedEmbedder) and isinstance(emb, BatchedEmbedder)
        with pytest.raises(EmbeddingError):
            emb.embed(TEXTS)
        kept = len(cache.keys())
        assert 4 <= kept < n_batches  # every batch answered before the failure is kept
        before = len(s.requests)

        s.default = "ok"
        again = wrap(_embedder(s, concurrency=2), cache)
        vecs = again.embed(TEXTS)
        resumed = len(s.requests) - before
        reference = _embedder(s, concurrency=1).embed(TEXTS)
    assert resumed == n_batches - kept
    assert np.array_equal(vecs, reference)
    stats = cache.stats()["by_kind"]["emb"]
    assert stats["hits"] == 4 * kept  # counted in texts, as the cost report expects
    assert len(cache.keys()) == n_batches

    # a third run is answered by the cache alone
    with StubServer(models=("emb",), api_key=KEY) as other:
        # another server is another endpoint: nothing is shared with it
        wrap(_embedder(other), cache).embed(TEXTS[:4])
        assert len(other.requests) == 1


def test_warm_rerun_sends_nothing(tmp_path):
    cache = Cache(tmp_path / "cache")
    with StubServer(models=("emb",), api_key=KEY) as s:
        first = wrap(_embedder(s), cache).embed(TEXTS)
        sent = len(s.requests)
        second = wrap(_embedder(s), cache).embed(TEXTS)
        assert len(s.requests) == sent == len(TEXTS) // 4
    assert np.array_equal(first, second)


def test_progress_per_batch_through_the_estimator(tmp_path):
    """The estimator's progress callback hears of each batch of the item embedding."""
    ds = make_text_dataset(24)
    events = []
    with StubServer(models=("emb",), api_key=KEY) as s:
        emb = wrap(_embedder(s, batch_size=5, concurrency=3), Cache(tmp_path / "cache"))
        Hercules(HerculesConfig(level_cluster_counts=[3]), text_embedder=emb,
                 progress=lambda stage, done, total: events.append((stage, done, total))).fit(ds)
    items = [(d, t) for st, d, t in events if st == "embedding items"]
    n = len(ds)
    assert items[0] == (0, n) and items[-1] == (n, n)
    steps = [d for d, _ in items[1:-1]]
    assert len(steps) == -(-n // 5) and steps == sorted(steps)  # one report per batch, growing


def test_a_cancel_between_batches_stops_sending():
    with StubServer(models=("emb",), api_key=KEY, latency=0.05) as s:
        emb = _embedder(s, concurrency=1)
        calls = []

        def progress(done, total):
            calls.append(done)
            if len(calls) == 2:
                raise Cancelled("The run was cancelled.")

        with pytest.raises(Cancelled):
            emb.embed_batched(TEXTS, progress=progress)
        time.sleep(0.2)
        # two answered, at most the one under way at the cancel ended; nothing sent after it
        assert len(s.requests) <= 3 < len(TEXTS) // 4


def test_no_secret_in_the_cache_or_the_logs(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    cache = Cache(tmp_path / "cache")
    with StubServer(script=["ok", "500", "ok"], models=("emb",), api_key=KEY) as s:
        emb = wrap(_embedder(s, concurrency=1), cache)
        emb.embed(TEXTS[:8])
        assert KEY not in repr(emb) and KEY not in emb.endpoint
    assert all(KEY not in repr(k) for k in cache.keys())
    cache.close()
    for f in Path(tmp_path / "cache").rglob("*"):
        if f.is_file():
            assert KEY.encode() not in f.read_bytes(), f
    assert KEY not in caplog.text


def test_endpoint_identity_has_no_credentials():
    assert public_url("https://user:pw@Example.com:8443/v1/?api_key=x#f") == "https://example.com:8443/v1"
    assert public_url("http://127.0.0.1:8080/v1") == "http://127.0.0.1:8080/v1"


def test_registry_settings(monkeypatch):
    monkeypatch.setenv("HERCULES_EMBED_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("HERCULES_EMBED_MODEL", "emb")
    monkeypatch.setenv("HERCULES_EMBED_CONCURRENCY", "8")
    monkeypatch.setenv("HERCULES_EMBED_BATCH_SIZE", "64")
    emb = registry.get_text_embedder("openai")
    assert emb.concurrency == 8 and emb.batch_size == 64
    monkeypatch.delenv("HERCULES_EMBED_CONCURRENCY")
    assert registry.get_text_embedder("openai").concurrency == 4
    monkeypatch.setenv("HERCULES_EMBED_CONCURRENCY", "many")
    with pytest.raises(Exception, match="HERCULES_EMBED_CONCURRENCY must be a positive number"):
        registry.get_text_embedder("openai")


def test_the_cache_size_is_a_setting(tmp_path, monkeypatch):
    """1,000,000 texts at 384 dimensions are 1.5 GB of vectors: more than the default 1 GB, which
    would evict the first batches of a long run; HERCULES_CACHE_SIZE_GB makes room."""
    monkeypatch.delenv("HERCULES_CACHE_SIZE_GB", raising=False)
    assert Cache(tmp_path / "a").size_limit == 2 ** 30
    monkeypatch.setenv("HERCULES_CACHE_SIZE_GB", "4")
    assert Cache(tmp_path / "b").size_limit == 4 * 2 ** 30
    assert Cache(tmp_path / "c", size_limit=123).size_limit == 123


def test_a_failed_cli_run_resumes_through_the_pipeline(tmp_path, monkeypatch):
    """The real door: `run --embedder openai` fails when the server does; run again, only the item
    batches the cache does not hold are sent, and the measured speed counts only those."""
    import json

    from hercules_run import cli

    n, batch = 60, 8
    texts = [f"ticket {i} about {['refunds', 'delivery', 'passwords'][i % 3]} and more" for i in range(n)]
    (tmp_path / "d.csv").write_text("id,text\n" + "".join(f"{i},{t}\n" for i, t in enumerate(texts)))
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HERCULES_EMBED_MODEL", "emb")
    monkeypatch.setenv("HERCULES_EMBED_API_KEY", KEY)
    monkeypatch.setenv("HERCULES_EMBED_BATCH_SIZE", str(batch))
    monkeypatch.setenv("HERCULES_EMBED_CONCURRENCY", "2")
    args = ["run", str(tmp_path / "d.csv"), "--text-column", "text", "--id-column", "id", "--embedder", "openai",
            "--llm", "keywords", "--levels", "3", "--reduce", "none", "--quiet"]
    item_batches = n // batch + 1
    with StubServer(script=["ok"] * 3, default="401", models=("emb",), api_key=KEY) as s:
        monkeypatch.setenv("HERCULES_EMBED_BASE_URL", s.base_url)
        assert cli.main(args + ["--out", str(tmp_path / "a")]) != 0
        first = len(s.requests)
        s.default = "ok"
        assert cli.main(args + ["--out", str(tmp_path / "b")]) == 0
        items = [r for r in s.requests[first:] if set(r["body"]["input"]) <= set(texts)]
    assert 3 <= first < item_batches
    assert len(items) == item_batches - 3  # the three answered before the failure are not sent again
    timings = json.loads((tmp_path / "cache" / "timings.json").read_text())
    assert KEY not in json.dumps(timings)


def test_the_measured_speed_counts_only_what_reached_the_server(tmp_path):
    from hercules_run.timings import Timed

    cache = Cache(tmp_path / "cache")
    with StubServer(models=("emb",), api_key=KEY) as s:
        cold = Timed(_embedder(s))
        wrapped = wrap(cold, cache)
        assert isinstance(wrapped, CachedBatchedEmbedder)  # the timer hides no capability
        wrapped.embed(TEXTS[:20])
        assert cold.items == 20 and cold.seconds > 0
        warm = Timed(_embedder(s))
        wrap(warm, cache).embed(TEXTS[:24])  # 5 batches of 4 kept, 1 new
        assert warm.items == 4
