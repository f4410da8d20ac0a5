"""OpenAI-compatible clients against the scripted stub server (loopback only, no real model)."""

from __future__ import annotations

import base64
import email.utils
import io
import json
import logging
import math
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import model_registry as registry
from hercules_core.clients.fakes import FakeEmbedder
from hercules_core.clients.openai_compat import (OpenAICompatCaptioner, OpenAICompatEmbedder, OpenAICompatLLM,
                                                 parse_retry_after)
from hercules_core.config import HerculesConfig
from hercules_core.errors import ConfigError, EmbeddingError, LLMError, LLMFatalError
from hercules_core.hercules import Hercules
from hercules_core.io import RunLog, load_model
from hercules_core.summarize import LLMSummarizer
from hercules_core.summarize_types import Summary, SummaryRequest
from devkit.factories import make_text_dataset
from devkit.openai_stub_server import StubServer, ids_in_prompt

pytestmark = pytest.mark.timeout(60)

KEY = "sk-test-SECRET-0123456789abcdef"
MODEL = "stub-model"
ENV_VARS = ("HERCULES_LLM_BASE_URL", "HERCULES_LLM_API_KEY", "OPENAI_API_KEY", "HERCULES_LLM_MODEL",
            "HERCULES_LLM_STRUCTURED", "HERCULES_LLM_TIMEOUT", "HERCULES_EMBED_BASE_URL", "HERCULES_EMBED_API_KEY",
            "HERCULES_EMBED_MODEL", "HERCULES_CAPTION_BASE_URL", "HERCULES_CAPTION_API_KEY",
            "HERCULES_CAPTION_MODEL", "HERCULES_REGISTRY_FILE", "HERCULES_CACHE_DIR")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "cache"))  # the CLI's answer cache, if any


class Fallback:
    """Stands in for the keyword summariser."""

    model_id = "keywords"

    def summarize(self, requests, *, level_requests=None):
        return {r.key: Summary(title=f"kw {r.key}", description="keywords", source="keywords") for r in requests}


def requests_for(n: int, level: int = 1) -> list[SummaryRequest]:
    return [SummaryRequest(key=f"L{level}_{j}", level=level, n_items=3, modality="text",
                           member_indices=np.arange(3), samples=[(f"id{j}", f"sample text number {j} here")])
            for j in range(n)]


def fast_config(**kw) -> HerculesConfig:
    base = dict(llm_retry_delay=0.01, llm_retry_max_delay=0.05, llm_concurrency=2, level_cluster_counts=(6, 2))
    base.update(kw)
    return HerculesConfig(**base)


def summarize(llm, n=3, run_log=None, **cfg):
    return LLMSummarizer(llm, fast_config(**cfg), fallback=Fallback(), run_log=run_log).summarize(requests_for(n))


def chat_requests(server: StubServer) -> list[dict]:
    return [r for r in server.requests if r["path"] == "/v1/chat/completions"]


def prompt_of(record: dict) -> str:
    return record["body"]["messages"][-1]["content"]


def assert_all_titled(out: dict, n: int) -> None:
    assert len(out) == n
    for key, s in out.items():
        assert s.title == f"Stub answer {key}" and s.source == MODEL and not s.fallback, (key, s)


# --------------------------------------------------------------------------- helpers

def test_parse_retry_after_forms():
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    future = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.0 <= parse_retry_after({"retry-after": future}) <= 5.5
    assert parse_retry_after({"retry-after": email.utils.formatdate(time.time() - 60, usegmt=True)}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None
    assert parse_retry_after({"retry-after": "1e9"}) == 600.0  # capped


def test_stub_reads_ids_from_last_line():
    prompt = 'x\nGenerate the JSON output for the 2 cluster ID(s): ["a"]\ny\nGenerate the JSON output for ' \
             'the 2 cluster ID(s): ["L1_0", "L1_1"]'
    assert ids_in_prompt(prompt) == ["L1_0", "L1_1"]


# --------------------------------------------------------------------------- LLM: faults

def test_ok_returns_text_and_usage():
    with StubServer() as s:
        llm = OpenAICompatLLM(s.base_url, MODEL, KEY)
        text, usage = llm.complete_with_usage('hi\nGenerate the JSON output for the 1 cluster ID(s): ["L1_0"]',
                                              schema={"type": "object"})
    assert json.loads(text)["L1_0"]["title"] == "Stub answer L1_0"
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert s.requests[0]["body"]["max_tokens"] == 1024 and s.requests[0]["body"]["temperature"] == 0.2


def test_429_honours_retry_after():
    with StubServer(script=["429"], retry_after="1") as s:
        llm = OpenAICompatLLM(s.base_url, MODEL, KEY)
        t0 = time.monotonic()
        out = summarize(llm)
        elapsed = time.monotonic() - t0
    assert_all_titled(out, 3)
    assert s.counts["429"] == 1 and s.counts["ok"] == 1
    gap = s.requests[1]["time"] - s.requests[0]["time"]
    assert elapsed >= 1.0 and gap >= 1.0  # the summariser's own backoff is 0.01 s


def test_429_error_carries_retry_after():
    with StubServer(script=["429"], retry_after="7") as s:
        with pytest.raises(LLMError) as info:
            OpenAICompatLLM(s.base_url, MODEL, KEY).complete("hello")
    assert info.value.retryable and info.value.retry_after == 7.0 and "HTTP 429" in str(info.value)


def test_500_is_retried_then_succeeds():
    with StubServer(script=["500", "500"]) as s:
        llm = OpenAICompatLLM(s.base_url, MODEL, KEY)
        with pytest.raises(LLMError) as info:
            llm.complete("hello")
        assert info.value.retryable and s.base_url in str(info.value)
        out = summarize(llm)
    assert_all_titled(out, 3)
    assert s.counts["500"] == 2 and s.counts["ok"] == 1


def test_hang_hits_the_timeout_and_is_retried():
    with StubServer(script=["hang"], hang_seconds=5) as s:
        llm = OpenAICompatLLM(s.base_url, MODEL, KEY, timeout=0.5)
        t0 = time.monotonic()
        out = summarize(llm)
        elapsed = time.monotonic() - t0
    assert_all_titled(out, 3)
    assert s.counts["hang"] == 1 and s.counts["ok"] == 1
    assert 0.5 <= elapsed < 4


def test_hang_error_is_retryable_and_names_the_server():
    with StubServer(script=["hang"], hang_seconds=5) as s:
        with pytest.raises(LLMError) as info:
            OpenAICompatLLM(s.base_url, MODEL, timeout=0.3).complete("hello")
    assert info.value.retryable and s.base_url in str(info.value) and "0.3 s" in str(info.value)


def test_connection_refused_is_retryable():
    with StubServer() as s:
        url = s.base_url
    with pytest.raises(LLMError) as info:
        OpenAICompatLLM(url, MODEL, KEY, timeout=2).complete("hello")
    assert info.value.retryable and "Cannot reach" in str(info.value) and url in str(info.value)


def test_invalid_json_is_reasked():
    with StubServer(script=["invalid_json"]) as s:
        log = RunLog()
        out = summarize(OpenAICompatLLM(s.base_url, MODEL, KEY), n=3, run_log=log)
    assert_all_titled(out, 3)
    assert s.counts["invalid_json"] == 1
    asked = [ids_in_prompt(prompt_of(r)) for r in chat_requests(s)]
    assert asked[0] == ["L1_0", "L1_1", "L1_2"] and sorted(sum(asked[1:], [])) == ["L1_0", "L1_1", "L1_2"]
    calls = [r for r in log.records if r["event"] == "llm_call"]
    assert all(isinstance(r["prompt_tokens"], int) and isinstance(r["completion_tokens"], int) for r in calls)
    assert all("prompt_tokens_est" in r for r in calls)


def test_missing_id_is_reasked_alone():
    with StubServer(script=["missing_ids"]) as s:
        out = summarize(OpenAICompatLLM(s.base_url, MODEL, KEY), n=3)
    assert_all_titled(out, 3)
    asked = [ids_in_prompt(prompt_of(r)) for r in chat_requests(s)]
    assert asked == [["L1_0", "L1_1", "L1_2"], ["L1_2"]]


def test_401_fails_fast_without_the_key(caplog):
    caplog.set_level(logging.DEBUG)
    log = RunLog()
    with StubServer(script=["401"]) as s:
        llm = OpenAICompatLLM(s.base_url, MODEL, KEY)
        t0 = time.monotonic()
        with pytest.raises(LLMFatalError) as info:
            summarize(llm, run_log=log)
        elapsed = time.monotonic() - t0
    exc = info.value
    assert not exc.retryable and s.counts["401"] == 1 and len(s.requests) == 1 and elapsed < 2
    assert "HERCULES_LLM_API_KEY" in str(exc) and s.base_url in str(exc)
    assert s.requests[0]["bearer"] == KEY  # the stub echoed it back in its error message
    everything = "\n".join([str(exc), repr(exc), repr(llm), "".join(traceback.format_exception(exc)),
                            caplog.text, json.dumps(log.records, default=str)])
    assert KEY not in everything and KEY[-12:] not in everything
    assert exc.__cause__ is None and exc.__suppress_context__


def test_server_echoing_the_key_is_scrubbed():
    # a careless server repeats the token in an ordinary error message
    with StubServer(api_key="another-key") as s:
        with pytest.raises(LLMFatalError) as info:
            OpenAICompatLLM(s.base_url, MODEL, KEY).complete("hello")
    assert "HTTP 401" in str(info.value) and KEY not in str(info.value)


def test_unknown_model_is_fatal_and_lists_models():
    with StubServer(models=("stub-model", "other-model")) as s:
        with pytest.raises(LLMFatalError) as info:
            OpenAICompatLLM(s.base_url, "gpt-nope", KEY).complete("hello")
    msg = str(info.value)
    assert "'gpt-nope'" in msg and "HERCULES_LLM_MODEL" in msg and "other-model, stub-model" in msg


def test_json_schema_rejected_falls_back_and_remembers():
    prompt = 'p\nGenerate the JSON output for the 1 cluster ID(s): ["L1_0"]'
    schema = {"type": "object", "properties": {"L1_0": {"type": "object"}}, "required": ["L1_0"]}
    with StubServer(default="reject_json_schema") as s:
        llm = OpenAICompatLLM(s.base_url, MODEL, KEY)
        assert json.loads(llm.complete(prompt, schema=schema))["L1_0"]["title"]
        assert llm.structured_mode == "json_object_schema"
        llm.complete(prompt, schema=schema)
        assert s.response_formats() == ["json_schema", "json_object_schema", "json_object_schema"]
        assert s.requests[1]["response_format"] == {"type": "json_object", "schema": schema}
        # concurrent first calls: each may try json_schema once at most, none after the switch
        llm2 = OpenAICompatLLM(s.base_url, MODEL, KEY)
        before = len(s.requests)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: llm2.complete(prompt, schema=schema), range(12)))
        modes = s.response_formats()[before:]
    assert all(json.loads(a)["L1_0"] for a in answers)
    assert modes.count("json_schema") <= 4 and modes.count("json_object_schema") == 12
    assert modes[-1] == "json_object_schema"


def test_fixed_structured_mode_is_not_walked():
    prompt = 'p\nGenerate the JSON output for the 1 cluster ID(s): ["L1_0"]'
    with StubServer(default="reject_json_schema") as s:
        with pytest.raises(LLMFatalError) as info:
            OpenAICompatLLM(s.base_url, MODEL, structured="json_schema").complete(prompt, schema={"type": "object"})
        assert "HERCULES_LLM_STRUCTURED=auto" in str(info.value) and len(s.requests) == 1
        for mode in ("json_object_schema", "tool", "json_object", "text"):
            text = OpenAICompatLLM(s.base_url, MODEL, structured=mode).complete(prompt, schema={"type": "object"})
            assert json.loads(text)["L1_0"]["title"] == "Stub answer L1_0"
    assert s.response_formats() == ["json_schema", "json_object_schema", "tool", "json_object", None]
    tool_body = s.requests[2]["body"]
    assert tool_body["tool_choice"]["function"]["name"] == tool_body["tools"][0]["function"]["name"]
    assert tool_body["tools"][0]["function"]["parameters"] == {"type": "object"}


def test_bad_structured_value():
    with pytest.raises(LLMFatalError):
        OpenAICompatLLM("http://127.0.0.1:9/v1", MODEL, structured="yaml")


# --------------------------------------------------------------------------- full run

def test_full_fit_under_mixed_faults():
    ds = make_text_dataset(60)
    script = ["ok", "429", "500", "invalid_json", "missing_ids", "hang", "ok", "500", "500", "500", "500",
              "reject_json_schema", "missing_ids", "ok", "invalid_json"]
    log = RunLog()
    with StubServer(script=script, retry_after="0.2", hang_seconds=5) as s:
        llm = OpenAICompatLLM(s.base_url, MODEL, KEY, timeout=0.5)
        cfg = fast_config(llm_concurrency=4, llm_initial_batch_size=2, level_cluster_counts=(12, 4))
        model = Hercules(cfg, text_embedder=FakeEmbedder(), llm=llm, run_log=log).fit(ds)
    h = model.hierarchy_
    assert s.remaining == 0 and len(s.requests) > len(script)
    for lv in h.levels[1:]:
        assert len(lv) == (12 if lv.level == 1 else 4)
        for j in range(len(lv)):
            assert lv.titles[j].strip() and lv.descriptions[j].strip()
            assert (lv.sources[j] == MODEL and not lv.fallback[j]) or lv.fallback[j], (lv.ids[j], lv.sources[j])
    assert all(s.counts[b] == script.count(b) for b in set(script) - {"ok"})
    assert any(r["event"] == "llm_call" and r.get("error") for r in log.records)
    assert KEY not in json.dumps(log.records, default=str)


# --------------------------------------------------------------------------- embeddings

def test_embeddings_batched_in_order_and_normalised():
    texts = [f"text number {i}" for i in range(10)]
    with StubServer(models=("emb",)) as s:
        emb = OpenAICompatEmbedder(s.base_url, "emb", KEY, batch_size=4, concurrency=1)  # requests in order
        vecs = emb.embed(texts)
        singles = np.vstack([emb.embed([t]) for t in texts])
    assert vecs.dtype == np.float32 and vecs.shape == (10, 16)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vecs, singles, atol=1e-6)  # the stub answers out of order: sorted by index
    batched = s.requests[:math.ceil(10 / 4)]
    assert [r["n_inputs"] for r in batched] == [4, 4, 2] and len(s.requests) == 3 + 10
    assert s.requests[0]["body"]["encoding_format"] == "float"


def test_embeddings_respect_max_chars():
    texts = [("x" * 29) + str(i % 10) for i in range(10)]  # 30 characters each
    with StubServer(models=("emb",)) as s:
        emb = OpenAICompatEmbedder(s.base_url, "emb", batch_size=128, max_chars_per_request=100, concurrency=1)
        vecs = emb.embed(texts + ["y" * 250, ""])
    sizes = [sum(len(t) for t in r["body"]["input"]) for r in s.requests]
    assert vecs.shape == (12, 16)
    assert [r["n_inputs"] for r in s.requests] == [3, 3, 3, 1, 1, 1]  # the long text goes alone
    assert all(n <= 100 for i, n in enumerate(sizes) if i != 4) and sizes[4] == 250
    assert len(s.requests) == emb.requests == len(emb.batches(texts + ["y" * 250, " "]))


def test_embeddings_retry_transient_errors():
    with StubServer(script=["429", "500"], retry_after="0.3", models=("emb",)) as s:
        emb = OpenAICompatEmbedder(s.base_url, "emb", KEY)
        emb.retry_wait = 0.01
        t0 = time.monotonic()
        vecs = emb.embed(["a", "b"])
        elapsed = time.monotonic() - t0
    assert vecs.shape == (2, 16) and len(s.requests) == 3 and elapsed >= 0.3


def test_embeddings_fatal_and_exhausted_errors():
    with StubServer(script=["401"], models=("emb",)) as s:
        with pytest.raises(EmbeddingError) as info:
            OpenAICompatEmbedder(s.base_url, "emb", KEY).embed(["a"])
        assert "HERCULES_EMBED_API_KEY" in str(info.value) and KEY not in str(info.value)
        assert len(s.requests) == 1
    with StubServer(script=["500"] * 3, models=("emb",)) as s:
        emb = OpenAICompatEmbedder(s.base_url, "emb")
        emb.retry_wait = 0.01
        with pytest.raises(EmbeddingError) as info:
            emb.embed(["a"])
    assert "after 3 attempts" in str(info.value) and len(s.requests) == 3


# --------------------------------------------------------------------------- captions

def _png(path: Path, size, mode="RGB", color=(200, 30, 30)) -> str:
    im = Image.new(mode, size, color if mode != "P" else 3)
    im.save(path)
    return str(path)


def test_captioner_sends_downscaled_data_urls(tmp_path, caplog):
    paths = [_png(tmp_path / "wide.png", (1200, 800)), _png(tmp_path / "small.png", (100, 50)),
             _png(tmp_path / "tall.png", (300, 900), "RGBA", (0, 0, 255, 128)),
             _png(tmp_path / "pal.png", (64, 64), "P")]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    paths.insert(2, str(broken))
    with StubServer(script=["500"], models=("vision",)) as s:
        cap = OpenAICompatCaptioner(s.base_url, "vision", KEY, max_side=256, concurrency=3)
        cap.retry_wait = 0.01
        with caplog.at_level(logging.WARNING, logger="hercules_core"):
            captions = cap.caption(paths)
    assert len(captions) == 5
    assert captions[2].startswith("(caption failed:") and "broken.png" in caplog.text
    assert all(c.startswith("A stub caption") for i, c in enumerate(captions) if i != 2)
    sizes = []
    for r in s.requests:
        content = r["body"]["messages"][0]["content"]
        assert content[0] == {"type": "text", "text": "Describe this image in one or two sentences."}
        url = content[1]["image_url"]["url"]
        assert url.startswith("data:image/png;base64,")
        sizes.append(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size)
    assert len(s.requests) == 5 and s.counts["500"] == 1  # 4 images, one retried
    assert set(sizes) == {(256, 171), (100, 50), (85, 256), (64, 64)}
    assert KEY not in caplog.text


def test_captioner_bad_key_stops_the_run(tmp_path):
    paths = [_png(tmp_path / f"{i}.png", (20, 20)) for i in range(3)]
    with StubServer(default="401", models=("vision",)) as s:
        with pytest.raises(LLMFatalError) as info:
            OpenAICompatCaptioner(s.base_url, "vision", KEY, concurrency=1).caption(paths)
    assert "HERCULES_CAPTION_API_KEY" in str(info.value) and KEY not in str(info.value)
    assert len(s.requests) == 1


# --------------------------------------------------------------------------- registry and CLI

def test_registry_needs_env_vars(monkeypatch):
    entry = registry.get_entry("openai", "llm")
    ok, why = entry.availability()
    assert not ok and why == "set HERCULES_LLM_BASE_URL and HERCULES_LLM_MODEL"
    with pytest.raises(ConfigError, match="HERCULES_LLM_BASE_URL and HERCULES_LLM_MODEL"):
        registry.get_llm("openai")
    monkeypatch.setenv("HERCULES_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    assert registry.get_entry("openai", "llm").availability() == (False, "set HERCULES_LLM_MODEL")
    assert registry.get_entry("openai", "text_embedder").availability()[0] is False
    assert "HERCULES_CAPTION_BASE_URL" in registry.get_entry("openai-vision", "captioner").availability()[1]
    # existing entries are unchanged
    assert registry.get_entry("keywords", "llm").availability() == (True, "")
    assert registry.get_llm("keywords") is None


def test_registry_builds_from_env_without_leaking_the_key(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("HERCULES_LLM_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("HERCULES_LLM_MODEL", MODEL)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("HERCULES_LLM_STRUCTURED", "tool")
    monkeypatch.setenv("HERCULES_LLM_TIMEOUT", "7.5")
    llm = registry.get_llm("openai")
    assert isinstance(llm, OpenAICompatLLM) and llm.base_url == "http://127.0.0.1:9/v1"
    assert llm.structured == "tool" and llm.timeout == 7.5 and llm.model_id == MODEL
    assert llm._key == KEY  # OPENAI_API_KEY is the fallback
    monkeypatch.setenv("HERCULES_LLM_API_KEY", "sk-other-key-xyz")
    assert registry.get_llm("openai")._key == "sk-other-key-xyz"
    text = "\n".join([repr(llm), str(vars(registry.get_entry("openai", "llm"))), repr(registry.entries()),
                      json.dumps(llm.generation_params), caplog.text])
    assert KEY not in text and "sk-other-key-xyz" not in text
    monkeypatch.setenv("HERCULES_LLM_STRUCTURED", "yaml")
    with pytest.raises(ConfigError, match="HERCULES_LLM_STRUCTURED"):
        registry.get_llm("openai")
    monkeypatch.setenv("HERCULES_LLM_STRUCTURED", "auto")
    monkeypatch.setenv("HERCULES_LLM_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="HERCULES_LLM_TIMEOUT"):
        registry.get_llm("openai")
    monkeypatch.setenv("HERCULES_EMBED_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("HERCULES_EMBED_MODEL", "emb")
    emb = registry.get_text_embedder("openai", show_progress=False)
    assert isinstance(emb, OpenAICompatEmbedder) and emb.model == "emb" and KEY not in repr(emb)
    monkeypatch.setenv("HERCULES_CAPTION_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("HERCULES_CAPTION_MODEL", "vision")
    assert isinstance(registry.get_captioner("openai-vision"), OpenAICompatCaptioner)


def test_registry_file_names_the_key_variable(tmp_path, monkeypatch):
    with StubServer(api_key=KEY, models=("local-llama", "local-emb")) as s:
        spec = [{"id": "my-llama", "kind": "llm", "label": "Local llama", "base_url": s.base_url,
                 "model": "local-llama", "api_key_env": "MY_LLAMA_KEY", "structured": "json_object"},
                {"id": "my-emb", "kind": "text_embedder", "label": "Local embeddings", "base_url": s.base_url,
                 "model": "local-emb", "api_key_env": "MY_LLAMA_KEY"}]
        path = tmp_path / "registry.json"
        path.write_text(json.dumps(spec))
        monkeypatch.setenv("HERCULES_REGISTRY_FILE", str(path))
        assert [e.id for e in registry.entries("llm")][-1] == "my-llama"
        entry = registry.get_entry("my-llama", "llm")
        assert entry.availability() == (False, "set MY_LLAMA_KEY") and entry.label == "Local llama"
        monkeypatch.setenv("MY_LLAMA_KEY", KEY)
        assert entry.availability() == (True, "")
        llm = registry.get_llm("my-llama")
        text = llm.complete('p\nGenerate the JSON output for the 1 cluster ID(s): ["L1_0"]', schema={"type": "object"})
        assert json.loads(text)["L1_0"]["title"]  # the stub checked the key
        assert registry.get_text_embedder("my-emb").embed(["a"]).shape == (1, 16)
        assert s.response_formats()[0] == "json_object"
        assert KEY not in repr(entry) and KEY not in repr(registry.entries()) and KEY not in repr(llm)
        # a key in the file itself is refused
        path.write_text(json.dumps([dict(spec[0], api_key=KEY)]))
        with pytest.raises(ConfigError, match="never put a key") as info:
            registry.entries()
        assert KEY not in str(info.value)
        path.write_text(json.dumps([dict(spec[0], api_key_env=KEY)]))
        with pytest.raises(ConfigError, match="NAME of an environment variable") as info:
            registry.entries()
        assert KEY not in str(info.value)
        path.write_text(json.dumps([dict(spec[0], kind="image_embedder")]))
        with pytest.raises(ConfigError, match="kind must be"):
            registry.entries()
        path.write_text("[{")
        with pytest.raises(ConfigError, match="registry file"):
            registry.entries()


def _write_csv(path: Path) -> Path:
    import pandas as pd

    ds = make_text_dataset(48)
    pd.DataFrame({"id": ds.ids, "text": ds.texts, "label": ds.labels}).to_csv(path, index=False)
    return path


def _point_env_at(monkeypatch, s: StubServer) -> None:
    monkeypatch.setenv("HERCULES_LLM_BASE_URL", s.base_url)
    monkeypatch.setenv("HERCULES_LLM_MODEL", MODEL)
    monkeypatch.setenv("HERCULES_LLM_API_KEY", KEY)
    monkeypatch.setenv("HERCULES_LLM_TIMEOUT", "2")
    monkeypatch.setenv("HERCULES_EMBED_BASE_URL", s.base_url)
    monkeypatch.setenv("HERCULES_EMBED_MODEL", "stub-embed")
    monkeypatch.setenv("HERCULES_EMBED_API_KEY", KEY)


def _all_output(*dirs: Path) -> str:
    """Every file under ``dirs`` (outputs, the answer cache) as text."""
    return "\n".join(p.read_bytes().decode("utf-8", "replace")
                     for d in dirs for p in sorted(d.rglob("*")) if p.is_file())


def test_cli_with_openai_env_never_leaks_the_key(tmp_path, monkeypatch, capsys, caplog):
    from hercules_run import cli

    caplog.set_level(logging.DEBUG)
    data = _write_csv(tmp_path / "data.csv")
    cfg = tmp_path / "cfg.json"
    # the stub's embeddings are hashes, meaningless to the title gate (tests/test_title_gate.py covers it)
    cfg.write_text(json.dumps({"llm_retry_delay": 0.01, "llm_retry_max_delay": 0.05, "title_gate": False}))
    out = tmp_path / "out"
    with StubServer(script=["ok", "500", "invalid_json", "429"], retry_after="0.1", api_key=KEY,
                    models=(MODEL, "stub-embed")) as s:
        _point_env_at(monkeypatch, s)
        code = cli.main(["run", str(data), "--text-column", "text", "--id-column", "id", "--labels-column", "label",
                         "--levels", "6,2", "--llm", "openai", "--embedder", "openai", "--config", str(cfg),
                         "--out", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    h = load_model(out / "model.json")
    assert all(t.startswith("Stub answer") for t in h.levels[1].titles + h.levels[2].titles)
    assert s.counts["500"] == 1 and s.counts["invalid_json"] == 1 and s.counts["429"] == 1
    assert any(r["path"] == "/v1/embeddings" for r in s.requests)
    files = _all_output(out, tmp_path / "cache")
    assert "Stub answer" in files and MODEL in files
    for text in (files, captured.out, captured.err, caplog.text):
        assert KEY not in text and KEY[-12:] not in text


def test_cli_bad_key_is_one_clear_line(tmp_path, monkeypatch, capsys, caplog):
    from hercules_run import cli

    caplog.set_level(logging.DEBUG)
    data = _write_csv(tmp_path / "data.csv")
    out = tmp_path / "out"
    with StubServer(api_key="the-right-key", models=(MODEL, "stub-embed")) as s:
        _point_env_at(monkeypatch, s)
        monkeypatch.setenv("HERCULES_EMBED_API_KEY", "the-right-key")
        code = cli.main(["run", str(data), "--text-column", "text", "--levels", "6,2", "--llm", "openai",
                         "--embedder", "openai", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("error: The LLM server at") and "HERCULES_LLM_API_KEY" in err
    for text in (err, _all_output(out, tmp_path / "cache"), caplog.text):
        assert KEY not in text
