"""An offline image embedder that needs no model weights: colour, layout and texture features.

It is a baseline for image runs without a neural image model: images with similar colours,
shapes and edge structure get similar vectors. Deterministic (PIL resampling plus numpy only).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from ..errors import EmbeddingError

_WORK_SIZE = 64  # every image is resampled to this square size before computing features


class ImageFeatureEmbedder:
    """Hand-crafted image features, L2-normalised.

    Blocks (each L2-normalised, then weighted, so that none dominates by its dimension):

    - colour: per-channel RGB histograms (``colour_bins`` bins each, as fractions of pixels);
    - layout: a ``thumb_size`` x ``thumb_size`` grayscale thumbnail, mean-centred (shape and position);
    - texture: a histogram of gradient magnitudes, a magnitude-weighted histogram of gradient
      orientations, and the edge density (fraction of strong-gradient pixels).

    Parameters
    ----------
    show_progress : draw a tqdm progress bar on stderr.
    colour_bins, thumb_size, texture_bins : block resolutions.
    weights : (colour, layout, texture) block weights.
    """

    model_id = "image-features"

    def __init__(self, *, show_progress: bool = True, colour_bins: int = 8, thumb_size: int = 16,
                 texture_bins: int = 8, weights: tuple[float, float, float] = (1.0, 1.0, 1.0)):
        self.show_progress = show_progress
        self.colour_bins = colour_bins
        self.thumb_size = thumb_size
        self.texture_bins = texture_bins
        self.weights = weights

    @property
    def dim(self) -> int:
        return 3 * self.colour_bins + self.thumb_size**2 + 2 * self.texture_bins + 1

    def embed_images(self, paths: list[str]) -> np.ndarray:
        """Return float32 unit vectors of shape (len(paths), dim), one row per image, in order."""
        out = np.zeros((len(paths), self.dim), dtype=np.float32)
        for i, path in enumerate(tqdm(paths, desc="image features", unit="img", disable=not self.show_progress)):
            out[i] = self._features(path)
        return out

    def _load(self, path: str) -> Image.Image:
        try:
            with Image.open(path) as im:
                im.draft("RGB", (4 * _WORK_SIZE, 4 * _WORK_SIZE))  # JPEG: decode at reduced size, much faster
                im = ImageOps.exif_transpose(im)  # camera photos: use the orientation a viewer shows
                # BOX averages all source pixels, so downscaling is stable and deterministic.
                return im.convert("RGB").resize((_WORK_SIZE, _WORK_SIZE), Image.Resampling.BOX)
        except Exception as exc:  # PIL raises many types for bad files; all mean "cannot read"
            raise EmbeddingError(f"Cannot read image {path}: {type(exc).__name__}: {exc}") from exc

    def _features(self, path: str) -> np.ndarray:
        rgb_img = self._load(path)
        rgb = np.asarray(rgb_img, dtype=np.float64) / 255.0
        colour = np.concatenate([
            np.histogram(rgb[..., c], bins=self.colour_bins, range=(0.0, 1.0))[0] for c in range(3)
        ]).astype(np.float64)

        gray_img = rgb_img.convert("L")
        thumb = np.asarray(gray_img.resize((self.thumb_size, self.thumb_size), Image.Resampling.BOX), np.float64)
        thumb = thumb.ravel() / 255.0
        thumb -= thumb.mean()  # brightness shifts should not change the layout block

        gray = np.asarray(gray_img, dtype=np.float64) / 255.0
        gy, gx = np.gradient(gray)
        mag = np.hypot(gx, gy)
        # Central differences of values in [0, 1] are at most ~0.71 in magnitude.
        mag_hist = np.histogram(mag, bins=self.texture_bins, range=(0.0, 0.75))[0].astype(np.float64)
        angle = np.mod(np.arctan2(gy, gx), np.pi)  # edge orientation, sign-free
        ori_hist = np.histogram(angle, bins=self.texture_bins, range=(0.0, np.pi), weights=mag)[0]
        edge_density = float((mag > 0.1).mean())
        texture = np.concatenate([mag_hist / mag_hist.sum(), _unit(ori_hist), [edge_density]])

        blocks = [w * _unit(b) for w, b in zip(self.weights, (colour, thumb, texture))]
        return _unit(np.concatenate(blocks)).astype(np.float32)


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    return v / n if n > 0 else v
