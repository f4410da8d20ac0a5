"""CLIP image embeddings through sentence-transformers, from local weights only (never downloaded).

Weights come from ``HERCULES_CLIP_PATH`` (a local sentence-transformers CLIP model directory, e.g. a
saved ``clip-ViT-B-32``) or, failing that, from a Hugging Face cache that already holds
``sentence-transformers/clip-ViT-B-32``. Nothing is fetched: the model is loaded with ``local_files_only``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import EmbeddingError

CLIP_PATH_ENV = "HERCULES_CLIP_PATH"
CLIP_HUB_ID = "sentence-transformers/clip-ViT-B-32"
CLIP_UNAVAILABLE = f"set {CLIP_PATH_ENV} to a local sentence-transformers CLIP model directory"


def _cached_hub_model(repo_id: str = CLIP_HUB_ID) -> str | None:
    """The snapshot folder of ``repo_id`` if the local Hugging Face cache already holds it (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        hit = try_to_load_from_cache(repo_id, "modules.json")
    except Exception:  # a malformed cache or id: treat as absent
        return None
    return str(Path(hit).parent) if isinstance(hit, str) and os.path.isfile(hit) else None


def clip_path() -> str | None:
    """Where CLIP weights are on this machine: ``HERCULES_CLIP_PATH`` or the HF cache; None if nowhere."""
    env = os.environ.get(CLIP_PATH_ENV, "").strip()
    if env:
        return env if os.path.isdir(env) else None
    return _cached_hub_model()


def clip_unavailable_reason() -> str:
    """Why CLIP cannot be used here ("" when it can)."""
    env = os.environ.get(CLIP_PATH_ENV, "").strip()
    if env and not os.path.isdir(env):
        return f"{CLIP_PATH_ENV}={env} is not a directory; {CLIP_UNAVAILABLE}"
    return "" if clip_path() else CLIP_UNAVAILABLE


class ClipImageEmbedder:
    """Embeds images with a sentence-transformers CLIP model from a local directory.

    Rows are L2-normalised. The model is loaded on first use.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, batch_size: int = 32, show_progress: bool = True,
                 device: str = "cpu"):
        path = path if path is not None else clip_path()
        if path is None:
            raise EmbeddingError(f"No CLIP weights on this machine: {CLIP_UNAVAILABLE}.")
        self.path = str(path)
        self.model_id = f"clip:{Path(self.path).name or self.path}"
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.device = device
        self._model = None

    def _load(self):
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer

                # local_files_only: a missing file must fail, not download (and the process's
                # environment is not ours to change)
                self._model = SentenceTransformer(self.path, device=self.device, local_files_only=True)
            except Exception as exc:  # many types for a bad or missing model directory
                raise EmbeddingError(f"Cannot load the CLIP model from {self.path}: {exc}") from exc
        return self._model

    def embed_images(self, paths: list[str]) -> np.ndarray:
        from PIL import Image

        model = self._load()
        out = []
        for start in range(0, len(paths), self.batch_size):
            images = []
            for p in paths[start:start + self.batch_size]:
                try:
                    with Image.open(p) as im:
                        images.append(im.convert("RGB"))
                except OSError as exc:
                    raise EmbeddingError(f"Cannot read the image {p}: {exc}") from exc
            vecs = model.encode(images, batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
            out.append(np.asarray(vecs, dtype=np.float32))
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(out, axis=0)
