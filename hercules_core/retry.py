"""One retry policy for every model call: tenacity, exponential backoff with jitter, and never
sooner than the server's ``Retry-After``.

The summariser retries LLM batches with it (``llm_retries``, ``llm_retry_delay``,
``llm_retry_max_delay``); the OpenAI-compatible embedder and captioner retry their requests with it.
Only ``LLMError``s marked ``retryable`` are retried.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from tenacity import Retrying, retry_if_exception, stop_after_attempt

from .errors import LLMError

__all__ = ["RETRY_AFTER_CAP", "is_transient", "backoff", "retrying"]

RETRY_AFTER_CAP = 600.0  # seconds: a guard against absurd Retry-After values


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, LLMError) and exc.retryable


def backoff(base: float, cap: float) -> Callable[[Any], float]:
    """tenacity ``wait``: ``base * 2^(attempt-1)`` plus jitter up to ``base`` (so parallel callers do
    not retry in lockstep), at most ``cap``, and at least the error's ``retry_after``."""
    jitter = random.Random()  # timing only: results never depend on it

    def wait(state: Any) -> float:
        delay = min(cap, base * 2.0 ** min(state.attempt_number - 1, 60) + jitter.uniform(0, base))
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, LLMError) and exc.retry_after is not None and exc.retry_after > 0:
            delay = max(delay, min(float(exc.retry_after), RETRY_AFTER_CAP))
        return delay

    return wait


def retrying(attempts: int, *, base: float, cap: float, sleep: Callable[[float], None] | None = None) -> Retrying:
    """A tenacity ``Retrying`` making at most ``attempts`` attempts of transient errors (the last
    error is re-raised). ``sleep`` replaces ``time.sleep`` (e.g. to wake early on cancel)."""
    kw = {"sleep": sleep} if sleep is not None else {}
    return Retrying(stop=stop_after_attempt(attempts), wait=backoff(base, cap), retry=retry_if_exception(is_transient),
                    reraise=True, **kw)
