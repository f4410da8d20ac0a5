"""One declaration per parameter (issue 17, item 1): the CLI, the app's form and the README's table
are generated from ``hercules_core.config.PARAMETERS`` and cannot drift apart."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import model_registry
from callbacks import configform
from hercules_core.config import PARAMETERS, Choices, HerculesConfig, Interval
from hercules_core.errors import ConfigError, InputError
from hercules_run import cli

ROOT = Path(__file__).resolve().parents[1]
LEVELS = PARAMETERS["level_cluster_counts"]


def _param_table():
    spec = importlib.util.spec_from_file_location("param_table", ROOT / "scripts" / "param_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_parameter_table_is_the_generated_one():
    """Stale when a parameter is added or changed without `scripts/param_table.py --write`."""
    table = _param_table()
    readme = (ROOT / "README.md").read_text()
    assert table.updated(readme) == readme, "README.md is stale: run .venv/bin/python scripts/param_table.py --write"
    for p in PARAMETERS.values():
        assert f"| `{p.name}` |" in readme


def test_both_doors_offer_the_same_settings():
    actions = _run_parser()._actions
    flags = {a.dest: a.option_strings for a in actions}
    for f in configform.FIELDS:
        assert PARAMETERS[f.name].flag in flags[f.name], f.name
    for p in PARAMETERS.values():
        if p.flag:
            assert p.label and p.group, f"{p.name} has a flag but no form field"
    for old in ("--mode", "--seed", "--max-levels", "--auto-k-method", "--llm-l0", "--reduce", "--reduce-dims",
                "--reduce-neighbors", "--auto-k-branching", "--resampling", "--no-weights", "--topic-seed",
                "--levels", "--auto-k", "--k-range"):
        assert any(old in a.option_strings for a in actions), old
    assert configform.FIELD_BY_NAME["prompt_style"].options == PARAMETERS["prompt_style"].check.options


def test_the_form_starts_from_the_config_defaults():
    layout = str(configform.form_layout(include_tests=False))
    assert "'levels_text'}, value='20,5'" in layout.replace('"', "'")
    assert HerculesConfig().level_cluster_counts == LEVELS.default == (20, 5)


def test_help_shows_the_generated_default(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Stop after this many levels (auto-k). (default: 5)" in out
    assert "(default: 20,5)" in out


def test_each_door_names_a_parameter_its_own_way():
    err = InputError("UMAP failed; run with {setting}.", param="reduce_method", value="none")
    assert str(err) == "UMAP failed; run with reduce_method='none'."
    assert cli.error_text(err) == "UMAP failed; run with --reduce none."
    assert configform.error_text(err) == 'UMAP failed; run with "Clustering space" set to none.'
    err = ConfigError("Text data needs a text embedder (e.g. {setting}).", param="text_embedder", value="minilm")
    assert cli.error_text(err) == "Text data needs a text embedder (e.g. --embedder minilm)."
    with pytest.raises(ConfigError) as caught:
        HerculesConfig(max_levels=0)
    assert str(caught.value) == "max_levels must be an integer >= 1; got 0."
    assert cli.error_text(caught.value) == "--max-levels must be an integer >= 1; got 0."
    assert configform.error_text(caught.value) == "Max levels must be an integer >= 1; got 0."
    with pytest.raises(ConfigError, match="^Max levels must be an integer >= 1"):
        configform.config_from_form({"max_levels": 0, "levels_text": "20,5"}, "fixed")


# --------------------------------------------------------------------------- both doors, generated settings
def _run_parser():
    return next(a for a in cli.build_parser()._actions if hasattr(a, "choices") and a.choices)._name_parser_map["run"]


def _value(p):
    """Valid values of one form parameter, as its declaration allows."""
    check = p.check
    if p.kind is bool:
        return st.booleans()
    if isinstance(check, Choices):
        return st.sampled_from(check.options)
    if isinstance(check, Interval):
        low = check.low if check.low is not None else 0
        if check.kind is int:
            return st.integers(int(low), int(check.high) if check.high is not None else int(low) + 10_000)
        high = check.high if check.high is not None else low + 1e6
        return st.floats(low, high, allow_nan=False, exclude_min=check.closed in ("right", "neither"),
                         exclude_max=check.closed in ("left", "neither"))
    return st.text(max_size=20)  # topic_seed


LLMS = sorted({e.id for e in model_registry.entries("llm")})
FORM = {f.name: _value(PARAMETERS[f.name]) for f in configform.FIELDS}
levels = st.one_of(st.none(), st.lists(st.integers(1, 500), min_size=1, max_size=4, unique=True).map(
    lambda ks: tuple(sorted(ks, reverse=True))))


def _flags(name: str, value) -> list[str]:
    flag = PARAMETERS[name].flag
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    return [f"{flag}={value!r}" if isinstance(value, float) else f"{flag}={value}"]


def _build(make):
    try:
        return make()
    except ConfigError:
        return ConfigError


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(llm=st.sampled_from(LLMS), changed=st.fixed_dictionaries({}, optional=FORM), counts=levels)
def test_the_cli_and_the_form_build_the_same_config(llm, changed, counts):
    """The user picks an LLM and changes some settings: in the form (which starts from the defaults
    with the LLM's recommendations) or as flags typed after ``--llm``. Same config, or both refuse."""
    form = {**configform.initial_values(llm), **changed,
            "levels_text": ",".join(map(str, counts or LEVELS.default))}
    argv = ["run", "data.csv", "--out", "o", "--llm", llm]
    for name, value in changed.items():
        argv += _flags(name, value)
    argv += ["--auto-k"] if counts is None else ["--levels", ",".join(map(str, counts))]
    from_form = _build(lambda: configform.config_from_form(form, "auto" if counts is None else "fixed"))
    from_cli = _build(lambda: cli._config(cli.build_parser().parse_args(argv)))
    assert from_form == from_cli
