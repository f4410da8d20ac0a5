"""Parse untrusted uploads in a child process with hard memory and time limits.

The table budget (``hercules_core.data.ReadBudget``) refuses what a file declares; this is the
defence behind it, for what a file hides (a Parquet dictionary that decodes to gigabytes, a parser's
own worst case). The web server is threaded (gunicorn: 2 workers x 8 threads), so a parse that ran in
it could take the whole server down with it; here the worst case is one killed child and a message.

It lives in the app layer, not in ``hercules_core``: the library reads the user's own files in the
user's own process, where a budget is enough; only the server reads files from strangers while
serving others. Children come from a ``forkserver`` that has imported pandas, pyarrow and openpyxl
once, so a call costs a fork, not an interpreter start (fork() of the threaded server itself could
copy a lock another thread holds). The child gets ``RLIMIT_CPU`` as a backstop; memory is watched by
the parent, which sums the child's resident memory every 20 ms and kills it above the limit
(``RLIMIT_AS`` is no measure: numpy's and Arrow's thread pools reserve gigabytes of address space they
never touch). At most ``MAX_PARALLEL`` children run at once per server process; more callers wait.

Settings (environment, read on each call): ``HERCULES_READ_MEMORY_MB`` (default 4096) and the table
budget's ``HERCULES_MAX_ROWS``, ``HERCULES_MAX_COLUMNS``, ``HERCULES_MAX_CELLS``,
``HERCULES_MAX_TABLE_MB`` and ``HERCULES_MAX_READ_SECONDS`` (see :func:`read_budget`).
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import sys
import threading
import time
from typing import Any, Callable

from hercules_core import HerculesError, InputError
from hercules_core.data import DEFAULT_READ_BUDGET, ReadBudget

logger = logging.getLogger("hercules_app.reader")
MAX_PARALLEL = 2
DEFAULT_MEMORY_BYTES = 4 * 1024**3
PRELOAD = ["psutil", "pandas", "pyarrow.parquet", "openpyxl", "hercules_core.data", "callbacks.uploads",
           "callbacks.model_import", "callbacks._warm_reader"]
# RLIMIT_AS is only a backstop: address space is no measure of memory use (measured: reading a
# 5,000,000-row Parquet and a 381 MB array, 0.7 GB resident, needed 1.5 GB more address space; with
# 1.5 GB allowed it failed, with 1 GB it passed), so the cap is the resident limit times this.
AS_FACTOR = 4
_POLL = 0.02
_ENV = {"max_rows": "HERCULES_MAX_ROWS", "max_columns": "HERCULES_MAX_COLUMNS", "max_cells": "HERCULES_MAX_CELLS",
        "max_bytes": "HERCULES_MAX_TABLE_MB", "max_seconds": "HERCULES_MAX_READ_SECONDS"}

_lock = threading.Lock()
_slots = threading.BoundedSemaphore(MAX_PARALLEL)
_context: Any = None
_owner: int | None = None


def _env_number(name: str, default: float, scale: float = 1) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw) * scale
    except ValueError:
        raise InputError(f"The server setting {name}={raw!r} is not a number; ask its administrator to fix"
                         f" it.") from None
    if not value > 0 or not math.isfinite(value):
        raise InputError(f"The server setting {name}={raw!r} must be a positive number.")
    return value


def read_budget() -> ReadBudget:
    """The table budget of this server: :data:`DEFAULT_READ_BUDGET` with the ``HERCULES_MAX_*`` settings."""
    d = DEFAULT_READ_BUDGET
    return ReadBudget(max_rows=int(_env_number(_ENV["max_rows"], d.max_rows)),
                      max_columns=int(_env_number(_ENV["max_columns"], d.max_columns)),
                      max_cells=int(_env_number(_ENV["max_cells"], d.max_cells)),
                      max_bytes=int(_env_number(_ENV["max_bytes"], d.max_bytes, 1024**2)),
                      max_seconds=_env_number(_ENV["max_seconds"], d.max_seconds))


def memory_limit() -> int:
    """The most resident memory one parse may use (``HERCULES_READ_MEMORY_MB``, default 4096 MB)."""
    return int(_env_number("HERCULES_READ_MEMORY_MB", DEFAULT_MEMORY_BYTES, 1024**2))


def _preparation_data(name: str) -> dict[str, Any]:
    """multiprocessing's data for a new child, without the main module for a reader: a child would
    otherwise run the server's ``__main__`` (app.py, gunicorn) again before reading a file. The
    functions a reader runs live in importable modules."""
    data = _original_preparation_data(name)
    if name.startswith(_NAME):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


_NAME = "hercules-reader"
_original_preparation_data: Callable = lambda name: {}


def _ctx():
    global _context, _original_preparation_data, _owner
    with _lock:
        if _owner != os.getpid():  # a process forked from one that started the fork server: not ours to use
            if _owner is not None:
                return False
            _owner = os.getpid()
        if _context is None:
            if "forkserver" in multiprocessing.get_all_start_methods():
                from multiprocessing import spawn

                if spawn.get_preparation_data is not _preparation_data:
                    _original_preparation_data = spawn.get_preparation_data
                    spawn.get_preparation_data = _preparation_data
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(PRELOAD)
                _start_server()
                _context = ctx
            else:  # Windows: no fork; the budget alone bounds the parse
                _context = False
        return _context


def _start_server() -> None:
    """Start the fork server with this process's ``sys.path``: Python 3.11's fork server imports its
    preload with the default path (a worktree's ``callbacks`` would not be found, and every child
    would import pandas and the app again: 1-3 s instead of ~10 ms)."""
    from multiprocessing import forkserver

    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        forkserver.ensure_running()
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def warm() -> None:
    """Start the fork server in the background (the first upload then does not wait for its imports)."""
    threading.Thread(target=_ctx, name="hercules-reader-warm", daemon=True).start()


def _child(conn, fn: Callable, args: tuple, max_rss: int, max_seconds: float) -> None:
    try:  # backstops should the parent's watch fall behind: CPU time, and a loose address-space cap
        import resource

        import psutil

        cpu = int(math.ceil(max_seconds)) + 2
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
        space = psutil.Process().memory_info().vms + AS_FACTOR * max_rss
        resource.setrlimit(resource.RLIMIT_AS, (space, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ImportError, ValueError, OSError):
        pass
    try:
        out = ("ok", fn(*args))
    except HerculesError as e:  # InputError, ModelFileError: messages written for the user
        out = ("input", str(e))
    except MemoryError:
        out = ("memory", "")
    except BaseException as e:  # anything else is this file's problem, said once, in the parent
        out = ("error", f"{type(e).__name__}: {e}"[:500])
    try:
        conn.send(out)
    finally:
        conn.close()


def _rss(proc) -> int:
    import psutil

    try:
        return proc.memory_info().rss
    except psutil.Error:
        return 0


TABLE_ADVICE = "sample or split it, or save it as CSV or Parquet"


def bounded_call(fn: Callable, *args: Any, max_rss_bytes: int | None = None, max_seconds: float | None = None,
                 what: str = "This file", advice: str = TABLE_ADVICE) -> Any:
    """``fn(*args)`` in a child process; its (small, picklable) result.

    ``InputError`` raised by ``fn`` is raised again with its message. A child that goes over
    ``max_rss_bytes`` of resident memory or ``max_seconds`` of wall time is killed, and one that dies
    or fails otherwise ends the same way: an ``InputError`` starting with ``what`` that says which,
    and what to do (``advice``).
    """
    import psutil

    max_rss = int(max_rss_bytes if max_rss_bytes is not None else memory_limit())
    seconds = float(max_seconds if max_seconds is not None else read_budget().max_seconds)
    ctx = _ctx()
    if not ctx:
        return fn(*args)
    with _slots:
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(send, fn, args, max_rss, seconds), daemon=True, name=_NAME)
        try:
            proc.start()
        except OSError as e:
            raise InputError(f"{what} could not be read: the server cannot start a reader ({e}); try again.") \
                from None
        finally:
            send.close()
        watched = psutil.Process(proc.pid)
        deadline, peak, verdict = time.monotonic() + seconds, 0, None
        try:
            wait = 0.001
            while verdict is None:
                wait = min(wait * 2, _POLL)  # a small file answers within a few ms: look early, then every 20 ms
                if receive.poll(wait):
                    try:
                        verdict = receive.recv()
                    except (EOFError, OSError):
                        verdict = ("died", "")
                    break
                rss = _rss(watched)
                peak = max(peak, rss)
                if rss > max_rss:
                    verdict = ("memory", "")
                elif time.monotonic() > deadline:
                    verdict = ("time", "")
                elif not proc.is_alive() and not receive.poll(0):
                    verdict = ("died", "")
        finally:
            if proc.is_alive() and (verdict is None or verdict[0] != "ok"):
                proc.kill()
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
            receive.close()
            exitcode = proc.exitcode
            proc.close()
    kind, payload = verdict
    logger.info("reader %s: %s after %.2f s, peak %.0f MB", getattr(fn, "__name__", fn), kind,
                time.monotonic() - (deadline - seconds), peak / 1024**2)
    if kind == "ok":
        return payload
    if kind == "input":
        raise InputError(payload)
    if kind == "memory":
        raise InputError(f"{what} needs more than {max_rss / 1024**3:,.1f} GB of memory to read: {advice}.")
    if kind == "time":
        raise InputError(f"{what} needs more than {seconds:,.0f} s to read: {advice}.")
    if kind == "died":
        how = "ran out of CPU time" if exitcode in (-24, -9) else f"stopped (exit code {exitcode})"
        raise InputError(f"{what} could not be read: the reader {how}. {advice[:1].upper()}{advice[1:]}.")
    # a bug, not the file's fault: its details (which may name server paths) go to the log only
    logger.warning("reader %s failed: %s", getattr(fn, "__name__", fn), payload)
    raise InputError(f"{what} could not be read: an internal error occurred ({payload.split(':', 1)[0]}). Check "
                     f"that it is a file this page accepts; the details are in the server log.")
