"""Clients for OpenAI-compatible servers (OpenAI, vLLM, llama.cpp, Ollama, LM Studio, ...).

* :class:`OpenAICompatLLM` writes cluster summaries. It makes ONE attempt per call: the
  summariser (``LLMSummarizer``) owns retries and backoff, so errors are translated into
  ``LLMError`` (retryable, with ``retry_after``), ``LLMFatalError`` (bad request) or
  ``EndpointFatalError`` (bad key, unknown model, no quota) and raised.
* :class:`OpenAICompatEmbedder` embeds texts in batches, several at once; nothing wraps it, so it
  retries transient errors itself (3 attempts per batch, with the shared policy of
  ``hercules_core.retry``) and raises ``EmbeddingError``; the cache keeps each batch as it arrives.
* :class:`OpenAICompatCaptioner` captions images through a vision chat model; an image whose
  caption fails after retries gets ``"(caption failed: <reason>)"`` instead of aborting the run.

The API key is never put in a message, log record, ``repr`` or exception: every server message
that is passed on is scrubbed of it, and exceptions are raised ``from None`` so that the SDK's
exception (which holds the request and its headers) is not chained.
"""

from __future__ import annotations

import base64
import contextvars
import email.utils
import io
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ..errors import EmbeddingError, EndpointFatalError, LLMError, LLMFatalError
from ..prompts import estimate_tokens
from ..retry import RETRY_AFTER_CAP, retrying

logger = logging.getLogger("hercules_core")

STRUCTURED_MODES = ("json_schema", "json_object_schema", "tool", "json_object", "text")
STRUCTURED_CHOICES = ("auto",) + STRUCTURED_MODES
_TOOL_NAME = "clusters"
_NO_KEY = "no-key"  # the SDK insists on a key; local servers ignore it
_REJECT_STATUS = (400, 404, 415, 422, 500, 501)
_REJECT_WORDS = ("response_format", "response format", "json_schema", "json schema", "schema", "tool",
                 "function", "grammar", "structured", "not supported", "unsupported", "not implemented")
_RETRY_MAX_DELAY = 10.0  # seconds between the embedder's or captioner's own attempts (Retry-After may ask more)
DEFAULT_EMBED_CONCURRENCY = 4  # embedding batches under way at once (HERCULES_EMBED_CONCURRENCY)
CHAT_TEMPLATE_TOKENS = 64  # what a server's chat template may add around the prompt
ESTIMATE_MARGIN = 1.2
_CONTEXT_WORDS = ("context length", "context_length", "maximum context", "context window", "too many tokens",
                  "exceeds the context", "prompt is too long")


# --------------------------------------------------------------------------- helpers

def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date); None if absent."""
    if headers is None:
        return None
    get = getattr(headers, "get", None)
    if get is None:
        return None
    ms = get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
            if math.isfinite(value) and value >= 0:
                return min(value, RETRY_AFTER_CAP)
        except ValueError:
            pass
    ra = get("retry-after")
    if ra is None:
        return None
    ra = str(ra).strip()
    try:
        value = float(ra)
        return min(value, RETRY_AFTER_CAP) if math.isfinite(value) and value >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(ra)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return min(max(0.0, when.timestamp() - time.time()), RETRY_AFTER_CAP)


def _server_message(exc: Any) -> str:
    """The ``error.message`` of an SDK status error's body, or its own text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    return str(getattr(exc, "message", None) or exc)


def _error_code(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("code") or err.get("type") or "")
    return str(getattr(exc, "code", "") or "")


def public_url(url: str) -> str:
    """``url`` without user, password, query or fragment (what may go into a cache key or a log)."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    except ValueError:
        return "(unparsable URL)"


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Endpoint:
    """What the three clients share: the SDK client, the key scrubbing and error translation."""

    service = "LLM server"
    key_env_default = "HERCULES_LLM_API_KEY"
    model_env_default = "HERCULES_LLM_MODEL"

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout: float,
                 key_env: str | None = None, model_env: str | None = None):
        import openai  # imported here so that hercules_core imports without the package

        if not base_url:
            raise LLMFatalError(f"No base URL for the {self.service}.")
        if not model:
            raise LLMFatalError(f"No model name for the {self.service} at {base_url}.")
        self.base_url = str(base_url).rstrip("/")
        self.model = str(model)
        self.timeout = float(timeout)
        self._key = api_key or None
        self._key_env = key_env or self.key_env_default
        self._model_env = model_env or self.model_env_default
        self._openai = openai
        self._client = openai.OpenAI(base_url=self.base_url, api_key=self._key or _NO_KEY,
                                     timeout=self.timeout, max_retries=0)

    def __repr__(self) -> str:  # never the key
        return (f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}, "
                f"api_key={'***' if self._key else None})")

    def _scrub(self, text: Any) -> str:
        s = str(text)
        if self._key and len(self._key) >= 4:
            s = s.replace(self._key, "***")
        return s

    def _available_models(self) -> list[str]:
        try:
            return sorted(m.id for m in self._client.with_options(timeout=min(self.timeout, 10.0)).models.list())
        except Exception:  # best effort, only to improve an error message
            return []

    def _translate(self, exc: BaseException) -> LLMError:
        """An SDK exception as ``LLMFatalError`` (retrying cannot help) or ``LLMError`` (transient)."""
        o = self._openai
        where = f"The {self.service} at {self.base_url}"
        if isinstance(exc, (o.AuthenticationError, o.PermissionDeniedError)):
            status = getattr(exc, "status_code", "401/403")
            return EndpointFatalError(
                f"{where} rejected the API key (HTTP {status}): set {self._key_env} to a valid key for this "
                f"server{' (or OPENAI_API_KEY)' if self._key_env == self.key_env_default else ''}.")
        if isinstance(exc, o.NotFoundError):
            models = self._available_models()
            listed = (f"it serves: {', '.join(models[:20])}{' …' if len(models) > 20 else ''}" if models else
                      f"list the models it serves with: curl {self.base_url}/models")
            return EndpointFatalError(
                f"{where} does not know the model {self.model!r} (HTTP 404: "
                f"{_short(self._scrub(_server_message(exc)))}). Set {self._model_env} to one of its models "
                f"({listed}); if the URL is wrong, check that the base URL ends in /v1.")
        if isinstance(exc, o.RateLimitError):
            msg = self._scrub(_server_message(exc))
            if _error_code(exc) == "insufficient_quota" or ("quota" in msg.lower() and "exceeded" in msg.lower()):
                return EndpointFatalError(f"{where} says the account's quota is exhausted (HTTP 429): {_short(msg)}")
            return LLMError(f"{where} is rate limiting requests (HTTP 429): {_short(msg)}",
                            retry_after=parse_retry_after(getattr(exc.response, "headers", None)))
        if isinstance(exc, o.APITimeoutError):
            return LLMError(f"{where} did not answer within {self.timeout:g} s.")
        if isinstance(exc, o.APIConnectionError):
            return LLMError(f"Cannot reach the {self.service} at {self.base_url}: "
                            f"{_short(self._scrub(getattr(exc, '__cause__', None) or exc))}")
        if isinstance(exc, o.APIStatusError):
            status = exc.status_code
            msg = _short(self._scrub(_server_message(exc)))
            if status >= 500 or status in (408, 409, 425):
                return LLMError(f"{where} failed (HTTP {status}): {msg}",
                                retry_after=parse_retry_after(getattr(exc.response, "headers", None)))
            if any(w in msg.lower() for w in _CONTEXT_WORDS):
                # smaller batches may fit: let the summariser retry and then shrink the batch
                return LLMError(f"{where} says the prompt is too long (HTTP {status}): {msg}. "
                                f"Lower max_prompt_tokens or llm_initial_batch_size.")
            return LLMFatalError(f"{where} refused the request (HTTP {status}): {msg}")
        if isinstance(exc, o.OpenAIError):
            return LLMError(f"{where} returned an unusable answer: {_short(self._scrub(exc))}")
        return LLMError(f"{where}: {type(exc).__name__}: {_short(self._scrub(exc))}")


# --------------------------------------------------------------------------- LLM

class OpenAICompatLLM(_Endpoint):
    """An LLM behind an OpenAI-compatible ``/v1/chat/completions`` endpoint (a ``UsageReportingLLM``
    and a ``ConfigurableLLM``, see ``clients/base.py``).

    ``structured`` chooses how the JSON schema is sent: ``json_schema`` (OpenAI structured
    outputs), ``json_object_schema`` (llama.cpp: ``{"type": "json_object", "schema": ...}``),
    ``tool`` (a forced tool call whose parameters are the schema), ``json_object`` (plain JSON
    mode) or ``text`` (nothing; the summariser's parser copes). ``auto`` tries them in that order,
    moving on when the server rejects a mode, and remembers the first that works.

    ``context_tokens``: the server's context window (e.g. llama.cpp's ``--n_ctx``), when known
    (``HERCULES_LLM_CONTEXT``, or ``n_ctx`` in the registry file): the client is then a
    ``ContextLimitedLLM`` with a limit, and the summariser keeps prompts within it, counted with the
    project's pessimistic estimate (the server's tokenizer is not known here).
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, timeout: float = 60.0,
                 structured: str = "auto", temperature: float | None = 0.2, max_tokens: int = 1024,
                 model_id: str | None = None, key_env: str | None = None, model_env: str | None = None,
                 context_tokens: int | None = None):
        if structured not in STRUCTURED_CHOICES:
            raise LLMFatalError(f"structured must be one of {', '.join(STRUCTURED_CHOICES)}; got {structured!r}.")
        super().__init__(base_url, model, api_key, timeout, key_env, model_env)
        self.structured = structured
        self.temperature = temperature
        self.max_tokens = int(max_tokens)
        self.context_tokens = int(context_tokens) if context_tokens else None
        self.model_id = model_id or self.model
        self._lock = threading.Lock()
        self._modes = [structured] if structured != "auto" else list(STRUCTURED_MODES)
        self._mode_at = 0  # index into _modes of the first mode not known to be rejected
        self._mode_ok: str | None = None  # the mode that worked (auto mode remembers it)
        self._token_param = "max_tokens"
        self._send_temperature = temperature is not None

    @property
    def generation_params(self) -> dict[str, Any]:
        """What shapes the answer besides the prompt and schema (part of an answer cache's key)."""
        return {"temperature": self.temperature, "max_tokens": self.max_tokens, "structured": self.structured}

    @property
    def prompt_token_limit(self) -> int | None:
        """Prompt tokens that leave room for the chat template and a ``max_tokens`` answer; None when
        the context window was not configured."""
        if self.context_tokens is None:
            return None
        return max(0, self.context_tokens - self.max_tokens - CHAT_TEMPLATE_TOKENS)

    def count_tokens(self, text: str) -> int:
        # the server's tokenizer is not known here: the pessimistic estimate, plus a margin for made-up
        # words (which run to ~3 characters a token where the estimate assumes 3.5)
        return math.ceil(estimate_tokens(text) * ESTIMATE_MARGIN)

    @property
    def structured_mode(self) -> str | None:
        """The structured-output mode in use once one has worked (None before the first success)."""
        return self._mode_ok

    def complete(self, prompt: str, *, schema: dict[str, Any] | None = None) -> str:
        return self.complete_with_usage(prompt, schema=schema)[0]

    def complete_with_usage(self, prompt: str, *, schema: dict[str, Any] | None = None
                            ) -> tuple[str, dict[str, int | None]]:
        """The answer and ``{"prompt_tokens", "completion_tokens"}`` as the server counted them."""
        adapted = False
        while True:
            with self._lock:
                at = self._mode_at
            mode = self._modes[at] if schema is not None else "text"
            try:
                response = self._client.chat.completions.create(**self._request(prompt, schema, mode))
            except self._openai.APIStatusError as exc:
                if not adapted and self._adapt_params(exc):
                    adapted = True
                    continue
                if schema is not None and self._is_rejection(exc, mode) and at + 1 < len(self._modes):
                    with self._lock:
                        if self._mode_at == at:
                            self._mode_at = at + 1
                            logger.info("The LLM server at %s rejected structured output %r (HTTP %s); trying %r.",
                                        self.base_url, mode, exc.status_code, self._modes[at + 1])
                    continue
                if schema is not None and self.structured != "auto" and self._is_rejection(exc, mode):
                    raise LLMFatalError(
                        f"The LLM server at {self.base_url} rejected structured output {mode!r} (HTTP "
                        f"{exc.status_code}: {_short(self._scrub(_server_message(exc)))}). Set "
                        f"HERCULES_LLM_STRUCTURED=auto to find a mode it accepts.") from None
                raise self._translate(exc) from None
            except self._openai.OpenAIError as exc:
                raise self._translate(exc) from None
            text = self._text(response, mode)
            if schema is not None and self._mode_ok != mode:
                with self._lock:
                    if self._mode_ok != mode:
                        self._mode_ok = mode
                        logger.info("The LLM server at %s accepts structured output %r.", self.base_url, mode)
            usage = getattr(response, "usage", None)
            return text, {"prompt_tokens": getattr(usage, "prompt_tokens", None),
                          "completion_tokens": getattr(usage, "completion_tokens", None)}

    # --- request building ---
    def _request(self, prompt: str, schema: dict[str, Any] | None, mode: str) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                              self._token_param: self.max_tokens}
        if self._send_temperature:
            kw["temperature"] = self.temperature
        if schema is None or mode == "text":
            return kw
        if mode == "json_schema":
            kw["response_format"] = {"type": "json_schema",
                                     "json_schema": {"name": _TOOL_NAME, "schema": schema, "strict": False}}
        elif mode == "json_object_schema":
            # not in the SDK's types: sent as-is through extra_body
            kw["extra_body"] = {"response_format": {"type": "json_object", "schema": schema}}
        elif mode == "tool":
            kw["tools"] = [{"type": "function", "function": {
                "name": _TOOL_NAME, "description": "Record the title and description of every cluster.",
                "parameters": schema}}]
            kw["tool_choice"] = {"type": "function", "function": {"name": _TOOL_NAME}}
        elif mode == "json_object":
            kw["response_format"] = {"type": "json_object"}
        return kw

    def _text(self, response: Any, mode: str) -> str:
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise LLMError(f"The LLM server at {self.base_url} returned no choices.")
        message = choices[0].message
        if mode == "tool":
            for call in getattr(message, "tool_calls", None) or []:
                fn = getattr(call, "function", None)
                if fn is not None and getattr(fn, "arguments", None):
                    return fn.arguments
        return message.content or ""

    def _is_rejection(self, exc: Any, mode: str) -> bool:
        """Did the server refuse the structured-output mode (rather than fail for another reason)?"""
        if mode == "text" or exc.status_code not in _REJECT_STATUS:
            return False
        if exc.status_code == 501:
            return True
        msg = _server_message(exc).lower()
        if exc.status_code == 404 and _error_code(exc) == "model_not_found":
            return False
        return any(w in msg for w in _REJECT_WORDS)

    def _adapt_params(self, exc: Any) -> bool:
        """Newer OpenAI models refuse ``max_tokens`` (want ``max_completion_tokens``) or ``temperature``."""
        if exc.status_code != 400:
            return False
        msg = _server_message(exc).lower()
        if self._token_param == "max_tokens" and "max_completion_tokens" in msg and "max_tokens" in msg:
            self._token_param = "max_completion_tokens"
            return True
        if self._send_temperature and "temperature" in msg and ("unsupported" in msg or "not support" in msg):
            self._send_temperature = False
            return True
        return False


# --------------------------------------------------------------------------- embeddings

class OpenAICompatEmbedder(_Endpoint):
    """Text embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint (OpenAI,
    text-embeddings-inference, vLLM, Infinity, llama.cpp, Ollama, ...).

    Texts are sent in batches of at most ``batch_size`` texts and ``max_chars_per_request``
    characters (a longer text goes alone), ``concurrency`` batches at a time, each retried on its
    own; vectors come back in order, float32, unit length. It is a ``BatchedEmbedder``: given a
    ``store`` (the disk cache, ``cache.CachedBatchedEmbedder``) it skips the batches kept there and
    keeps each new batch as soon as it arrives, so a run that fails half-way resumes with the
    batches it had not finished.
    """

    service = "embedding server"
    key_env_default = "HERCULES_EMBED_API_KEY"
    model_env_default = "HERCULES_EMBED_MODEL"
    attempts = 3
    retry_wait = 0.5  # seconds before the first retry (then doubling, with jitter; at least Retry-After)

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, batch_size: int = 128,
                 max_chars_per_request: int = 200_000, timeout: float = 60,
                 concurrency: int = DEFAULT_EMBED_CONCURRENCY, model_id: str | None = None,
                 show_progress: bool = False, key_env: str | None = None, model_env: str | None = None):
        try:
            super().__init__(base_url, model, api_key, timeout, key_env, model_env)
        except LLMError as exc:
            raise EmbeddingError(str(exc)) from None
        if batch_size < 1 or max_chars_per_request < 1 or concurrency < 1:
            raise EmbeddingError("batch_size, max_chars_per_request and concurrency must be >= 1.")
        self.batch_size = int(batch_size)
        self.max_chars_per_request = int(max_chars_per_request)
        self.concurrency = int(concurrency)
        self.model_id = model_id or self.model
        self.show_progress = show_progress
        self.requests = 0  # HTTP requests sent (attempts included)
        self._count_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """The server (scheme, host, port, path; no user, password or query) and the model."""
        return f"{public_url(self.base_url)} {self.model}"

    def batches(self, texts: list[str]) -> list[tuple[int, int]]:
        """``[start, stop)`` ranges within both limits."""
        out, start, chars = [], 0, 0
        for i, t in enumerate(texts):
            n = len(t)
            if i > start and (i - start >= self.batch_size or chars + n > self.max_chars_per_request):
                out.append((start, i))
                start, chars = i, 0
            chars += n
        if start < len(texts):
            out.append((start, len(texts)))
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embed_batched(texts)

    def embed_batched(self, texts: list[str], *, store: Any = None,
                      progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        texts = [str(t) if t is not None else "" for t in texts]
        texts = [t if t.strip() else " " for t in texts]  # servers reject empty inputs
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        ranges = self.batches(texts)
        rows = self._rows(texts, ranges, store, progress, use_kept=True)
        dims = {r.shape[1] for r in rows}
        if len(dims) != 1 and store is not None:  # kept batches of another size: the model behind the name changed
            rows = self._rows(texts, ranges, store, progress, use_kept=False)
            dims = {r.shape[1] for r in rows}
        if len(dims) != 1:
            raise EmbeddingError(f"The embedding server at {self.base_url} returned vectors of different sizes "
                                 f"({sorted(dims)}) for the model {self.model!r}.")
        out = np.concatenate(rows, dtype=np.float32)
        del rows
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        zero = norms[:, 0] == 0
        if zero.any():
            out[zero, 0] = 1.0
            norms[zero] = 1.0
        out /= norms
        return out

    def _rows(self, texts: list[str], ranges: list[tuple[int, int]], store: Any,
              progress: Callable[[int, int], None] | None, *, use_kept: bool) -> list[np.ndarray]:
        """One array per range, in order: kept ones from ``store``, the others from the server
        (``concurrency`` at a time, each put into ``store`` as soon as it arrives)."""
        n = len(texts)
        rows: list[np.ndarray | None] = [None] * len(ranges)
        done = 0
        todo = []
        for j, (a, b) in enumerate(ranges):
            kept = store.get(texts[a:b]) if store is not None and use_kept else None
            if kept is not None and kept.ndim == 2 and kept.shape[0] == b - a:
                rows[j] = kept
                done += b - a
            else:
                todo.append(j)
        if progress is not None and done:
            progress(done, n)
        if not todo:
            return rows

        def one(batch: list[str]) -> np.ndarray:
            arr = self._embed_batch(batch)
            if store is not None:
                store.put(batch, arr)  # at once: a later failure does not lose it
            return arr

        from tqdm import tqdm

        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo)), thread_name_prefix="hercules-embed")
        try:
            # each batch in a copy of the caller's context (its log routing, e.g. the app's per-run log)
            futures = {pool.submit(contextvars.copy_context().run, one, texts[ranges[j][0]:ranges[j][1]]): j
                       for j in todo}
            with tqdm(total=len(todo), desc="embedding batches", leave=False,
                      disable=not self.show_progress or len(todo) < 2) as bar:
                for fut in as_completed(futures):
                    j = futures[fut]
                    rows[j] = fut.result()  # the first failure ends the run (finished batches are kept)
                    done += ranges[j][1] - ranges[j][0]
                    bar.update(1)
                    if progress is not None:
                        progress(done, n)
        finally:
            # on a failure or a cancel: send nothing more, let the requests under way end (and be kept)
            pool.shutdown(wait=True, cancel_futures=True)
        return rows

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        try:
            for attempt in retrying(self.attempts, base=self.retry_wait, cap=_RETRY_MAX_DELAY):
                with attempt:
                    return self._request(batch)
        except LLMError as exc:
            tail = f" (after {self.attempts} attempts)" if exc.retryable else ""
            raise EmbeddingError(f"{exc}{tail}") from None
        raise AssertionError("unreachable")

    def _request(self, batch: list[str]) -> np.ndarray:
        with self._count_lock:
            self.requests += 1
        try:
            response = self._client.embeddings.create(model=self.model, input=batch, encoding_format="float")
        except self._openai.OpenAIError as exc:
            raise self._translate(exc) from None
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(batch) or [d.index for d in data] != list(range(len(batch))):
            raise LLMFatalError(f"The embedding server at {self.base_url} returned {len(data)} vectors "
                                f"for {len(batch)} texts.")
        try:
            arr = np.asarray([d.embedding for d in data], dtype=np.float32)
        except (TypeError, ValueError):
            raise LLMFatalError(f"The embedding server at {self.base_url} returned malformed vectors.") from None
        if arr.ndim != 2 or not np.isfinite(arr).all():
            raise LLMFatalError(f"The embedding server at {self.base_url} returned malformed vectors.")
        return arr


# --------------------------------------------------------------------------- captions

class OpenAICompatCaptioner(_Endpoint):
    """Image captions from a vision chat model (each image sent downscaled as a PNG data URL)."""

    service = "captioning server"
    key_env_default = "HERCULES_CAPTION_API_KEY"
    model_env_default = "HERCULES_CAPTION_MODEL"
    attempts = 3
    retry_wait = 0.5

    def __init__(self, base_url: str, model: str, api_key: str | None = None, *, max_side: int = 512,
                 prompt: str = "Describe this image in one or two sentences.", timeout: float = 60,
                 concurrency: int = 4, max_tokens: int = 200, model_id: str | None = None,
                 show_progress: bool = False, key_env: str | None = None, model_env: str | None = None):
        super().__init__(base_url, model, api_key, timeout, key_env, model_env)
        self.max_side = int(max_side)
        self.prompt = prompt
        self.concurrency = max(1, int(concurrency))
        self.max_tokens = int(max_tokens)
        self.model_id = model_id or self.model
        self.show_progress = show_progress

    def data_url(self, path: str) -> str:
        """The image at ``path``, downscaled so its longer side is at most ``max_side``, as a PNG data URL."""
        from PIL import Image

        with Image.open(path) as im:
            im.load()
            if im.mode not in ("RGB", "RGBA", "L", "LA"):
                im = im.convert("RGBA" if "A" in im.getbands() or "transparency" in im.info else "RGB")
            if max(im.size) > self.max_side:
                scale = self.max_side / max(im.size)
                im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                               Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="PNG", optimize=False)
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")

    def caption(self, paths: list[str]) -> list[str]:
        paths = [str(p) for p in paths]
        if not paths:
            return []
        from tqdm import tqdm

        abort = threading.Event()
        fatal: list[BaseException] = []

        def one(path: str) -> str:
            if abort.is_set():
                return "(caption failed: cancelled after an earlier fatal error)"
            try:
                return self._caption_one(path)
            except EndpointFatalError as exc:  # every image would fail alike: stop the run
                abort.set()
                fatal.append(exc)
                return "(caption failed: fatal error)"
            except Exception as exc:  # unreadable image, ...
                return self._failed(path, exc)

        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(paths)),
                                thread_name_prefix="hercules-caption") as pool:
            # each image in a copy of the caller's context (its log routing, e.g. the app's per-run log)
            futures = [pool.submit(contextvars.copy_context().run, one, p) for p in paths]
            out = [f.result() for f in tqdm(futures, desc="captioning", leave=False, disable=not self.show_progress)]
        if fatal:
            raise fatal[0]
        return out

    def _failed(self, path: str, exc: BaseException) -> str:
        reason = _short(self._scrub(exc), 200)
        logger.warning("Captioning %s failed: %s", path, reason)
        return f"(caption failed: {reason})"

    def _caption_one(self, path: str) -> str:
        url = self.data_url(path)  # an unreadable image fails here, before any request
        for attempt in retrying(self.attempts, base=self.retry_wait, cap=_RETRY_MAX_DELAY):
            with attempt:
                try:
                    response = self._client.chat.completions.create(
                        model=self.model, max_tokens=self.max_tokens,
                        messages=[{"role": "user", "content": [
                            {"type": "text", "text": self.prompt},
                            {"type": "image_url", "image_url": {"url": url}}]}])
                except self._openai.OpenAIError as exc:
                    raise self._translate(exc) from None
                choices = getattr(response, "choices", None) or []
                text = (choices[0].message.content or "").strip() if choices else ""
                if not text:
                    raise LLMError(f"The captioning server at {self.base_url} returned an empty caption.")
                return " ".join(text.split())
        raise AssertionError("unreachable")
