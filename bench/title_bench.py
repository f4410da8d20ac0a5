"""Title quality benchmark: the offline default LLM against the keyword summariser, in one run.

Both summarisers title the same hierarchy input (same data, levels, seed, embeddings) and are scored
by ``hercules_core.title_quality`` (self-retrieval with the run's MiniLM embedder, model-written
share, meta-text, junk, bare keyword lists, fluency, duplicates, parents titled like a child) and their
descriptions (``hercules_core.descriptions``: equal to the title, one sample copied, accepted when
asked again, extractive). The seconds per
cluster are the summarising stages' time divided by the number of clusters (LLM answers are never
read from a cache here: the cache lives in a fresh temporary folder and holds only embeddings).

Targets (issue 10, fortune_dev8 at levels 24,8, offline default, no endpoint): L1 self-retrieval
>= 0.85, L2 >= 0.75, 0 meta-text titles, <= 10% bare keyword lists, <= 1 top-level title equal to a
child's, >= 80% of titles written by the model, <= 5 s per cluster. Issue 19: no description equal
to its title, <= 10% extractive descriptions.

It also prints each run's estimated duration (``cost.estimate_run`` + ``cost.annotate_estimate``,
with the speeds ``hercules_run.timings`` finds in the cache folder, else the registry's declared
defaults) beside the measured one and their ratio (target: within 2x).

Usage: .venv/bin/python bench/title_bench.py [--data CSV] [--levels 24,8] [--llm smollm2] [--json OUT]
                                             [--before OLD_JSON] [--descriptions] [--timings-dir DIR]
                                             [--set prompt_style=full ...]

``--before OLD_JSON`` (an earlier run's ``--json``) prints the LLM run's titles that changed, old ->
new, with their fluency (``title_quality.title_fluency``).

``--set KEY=VALUE`` overrides the LLM's recommended settings (e.g. the settings a new user may pick
by mistake: ``--set prompt_style=full --set llm_initial_batch_size=8 --set llm_concurrency=4``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import model_registry as registry  # noqa: E402
from hercules_core import HerculesConfig, prepare  # noqa: E402
from hercules_core.cache import Cache, wrap  # noqa: E402
from hercules_core.hercules import Hercules  # noqa: E402
from hercules_core import RunLog, cost  # noqa: E402
from hercules_run import timings  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "fortune_dev8.csv"


def run(ds, levels, llm_id: str | None, cache: Cache, overrides: dict | None = None,
        timings_dir: Path | None = None) -> dict:
    cfg = {"level_cluster_counts": levels}
    llm = None
    if llm_id:
        cfg.update(registry.recommended_config(llm_id))
        cfg.update(overrides or {})
        llm = registry.get_llm(llm_id)
    embedder = wrap(registry.get_text_embedder("minilm", show_progress=False), cache)
    hcfg = HerculesConfig.from_dict(cfg)
    # the estimate a user gets before the run: speeds measured in the cache folder, else the defaults
    rates = timings.rates_for({"llm": llm_id or "keywords", "text_embedder": "minilm"}, timings_dir)
    est = cost.annotate_estimate(cost.estimate_run(ds, hcfg, llm_id=llm_id, with_text_embedder=True), hcfg, rates)
    t0 = time.perf_counter()
    model = Hercules(hcfg, text_embedder=embedder, llm=llm, run_log=RunLog(keep_records=False)).fit(ds)
    h = model.hierarchy_
    n_clusters = sum(len(lv) for lv in h.levels[1:])
    summarising = sum(v for k, v in model.timings_.items() if k.startswith("summarizing level"))
    return {"llm": llm_id or "keywords", "model_id": getattr(llm, "model_id", "keywords"), "config": cfg,
            "seconds_total": round(time.perf_counter() - t0, 1), "seconds_summarising": round(summarising, 1),
            "estimate": {"seconds": est["duration"]["seconds"], "parts": est["duration"]["parts"],
                         "measured": est["duration"]["measured"], "llm_calls": est["llm_calls"]},
            "stages": {k: round(v, 1) for k, v in model.timings_.items()},
            "llm_calls": model.run_log.summary()["llm_calls"], "llm_seconds": model.run_log.summary()["llm_seconds"],
            "seconds_per_cluster": round(summarising / max(n_clusters, 1), 2),
            "levels": {lv: {k: v for k, v in h.evaluation[lv].items()
                            if k.startswith(("title_", "description_")) or k == "n_clusters"}
                       for lv in range(1, h.top_level + 1)},
            "titles": {lv: list(h.levels[lv].titles) for lv in range(1, h.top_level + 1)},
            "descriptions": {lv: [f"{d} [{m}]" if m else d for d, m in
                                  zip(h.levels[lv].descriptions, h.levels[lv].description_marks or [""] * len(h.levels[lv]))]
                             for lv in range(1, h.top_level + 1)},
            "fallback_errors": sorted({e for e in (h.stats.get("notes") or []) if "fallback" in e})}


def _setting(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (8, true), else as a string (full)."""
    key, _, raw = text.partition("=")
    try:
        return key.strip(), json.loads(raw)
    except ValueError:
        return key.strip(), raw


def _fmt(v) -> str:
    if v is None:
        return "—"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def table(runs: list[dict], top: int) -> list[str]:
    names = [r["llm"] for r in runs]
    rows = [("L1 self-retrieval top-1 (>= 0.85)", lambda r: r["levels"][1]["title_self_retrieval_top1"]),
            ("L1 self-retrieval MRR", lambda r: r["levels"][1]["title_self_retrieval_mrr"])]
    if top >= 2:
        rows += [(f"L{top} self-retrieval top-1 (>= 0.75)", lambda r: r["levels"][top]["title_self_retrieval_top1"]),
                 (f"L{top} self-retrieval MRR", lambda r: r["levels"][top]["title_self_retrieval_mrr"])]
    total = lambda r, key: sum(q.get(key) or 0 for q in r["levels"].values())  # noqa: E731
    n = lambda r: sum(q["n_clusters"] for q in r["levels"].values())  # noqa: E731
    share = lambda r, key: f"{total(r, key)}/{n(r)} ({100 * total(r, key) / n(r):.0f}%)"  # noqa: E731
    rows += [
        ("meta-text titles (0)", lambda r: total(r, "title_meta_text")),
        ("junk titles or descriptions (0)", lambda r: total(r, "title_junk")),
        ("bare keyword lists (<= 10%)", lambda r: f"{total(r, 'title_keyword_lists')}/{n(r)} "
                                                  f"({100 * total(r, 'title_keyword_lists') / n(r):.0f}%)"),
        ("title fluency, mean (1 = like the reference titles)",
         lambda r: sum(q["title_fluency"] * q["n_clusters"] for q in r["levels"].values()) / n(r)),
        ("titles that read oddly (fluency < 0.75)", lambda r: f"{total(r, 'title_disfluent')}/{n(r)}"),
        (f"L{top} titles equal to a child's (<= 1)", lambda r: r["levels"][top]["title_parent_equals_child"]),
        ("duplicates among siblings", lambda r: total(r, "title_duplicates_among_siblings")),
        ("written by the model (>= 80%)", lambda r: f"{total(r, 'title_model_written')}/{n(r)} "
                                                    f"({100 * total(r, 'title_model_written') / n(r):.0f}%)"),
        ("descriptions equal to the title (0)", lambda r: total(r, "description_title_copies")),
        ("descriptions copying one sample", lambda r: total(r, "description_sample_copies")),
        ("descriptions accepted when asked again", lambda r: share(r, "description_reasked")),
        ("extractive descriptions (<= 10%)", lambda r: share(r, "description_extractive")),
        ("seconds per cluster (<= 5)", lambda r: r["seconds_per_cluster"]),
    ]
    width = max(len(label) for label, _ in rows)
    out = [f"{'':<{width}} | " + " | ".join(f"{nm:>16}" for nm in names)]
    for label, get in rows:
        out.append(f"{label:<{width}} | " + " | ".join(f"{_fmt(get(r)):>16}" for r in runs))
    return out


def compare(old: dict, new: dict) -> list[str]:
    """The LLM run's titles that changed against an earlier run of the bench (``--json`` of it): the
    same data, levels and seed give the same clusters, so titles at one index name the same cluster."""
    from hercules_core.title_quality import title_fluency

    out = [f"\ntitles changed against the earlier run ({old['llm']}); fluency in brackets"]
    for lv, titles in sorted(new["titles"].items(), key=lambda x: int(x[0])):
        before = old["titles"].get(lv) or old["titles"].get(str(lv)) or []
        for j, (a, b) in enumerate(zip(before, titles)):
            if a != b:
                out.append(f"  L{lv}_{j}: {a} ({title_fluency(a):.2f}) -> {b} ({title_fluency(b):.2f})")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--levels", default="24,8")
    p.add_argument("--llm", default="smollm2", help="the LLM compared with the keyword summariser")
    p.add_argument("--json", help="write the figures and titles to this file")
    p.add_argument("--before", help="a --json file of an earlier run: print its titles that changed, old -> new")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting of the LLM run (repeatable)")
    p.add_argument("--descriptions", action="store_true", help="print every description (marked [reasked] or "
                                                                   "[extractive] when it was)")
    p.add_argument("--timings-dir", help="folder of the measured speeds the estimate reads (timings.json; "
                                         "default: the cache folder, HERCULES_CACHE_DIR or ~/.cache/hercules)")
    args = p.parse_args(argv)
    if not Path(args.data).is_file():
        print(f"skipped: {args.data} does not exist", file=sys.stderr)
        return 0
    ok, why = registry.get_entry(args.llm, "llm").availability()
    if not ok:
        print(f"skipped: the LLM {args.llm!r} is not available ({why})", file=sys.stderr)
        return 0
    levels = tuple(int(x) for x in args.levels.split(","))
    ds = prepare(args.data, text_column="text", id_column="id", labels_column="label")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Cache(Path(tmp) / "cache")  # embeddings shared by both runs; LLM answers never reused
        runs = [run(ds, levels, None, cache, timings_dir=args.timings_dir),
                run(ds, levels, args.llm, cache, dict(map(_setting, args.set)), args.timings_dir)]
        cache.close()
    load_after = os.getloadavg()
    top = len(levels)
    print(f"title_bench: {len(ds)} texts from {Path(args.data).name}, levels {args.levels}, "
          f"LLM settings {runs[1]['config']}; "
          f"{os.cpu_count()} cores, load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print("\n".join(table(runs, top)))
    print("\nestimated duration against the measured one (target: within 2x)")
    for r in runs:
        est_s, real = r["estimate"]["seconds"], r["seconds_total"]
        ratio = real / est_s if est_s else float("inf")
        basis = "measured speeds" if r["estimate"]["measured"] else "declared defaults"
        print(f"  {r['llm']:>10}: estimated {est_s:.1f} s ({basis}: "
              + ", ".join(f"{k} {v:.1f} s" for k, v in r["estimate"]["parts"].items())
              + f"; {r['estimate']['llm_calls']} LLM calls), measured {real:.1f} s ({r['llm_calls']} LLM calls, "
              f"{r['llm_seconds']:.1f} s in them), ratio {ratio:.2f} -> {'met' if 0.5 <= ratio <= 2 else 'missed'}")
    for r in runs:
        print(f"\n{r['llm']} ({r['model_id']}): {r['seconds_total']} s in all, {r['seconds_summarising']} s summarising"
              f" ({', '.join(f'{k} {v} s' for k, v in r['stages'].items() if k != 'total')})")
        for lv, titles in sorted(r["titles"].items(), reverse=True):
            print(f"  L{lv}: " + " | ".join(titles))
        if args.descriptions:
            for lv, descs in sorted(r["descriptions"].items(), reverse=True):
                print(f"  L{lv} descriptions:\n    " + "\n    ".join(descs))
    if args.before:
        print("\n".join(compare(json.loads(Path(args.before).read_text())["runs"][1], runs[1])))
    if args.json:
        Path(args.json).write_text(json.dumps({"load": [load_before, load_after], "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
