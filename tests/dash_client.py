"""Post to ``/_dash-update-component`` as the browser would, with values the test chooses.

``Callback`` wraps one entry of ``/_dash-dependencies``; ``body(values)`` builds the request a page
would send, where ``values`` gives, in the order of the callback's inputs then states, each value (a
plain id) or a list of ``(concrete_id, value)`` pairs (an ``ALL`` pattern). Outputs of an ``ALL``
pattern take the concrete ids of the first input/state of the same pattern, as on a real page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


def _split(spec: str) -> tuple[Any, str]:
    """``'id.prop'`` (id may be a JSON pattern) -> (id, prop)."""
    ident, _, prop = spec.rpartition(".")
    return (json.loads(ident) if ident.startswith("{") else ident), prop


def is_pattern(ident: Any) -> str | None:
    """"ALL" / "MATCH" / "ALLSMALLER" when ``ident`` is a wildcard id, else None."""
    if not isinstance(ident, dict):
        return None
    for v in ident.values():
        if isinstance(v, list) and v:
            return v[0]
    return None


@dataclass
class Callback:
    dep: dict[str, Any]

    @property
    def output(self) -> str:
        return self.dep["output"]

    @property
    def multi(self) -> bool:
        return self.output.startswith("..")

    def outputs(self) -> list[tuple[Any, str]]:
        out = self.output
        parts = out[2:-2].split("...") if self.multi else [out]
        return [_split(p) for p in parts]

    def args(self) -> list[tuple[Any, str]]:
        """(id, property) of every input then state, as the dependency lists them."""
        items = list(self.dep.get("inputs", [])) + list(self.dep.get("state", []))
        return [(json.loads(i["id"]) if i["id"].startswith("{") else i["id"], i["property"]) for i in items]

    @property
    def n_inputs(self) -> int:
        return len(self.dep.get("inputs", []))

    @property
    def background(self) -> bool:
        return bool(self.dep.get("background"))

    def body(self, values: list[Any]) -> dict[str, Any]:
        args = self.args()
        assert len(values) == len(args), (self.output, len(values), len(args))
        items, concrete = [], {}
        for (ident, prop), value in zip(args, values):
            kind = is_pattern(ident)
            if kind in ("ALL", "ALLSMALLER"):
                pairs = list(value)
                items.append([{"id": cid, "property": prop, "value": v} for cid, v in pairs])
                concrete.setdefault(json.dumps(ident, sort_keys=True), [cid for cid, _ in pairs])
            elif kind == "MATCH":
                cid, v = value
                items.append({"id": cid, "property": prop, "value": v})
                concrete.setdefault(json.dumps(ident, sort_keys=True), cid)
            else:
                items.append({"id": ident, "property": prop, "value": value})
        outputs = []
        for ident, prop in self.outputs():
            kind = is_pattern(ident)
            if kind in ("ALL", "ALLSMALLER"):
                outputs.append([{"id": cid, "property": prop}
                                for cid in concrete.get(json.dumps(ident, sort_keys=True), [])])
            elif kind == "MATCH":
                outputs.append({"id": concrete.get(json.dumps(ident, sort_keys=True)), "property": prop})
            else:
                outputs.append({"id": ident, "property": prop})
        n_in = self.n_inputs
        changed = []
        first = items[0] if items else None
        if isinstance(first, list):
            changed = [f"{json.dumps(i['id'], sort_keys=True, separators=(',', ':'))}.{i['property']}"
                       for i in first[:1]]
        elif isinstance(first, dict):
            fid = first["id"]
            fid = json.dumps(fid, sort_keys=True, separators=(",", ":")) if isinstance(fid, dict) else fid
            changed = [f"{fid}.{first['property']}"]
        return {"output": self.output, "outputs": outputs if self.multi else outputs[0],
                "inputs": items[:n_in], "changedPropIds": changed, "state": items[n_in:]}


def callbacks(client_get) -> list[Callback]:
    """Every callback of the app, from ``/_dash-dependencies`` (``client_get(path)`` returns parsed JSON)."""
    return [Callback(d) for d in client_get("/_dash-dependencies")]


def find(cbs: list[Callback], output_fragment: str) -> Callback:
    hits = [c for c in cbs if output_fragment in c.output]
    assert len(hits) == 1, (output_fragment, [c.output for c in hits])
    return hits[0]
