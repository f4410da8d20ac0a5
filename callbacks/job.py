"""One run of the web app, as plain Python: what the background callback executes.

``run(runs_dir, run_id, send)`` reads ``spec.json`` of the run and hands it to the run pipeline
(``hercules_run.pipeline``, the same one the command line uses): it prepares the data, builds the
models from their registry ids (inside the worker: SDK clients do not pickle), fits, and writes
``model.json``, ``memberships.csv``, ``hierarchy.txt``, ``evaluation.json`` and the run log into the
run directory. This module adds what only the app needs: ``status.json`` following every stage, a
live log, and ``send(percent, stage_text, log_text)``, throttled progress for the browser.
"""

from __future__ import annotations

import logging
import os
import re
import time
import traceback
from collections import deque
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable

from hercules_core import Cancelled, HerculesConfig, HerculesError, RunLog
from hercules_run.pipeline import OUTPUT_FILES, ModelIds, RunRequest, run_pipeline
from hercules_run.spec import DataSpec, RunSpec, dataset_summary

from . import configform, outcome, runstore, uploads

SendFn = Callable[[int, str, str], None]
LOG_LINES = 40
STATUS_LOG_CHARS = 8000  # the live log tail kept in status.json (a rejoined page or /run/<id> shows it)
_LEVEL_STAGE = re.compile(r"(clustering|summarizing) level (\d+)|embedding level (\d+) descriptions")


def overall_percent(stage: str, done: int, total: int, n_levels: int) -> float:
    """Map Hercules' (stage, done, total) to one monotone-ish 0-100 scale for the whole run."""
    frac = min(max(done / total, 0.0), 1.0) if total else 0.0
    s = stage.lower()
    if s.startswith("prepar"):
        return 2.0
    if s in ("embedding items", "captioning", "summarizing level 0", "embedding descriptions"):
        return 5.0 + 30.0 * frac
    m = _LEVEL_STAGE.fullmatch(s)
    if m:
        level = int(m.group(2) or m.group(3))
        slot = 60.0 / max(n_levels, 1)
        base = 35.0 + (min(level, max(n_levels, 1)) - 1) * slot
        if m.group(1) == "clustering":
            return min(base + 0.3 * slot * frac, 95.0)
        if m.group(1) == "summarizing":
            return min(base + 0.3 * slot + 0.55 * slot * frac, 95.0)
        return min(base + 0.85 * slot + 0.15 * slot * frac, 95.0)
    if s in ("embedding topic seed", "stability"):
        return 95.0
    if s == "reduction":
        return 95.0 + 2.0 * frac
    if s == "evaluation":
        return 97.0 + 2.0 * frac
    if s.startswith("saving"):
        return 99.0
    return 0.0


def stage_text(stage: str, done: int, total: int) -> str:
    s = stage[:1].upper() + stage[1:]
    s = s.replace("Summarizing", "Summarising")
    return f"{s} ({done:,}/{total:,})" if total > 1 else s


class Reporter:
    """Hercules' ``progress`` callable: keeps percent, stage and a log tail; sends throttled updates."""

    def __init__(self, rdir, n_levels: int, send: SendFn | None = None, min_interval: float = 0.3,
                 stage_delay: float = 0.0):
        self.rdir, self.n_levels, self.send = rdir, n_levels, send
        self.min_interval, self.stage_delay = min_interval, stage_delay
        self.percent, self.stage, self.text = 0.0, "", "Queued"
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self._last_send = 0.0
        self._last_status = 0.0

    def log(self, message: str) -> None:
        self.lines.append(f"{time.strftime('%H:%M:%S')} {message}")
        self.push(force=True)

    def __call__(self, stage: str, done: int, total: int) -> None:
        new_stage = stage != self.stage
        self.percent = max(self.percent, overall_percent(stage, done, total, self.n_levels))
        self.text = stage_text(stage, done, total)
        if new_stage:
            self.stage = stage
            self.lines.append(f"{time.strftime('%H:%M:%S')} {self.text}")
            if self.stage_delay:
                time.sleep(self.stage_delay)  # test hook (HERCULES_TEST_STAGE_DELAY): a visible bar
        self.push(force=new_stage)

    def push(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.send is not None and (force or now - self._last_send >= self.min_interval):
            self._last_send = now
            self.send(int(self.percent), self.text, "\n".join(self.lines))
        if force or now - self._last_status >= 1.0:
            self._last_status = now
            runstore.progress(self.rdir, stage=self.text, percent=int(self.percent), log=self.tail())

    def tail(self) -> str:
        return "\n".join(self.lines)[-STATUS_LOG_CHARS:]


class _LiveRunLog(RunLog):
    """The run log file, also feeding stage events and LLM failures to the live log."""

    def __init__(self, path, reporter: Reporter):
        super().__init__(path, keep_records=False)
        self.reporter = reporter

    def write(self, record) -> None:
        super().write(record)
        event = record.get("event")
        if event == "llm_call":
            if record.get("error"):
                self.reporter.lines.append(f"{time.strftime('%H:%M:%S')} LLM call failed: {record['error']}"[:300])
        elif event:
            details = ", ".join(f"{k}={v}" for k, v in record.items() if k not in ("event", "time"))[:200]
            self.reporter.lines.append(f"{time.strftime('%H:%M:%S')} {event.replace('_', ' ')} {details}".rstrip())


# The run whose code is executing: set by run(), copied into the worker threads hercules_core starts.
_RUN_ID: ContextVar[str | None] = ContextVar("hercules_job_run", default=None)


class _LogHandler(logging.Handler):
    """hercules_core warnings of ONE run for its live log: several runs may share a process (a
    threaded Celery worker), and each sees only the records logged in its own context."""

    def __init__(self, reporter: Reporter, run_id: str):
        super().__init__(logging.WARNING)
        self.reporter, self.run_id = reporter, run_id

    def filter(self, record: logging.LogRecord) -> bool:
        return _RUN_ID.get() == self.run_id and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        self.reporter.lines.append(f"{time.strftime('%H:%M:%S')} {record.levelname.lower()}: {record.getMessage()}"[:400])


def capture_warnings(run_id: str, reporter: Reporter) -> Callable[[], None]:
    """Send the warnings of the run ``run_id`` (this context) to ``reporter``'s live log until the
    returned function is called."""
    token = _RUN_ID.set(run_id)
    handler = _LogHandler(reporter, run_id)
    logging.getLogger("hercules_core").addHandler(handler)

    def stop() -> None:
        logging.getLogger("hercules_core").removeHandler(handler)
        _RUN_ID.reset(token)

    return stop


def _stage_delay() -> float:
    if os.environ.get("HERCULES_TEST_MODELS") != "1":
        return 0.0
    try:
        return max(0.0, min(float(os.environ.get("HERCULES_TEST_STAGE_DELAY", "0")), 5.0))
    except ValueError:
        return 0.0


def _write_failed(rdir: Path, exc: OSError) -> dict[str, Any]:
    """A write failed (often a full disk): drop half-written results, say why (never a server path)."""
    for name in OUTPUT_FILES:
        (rdir / name).unlink(missing_ok=True)
    uploads.discard_extracted(rdir)
    error = f"The run could not write its files: {runstore.os_error_text(exc)}."
    try:
        return runstore.fail(rdir, error)
    except OSError:  # not even the status fits: the browser still gets the reason
        return {"state": runstore.FAILED, "error": error}


def run(runs_dir, run_id: str, send: SendFn | None = None) -> dict[str, Any]:
    """Execute the run ``run_id`` (its ``spec.json`` must exist); returns the final status.

    A finished (or imported) run is returned untouched: only a queued or claimed run executes.
    """
    rdir = runstore.run_dir(runs_dir, run_id)
    status = runstore.read_status(rdir)
    if status.get("imported") or status.get("state") in runstore.FINAL_STATES:
        return status
    spec = runstore.read_json(rdir / "spec.json")
    if not spec:
        return runstore.fail(rdir, "The run has no spec.json.")
    cfg_dict = spec["config"]
    counts = cfg_dict.get("level_cluster_counts")
    reporter = Reporter(rdir, len(counts) if counts else HerculesConfig.from_dict(cfg_dict).max_levels, send,
                        stage_delay=_stage_delay())
    stop_capture = capture_warnings(run_id, reporter)
    t0 = time.time()
    try:
        status = runstore.start(rdir, started_ts=t0, percent=0, stage="Preparing data")
    except OSError as e:
        stop_capture()
        return _write_failed(rdir, e)
    if not runstore.is_active(status):  # cancelled (or gone) since it was read above
        stop_capture()
        return status

    def prepare(out):
        return uploads.prepare_from_spec(uploads.spec_of_record(spec["data"], runs_dir), runs_dir, out)

    def loaded(ds):
        runstore.progress(rdir, data=dataset_summary(ds))
        reporter.log(f"Loaded {len(ds):,} {ds.modality} items from {ds.source}"
                     + (" with labels" if ds.labels is not None else ""))
        for note in ds.notes:
            reporter.log(f"note: {note}"[:300])
        reporter.log("Models: " + ", ".join(f"{k}={v}" for k, v in spec.get("models", {}).items() if v))

    try:
        request = RunRequest(prepare=prepare, config=HerculesConfig.from_dict(cfg_dict), out_dir=rdir,
                             models=ModelIds.from_dict(spec.get("models")))
        h = run_pipeline(request, progress=reporter, cancel=lambda: runstore.cancel_requested(rdir),
                         run_log=_LiveRunLog(rdir / "run_log.jsonl", reporter), on_data=loaded).hierarchy
        if runstore.cancel_requested(rdir):  # cancelled after the pipeline's last check: honour it
            raise Cancelled("Cancelled by the user.")
        # how good the result is: too many keyword fallbacks or failed LLM calls finish "with warnings"
        warnings = outcome.assess_run(h.stats, rdir / "run_log.jsonl")
        reporter.percent = 100.0
        reporter.text = "Done" if warnings is None else "Finished with warnings"
        reporter.log(f"Done: {', '.join(str(len(lv)) for lv in h.levels[1:])} clusters in levels 1..{h.top_level}")
        if warnings is not None:
            reporter.log(f"Finished with warnings: {warnings['text']} Main reason: {warnings['reason']}."[:500])
        status = runstore.finish(rdir, percent=100, stage=reporter.text, timings=h.stats.get("timings", {}),
                                 clusters_per_level=[len(lv) for lv in h.levels[1:]],
                                 usage=h.stats.get("usage", {}), warnings=warnings,
                                 title_quality=outcome.title_quality(h.evaluation), log=reporter.tail())
        if status.get("state") == runstore.CANCELLED:  # cancelled while the results were saved
            raise Cancelled("Cancelled by the user.")
        return status
    except Cancelled:
        for name in OUTPUT_FILES:  # a cancel that came late leaves no result behind
            (rdir / name).unlink(missing_ok=True)
        uploads.discard_extracted(rdir)
        reporter.text = "Cancelled"
        reporter.log("Cancelled.")
        return runstore.stopped(rdir, log=reporter.tail())
    except HerculesError as e:
        uploads.discard_extracted(rdir)
        reporter.text = "Failed"
        reporter.log(f"Failed: {configform.error_text(e)}"[:500])
        return runstore.fail(rdir, configform.error_text(e), log=reporter.tail())
    except OSError as e:
        return _write_failed(rdir, e)
    except Exception as e:  # a bug or an environment problem: say so, keep the traceback on disk
        uploads.discard_extracted(rdir)
        try:
            (rdir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        except OSError:
            pass  # the status below still carries the reason
        reporter.log(f"Internal error: {type(e).__name__}: {e}"[:500])
        return runstore.fail(rdir, f"Internal error ({type(e).__name__}: {e}). The traceback is in the "
                                   "run directory (error.txt).")
    finally:
        stop_capture()


def create_run(runs_dir, spec: DataSpec, config: HerculesConfig, models: dict[str, Any] | ModelIds) -> str:
    """Make the run directory with its spec (:class:`RunSpec`) and a ``queued`` status; returns the new run id."""
    run_spec = RunSpec(spec, config, models if isinstance(models, ModelIds) else ModelIds.from_dict(models))
    run_id = runstore.new_id()
    rdir = runstore.run_dir(runs_dir, run_id)
    rdir.mkdir(parents=True)
    runstore.write_json_atomic(rdir / "spec.json", run_spec.to_dict())
    runstore.create(rdir, settings=run_spec.summary(), data={"source": ", ".join(spec.names[:3]),
                                                          "modality": spec.modality})
    return run_id
