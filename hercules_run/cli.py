"""``python -m hercules_core run DATA --out DIR``: a full run from the command line.

A thin front door over :func:`hercules_run.pipeline.run_pipeline`: it parses the arguments into a
config, a data spec and model ids, and prints the estimate, a summary and the cost report.
Progress bars go to stderr; an error is one clear line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

import model_registry as registry
from hercules_core import Cancelled, HerculesConfig, HerculesError, cost, stability, title_quality
from hercules_core.cache import default_cache_dir
from hercules_core.config import GROUPS, PARAMETERS, Parameter

from . import assign_cli, curate_cli, timings
from . import spec as run_spec
from .pipeline import CacheSettings, ModelIds, RunRequest, run_pipeline
from .spec import DataSpec

EXIT_USAGE = 2
EXIT_INTERNAL = 1


class TqdmProgress:
    """One tqdm bar per stage on stderr."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.stage = None
        self.bar = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled or stage == "preparing data":  # no steps to show; a bad file stays a one-line error
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(total=total, desc=stage, file=sys.stderr, leave=False)
        if self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 100,20,5; got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hercules_core",
                                description="HERCULES: hierarchical clusters with titles and descriptions.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="cluster a data set and write the model, memberships and hierarchy")
    r.add_argument("data", nargs="+", help="a table (CSV, TSV, JSON, JSONL, Parquet, Excel), .txt files, image "
                                           "files, or a folder or ZIP of images")
    r.add_argument("--out", required=True, help="output directory (created if missing)")
    src = r.add_argument_group("data")
    src.add_argument("--text-column", help="column holding the texts")
    src.add_argument("--numeric-columns", help="comma-separated numeric columns (default: all numeric ones)")
    src.add_argument("--images", action="store_true", help="the table's text column holds image paths (a folder, "
                                                           "a ZIP or image files are images anyway)")
    src.add_argument("--id-column", help="column holding the item ids (default: row numbers)")
    src.add_argument("--labels-column", help="column with ground-truth labels, for external metrics")
    src.add_argument("--labels-file", help="table of ground-truth labels with columns id,label (or two columns), "
                                           "for external metrics; instead of --labels-column")
    src.add_argument("--numeric-metadata", help="JSON file: {variable: {unit, description}}")
    src.add_argument("--vector-column", help="Parquet column of the items' own embeddings (lists of floats): "
                     "clustered as they are, the text column still gives titles and summaries")
    src.add_argument("--vectors", help="the items' own embeddings as a .npy/.npz file, one row per item in order")
    src.add_argument("--txt-mode", choices=run_spec.TXT_MODES,
                     help="items of .txt files: one per non-empty line, or one per file (default: per line for "
                          "one file, per file for several)")
    add_parameter_flags(r)
    models = r.add_argument_group("models")
    models.add_argument("--embedder", default="minilm", help="text embedder id ('none' for numeric data)")
    models.add_argument("--image-embedder", default="image-features", help="image embedder id")
    models.add_argument("--captioner", default="none",
                        help="image captioner id (e.g. openai-vision); captions become the images' descriptions")
    models.add_argument("--llm", help="LLM id ('keywords' needs no LLM); default: 'smollm2' (embedded) when it is "
                                      "installed and HERCULES_LLM_BASE_URL is unset, else 'keywords'")
    models.add_argument("--config", help="JSON file with any HerculesConfig fields; the flags typed win over it, "
                                         "it wins over the settings recommended for the --llm")
    models.add_argument("--cache-dir", help="cache of embeddings and LLM answers (default: $HERCULES_CACHE_DIR "
                                            "or ~/.cache/hercules)")
    models.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--debug", action="store_true", help="show tracebacks")
    assign_cli.add_parser(sub)
    curate_cli.add_parsers(sub)
    return p


def default_llm() -> str:
    return registry.default_llm()


def _default_text(p: Parameter) -> str:
    if p.kind is bool:
        return "on" if p.default else "off"
    if p.kind is tuple:
        return ",".join(map(str, p.default))
    return "none" if p.default is None else str(p.default)


def add_parameter_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per parameter that has one (``config.PARAMETERS``), in an argument group per form
    group. A flag not typed leaves no attribute (``SUPPRESS``), so that only typed flags override."""
    groups = {g: parser.add_argument_group(g.lower()) for g in GROUPS}
    for p in PARAMETERS.values():
        if p.flag is None:
            continue
        where = groups[p.group]
        kw = dict(dest=p.name, default=argparse.SUPPRESS,
                  help=f"{p.help} (default: {_default_text(p)})".replace("%", "%%"))
        if p.kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif p.kind is tuple:  # level_cluster_counts: --levels 100,20,5 or --auto-k
            where = where.add_mutually_exclusive_group()
            where.add_argument("--auto-k", dest=p.name, action="store_const", const=None, default=argparse.SUPPRESS,
                               help="choose the top level's k automatically (on the items); the levels below it get "
                                    "--auto-k-branching times its clusters each")
            kw.update(type=_int_list, metavar="K,K,...")
        elif p.options:
            kw["choices"] = p.options
        elif p.kind in (int, float):
            kw.update(type=p.kind, metavar="N" if p.kind is int else "X")
        else:
            kw["metavar"] = "TEXT"
        where.add_argument(p.flag, **kw)
    groups["Hierarchy"].add_argument("--k-range", type=_int_list, metavar="MIN,MAX",
                                     help="auto-k range of the top level: --auto-k-min and --auto-k-max in one flag")


# the flags of the parameters the core's errors name that are not HerculesConfig fields
_OTHER_FLAGS = {"text_embedder": "--embedder", "image_embedder": "--image-embedder", "text_column": "--text-column"}


def error_text(exc: HerculesError) -> str:
    """``exc``'s message naming parameters by their flags (``--reduce none``)."""
    flags = {**{p.name: p.flag for p in PARAMETERS.values() if p.flag}, **_OTHER_FLAGS}

    def setting(param: str, value) -> str:
        if param not in flags:
            return f"{param}={value!r}"
        if isinstance(value, bool):  # a BooleanOptionalAction: --weights / --no-weights
            return flags[param] if value else "--no-" + flags[param][2:]
        return f"{flags[param]} {value}"

    return exc.render(lambda param: flags.get(param, param), setting)


def _config(args) -> HerculesConfig:
    """HerculesConfig defaults < the settings recommended for ``args.llm`` < the ``--config`` file
    < the flags typed (the app's form applies the same order)."""
    values = dict(registry.recommended_config(args.llm)) if args.llm else {}
    if args.config:
        try:
            base = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise HerculesError(f"Cannot read the config file {args.config}: {exc}") from None
        if not isinstance(base, dict):
            raise HerculesError(f"The config file {args.config} must hold a JSON object of settings, such as "
                                f'{{"random_state": 1}}; it holds a {type(base).__name__}.')
        values.update(base)
    if args.k_range:
        if len(args.k_range) != 2:
            raise HerculesError("--k-range takes two numbers: MIN,MAX")
        values["auto_k_min"], values["auto_k_max"] = args.k_range
    values.update({name: getattr(args, name) for name in PARAMETERS if hasattr(args, name)})
    return HerculesConfig.from_dict(values)


def _cache_dir(args) -> Path:
    return Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()


CLI_LIMITS = "Give a table (CSV, TSV, JSON, JSONL, Parquet, Excel), .txt files, image files, or a folder or ZIP of images."


def data_spec(args) -> DataSpec:
    """The run's :class:`DataSpec` from the data flags (the same spec the app builds from its form)."""
    files = list(args.data)
    kind = "images" if len(files) == 1 and Path(files[0]).is_dir() else run_spec.classify(files, CLI_LIMITS)
    return DataSpec(files=tuple(files), kind=kind, modality="image" if args.images else "auto",
                    text_column=args.text_column,
                    numeric_columns=tuple(args.numeric_columns.split(",")) if args.numeric_columns else None,
                    id_column=args.id_column, labels_column=args.labels_column, labels_file=args.labels_file,
                    numeric_metadata_file=args.numeric_metadata, txt_mode=args.txt_mode,
                    vector_column=args.vector_column, vectors_file=args.vectors)


def _prepare(spec: DataSpec, out: Path):
    return run_spec.prepare(spec, None, out / "images")


def _output_dir(text: str) -> Path:
    """``--out`` as a writable folder (created if missing), or one clear error."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise HerculesError(f"--out {out} is an existing file; give a folder (it is created if missing).")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise HerculesError(f"--out {out} cannot be written ({exc.strerror or exc}); choose another folder.") from None
    return out


def run(args) -> int:
    out = _output_dir(args.out)
    if args.llm is None:
        args.llm = default_llm()
    cfg = _config(args)
    spec = run_spec.RunSpec(data_spec(args), cfg, ModelIds(text_embedder=args.embedder,
                                                           image_embedder=args.image_embedder, llm=args.llm,
                                                           captioner=args.captioner))
    show = not args.quiet
    request = RunRequest(
        prepare=lambda out_dir: _prepare(spec.data, out_dir), config=spec.config, out_dir=out, show_progress=show,
        models=spec.models, cache=CacheSettings(directory=_cache_dir(args), enabled=not args.no_cache))
    progress = TqdmProgress(enabled=show)
    try:
        # this process is the run's own: the per-stage peaks may reset its peak RSS (timings.StageMemory)
        result = run_pipeline(request, progress=timings.StageMemory(progress, reset=True),
                              on_estimate=lambda est: print(cost.format_estimate(est), file=sys.stderr))
    finally:
        progress.close()
    h, ds = result.hierarchy, result.dataset
    for note in h.stats.get("notes", [])[len(ds.notes):]:  # the data's own notes were logged already
        print(f"note: {note}", file=sys.stderr)
    top = h.top_level
    print(f"{len(ds)} {ds.modality} items -> {', '.join(str(len(lv)) for lv in h.levels[1:])} clusters "
          f"(levels 1..{top}) in {result.timings['total']:.1f} s; wrote {out}/model.json, memberships.csv, "
          f"hierarchy.txt, run_log.jsonl, evaluation.json", file=sys.stderr)
    ev = h.evaluation.get(top, {})
    if ev.get("adjusted_rand_score") is not None:
        print(f"top level L{top}: ARI={ev['adjusted_rand_score']:.3f} NMI={ev['normalized_mutual_info_score']:.3f}",
              file=sys.stderr)
    for line in title_quality.format_lines(h.evaluation):
        print(line, file=sys.stderr)
    for line in stability.format_lines(h):
        print(line, file=sys.stderr)
    for line in cost.format_report(result.report):
        print(line, file=sys.stderr)
    print(f"time outside the fit: preparing data {result.timings['preparing data']:.2f} s, saving "
          f"{result.timings['saving']:.2f} s", file=sys.stderr)
    print(timings.StageMemory.format(result.memory), file=sys.stderr)
    side = result.report.get("duration")
    if side and side.get("ratio") is not None:
        print(f"duration: estimated {side['estimated_seconds']:.1f} s, took {side['actual_seconds']:.1f} s "
              f"({side['ratio']:.2f}x the estimate)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s", stream=sys.stderr)
    try:
        if args.command == "run":
            return run(args)
        if args.command == "assign":
            return assign_cli.run(args)
        if args.command == "replay":
            return curate_cli.replay(args)
        if args.command == "compare":
            return curate_cli.compare(args)
    except (HerculesError, Cancelled) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {error_text(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the environment, not a bug: a full disk, a folder that vanished
        if getattr(args, "debug", False):
            raise
        print(f"error: cannot write the results: {exc.strerror or exc}"
              + (f" ({exc.filename})" if exc.filename else ""), file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # a bug: say so in one line, trace with --debug
        if getattr(args, "debug", False):
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_USAGE
