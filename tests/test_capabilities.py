"""Declared model capabilities (clients/base.py), the one retry policy (retry.py), and no duck typing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hercules_core.cache import Cache, CachedLLM, CachedUsageLLM, wrap
from hercules_core.clients.base import LLM, ConfigurableLLM, UsageReportingLLM, complete_with_usage
from hercules_core.clients.fakes import FakeLLM
from hercules_core.errors import EndpointFatalError, LLMError, LLMFatalError
from hercules_core.retry import RETRY_AFTER_CAP, retrying

ROOT = Path(__file__).resolve().parents[1]
PROMPT = 'p\nGenerate the JSON output for the 1 cluster ID(s): ["L1_0"]'


class UsageLLM(FakeLLM):
    def complete_with_usage(self, prompt, *, schema=None):
        return self.complete(prompt, schema=schema), {"prompt_tokens": 5, "completion_tokens": 2}


class TunedLLM(FakeLLM):
    @property
    def generation_params(self):
        return {"temperature": 0.7, "api_key": "sk-never-hashed"}


def test_clients_declare_what_they_can_do():
    from hercules_core.clients.openai_compat import OpenAICompatLLM

    remote = OpenAICompatLLM("http://127.0.0.1:9/v1", "m")  # nothing is sent until a call
    assert isinstance(remote, UsageReportingLLM) and isinstance(remote, ConfigurableLLM)
    plain = FakeLLM()
    assert isinstance(plain, LLM) and not isinstance(plain, UsageReportingLLM) and not isinstance(plain, ConfigurableLLM)
    text, usage = complete_with_usage(plain, PROMPT)
    assert text.startswith("{") and usage is None
    assert complete_with_usage(UsageLLM(), PROMPT)[1] == {"prompt_tokens": 5, "completion_tokens": 2}


def test_the_cache_wrapper_declares_what_the_inner_llm_declares(tmp_path):
    cache = Cache(tmp_path)
    assert type(CachedLLM(FakeLLM(), cache)) is CachedLLM
    wrapped = CachedLLM(UsageLLM(), cache)
    assert type(wrapped) is CachedUsageLLM and isinstance(wrapped, UsageReportingLLM)
    tuned = wrap(TunedLLM(), cache)
    assert tuned.params == {"temperature": 0.7}  # the LLM's own parameters, credentials dropped


def test_endpoint_wide_failures_are_their_own_type():
    from devkit.openai_stub_server import StubServer
    from hercules_core.clients.openai_compat import OpenAICompatLLM

    assert issubclass(EndpointFatalError, LLMFatalError) and not EndpointFatalError("x").retryable
    with StubServer(script=["401"]) as s:
        with pytest.raises(EndpointFatalError, match="rejected the API key"):
            OpenAICompatLLM(s.base_url, "stub-model", "sk-test").complete(PROMPT)
    with StubServer(models=("stub-model",)) as s:
        with pytest.raises(EndpointFatalError, match="does not know the model"):
            OpenAICompatLLM(s.base_url, "gpt-nope", "sk-test").complete(PROMPT)


def _raise(exc):
    raise exc


def _attempt_all(policy, fn):
    for attempt in policy:
        with attempt:
            return fn()


def test_one_retry_policy_backs_off_and_honours_retry_after():
    slept, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise LLMError("busy", retry_after=2.5)  # the server asks for more than the cap
        if len(calls) == 2:
            raise LLMError("busy again")
        return "ok"

    assert _attempt_all(retrying(4, base=0.1, cap=1.0, sleep=slept.append), flaky) == "ok"
    assert len(calls) == 3 and slept[0] == 2.5 and 0.2 <= slept[1] <= 0.3  # base * 2 + jitter below base
    slept.clear()
    assert _attempt_all(retrying(2, base=0.1, cap=1.0, sleep=slept.append),
                        lambda: _raise(LLMError("x", retry_after=1e9)) if not slept else "ok") == "ok"
    assert slept == [RETRY_AFTER_CAP]

    fatal = []
    with pytest.raises(LLMFatalError):  # not transient: no retry
        _attempt_all(retrying(4, base=0.1, cap=1.0, sleep=fatal.append),
                     lambda: _raise(LLMFatalError("bad request")))
    assert fatal == []
    with pytest.raises(LLMError, match="still busy"):  # the last error, after the last attempt
        _attempt_all(retrying(3, base=0.01, cap=0.02, sleep=fatal.append),
                     lambda: _raise(LLMError("still busy")))
    assert len(fatal) == 2


def _project_sources():
    for top in ("hercules_core", "hercules_run", "callbacks", "pages"):
        yield from (ROOT / top).rglob("*.py")
    yield from (ROOT / "model_registry.py", ROOT / "app.py")


def test_capabilities_are_never_probed_by_attribute():
    probes = re.compile(r"(getattr|hasattr)\([^)]*[\"'](complete_with_usage|generation_params|keywords_for|"
                        r"endpoint_fatal|retry_after|retryable|progress|wrap|estimate_cost|"
                        r"recommended_config)[\"']")
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in _project_sources()
             for m in probes.finditer(p.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)


def test_there_is_one_retry_policy():
    users = [p.relative_to(ROOT).as_posix() for p in _project_sources()
             if re.search(r"\bRetrying\(|retry_if_exception|stop_after_attempt", p.read_text(encoding="utf-8"))]
    assert users == ["hercules_core/retry.py"]
