"""Run directories: ids, status files, listing, and a per-process cache of loaded models.

Every run lives in ``<runs_dir>/<run_id>/`` where ``run_id`` is a uuid4 hex made on the server. Any
run id that comes from a browser is checked against :data:`RUN_ID_RE` before it touches a path, and
every file name joined to a folder goes through :func:`inside` (resolved, then checked to stay in the
folder): one mechanism for upload files, run directories and served images.
``status.json`` is the source of truth for the runs page; it is replaced atomically, and only by the
lifecycle functions of this module (``create``, ``imported``, ``issue_token``, ``claim_start``,
``start``, ``progress``, ``heartbeat``, ``finish``, ``fail``, ``request_cancel``, ``stopped``,
``mark_interrupted``): each is one event of :data:`TRANSITIONS`, applied under the status lock.

A run is started (and cancelled) only by the page that created it: ``issue_token`` gives that page a
random token whose hash is kept in ``status.json``; ``claim_start`` moves ``queued`` to ``running``
once, for the holder of the token, under the status lock.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from hercules_core.data import IMAGE_EXTENSIONS
from hercules_core.io import atomic_write

log = logging.getLogger("hercules.runstore")
RUN_ID_RE = re.compile(r"[0-9a-f]{32}")
# The states of a run, named once. A run that ended well is DONE; "finished with warnings" is DONE
# with a ``warnings`` record in its status (callbacks/outcome.py): its files are the same, so the
# explorer and the downloads treat it exactly as DONE (``has_results``).
QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = "queued", "running", "done", "failed", "cancelled", "interrupted"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED)
ACTIVE_STATES = (QUEUED, RUNNING)
FINAL_STATES = (DONE, FAILED, CANCELLED, INTERRUPTED)
NEW = None  # the "state" of a run without status.json
# What each event of a run's life does: {state before: state after}; a pair not listed is refused.
# Nothing leaves a final state ("stop" only lets the job add its last log to its own cancel).
TRANSITIONS: dict[str, dict[str | None, str]] = {
    "create": {NEW: QUEUED},                           # create: the spec is written, nobody runs it yet
    "import": {NEW: DONE},                             # imported: an uploaded model, done from the start
    "token": {QUEUED: QUEUED},                         # issue_token: the creating page's start secret
    "claim": {QUEUED: RUNNING},                        # claim_start: the token holder's worker, once
    "start": {QUEUED: RUNNING, RUNNING: RUNNING},      # start: the job begins (claimed, or called directly)
    "progress": {RUNNING: RUNNING},                    # progress: stage, percent, log tail, data
    "heartbeat": {RUNNING: RUNNING},                   # heartbeat: the job's process is alive
    "finish": {RUNNING: DONE},                         # finish: results written (maybe with warnings)
    "fail": {QUEUED: FAILED, RUNNING: FAILED},         # fail: the reason for the user
    "cancel": {QUEUED: CANCELLED, RUNNING: CANCELLED},  # request_cancel: the user's; sets the cancel flag
    "stop": {RUNNING: CANCELLED, CANCELLED: CANCELLED},  # stopped: the job stopped for a cancel
    "interrupt": {RUNNING: INTERRUPTED},               # mark_interrupted: its process is gone
}
UPLOADS = "_uploads"
CANCEL_FLAG = "cancel.flag"
# A running job refreshes ``heartbeat_ts`` in its status this often; a run whose heartbeat is older than
# HEARTBEAT_STALE seconds lost its process (a killed worker, possibly in another container or machine).
HEARTBEAT_SECONDS = 5.0
HEARTBEAT_STALE = 30.0
INTERRUPTED_MESSAGE = ("The process running this run stopped before it finished (killed, crashed or "
                       "restarted): start the run again.")


def _state_of(status_or_state: Any) -> Any:
    return status_or_state.get("state") if isinstance(status_or_state, dict) else status_or_state


def has_results(status_or_state: Any) -> bool:
    """Whether a run (its status dict or its state) finished and holds its results: DONE, with or
    without warnings. Every check of "can this run be opened / downloaded" goes through here."""
    return _state_of(status_or_state) == DONE


def is_active(status_or_state: Any) -> bool:
    """Whether a run (status dict or state) is queued or running (it can still be cancelled)."""
    return _state_of(status_or_state) in ACTIVE_STATES


def new_id() -> str:
    return uuid.uuid4().hex


def valid_id(value: Any) -> bool:
    return isinstance(value, str) and RUN_ID_RE.fullmatch(value) is not None


def check_id(value: Any) -> str:
    if not valid_id(value):
        raise ValueError("Not a valid run id.")
    return value


def run_dir(runs_dir: str | os.PathLike, run_id: Any) -> Path:
    """``<runs_dir>/<run_id>`` for a checked id (ValueError otherwise)."""
    return Path(runs_dir) / check_id(run_id)


def upload_dir(runs_dir: str | os.PathLike, upload_id: Any) -> Path:
    return Path(runs_dir) / UPLOADS / check_id(upload_id)


def inside(folder: str | os.PathLike, *parts: Any) -> Path:
    """``folder/parts...`` resolved, or ValueError when it is not a plain name or leaves ``folder``.

    Resolution (symlinks, ``..``, absolute parts) happens before the check, so no string trick in a
    stored or submitted name can reach a file outside the folder.
    """
    if not parts or not all(isinstance(p, str) and p and "\x00" not in p for p in parts):
        raise ValueError("Not a file name.")
    root = Path(folder).resolve()
    target = root.joinpath(*parts).resolve()
    if target == root or not target.is_relative_to(root):
        raise ValueError("The name leaves its folder.")
    return target


def run_image(rdir: str | os.PathLike, image_path: Any) -> Path | None:
    """The file of a model's image path when it is one of the run's own images (``rdir/images``),
    else None: imported models and tampered paths may point anywhere."""
    images = Path(rdir) / "images"
    try:
        rel = Path(str(image_path)).resolve().relative_to(images.resolve())
        path = inside(images, str(rel))
    except (ValueError, OSError):
        return None
    return path if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file() else None


DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def os_error_text(exc: OSError) -> str:
    """What a write failure means for the user, without the server path that ``str(exc)`` carries."""
    if exc.errno in DISK_FULL:
        return "the server's disk is full (no space left); free some space or ask the administrator"
    return exc.strerror or type(exc).__name__


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, ensure_ascii=False, indent=1, default=str))


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return default


# --------------------------------------------------------------------------- the run lifecycle
# status.json is written only here: every event below is one locked read-modify-write that checks
# TRANSITIONS first. A refused event (a late write of a job that was cancelled, a heartbeat after the
# end, a second claim) changes nothing: it returns the status as it is and logs at debug level; the
# caller tells by the returned state. Misuse (a ``state`` or ``updated`` field) raises TypeError.

def read_status(rdir: str | os.PathLike) -> dict[str, Any]:
    return read_json(Path(rdir) / "status.json", {}) or {}


def _write_status(rdir: Path, status: dict[str, Any]) -> None:
    try:
        write_json_atomic(rdir / "status.json", status)
    except OSError as e:
        if e.errno not in DISK_FULL or not (rdir / "status.json").exists():
            raise
        # disk full: the atomic copy needs new blocks; rewriting in place reuses the old file's
        # blocks, so the run can still say *why* it failed (readers skip a momentarily empty file)
        with open(rdir / "status.json", "r+", encoding="utf-8") as fh:
            fh.write(json.dumps(status, ensure_ascii=False, separators=(",", ":"), default=str))
            fh.truncate()


def _apply(rdir: str | os.PathLike, event: str, fields: dict[str, Any] | Callable[[dict], dict] | None = None, *,
           when: Callable[[dict[str, Any]], bool] | None = None,
           effect: Callable[[], None] | None = None) -> tuple[dict[str, Any], bool]:
    """Apply ``event`` to the run's status: (status after, whether it was applied).

    Applied when TRANSITIONS[event] lists the current state, ``when(status)`` (if given) agrees, and
    the cancel flag, if set, is not contradicted (with it, no event leads to queued, running or done).
    Then ``effect()`` runs, ``fields`` (a dict, or a function of the current status) are merged, and
    the new state and ``updated`` are written.
    """
    targets = TRANSITIONS[event]
    if isinstance(fields, dict) and {"state", "updated"} & fields.keys():
        raise TypeError(f"{event}: the state and its time are set by the lifecycle, not by a field")
    rdir = Path(rdir)
    if NEW in targets:
        rdir.mkdir(parents=True, exist_ok=True)
    elif not (rdir / "status.json").is_file():
        log.debug("run %s: %s refused: no status", rdir.name, event)
        return {}, False
    # the job process and the web server both write: an advisory lock makes read-modify-write atomic
    fd = os.open(rdir / "status.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        status = read_status(rdir)
        before = status.get("state", NEW)
        after = targets.get(before)
        if after is None or (when is not None and not when(status)) or \
                (after in (QUEUED, RUNNING, DONE) and (rdir / CANCEL_FLAG).exists()):
            log.debug("run %s: %s refused in state %s", rdir.name, event, before)
            return status, False
        if effect is not None:
            effect()
        status.update(fields(status) if callable(fields) else fields or {})
        status["state"], status["updated"] = after, now_iso()
        _write_status(rdir, status)
        return status, True
    finally:
        os.close(fd)


def _ended(fields: dict[str, Any]) -> dict[str, Any]:
    return {"finished": now_iso(), "finished_ts": time.time(), **fields}


def create(rdir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """A new run, ``queued`` (its spec written, nobody runs it yet); ``fields``: settings, data."""
    return _apply(rdir, "create", {"created": now_iso(), "percent": 0, "stage": "Queued", **fields})[0]


def imported(rdir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """A model uploaded by a user: a run that is ``done`` from the start (``imported``: never executed)."""
    t = time.time()
    return _apply(rdir, "import", {"imported": True, "created": now_iso(), "percent": 100, "stage": "Imported",
                                   "started_ts": t, "finished_ts": t, **fields})[0]


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(rdir: str | os.PathLike) -> str:
    """A new secret for the page that created the (queued) run; only its hash is stored.

    ValueError for a run that is not queued: no page may start it any more.
    """
    token = secrets.token_urlsafe(32)
    if not _apply(rdir, "token", {"token_sha256": _token_hash(token)})[1]:
        raise ValueError("Only a queued run gets a start token.")
    return token


def token_ok(status: dict[str, Any], token: Any) -> bool:
    stored = status.get("token_sha256")
    return isinstance(stored, str) and isinstance(token, str) and len(token) < 200 \
        and hmac.compare_digest(stored, _token_hash(token))


def claim_start(rdir: str | os.PathLike, token: Any) -> bool:
    """True once: for the holder of the run's token, while the run is ``queued`` (it becomes running).

    Finished, failed, cancelled, running and imported runs, runs without a token and wrong tokens
    are left untouched.
    """
    # the claiming process runs the job: its pid lets every page see if it dies before the job starts
    return _apply(rdir, "claim", {"stage": "Starting", "pid": os.getpid(), "host": os.uname().nodename},
                  when=lambda status: token_ok(status, token))[1]


def start(rdir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """The job begins (after a claim, or called directly): ``running``, with this process's pid."""
    return _apply(rdir, "start", {"pid": os.getpid(), "host": os.uname().nodename, "started": now_iso(),
                                  "started_ts": time.time(), **fields})[0]


def progress(rdir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """What a running job reports: stage, percent, the live log's tail, the data description."""
    return _apply(rdir, "progress", fields)[0]


def heartbeat(rdir: str | os.PathLike) -> dict[str, Any]:
    """The running job's sign of life (``heartbeat_ts``): see :class:`Heartbeat`."""
    return _apply(rdir, "heartbeat", {"heartbeat_ts": time.time()})[0]


def finish(rdir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """The job ended well: ``done``, with ``fields`` (timings, clusters per level, warnings, ...).
    A run cancelled or interrupted meanwhile stays so (the returned state says which)."""
    return _apply(rdir, "finish", _ended(fields))[0]


def fail(rdir: str | os.PathLike, error: str, **fields: Any) -> dict[str, Any]:
    """The run cannot go on: ``failed``, with the reason for the user."""
    return _apply(rdir, "fail", _ended({"error": error, **fields}))[0]


def request_cancel(rdir: str | os.PathLike) -> dict[str, Any]:
    """The user cancels a queued or running run: the cancel flag (polled by the job between steps)
    is set and the run is ``cancelled`` at once. A run that has ended is returned unchanged.

    A browser request must show the run's token first (``token_ok``): see ``shell``.
    """
    rdir = Path(rdir)
    return _apply(rdir, "cancel", _ended({"error": "Cancelled by the user."}),
                  effect=lambda: (rdir / CANCEL_FLAG).touch())[0]


def stopped(rdir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """The job stopped because of a cancel: ``cancelled``, with its last log."""
    return _apply(rdir, "stop", _ended({"error": "Cancelled by the user.", **fields}))[0]


def cancel_requested(rdir: str | os.PathLike) -> bool:
    return (Path(rdir) / CANCEL_FLAG).exists()


def _alive(pid: Any) -> bool:
    try:
        import psutil

        p = psutil.Process(int(pid))
        return p.status() != psutil.STATUS_ZOMBIE
    except Exception:  # NoSuchProcess, AccessDenied, bad pid: treat as gone
        return False


def _heartbeat_stale(status: dict[str, Any]) -> bool:
    try:
        return time.time() - float(status["heartbeat_ts"]) > HEARTBEAT_STALE
    except (KeyError, TypeError, ValueError):
        return False  # a run of an older version, without heartbeat: only the pid check applies


def effective_state(status: dict[str, Any]) -> str:
    """The state to show: a "running" run whose process is gone (same machine: its pid; any machine
    or container: its heartbeat stopped) was interrupted."""
    state = status.get("state", "unknown")
    if state == RUNNING and ((status.get("pid") and status.get("host") == os.uname().nodename
                                and not _alive(status["pid"])) or _heartbeat_stale(status)):
        return INTERRUPTED
    return state


def mark_interrupted(rdir: str | os.PathLike) -> dict[str, Any]:
    """Record, once, that a running run's process is gone (``interrupted``), with the time of its last
    sign of life as its end. A run whose process is alive is returned unchanged."""

    def fields(status: dict[str, Any]) -> dict[str, Any]:
        try:
            end = datetime.fromisoformat(status.get("updated")).timestamp()
        except (TypeError, ValueError):
            end = time.time()
        return {"finished": now_iso(), "finished_ts": end, "error": status.get("error") or INTERRUPTED_MESSAGE}

    return _apply(rdir, "interrupt", fields, when=lambda status: effective_state(status) == INTERRUPTED)[0]


class Heartbeat:
    """Refreshes ``heartbeat_ts`` of a running run's status every ``interval`` seconds from a daemon
    thread, while the job runs (``with Heartbeat(rdir): ...``). A failed write (a full disk) is skipped."""

    def __init__(self, rdir: str | os.PathLike, interval: float = HEARTBEAT_SECONDS):
        self.rdir, self.interval = Path(rdir), interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="hercules-heartbeat", daemon=True)

    def _beat(self) -> None:
        while True:
            try:
                heartbeat(self.rdir)
            except OSError:
                pass
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def list_runs(runs_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every run with a status file, newest first (``state`` is the effective state; a run found
    interrupted is recorded so)."""
    out = []
    root = Path(runs_dir)
    if not root.is_dir():
        return out
    for entry in root.iterdir():
        if not valid_id(entry.name) or not entry.is_dir():
            continue
        status = read_status(entry)
        if not status:
            continue
        if status.get("state") == RUNNING and effective_state(status) == INTERRUPTED:
            try:
                status = mark_interrupted(entry) or status
            except OSError:  # not writable (a full disk): shown interrupted all the same
                status = dict(status, state=INTERRUPTED)
        status = dict(status, run_id=entry.name, state=effective_state(status))
        out.append(status)
    out.sort(key=lambda s: s.get("created", ""), reverse=True)
    return out


def artifact(runs_dir: str | os.PathLike, run_id: Any, name: str) -> Path:
    return run_dir(runs_dir, run_id) / name


class LRU:
    """A small thread-safe least-recently-used map; ``get_or_make(key, make)`` builds a missing value
    outside the lock (two threads may both build it; the last one is kept)."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_make(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


class ModelCache(LRU):
    """A small LRU of loaded models keyed by (path, mtime): a re-written file is loaded again.

    ``loader(path)`` builds the cached object (an ``ExploreModel``). Thread-safe; one per app.
    """

    def __init__(self, loader: Callable[[Path], Any], size: int = 4):
        super().__init__(size)
        self.loader = loader

    def get(self, path: str | os.PathLike) -> Any:
        path = Path(path)
        key = (str(path), path.stat().st_mtime_ns)
        with self._lock:
            for k in [k for k in self._items if k[0] == key[0] and k != key]:
                del self._items[k]  # an older version of the same file
        return self.get_or_make(key, lambda: self.loader(path))

    def put(self, path: str | os.PathLike, make: Callable[[], Any]) -> None:
        """Cache ``make()`` as the file's current version: for a writer that holds the file's lock and
        has the object in memory already (a curation edit), so the next ``get`` need not re-read it."""
        path = Path(path)
        key = (str(path), path.stat().st_mtime_ns)
        value = make()
        with self._lock:
            for k in [k for k in self._items if k[0] == key[0]]:
                del self._items[k]
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)


def elapsed(status: dict[str, Any]) -> float | None:
    t = status.get("timings", {}).get("total") if isinstance(status.get("timings"), dict) else None
    if t is not None:
        return float(t)
    start, end = status.get("started_ts"), status.get("finished_ts")
    if start is None:
        return None
    if end is None:  # only a run still going has a growing duration
        if not is_active(status):
            return None
        end = time.time()
    try:
        return float(end) - float(start)
    except (TypeError, ValueError):
        return None
