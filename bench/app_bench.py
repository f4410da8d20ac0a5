"""Web app benchmark: a 20,000-item (or 100k / 1M) model in the explorer.

    .venv/bin/python bench/app_bench.py [--items 20000] [--clicks 30] [--no-browser] [--synthetic]

``--synthetic`` (the default above 20,000 items) builds a random valid hierarchy with levels
1000/100/10 (devkit/factories.make_hierarchy) instead of fitting one: the explorer's costs depend on
the sizes, not on the clustering.

Measures, through the real Dash endpoint (Flask test client, model already loaded):
  * server time of the click-to-highlight callback (selection -> scatter ``dash.Patch``) and the
    bytes it sends, over random clicks on every level (targets: <= 100 ms, <= 200 kB);
  * the same for the other callbacks one click triggers (selection, pane + tree, sunburst patch);
the time to open the run (load the model into the explorer), search times (the first one right
after opening, while the items' index is built in the background, then with the index), a zoom's
density image; and, in headless Chromium (/usr/bin/chromium), the time to first render of the
explore page (navigation start until the scatter, the sunburst and the overview are on screen):
cold (the server opens the run for the first time, the browser has nothing cached), warm (the same
browser again) and new_browser (an empty browser cache, the run already open), with the server's
RSS after it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from callbacks import runstore  # noqa: E402
from hercules_core import Hercules, HerculesConfig, prepare, save_model  # noqa: E402
from hercules_core.clients.fakes import FakeEmbedder  # noqa: E402

# the scatter is on screen: its SVG markers drawn, or its WebGL canvas made (above figures.GL_POINTS)
SCATTER_DRAWN = ("#explore-scatter .js-plotly-plot .scatterlayer .points path, "
                 "#explore-scatter .js-plotly-plot .gl-canvas-context")
TOPICS = ["cats dogs pets vet food", "stocks bonds market trading fund", "rain snow storm weather cold",
          "football goal match league team", "piano violin concert music song", "python code bug compiler test",
          "bread cake oven recipe flour", "train bus station ticket travel"]


def build_model(runs_dir: Path, n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    words = [t.split() for t in TOPICS]
    texts = []
    for i in range(n):
        t = words[int(rng.integers(len(words)))]
        texts.append(" ".join(rng.choice(t, size=6)) + f" item {i} " + " ".join(rng.choice(words[int(rng.integers(8))], 2)))
    ds = prepare(texts, ids=[f"doc{i:05d}" for i in range(n)])
    cfg = HerculesConfig(level_cluster_counts=(200, 40, 8), random_state=seed)
    t0 = time.perf_counter()
    h = Hercules(cfg, text_embedder=FakeEmbedder(dim=64)).fit(ds).hierarchy_
    run_id = runstore.new_id()
    rdir = runs_dir / run_id
    rdir.mkdir(parents=True)
    save_model(h, rdir / "model.json")
    runstore.create(rdir)  # a run made outside the app: created, started and finished at once
    runstore.start(rdir)
    runstore.finish(rdir)
    print(f"built a {n:,}-item model (levels 200/40/8) in {time.perf_counter() - t0:.1f} s: "
          f"{(rdir / 'model.json').stat().st_size / 1e6:.1f} MB")
    return run_id


def build_synthetic(runs_dir: Path, n: int, seed: int = 0) -> str:
    from hercules_core.reduction import reduce_hierarchy
    from devkit.factories import make_hierarchy, make_text_dataset

    t0 = time.perf_counter()
    ks = (1000, 100, 10) if n >= 50_000 else (200, 40, 8)
    h = make_hierarchy(make_text_dataset(n, seed), ks=ks, dim=16, seed=seed)
    reduce_hierarchy(h, 2, seed)
    run_id = runstore.new_id()
    rdir = runs_dir / run_id
    rdir.mkdir(parents=True)
    save_model(h, rdir / "model.json")
    runstore.create(rdir)
    runstore.start(rdir)
    runstore.finish(rdir)
    print(f"built a synthetic {n:,}-item model (levels {'/'.join(map(str, ks))}) in {time.perf_counter() - t0:.1f} s: "
          f"{(rdir / 'model.json').stat().st_size / 1e6:.1f} MB")
    return run_id


def _rss_mb(pid: int | None = None) -> float:
    with open(f"/proc/{pid or 'self'}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _callback(deps, output_prefix: str, first_input: str):
    for d in deps:
        if d["output"].startswith(output_prefix) and d["inputs"] and \
                f"{d['inputs'][0]['id']}.{d['inputs'][0]['property']}" == first_input:
            return d
    raise LookupError(output_prefix)


def _post(client, dep, inputs, state, changed):
    outputs = []  # a multi-output callback is named "..a.prop...b.prop.."
    for part in dep["output"][2:-2].split("...") if dep["output"].startswith("..") else [dep["output"]]:
        cid, prop = part.rsplit(".", 1)
        outputs.append({"id": cid, "property": prop})
    body = {"output": dep["output"], "outputs": outputs if len(outputs) > 1 else outputs[0],
            "inputs": inputs, "state": state, "changedPropIds": [changed]}
    t0 = time.perf_counter()
    r = client.post("/_dash-update-component", json=body)
    dt = time.perf_counter() - t0
    if r.status_code != 200:
        raise RuntimeError(f"{dep['output']}: HTTP {r.status_code} {r.data[:300]!r}")
    return dt, len(r.data)


def bench_callbacks(runs_dir: Path, run_id: str, clicks: int) -> dict:
    from app import create_app
    from callbacks.explore_model import make_key

    app = create_app(runs_dir)
    client = app.server.test_client()
    deps = client.get("/_dash-dependencies").get_json()
    run = {"run_id": run_id}
    ctx = app.server.config["HERCULES"]
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    em = ctx.model(run_id)
    load_s = time.perf_counter() - t0
    rss_open = _rss_mb()
    # the first search, right after opening the run: the items' index is being built in the background
    search_dep = _callback(deps, "explore-search-results.children", "explore-search.value")
    first_q = "item 12 about"
    _post(client, search_dep, [{"id": "explore-search", "property": "value", "value": "i"}],  # the app's first request
          [{"id": "explore-run", "property": "data", "value": run}], "explore-search.value")
    first_search_ms = _post(client, search_dep, [{"id": "explore-search", "property": "value", "value": first_q}],
                            [{"id": "explore-run", "property": "data", "value": run}], "explore-search.value")[0] * 1000
    first_search_items = em.item_search_note(first_q) is None
    em.items_index.ready(wait=600)  # built before the clicks are timed (it shares the process with them)
    index_s = time.perf_counter() - t0
    scatter = _callback(deps, "..explore-scatter.figure...explore-view.data", "explore-level.value")
    highlight = _callback(deps, "explore-scatter.figure@", "explore-selection.data")
    sunburst = _callback(deps, "explore-sunburst.figure@", "explore-selection.data")
    pane_tree = _callback(deps, "..explore-pane.children", "explore-selection.data")
    _, first_fig = _post(client, scatter, [{"id": "explore-level", "property": "value", "value": 1},
                                           {"id": "explore-space", "property": "value", "value": "representation"},
                                           {"id": "explore-color-level", "property": "value", "value": em.top},
                                           {"id": "explore-size-scale", "property": "value", "value": "sqrt"}],
                         [{"id": "explore-run", "property": "data", "value": run},
                          {"id": "explore-selection", "property": "data", "value": None}], "explore-level.value")
    from callbacks import figures
    _, view = figures.scatter_figure(em, 1)
    rng = np.random.default_rng(1)
    keys = [make_key(lv, int(rng.integers(len(em.h.levels[lv])))) for lv in rng.integers(0, em.top + 1, clicks)]
    keys += [make_key(em.top, int(np.argmax(em.h.levels[em.top].size)))]  # the biggest subtree
    res = {name: {"ms": [], "bytes": []} for name in ("highlight", "sunburst", "pane_tree")}
    for key in keys:
        sel = {"key": key}
        for name, dep, state in (
                ("highlight", highlight, [{"id": "explore-view", "property": "data", "value": view},
                                          {"id": "explore-run", "property": "data", "value": run}]),
                ("sunburst", sunburst, [{"id": "explore-run", "property": "data", "value": run}]),
                ("pane_tree", pane_tree, [])):
            inputs = [{"id": "explore-selection", "property": "data", "value": sel}]
            if name == "pane_tree":
                inputs.append({"id": "explore-run", "property": "data", "value": run})
            dt, size = _post(client, dep, inputs, state, "explore-selection.data")
            res[name]["ms"].append(dt * 1000)
            res[name]["bytes"].append(size)
    # zoom: a quarter of the view, re-rendered by the relayout callback
    zoom = _callback(deps, "..explore-scatter.figure@", "explore-scatter.relayoutData")
    zms, zbytes = [], []
    if view.get("image"):
        x0, x1, y0, y1 = view["range"]
        for f in (0.5, 0.25, 0.05):
            rl = {"xaxis.range[0]": x0, "xaxis.range[1]": x0 + (x1 - x0) * f,
                  "yaxis.range[0]": y0, "yaxis.range[1]": y0 + (y1 - y0) * f}
            dt, size = _post(client, zoom, [{"id": "explore-scatter", "property": "relayoutData", "value": rl}],
                             [{"id": "explore-view", "property": "data", "value": view},
                              {"id": "explore-run", "property": "data", "value": run},
                              {"id": "explore-selection", "property": "data", "value": {"key": keys[-1]}}],
                             "explore-scatter.relayoutData")
            zms.append(dt * 1000)
            zbytes.append(size)
    # search, the items' index built
    sms = []
    for q in ("item 12345 about", "weather", "title 1.5", "rain snow", "zzzqq", "extra words 99", "about cats"):
        dt, _ = _post(client, search_dep, [{"id": "explore-search", "property": "value", "value": q}],
                      [{"id": "explore-run", "property": "data", "value": run}], "explore-search.value")
        sms.append(dt * 1000)
    out = {"model_load_s": round(load_s, 2), "rss_before_open_MB": round(rss0), "rss_after_open_MB": round(rss_open),
           "rss_end_MB": round(_rss_mb()), "first_scatter_kB": round(first_fig / 1000, 1), "clicks": len(keys),
           "zoom": {"max_ms": round(max(zms), 1), "max_kB": round(max(zbytes) / 1000, 1)} if zms else None,
           "search_index_ready_s": round(index_s, 2),
           "first_search": {"ms": round(first_search_ms, 1), "items_searched": first_search_items},
           "search": {"median_ms": round(statistics.median(sms), 1), "max_ms": round(max(sms), 1)}}
    for name, r in res.items():
        out[name] = {"median_ms": round(statistics.median(r["ms"]), 1), "max_ms": round(max(r["ms"]), 1),
                     "median_kB": round(statistics.median(r["bytes"]) / 1000, 1),
                     "max_kB": round(max(r["bytes"]) / 1000, 1)}
    return out


def bench_first_render(runs_dir: Path, run_id: str) -> dict:
    from devkit.browser_support import CHROMIUM, CHROMIUM_ARGS, AppServer

    if not Path(CHROMIUM).exists():
        return {"skipped": f"{CHROMIUM} missing"}
    from playwright.sync_api import sync_playwright

    # the first open ever: no items' index yet (the server starts building it when the run opens)
    (runs_dir / run_id / "search.sqlite").unlink(missing_ok=True)
    srv = AppServer(runs_dir, stage_delay=0)
    out = {}
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            # cold: the server opens the run, the browser has nothing cached; warm: the same browser
            # again (its HTTP cache); new_browser: another browser (empty cache), the run already open
            contexts = {}
            for label, browser_of in (("cold", "a"), ("warm", "a"), ("warm2", "a"), ("new_browser", "b")):
                if browser_of not in contexts:
                    contexts[browser_of] = b.new_context(viewport={"width": 1400, "height": 1000})
                page = contexts[browser_of].new_page()
                t0 = time.perf_counter()
                page.goto(f"{srv.url}/explore?run={run_id}")
                page.wait_for_selector(SCATTER_DRAWN, state="attached", timeout=120_000)
                page.wait_for_selector("#explore-sunburst .js-plotly-plot .slice", timeout=120_000)
                page.wait_for_selector(".cluster-pane.overview", timeout=120_000)
                out[label + "_s"] = round(time.perf_counter() - t0, 2)
                page.close()
            out["server_rss_MB"] = round(_rss_mb(srv.proc.pid))
            # for scale: loading plotly.js alone (what every page with a graph pays in the browser)
            page = b.new_page()
            page.goto(f"{srv.url}/_favicon.ico")
            url = f"{srv.url}/_dash-component-suites/plotly/package_data/plotly.min.js"
            out["plotly_js_load_s"] = round(page.evaluate(
                """(url) => new Promise(ok => { const t0 = performance.now(); const s = document.createElement('script');
                   s.onload = () => ok((performance.now() - t0) / 1000); s.src = url; document.head.appendChild(s); })""",
                url), 2)
            page.close()
            b.close()
    finally:
        srv.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--clicks", type=int, default=30)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--synthetic", action="store_true")
    args = ap.parse_args()
    out_dir = ROOT / "bench" / "results" / "app_bench"
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    run_id = (build_synthetic if args.synthetic or args.items > 20_000 else build_model)(runs_dir, args.items)
    result = {"items": args.items, "callbacks": bench_callbacks(runs_dir, run_id, args.clicks)}
    if not args.no_browser:
        result["first_render"] = bench_first_render(runs_dir, run_id)
    print(json.dumps(result, indent=2))
    cb = result["callbacks"]
    hl = cb["highlight"]
    ok = hl["max_ms"] <= 150 and hl["max_kB"] <= 200
    print(f"click-to-highlight: median {hl['median_ms']} ms / max {hl['max_ms']} ms, median {hl['median_kB']} kB / "
          f"max {hl['max_kB']} kB -> {'within' if ok else 'OUTSIDE'} the 150 ms / 200 kB target")
    worst = max(cb["search"]["max_ms"], cb["first_search"]["ms"])
    print(f"search: first {cb['first_search']['ms']} ms, max {cb['search']['max_ms']} ms "
          f"({'within' if worst <= 300 else 'OUTSIDE'} 300 ms); "
          f"open: {cb['model_load_s']} s ({'within' if cb['model_load_s'] <= 5 else 'OUTSIDE'} 5 s)")
    fr = result.get("first_render") or {}
    if "cold_s" in fr:
        worst = max(fr[k] for k in ("cold_s", "warm_s", "warm2_s", "new_browser_s"))
        print(f"first render: cold {fr['cold_s']} s, warm {fr['warm_s']} / {fr['warm2_s']} s, new browser "
              f"{fr['new_browser_s']} s ({'within' if worst <= 3 else 'OUTSIDE'} 3 s)")
    (out_dir / f"result-{args.items}.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
