"""The narrow protocols through which hercules_core talks to models.

hercules_core never builds an SDK client: embedders, LLMs and captioners are passed in as objects
that satisfy these protocols (``model_registry.py`` builds the concrete ones from a model id).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TextEmbedder(Protocol):
    """Embeds texts. ``model_id`` names the model (used for caching and in saved models)."""

    model_id: str

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return a float32 array of shape (len(texts), dim), one row per text, in order."""


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


@runtime_checkable
class Captioner(Protocol):
    model_id: str

    def caption(self, paths: list[str]) -> list[str]:
        """Return one caption per image path, in order."""
