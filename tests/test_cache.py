"""The on-disk cache: repeat runs cost nothing, only changed prompts are re-asked, processes share it."""

import json
import multiprocessing as mp
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hercules_core import Hercules, HerculesConfig, LLMError
from hercules_core.cache import (Cache, CachedCaptioner, CachedEmbedder, CachedImageEmbedder, CachedLLM,
                                 complete_answer, wrap)
from hercules_core.clients.fakes import FakeEmbedder, FakeLLM
from hercules_core.io import load_model
from hercules_core.prompts import PROMPT_TEMPLATE_VERSION
from devkit.factories import make_text_dataset

ROOT = Path(__file__).resolve().parents[1]
_IDS = re.compile(r"ID\(s\): (.+)$", re.MULTILINE)


def _fit(ds, levels, cache, **cfg):
    emb, llm = FakeEmbedder(), FakeLLM()
    model = Hercules(HerculesConfig(level_cluster_counts=levels, **cfg), text_embedder=CachedEmbedder(emb, cache),
                     llm=CachedLLM(llm, cache)).fit(ds)
    return model.hierarchy_, emb, llm


def _asked_keys(llm: FakeLLM) -> list[str]:
    return [k for call in llm.history for k in json.loads(_IDS.findall(call["prompt"])[-1])]


def _assert_same_hierarchy(a, b):
    assert len(a.levels) == len(b.levels)
    for la, lb in zip(a.levels, b.levels):
        assert la.ids == lb.ids
        assert la.titles == lb.titles
        assert la.descriptions == lb.descriptions
        np.testing.assert_array_equal(la.parent, lb.parent)
        np.testing.assert_array_equal(la.size, lb.size)
        np.testing.assert_array_equal(la.vectors, lb.vectors)
        np.testing.assert_array_equal(la.fallback, lb.fallback)
        if la.desc_embeddings is not None or lb.desc_embeddings is not None:
            np.testing.assert_array_equal(la.desc_embeddings, lb.desc_embeddings)


# --------------------------------------------------------------------------- repeat runs

def test_second_run_makes_no_inner_calls_and_gives_the_same_result(tmp_path):
    ds = make_text_dataset(n=150)
    h1, emb1, llm1 = _fit(ds, (12, 4), Cache(tmp_path / "c"))
    assert emb1.calls > 0 and llm1.calls > 0
    cache = Cache(tmp_path / "c")  # a new handle on the same directory, as a new process would open
    h2, emb2, llm2 = _fit(ds, (12, 4), cache)
    assert emb2.calls == 0 and emb2.texts_embedded == 0
    assert llm2.calls == 0
    _assert_same_hierarchy(h1, h2)
    st = cache.stats()
    assert st["misses"] == 0 and st["hits"] == st["by_kind"]["emb"]["hits"] + st["by_kind"]["llm"]["hits"] > 0


def test_changing_only_the_top_k_re_asks_only_the_new_top_clusters(tmp_path):
    ds = make_text_dataset(n=150)
    h1, _, _ = _fit(ds, (12, 4), Cache(tmp_path / "c"))
    h2, emb2, llm2 = _fit(ds, (12, 3), Cache(tmp_path / "c"))
    # level 1 is built from the same RNG draws, so its prompts are the same and come from the cache
    assert sorted(_asked_keys(llm2)) == ["L2_0", "L2_1", "L2_2"]
    assert llm2.calls == 1
    assert emb2.texts_embedded == 3  # only the new level-2 descriptions
    assert h2.levels[1].titles == h1.levels[1].titles
    np.testing.assert_array_equal(h2.levels[0].parent, h1.levels[0].parent)
    # and the result is the one an uncached run gives
    h3, _, llm3 = _fit(ds, (12, 3), Cache(tmp_path / "off", enabled=False))
    assert llm3.calls == 3
    _assert_same_hierarchy(h2, h3)


# --------------------------------------------------------------------------- wrappers

def test_embedder_embeds_only_the_misses_in_one_call_in_order(tmp_path):
    cache = Cache(tmp_path)
    inner = FakeEmbedder()
    emb = CachedEmbedder(inner, cache)
    assert emb.model_id == inner.model_id
    first = emb.embed(["a b", "c d", "a b"])
    assert (inner.calls, inner.texts_embedded) == (1, 2)  # the duplicate is embedded once
    out = emb.embed(["e f", "c d", "a b", "g h"])
    assert (inner.calls, inner.texts_embedded) == (2, 4)
    assert emb.inner_calls == 2 and emb.inner_texts == 4
    assert out.dtype == np.float32 and out.shape == (4, inner.dim)
    np.testing.assert_array_equal(out[1], first[1])
    np.testing.assert_array_equal(out[2], first[0])
    np.testing.assert_allclose(out, FakeEmbedder().embed(["e f", "c d", "a b", "g h"]), atol=1e-7)
    emb.embed(["g h", "e f"])
    assert inner.calls == 2


def test_image_embedder_and_captioner_key_on_file_bytes(tmp_path):
    a, b, c = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")  # another name, same content: a hit
    c.write_bytes(b"other bytes")

    class Images:
        model_id = "img-test"
        calls = 0

        def embed_images(self, paths):
            self.calls += 1
            return np.array([[len(Path(p).read_bytes()), 1.0] for p in paths], dtype=np.float32)

    class Captions:
        model_id = "cap-test"
        calls = 0

        def caption(self, paths):
            self.calls += 1
            return [f"caption of {Path(p).read_bytes().decode()}" for p in paths]

    cache = Cache(tmp_path / "cache")
    img, cap = Images(), Captions()
    ci, cc = CachedImageEmbedder(img, cache), CachedCaptioner(cap, cache)
    assert ci.embed_images([str(a)]).shape == (1, 2) and cc.caption([str(a)]) == ["caption of same bytes"]
    assert ci.embed_images([str(b), str(a)]).shape == (2, 2) and img.calls == 1
    assert cc.caption([str(b)]) == ["caption of same bytes"] and cap.calls == 1
    assert cc.caption([str(c), str(a)]) == ["caption of other bytes", "caption of same bytes"] and cap.calls == 2
    c.write_bytes(b"changed")
    cc.caption([str(c)])
    assert cap.calls == 3
    kinds = {k[0] for k in cache.keys()}
    assert kinds == {"img", "cap"}
    assert all(k[1] in ("img-test", "cap-test") for k in cache.keys())


def test_llm_caches_only_successful_answers(tmp_path):
    cache = Cache(tmp_path)
    inner = FakeLLM()
    llm = CachedLLM(inner, cache)
    prompt = 'x\nGenerate the JSON output for the 1 cluster ID(s): ["L1_0"]'
    schema = {"type": "object", "properties": {"L1_0": {"type": "object", "required": ["title", "description"]}},
              "required": ["L1_0"]}
    inner.queue(LLMError("flaky"), "not json at all")
    with pytest.raises(LLMError):
        llm.complete(prompt, schema=schema)
    assert llm.complete(prompt, schema=schema) == "not json at all"  # returned, but not stored
    good = llm.complete(prompt, schema=schema)
    assert json.loads(good)["L1_0"]["title"]
    assert inner.calls == 3
    assert llm.complete(prompt, schema=schema) == good
    assert inner.calls == 3 and llm.inner_calls == 3 and llm.cache_hits == 1
    # another schema or other generation parameters are another key
    llm.complete(prompt, schema=None)
    CachedLLM(inner, cache, params={"temperature": 0.7}).complete(prompt, schema=schema)
    assert inner.calls == 5
    assert complete_answer('{"L1_0": {"title": "t", "description": "d"}}', schema)
    assert not complete_answer('{"L1_0": {"title": "t"}}', schema)
    assert not complete_answer("", None)


def test_complete_with_usage_is_forwarded_only_when_the_inner_llm_has_it(tmp_path):
    cache = Cache(tmp_path)
    assert not hasattr(CachedLLM(FakeLLM(), cache), "complete_with_usage")

    class UsageLLM(FakeLLM):
        def complete_with_usage(self, prompt, *, schema=None):
            return self.complete(prompt, schema=schema), {"prompt_tokens": 11, "completion_tokens": 7}

    inner = UsageLLM()
    llm = CachedLLM(inner, cache)
    prompt = 'p\nGenerate the JSON output for the 1 cluster ID(s): ["L1_0"]'
    text, usage = llm.complete_with_usage(prompt)
    assert usage == {"prompt_tokens": 11, "completion_tokens": 7, "cached": False}
    text2, usage2 = llm.complete_with_usage(prompt)
    assert text2 == text and usage2 == {"prompt_tokens": 0, "completion_tokens": 0, "cached": True}
    assert llm.complete(prompt) == text and inner.calls == 1


def test_keys_hold_no_secrets(tmp_path):
    cache = Cache(tmp_path)
    secret = "sk-THIS-IS-SECRET-42"
    inner = FakeLLM(model_id="some-llm")
    a = CachedLLM(inner, cache, params={"temperature": 0, "api_key": secret, "max_tokens": 500})
    b = CachedLLM(inner, cache, params={"temperature": 0, "api_key": "another-key", "max_tokens": 500})
    prompt = 'Generate the JSON output for the 1 cluster ID(s): ["L1_0"]'
    a.complete(prompt)
    assert b.key_for(prompt) == a.key_for(prompt)  # rotating a key keeps the cache
    assert CachedLLM(inner, cache, params={"temperature": 0, "max_tokens": 900}).key_for(prompt) != a.key_for(prompt)
    CachedEmbedder(FakeEmbedder(), cache).embed([f"text mentioning {secret}"])
    keys = cache.keys()
    assert len(keys) == 2
    for key in keys:
        assert secret not in repr(key) and "SECRET" not in repr(key)
        assert key[0] in ("emb", "llm") and key[1] in ("some-llm", "fake-hash-64")
        assert all(re.fullmatch(r"[0-9a-f]{64}", str(part)) for part in key[2:] if not isinstance(part, int))
    (llm_key,) = [k for k in keys if k[0] == "llm"]
    assert llm_key[2] == PROMPT_TEMPLATE_VERSION


def test_bypass_switch(tmp_path, monkeypatch):
    off = Cache(tmp_path / "off", enabled=False)
    inner = FakeEmbedder()
    emb = CachedEmbedder(inner, off)
    emb.embed(["a", "b"])
    emb.embed(["a", "b"])
    assert inner.calls == 2 and off.hits == 0 and off.misses == 4
    assert not (tmp_path / "off").exists() and len(off) == 0
    off.set(("llm", "m", "h"), "x")
    assert off.get(("llm", "m", "h")) is None

    monkeypatch.setenv("HERCULES_CACHE", "off")
    env_off = Cache(tmp_path / "env")
    assert not env_off.enabled and not (tmp_path / "env").exists()
    monkeypatch.setenv("HERCULES_CACHE", "on")
    assert Cache(tmp_path / "env").enabled


def test_wrap_picks_the_wrapper(tmp_path):
    cache = Cache(tmp_path)

    class Img:
        model_id = "i"

        def embed_images(self, paths):
            return np.zeros((len(paths), 2), np.float32)

    class Cap:
        model_id = "c"

        def caption(self, paths):
            return ["x"] * len(paths)

    assert wrap(None, cache) is None
    llm = FakeLLM()
    assert wrap(llm, None) is llm
    assert isinstance(wrap(FakeEmbedder(), cache), CachedEmbedder)
    wrapped = wrap(llm, cache, llm_params={"temperature": 0})
    assert isinstance(wrapped, CachedLLM) and wrapped.params == {"temperature": 0}
    assert wrap(wrapped, cache) is wrapped
    assert isinstance(wrap(Img(), cache), CachedImageEmbedder)
    assert isinstance(wrap(Cap(), cache), CachedCaptioner)
    with pytest.raises(TypeError):
        wrap(object(), cache)


# --------------------------------------------------------------------------- store

def _writer(directory: str, worker: int, n: int) -> None:
    cache = Cache(directory)
    for i in range(n):
        # shared keys (both processes write the same value) and keys of this worker only
        cache.set(("llm", "m", f"shared-{i}"), f"value-{i}-" + "x" * (i % 50))
        cache.set(("llm", "m", f"w{worker}-{i}"), f"worker-{worker}-{i}")
        if i % 25 == 0:
            cache.set_many({("emb", "m", f"w{worker}-batch-{i}-{j}"): np.full(8, j, "<f4").tobytes()
                            for j in range(10)})
    cache.close()


def test_two_processes_share_one_cache(tmp_path):
    n = 300
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, n)) for w in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    cache = Cache(tmp_path)
    for i in range(n):
        assert cache.get(("llm", "m", f"shared-{i}")) == f"value-{i}-" + "x" * (i % 50)
        for w in (0, 1):
            assert cache.get(("llm", "m", f"w{w}-{i}")) == f"worker-{w}-{i}"
    for w in (0, 1):
        for i in range(0, n, 25):
            for j in range(10):
                assert np.frombuffer(cache.get(("emb", "m", f"w{w}-batch-{i}-{j}")), "<f4").tolist() == [j] * 8
    assert len(cache) == 3 * n + 2 * 12 * 10
    assert cache._store.check() == []  # diskcache's own consistency check finds nothing
    assert cache.misses == 0


def test_size_limit_bounds_the_volume(tmp_path):
    limit = 256 * 1024
    cache = Cache(tmp_path, size_limit=limit)
    rng = np.random.default_rng(0)
    for i in range(3000):
        cache.set(("emb", "m", str(i)), rng.bytes(1000))  # ~3 MB written in all
    assert cache.volume() <= limit + 64 * 1024
    assert 0 < len(cache) < 1000
    assert cache.get(("emb", "m", "2999")) is not None  # the newest entries survive
    assert cache.get(("emb", "m", "0")) is None  # the oldest were evicted


# --------------------------------------------------------------------------- CLI

def _cli(*args):
    proc = subprocess.run([sys.executable, "-m", "hercules_core", "run", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stderr


def test_cli_repeat_run_is_answered_from_the_cache(tmp_path):
    data = tmp_path / "data.csv"
    ds = make_text_dataset(n=120)
    data.write_text("id,text\n" + "".join(f"{i},{t}\n" for i, t in zip(ds.ids, ds.texts)))
    common = [data, "--text-column", "text", "--id-column", "id", "--levels", "10,3", "--embedder", "fake-hash",
              "--llm", "fake", "--cache-dir", tmp_path / "cache", "--quiet"]
    first = _cli(*common, "--out", tmp_path / "o1")
    second = _cli(*common, "--out", tmp_path / "o2")
    assert re.search(r"^estimate: 13 clusters in 2 level\(s\) \(10, 3\) -> 3 LLM call", first, re.M)
    assert re.search(r"^cost: 3 LLM call\(s\) \(0 answered from the cache\)", first, re.M)
    assert re.search(r"^cost: 0 LLM call\(s\) \(3 answered from the cache\), 0 prompt \+ 0 completion", second, re.M)
    assert re.search(r"^cache: [1-9]\d* hits, 0 misses", second, re.M)
    assert "0 text(s) embedded in 0 call(s)" in second
    assert (tmp_path / "o1" / "hierarchy.txt").read_text() == (tmp_path / "o2" / "hierarchy.txt").read_text()
    report = load_model(tmp_path / "o2" / "model.json").stats["cost"]
    assert report["llm"]["calls"] == 0 and report["llm"]["cache_hits"] == 3
    assert report["cache"]["hits"] > 0 and report["estimate"]["llm_calls"] == 3

    # --no-cache neither reads nor writes
    third = _cli(*common[:-3], "--no-cache", "--cache-dir", tmp_path / "unused", "--out", tmp_path / "o3", "--quiet")
    assert re.search(r"^cost: 3 LLM call\(s\) \(0 answered", third, re.M) and "cache: off" in third
    assert not (tmp_path / "unused").exists()


def test_cli_cache_dir_default(tmp_path, monkeypatch):
    from hercules_run.cli import _cache_dir, build_parser

    parse = build_parser().parse_args
    monkeypatch.delenv("HERCULES_CACHE_DIR", raising=False)
    assert _cache_dir(parse(["run", "d.csv", "--out", "o"])) == Path("~/.cache/hercules").expanduser()
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "env"))
    assert _cache_dir(parse(["run", "d.csv", "--out", "o"])) == tmp_path / "env"
    assert _cache_dir(parse(["run", "d.csv", "--out", "o", "--cache-dir", str(tmp_path / "x")])) == tmp_path / "x"
