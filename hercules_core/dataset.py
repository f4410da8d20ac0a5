"""The prepared input of a run: what ``data.prepare()`` returns and ``Hercules.fit()`` takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MODALITIES = ("text", "image", "numeric")


@dataclass
class Dataset:
    """Prepared items of one modality, ids preserved.

    Attributes
    ----------
    ids : item ids as strings, unique, in input order.
    modality : "text", "image" or "numeric".
    texts : the texts (text modality), else None.
    image_paths : the image file paths (image modality), else None.
    numeric : standardised values, float32 (n, p) (numeric modality), else None.
    numeric_raw : the original values, float64 (n, p), used for statistics in prompts.
    feature_names : one name per numeric column.
    numeric_metadata : {feature name: {"unit": ..., "description": ...}} (optional entries).
    scaler_mean, scaler_scale : the StandardScaler parameters (numeric = (raw - mean) / scale).
    embeddings : the items' own vectors, float32 (n, d), given with the data (text modality): used as
        the items' representation instead of embedding their texts (no scaling, no statistics).
    labels : optional ground-truth labels as strings, one per item.
    notes : what preparation did that a user should know (dropped rows, ...), also logged.
    source : a short human description of where the data came from (file name, "list", ...).
    """

    ids: list[str]
    modality: str
    texts: list[str] | None = None
    image_paths: list[str] | None = None
    numeric: np.ndarray | None = None
    numeric_raw: np.ndarray | None = None
    feature_names: list[str] | None = None
    numeric_metadata: dict[str, dict[str, Any]] | None = None
    scaler_mean: np.ndarray | None = None
    scaler_scale: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    labels: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.ids)

    def raw_text(self, i: int) -> str:
        """A plain-text rendering of item ``i``'s raw content (text, file name, values)."""
        if self.modality == "text":
            return self.texts[i]
        if self.modality == "image":
            return self.image_paths[i]
        values = self.numeric_raw[i]
        return ", ".join(f"{n}={v:g}" for n, v in zip(self.feature_names, values))
