"""The compact prompt style for tiny models: one cluster per call, no JSON example to copy."""

import json

import model_registry
from hercules_core.clients.fakes import FakeEmbedder
from hercules_core.config import HerculesConfig
from hercules_core.hercules import Hercules
from hercules_core.prompts import build_prompt, json_schema_for
from hercules_core.summarize_types import SummaryRequest
from devkit.factories import make_text_dataset


class KeywordEcho:
    """Answers a compact prompt with a flat {title, description} built from its Keywords line."""

    model_id = "keyword-echo"

    def __init__(self):
        self.prompts = []

    def complete(self, prompt, *, schema=None):
        self.prompts.append((prompt, schema))
        words = next((l.split(":", 1)[1] for l in prompt.splitlines() if l.startswith("Keywords:")), "none")
        # numbered: two clusters of one topic share their first keyword, and the title gate rejects
        # duplicate titles among siblings (tests/test_title_gate.py)
        title = f"About {words.split(',')[0].strip()} {len(self.prompts)}"
        return json.dumps({"title": title, "description": f"Items on {words}."})


def test_compact_prompt_has_content_and_no_example():
    cfg = HerculesConfig(prompt_style="compact", topic_seed="animals")
    req = SummaryRequest(key="L1_0", level=1, n_items=12, modality="text", member_indices=None,
                         samples=[("a", "Cats purr.\nLOUDLY"), ("b", "Dogs bark.")], keywords=["cats", "dogs"],
                         children=[("L0_1", "Pets", "d")])
    prompt = build_prompt([req], cfg)
    assert "Keywords: cats, dogs" in prompt and "- Cats purr. LOUDLY" in prompt and "Focus on: animals" in prompt
    assert "Subgroups: Pets" in prompt
    assert "EXAMPLE" not in prompt and "Title A" not in prompt and "L1_0" not in prompt
    schema = json_schema_for(["L1_0"], cfg, level=1)
    assert set(schema["required"]) == {"title", "description"}


def test_compact_style_one_call_per_cluster_with_flat_answers():
    llm = KeywordEcho()
    cfg = HerculesConfig(level_cluster_counts=(5, 2), prompt_style="compact", llm_initial_batch_size=8)
    h = Hercules(cfg, text_embedder=FakeEmbedder(), llm=llm).fit(make_text_dataset(n=60)).hierarchy_
    assert len(llm.prompts) == 5 + 2  # batch size forced to 1
    assert all(c.source == "keyword-echo" and not c.fallback for c in h.iter_clusters())
    assert all(c.title.startswith("About ") for c in h.iter_clusters())


def test_smollm2_recommends_a_one_cluster_style():
    # "grounded": the compact prompt plus candidate titles from the cluster's own words (grounded.py)
    assert model_registry.recommended_config("smollm2")["prompt_style"] == "grounded"


def test_app_form_takes_the_recommended_style_when_smollm2_is_chosen():
    from callbacks import ids
    from callbacks.page_new_run import recommended_values

    id_list = [{"type": ids.CFG_T, "name": "prompt_style"}, {"type": ids.CFG_T, "name": "random_state"}]
    values = recommended_values("smollm2", id_list, ["full", 0])
    assert values[0] == "grounded"
