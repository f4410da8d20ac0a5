"""The new-run form, untouched, runs what the command line runs (issue 21, item 1).

The form used to show the config's defaults and apply an LLM's recommended settings only when the LLM
*changed*: the untouched form ran the embedded SmolLM2 with prompt style "full", 8 clusters per call
and 4 calls at once (context-window errors, junk titles), while the CLI, for the same data and models,
applied the recommendations (grounded, 1, 1).
"""

from __future__ import annotations

import dataclasses

import pytest

import model_registry
from callbacks import configform, ids
from callbacks.page_new_run import recommended_values
from hercules_run import cli


def _form_values(node, out: dict | None = None) -> dict:
    """{(type, name-or-kind): value} of every settings and model field in a layout tree."""
    out = {} if out is None else out
    cid = getattr(node, "id", None)
    if isinstance(cid, dict) and cid.get("type") in (ids.CFG_T, ids.MODEL_T):
        out[(cid["type"], cid.get("name") or cid.get("kind"))] = getattr(node, "value", None)
    children = getattr(node, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children] if children is not None else []:
        _form_values(child, out)
    return out


def _untouched_form() -> tuple[dict, dict]:
    fields = _form_values(configform.form_layout(include_tests=False))
    settings = {name: v for (kind, name), v in fields.items() if kind == ids.CFG_T}
    models = {kind: v for (k, kind), v in fields.items() if k == ids.MODEL_T}
    return settings, models


def _cli_config(*flags: str):
    args = cli.build_parser().parse_args(["run", "data.csv", "--out", "out", *flags])
    if args.llm is None:
        args.llm = cli.default_llm()  # as cli.run does
    return cli._config(args)


def _differences(a, b) -> dict:
    return {f.name: (getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
            if getattr(a, f.name) != getattr(b, f.name)}


def test_the_untouched_form_builds_the_config_the_cli_builds_with_no_flags():
    settings, models = _untouched_form()
    assert models["llm"] == cli.default_llm()
    form = configform.config_from_form(settings, "fixed")
    assert _differences(form, _cli_config()) == {}


def test_the_default_summariser_starts_with_its_recommended_settings():
    settings, models = _untouched_form()
    rec = model_registry.recommended_config(models["llm"])
    assert rec, f"the default LLM {models['llm']} has no recommendations: this test no longer says anything"
    for key, value in rec.items():
        if key in configform.FIELD_BY_NAME:
            assert settings[key] == value, key


@pytest.mark.parametrize("llm", [e.id for e in model_registry.entries("llm")])
def test_choosing_any_summariser_gives_the_config_the_cli_builds_for_it(llm):
    """From the untouched form (the default LLM's recommendations in place), choose ``llm``: the form
    now holds what ``--llm llm`` gives on the command line, whatever the previous LLM recommended."""
    settings, _ = _untouched_form()
    id_list = [{"type": ids.CFG_T, "name": n} for n in settings]
    new = recommended_values(llm, id_list, list(settings.values()))
    after = {n: (settings[n] if v is recommended_values.__globals__["no_update"] else v)
             for n, v in zip(settings, new)}
    assert _differences(configform.config_from_form(after, "fixed"), _cli_config("--llm", llm)) == {}
