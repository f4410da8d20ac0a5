"""The narrow protocols through which hercules_core talks to models, and the optional capabilities.

hercules_core never builds an SDK client: embedders, LLMs and captioners are passed in as objects
that satisfy these protocols (``model_registry.py`` builds the concrete ones from a model id).

A new LLM backend implements :class:`LLM` (``model_id`` and ``complete``) and, where it can, the
optional capabilities below; the summariser and the cache look for them with ``isinstance``, never
by probing attributes:

* :class:`UsageReportingLLM`: ``complete_with_usage`` returns the answer and the token counts the
  server reported (used for the cost report instead of estimates);
* :class:`ConfigurableLLM`: ``generation_params`` (temperature, max tokens, ...), which shape an
  answer besides the prompt and so belong to an answer cache's key;
* :class:`ContextLimitedLLM`: ``prompt_token_limit`` and ``count_tokens``, for a model whose prompt
  and answer must fit a known context window: the summariser shortens its prompts to fit before
  calling instead of learning from an error that they did not.

A text embedder that talks to a server may also be a :class:`BatchedEmbedder`: it reports progress
per batch and lets the cache keep each batch as it arrives (a long run resumes after a failure).

Errors: raise ``errors.LLMError`` for a failure a retry may cure (with ``retry_after`` when the
server said how long to wait), ``errors.LLMFatalError`` for one it cannot (a bad request), and
``errors.EndpointFatalError`` when every request to the endpoint would fail alike (bad key, unknown
model, exhausted quota): the run then stops at once instead of failing item by item. Retries follow
one policy, :mod:`hercules_core.retry`.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, TypedDict, runtime_checkable

import numpy as np


@runtime_checkable
class TextEmbedder(Protocol):
    """Embeds texts. ``model_id`` names the model (used for caching and in saved models)."""

    model_id: str

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return a float32 array of shape (len(texts), dim), one row per text, in order."""


class BatchStore(Protocol):
    """Where a :class:`BatchedEmbedder` looks up and keeps whole batches (``cache.CachedBatchedEmbedder``)."""

    def get(self, texts: list[str]) -> np.ndarray | None:
        """The vectors of this exact batch when kept, else None."""

    def put(self, texts: list[str], vectors: np.ndarray) -> None:
        """Keep the vectors of a batch just embedded."""


@runtime_checkable
class BatchedEmbedder(TextEmbedder, Protocol):
    """A text embedder that sends its texts in batches (an embeddings server): it reports progress
    per batch and lets a store answer or keep each batch, so a long run that fails resumes with
    the batches it had not finished."""

    @property
    def endpoint(self) -> str:
        """The server and model, never a credential: part of a batch's cache key."""

    def embed_batched(self, texts: list[str], *, store: BatchStore | None = None,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Like ``embed``; ``progress(texts_done, texts_total)`` after each batch."""


def embed_with_progress(embedder: TextEmbedder, texts: list[str],
                        progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """``embedder.embed(texts)``, reporting each batch when the embedder can (:class:`BatchedEmbedder`)."""
    if progress is not None and isinstance(embedder, BatchedEmbedder):
        return embedder.embed_batched(texts, progress=progress)
    return embedder.embed(texts)


@runtime_checkable
class ImageEmbedder(Protocol):
    model_id: str

    def embed_images(self, paths: list[str]) -> np.ndarray:
        """Return a float32 array of shape (len(paths), dim)."""


@runtime_checkable
class LLM(Protocol):
    """A text-completion model. Raise ``LLMError`` (retryable) or ``LLMFatalError`` on failure."""

    model_id: str

    def complete(self, prompt: str, *, schema: dict[str, Any] | None = None) -> str:
        """Return the model's answer to ``prompt``; ``schema`` is a JSON schema the answer should follow."""


class Usage(TypedDict, total=False):
    """Token counts of one answer as the model reported them (None: not reported)."""

    prompt_tokens: int | None
    completion_tokens: int | None
    cached: bool  # answered from a cache (then both counts are 0)


@runtime_checkable
class UsageReportingLLM(LLM, Protocol):
    """An LLM that also reports the tokens each answer cost."""

    def complete_with_usage(self, prompt: str, *, schema: dict[str, Any] | None = None) -> tuple[str, Usage]:
        """The answer and its :class:`Usage`."""


@runtime_checkable
class ConfigurableLLM(LLM, Protocol):
    """An LLM whose answers depend on generation parameters besides the prompt and schema."""

    @property
    def generation_params(self) -> dict[str, Any]:
        """JSON-ready parameters (never a credential): part of an answer cache's key."""


@runtime_checkable
class ContextLimitedLLM(LLM, Protocol):
    """An LLM with a known context window (llama.cpp's ``n_ctx``, a server's configured context)."""

    @property
    def prompt_token_limit(self) -> int | None:
        """The most tokens a prompt may take: the context window less the answer's max tokens and the
        chat template around the prompt; None when the window is not known."""

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes as (part of) a prompt: never fewer than the model will count, so that
        pieces counted separately add up to at least the whole."""


def prompt_token_limit(llm: Any) -> int | None:
    """``llm``'s prompt token limit when it declares one (:class:`ContextLimitedLLM`), else None."""
    return llm.prompt_token_limit if isinstance(llm, ContextLimitedLLM) else None


def complete_with_usage(llm: LLM, prompt: str, *, schema: dict[str, Any] | None = None) -> tuple[str, Usage | None]:
    """Ask ``llm``; the usage is None when the model does not report it."""
    if isinstance(llm, UsageReportingLLM):
        return llm.complete_with_usage(prompt, schema=schema)
    return llm.complete(prompt, schema=schema), None


@runtime_checkable
class Captioner(Protocol):
    model_id: str

    def caption(self, paths: list[str]) -> list[str]:
        """Return one caption per image path, in order."""
