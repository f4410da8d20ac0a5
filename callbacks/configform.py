"""The configuration form: its fields, its layout, and form values -> config.

The fields are the ``HerculesConfig`` parameters that declare a form label (``config.PARAMETERS``):
label, help, group and choices come from there, the widget from the type and constraint; advanced
fields sit in a collapsed section. The level mode (fixed / automatic) is a form-only helper.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import dash_bootstrap_components as dbc
from dash import html

import model_registry as registry
from hercules_core import HerculesConfig
from hercules_core.config import GROUPS, PARAMETERS, Parameter
from hercules_core.errors import ConfigError, HerculesError

from . import ids

DEFAULTS = HerculesConfig()
MODEL_KINDS = (("text_embedder", "Text embedder"), ("image_embedder", "Image embedder"), ("llm", "Summariser / LLM"),
               ("captioner", "Image captioner"))
FALLBACK_DEFAULTS = {"text_embedder": "minilm", "image_embedder": "image-features", "llm": "keywords",
                     "captioner": None}


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    widget: str  # select | int | float | text | switch
    help: str
    group: str
    advanced: bool = False
    options: tuple = ()


def _default(name: str) -> Any:
    return getattr(DEFAULTS, name)


def _widget_kind(p: Parameter) -> str:
    if p.kind is bool:
        return "switch"
    if p.options:
        return "select"
    return {int: "int", float: "float"}.get(p.kind, "text")


LEVELS = PARAMETERS["level_cluster_counts"]  # not a row: the fixed/automatic block of the Hierarchy card
# the labelled parameters, group by group in GROUPS order, each group in the config's field order
FIELDS: tuple[Field, ...] = tuple(
    Field(p.name, p.label, _widget_kind(p), p.help, p.group, p.advanced, p.options)
    for group in GROUPS for p in PARAMETERS.values() if p.label and p.group == group and p is not LEVELS)
FIELD_BY_NAME = {f.name: f for f in FIELDS}
AUTO_FIELDS = ("auto_k_method", "auto_k_min", "auto_k_max", "auto_k_branching", "max_levels")


def error_text(exc: HerculesError) -> str:
    """``exc``'s message naming parameters by their form label (model kinds by theirs)."""
    names = {**{p.name: p.label for p in PARAMETERS.values() if p.label}, **dict(MODEL_KINDS)}
    return exc.render(lambda p: names.get(p, p), lambda p, v: f'"{names.get(p, p)}" set to {v}')


# ----------------------------------------------------------------------------- models
def model_options(kind: str, include_tests: bool) -> list[dict[str, Any]]:
    """Select options for one model kind; unavailable models are disabled with the reason."""
    out = []
    for e in registry.entries(kind, include_tests=include_tests):
        ok, why = e.availability()
        label = e.label if ok else f"{e.label} — unavailable: {why}"
        out.append({"label": label, "value": e.id, "disabled": not ok})
    return out


def default_model(kind: str, options: list[dict[str, Any]]) -> str | None:
    """The registry's recommended model when it names one, else the offline default; must be available."""
    available = [o["value"] for o in options if not o["disabled"]]
    wanted = registry.default_llm() if kind == "llm" else None
    for candidate in (wanted, FALLBACK_DEFAULTS.get(kind)):
        if candidate in available:
            return candidate
    return available[0] if available and kind != "captioner" else None


def include_test_models() -> bool:
    return os.environ.get("HERCULES_TEST_MODELS") == "1"


# ----------------------------------------------------------------------------- layout
def recommendable() -> frozenset[str]:
    """The form's settings that some LLM of the registry has a recommendation for."""
    return frozenset(k for e in registry.entries("llm") for k, _ in e.config_overrides if k in FIELD_BY_NAME)


def initial_values(llm_id: str | None) -> dict[str, Any]:
    """What the form shows before anyone touches it: the config's defaults with the registry's
    recommendations for the LLM chosen at first (``llm_id``) over them, as the CLI applies them for
    the same LLM. (The recommendations used to arrive only when the LLM *changed*: the untouched form
    ran the embedded SmolLM2 with settings meant for large models.)"""
    values = {f.name: _default(f.name) for f in FIELDS}
    rec = registry.recommended_config(llm_id) if llm_id else {}
    values.update({k: v for k, v in rec.items() if k in values})
    return values


def _widget(f: Field, value: Any):
    cid = {"type": ids.CFG_T, "name": f.name}
    if f.widget == "select":
        return dbc.Select(id=cid, options=[{"label": o, "value": o} for o in f.options], value=value, size="sm")
    if f.widget == "switch":
        return dbc.Switch(id=cid, value=bool(value), label="")
    if f.widget == "text":
        return dbc.Input(id=cid, type="text", value=value or "", size="sm", maxLength=500)
    return dbc.Input(id=cid, type="number", value=value, size="sm", step=1 if f.widget == "int" else "any")


def _row(f: Field, value: Any):
    return dbc.Row([
        dbc.Col(html.Label(f.label, className="small fw-semibold mb-0",
                           title=f"{f.name} (default {_default(f.name)!r})"), width=5),
        dbc.Col([_widget(f, value), html.Div(f.help, className="form-text small")], width=7),
    ], className="mb-2")


def models_layout(include_tests: bool):
    rows = []
    for kind, label in MODEL_KINDS:
        opts = model_options(kind, include_tests)
        if kind == "captioner":
            opts = [{"label": "none (image file names as descriptions)", "value": "none", "disabled": False}] + opts
        value = default_model(kind, opts) or "none"
        rows.append(dbc.Row([
            dbc.Col(dbc.Label(label, className="small fw-semibold mb-0"), width=5),
            dbc.Col(dbc.Select(id={"type": ids.MODEL_T, "kind": kind}, options=opts, value=value, size="sm"), width=7),
        ], className="mb-2"))
    return rows


def form_layout(include_tests: bool):
    """Grouped fields with defaults and help; "Advanced" starts collapsed."""
    groups: dict[str, list] = {}
    auto_rows = []
    values = initial_values(default_model("llm", model_options("llm", include_tests)))
    for f in FIELDS:
        (auto_rows if f.name in AUTO_FIELDS else groups.setdefault(f.group, [])).append(_row(f, values[f.name]))
    levels = [
        dbc.RadioItems(id=ids.LEVELS_MODE, inline=True, value="fixed",
                       options=[{"label": "Fixed clusters per level", "value": "fixed"},
                                {"label": "Automatic k", "value": "auto"}]),
        html.Div(id=ids.FIXED_BOX, children=[
            dbc.Input(id={"type": ids.CFG_T, "name": "levels_text"}, value=",".join(map(str, LEVELS.default)),
                      size="sm", placeholder="e.g. 100,20,5"),
            html.Div(LEVELS.help, className="form-text small")]),
        html.Div(id=ids.AUTO_BOX, children=auto_rows, style={"display": "none"}),
    ]
    basic = [dbc.Card(dbc.CardBody([html.H6("Models", className="card-title"), *models_layout(include_tests)]),
                      className="mb-2")]
    for group, rows in groups.items():
        if group == "Advanced":
            continue
        body = [*rows, *levels] if group == "Hierarchy" else rows
        basic.append(dbc.Card(dbc.CardBody([html.H6(group, className="card-title"), *body]), className="mb-2"))
    advanced = [
        dbc.Button("Advanced settings", id=ids.ADVANCED_TOGGLE, color="link", size="sm", className="px-0"),
        dbc.Collapse(dbc.Card(dbc.CardBody(groups["Advanced"])), id=ids.ADVANCED, is_open=False),
    ]
    return html.Div([dbc.Row([dbc.Col(card, lg=6) for card in basic]), *advanced])


# ----------------------------------------------------------------------------- values -> config
def _parse_levels(text: Any) -> tuple[int, ...]:
    parts = [p.strip() for p in str(text or "").replace(";", ",").split(",") if p.strip()]
    try:
        counts = tuple(int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"Clusters per level must be whole numbers separated by commas, like 100,20,5 "
                          f"(got {text!r}).") from None
    if not counts:
        raise ConfigError("Give the clusters per level (e.g. 20,5) or choose automatic k.")
    return counts


def _coerce(f: Field, value: Any) -> Any:
    if f.widget == "switch":
        return bool(value)
    if f.widget == "text":
        text = str(value or "").strip()
        return text or None
    if f.widget == "select":
        if value not in f.options:
            raise ConfigError(f"{f.label}: choose one of {', '.join(f.options)}.")
        return value
    if value is None or value == "":
        raise ConfigError(f"{f.label} is empty; the default is {_default(f.name)}.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{f.label} must be a number (got {value!r}).") from None
    if f.widget == "int":
        if not math.isfinite(number) or number != int(number):
            raise ConfigError(f"{f.label} must be a whole number (got {value!r}).")
        return int(number)
    return number


def config_from_form(values: dict[str, Any], levels_mode: str) -> HerculesConfig:
    """A validated config from the form values (``{field name: value}``); ConfigError says what to fix."""
    params: dict[str, Any] = {}
    for name, value in values.items():
        f = FIELD_BY_NAME.get(name)
        if f is not None:
            params[name] = _coerce(f, value)
    params["level_cluster_counts"] = None if levels_mode == "auto" else _parse_levels(values.get("levels_text"))
    try:
        return HerculesConfig(**params)
    except ConfigError as e:
        raise ConfigError(error_text(e)) from None
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


def check_models(models: dict[str, Any], modality: str | None, cfg: HerculesConfig,
                 include_tests: bool) -> dict[str, str | None]:
    """The model ids a run will use, checked against the registry (ConfigError if one cannot be used)."""
    out: dict[str, str | None] = {}
    for kind, _ in MODEL_KINDS:
        value = models.get(kind)
        if value in (None, "", "none"):
            out[kind] = None
            continue
        allowed = {e.id: e for e in registry.entries(kind, include_tests=include_tests)}
        if not isinstance(value, str) or value not in allowed:
            raise ConfigError(f"Unknown {kind.replace('_', ' ')} {value!r}.")
        ok, why = allowed[value].availability()
        needed = (kind == "text_embedder" and (modality == "text" or cfg.representation_mode == "description")) or \
                 (kind == "image_embedder" and modality == "image") or kind == "llm" or kind == "captioner"
        if not ok and needed:
            raise ConfigError(f"{allowed[value].label} is unavailable: {why}.")
        out[kind] = value if ok else None
    if modality == "text" and not out.get("text_embedder"):
        raise ConfigError("Texts need a text embedder.")
    return out
