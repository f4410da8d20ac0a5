"""A small HTTP client of a running HERCULES app that acts like the browser's Dash renderer, without a
browser: it opens a page (the layout and the page's own layout callback), keeps every component's
props, and fires callbacks through ``/_dash-update-component`` with their inputs and states taken
from those props (pattern-matching ``ALL`` ids included), then stores the outputs.

Used by the fault tests (tests/test_faults.py), the Docker check (scripts/docker_journey.py) and the
load benchmark. ``start_text_run`` is the new-run journey: upload a file, choose models, press Run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import requests

UPDATE = "/_dash-update-component"


def component_text(component: Any) -> str:
    """All the text of a Dash component tree (what a user would read), for callback-level tests."""
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(component_text(c) for c in component)
    return component_text(getattr(component, "children", None))


def _key(cid: Any) -> str:
    """The canonical string of a component id (pattern ids as sorted compact JSON, like Dash)."""
    return cid if isinstance(cid, str) else json.dumps(cid, sort_keys=True, separators=(",", ":"))


def _wildcard(cid: dict) -> bool:
    """Whether a dict id is a pattern (``ALL``, ``MATCH``, ``ALLSMALLER``), not one component's id.

    A dict id without a wildcard names one component: Dash expects one entry for it, not a list of one
    (a list made the server hand the callback ``["smollm2"]`` instead of ``"smollm2"``, so choosing the
    LLM in this client applied no recommendations and the Docker journey ran SmolLM2 with the full prompt)."""
    return any(isinstance(v, list) for v in cid.values())


def _matches(pattern: dict, cid: Any) -> bool:
    if not isinstance(cid, dict) or set(cid) != set(pattern):
        return False
    return all(v in (["ALL"], ["MATCH"], ["ALLSMALLER"]) or cid[k] == v for k, v in pattern.items())


class DashSession:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 60):
        self.base = base_url.rstrip("/")
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout
        self.props: dict[tuple[str, str], Any] = {}
        self.ids: dict[str, Any] = {}  # canonical key -> id as the app wrote it
        self.deps: list[dict] = []

    # --- layout ----------------------------------------------------------------------------------
    def _collect(self, node: Any) -> None:
        if isinstance(node, list):
            for n in node:
                self._collect(n)
        elif isinstance(node, dict) and "props" in node and "type" in node:
            props = node["props"]
            if "id" in props:
                k = _key(props["id"])
                self.ids[k] = props["id"]
                for p, v in props.items():
                    if p != "id":
                        self.props[(k, p)] = v
            for v in props.values():
                self._collect(v)

    def get(self, path: str, **kw) -> requests.Response:
        return self.http.get(self.base + path, timeout=self.timeout, **kw)

    def open(self, pathname: str = "/", search: str = "") -> "DashSession":
        r = self.get("/_dash-layout")
        r.raise_for_status()
        self.props.clear()
        self.ids.clear()
        self._collect(r.json())
        self.deps = self.get("/_dash-dependencies").json()
        self.set("_pages_location", pathname=pathname, search=search)
        self.fire("_pages_location.pathname")
        return self

    def set(self, cid: Any, **props: Any) -> None:
        k = _key(cid)
        self.ids.setdefault(k, cid)
        for p, v in props.items():
            self.props[(k, p)] = v

    # --- callbacks -------------------------------------------------------------------------------
    def _values(self, spec: dict) -> Any:
        """Request entries of one input/state spec: a dict, or a list for an ALL pattern."""
        sid, prop = spec["id"], spec["property"]
        if sid.startswith("{") and _wildcard(pattern := json.loads(sid)):
            return [{"id": self.ids[k], "property": prop, "value": self._prop(k, prop)}
                    for k in sorted(self.ids) if _matches(pattern, self.ids[k])]
        cid = json.loads(sid) if sid.startswith("{") else sid
        return {"id": cid, "property": prop, "value": self._prop(_key(cid), prop)}

    def _prop(self, k: str, prop: str) -> Any:
        return self.ids.get(k) if prop == "id" else self.props.get((k, prop))

    def _outputs(self, dep: dict) -> Any:
        parts = dep["output"][2:-2].split("...") if dep["output"].startswith("..") else [dep["output"]]
        outs = []
        for part in parts:
            cid, prop = part.rsplit(".", 1)
            if cid.startswith("{") and _wildcard(pattern := json.loads(cid)):
                outs.append([{"id": self.ids[k], "property": prop} for k in sorted(self.ids)
                             if _matches(pattern, self.ids[k])])
            else:
                outs.append({"id": json.loads(cid) if cid.startswith("{") else cid, "property": prop})
        return outs if len(outs) > 1 else outs[0]

    def callbacks_of(self, changed: str) -> list[dict]:
        out = []
        for d in self.deps:
            for i in d["inputs"]:
                if f"{i['id']}.{i['property']}" == changed:
                    out.append(d)
        return out

    def post(self, dep: dict, changed: str) -> requests.Response:
        body = {"output": dep["output"], "outputs": self._outputs(dep),
                "inputs": [self._values(i) for i in dep["inputs"]],
                "state": [self._values(s) for s in dep.get("state", [])], "changedPropIds": [changed]}
        return self.http.post(self.base + UPDATE, json=body, timeout=self.timeout)

    def fire(self, changed: str, *, only: str | None = None) -> list[requests.Response]:
        """Run every callback with input ``changed`` (or only the one whose output contains ``only``);
        store their outputs. Background callbacks are only started (the result is not awaited)."""
        out = []
        for dep in self.callbacks_of(changed):
            if only and only not in dep["output"]:
                continue
            r = self.post(dep, changed)
            out.append(r)
            if r.status_code == 200 and r.content:
                self._apply(r.json())
            elif r.status_code not in (200, 202, 204):
                raise RuntimeError(f"{dep['output'][:80]}: HTTP {r.status_code} {r.text[:300]}")
        return out

    def _apply(self, payload: dict) -> None:
        for cid, props in (payload.get("response") or {}).items():
            for p, v in props.items():
                self.set(json.loads(cid) if cid.startswith("{") else cid, **{p.split("@")[0]: v})
                if p == "children":
                    self._collect(v)

    # --- the new-run journey -------------------------------------------------------------------
    PURPOSES = {"data-upload": "data", "model-upload": "model", "labels-upload": "labels",
                "metadata-upload": "metadata", "assign-upload": "data"}

    def send_file(self, path: Path, purpose: str = "data", chunk_bytes: int = 8 * 1024**2) -> str:
        """Send ``path`` to the app's /upload route in chunks, as the page does; the upload id."""
        headers = {"X-Hercules-Upload": "1"}
        size = Path(path).stat().st_size
        r = self.http.post(self.base + "/upload", json={"purpose": purpose, "names": [Path(path).name],
                                                        "sizes": [size]}, headers=headers, timeout=self.timeout)
        if r.status_code != 201:
            raise RuntimeError(f"upload refused: HTTP {r.status_code} {r.text[:300]}")
        upload_id = r.json()["upload_id"]
        with open(path, "rb") as fh:
            at = 0
            while at < size:
                data = fh.read(chunk_bytes)
                r = self.http.post(f"{self.base}/upload/{upload_id}/chunk?file=0&offset={at}", data=data,
                                   headers=headers, timeout=self.timeout)
                r.raise_for_status()
                at = r.json()["received"]
        return upload_id

    def upload(self, path: Path, component: str = "data-upload") -> Any:
        """Upload ``path`` through ``component``'s box (chunks over /upload, then the box's staging
        callback); the box's message."""
        upload_id = self.send_file(path, self.PURPOSES[component])
        self.set(f"{component}-sent", data={"upload_id": upload_id})
        self.fire(f"{component}-sent.data")
        msg = {"data-upload": "data-upload-msg", "model-upload": "model-upload-msg"}.get(component, "data-upload-msg")
        return self.props.get((msg, "children"))

    def start_text_run(self, path: Path, levels: str, **models: str) -> str:
        """Upload ``path`` on the new-run page, set the levels and models, press Run; the new run id."""
        self.open("/")
        self.upload(path)
        if self.props.get(("data-upload-store", "data")) is None:
            raise RuntimeError(f"upload refused: {json.dumps(self.props.get(('data-upload-msg', 'children')))[:300]}")
        for kind, value in models.items():
            self.set({"kind": kind, "type": "model"}, value=value)
            if kind == "llm":
                self.fire(f'{_key({"kind": "llm", "type": "model"})}.value')
        self.set({"name": "levels_text", "type": "cfg"}, value=levels)
        self.set("start-run", n_clicks=1)
        self.fire("start-run.n_clicks")
        active = self.props.get(("active-run", "data"))
        if not active:
            raise RuntimeError(f"the run did not start: {json.dumps(self.props.get(('start-msg', 'children')))[:300]}")
        self.fire("job-start.data", only="job-done")  # dispatches the background job (Celery / diskcache)
        return active["run_id"]


def wait_for(pred, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"{what} (waited {timeout:.0f} s; last: {last!r})")
