"""``python -m hercules_core replay EDITS_OR_MODEL NEW_MODEL --out DIR`` and ``compare A B``.

Curation from the command line (:mod:`hercules_core.curate`): ``replay`` applies the edit log of a
curated model (or an exported log) onto another run and writes the curated model, its
``memberships.csv``, ``hierarchy.txt``, ``evaluation.json`` and ``replay_report.json`` (every entry:
applied, or why not); ``compare`` prints, per level, the matched, split, merged, new, vanished and
retitled clusters of two runs and their agreement (``--json FILE`` writes the whole comparison).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parsers(sub) -> None:
    r = sub.add_parser("replay", help="apply a curated model's edit log onto another run of the same or grown data")
    r.add_argument("edits", help="a model.json with an edit log, or an edit log exported as JSON")
    r.add_argument("model", help="the model.json (or .hercules bundle) to apply the edits to")
    r.add_argument("--out", required=True, help="output directory (created if missing)")
    r.add_argument("--threshold", type=float, default=None,
                   help="smallest Jaccard overlap of items for a cluster to match (default 0.5)")
    r.add_argument("--retitle", choices=("none", "keywords"), default="none",
                   help="re-title the clusters the replay changed with keywords (no LLM); default: list them in the "
                        "report")
    r.add_argument("--debug", action="store_true", help="show tracebacks")
    c = sub.add_parser("compare", help="compare the clusters of two runs level by level")
    c.add_argument("a", help="model A (model.json or .hercules bundle)")
    c.add_argument("b", help="model B")
    c.add_argument("--json", help="also write the whole comparison to this JSON file")
    c.add_argument("--debug", action="store_true", help="show tracebacks")


def _threshold(value: float | None) -> float:
    from hercules_core import curate
    from hercules_core.errors import InputError

    if value is None:
        return curate.MATCH_THRESHOLD
    if not 0.0 < value <= 1.0:
        raise InputError(f"--threshold must be above 0 and at most 1; got {value:g}.")
    return float(value)


def replay(args) -> int:
    from hercules_core import curate, io
    from hercules_core.keywords import KeywordSummarizer

    from .pipeline import save_outputs

    threshold = _threshold(args.threshold)
    h_new = io.load_model(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    g, report = curate.replay(args.edits, h_new, threshold=threshold)
    if args.retitle == "keywords" and report["retitle"]:
        ds = g.dataset
        texts = ds.texts if ds.modality == "text" else list(g.levels[0].descriptions)
        g = curate.resummarize(g, report["retitle"], KeywordSummarizer(ds, texts, config=g.config)).hierarchy
        report["retitled_with"] = "keywords"
    save_outputs(g, out)
    io.atomic_write(out / "replay_report.json", json.dumps(report, indent=1, ensure_ascii=False))
    print(f"{report['applied']} of {report['entries']} edits applied ({report['items']['shared']:,} items shared "
          f"with the log's run; match threshold Jaccard >= {threshold:g}).", file=sys.stderr)
    for r in report["results"]:
        if r["status"] != "applied":
            print(f"  not applied: #{r['seq']} {r['op']} {json.dumps(r['args'], ensure_ascii=False)[:120]}: "
                  f"{r['reason']}", file=sys.stderr)
    if report["retitle"] and args.retitle == "none":
        print(f"{len(report['retitle'])} clusters keep placeholder titles (listed in replay_report.json); "
              "re-title them with --retitle keywords or in the app.", file=sys.stderr)
    print(f"wrote {out}/model.json, memberships.csv, hierarchy.txt, evaluation.json, replay_report.json",
          file=sys.stderr)
    return 0


def compare(args) -> int:
    from hercules_core import curate, io

    a, b = io.load_model(args.a), io.load_model(args.b)
    result = curate.compare(a, b)
    print(curate.format_compare(result))
    if args.json:
        io.atomic_write(args.json, json.dumps(result, indent=1, ensure_ascii=False))
    return 0
