"""The run lifecycle (callbacks/runstore.py): every (state, event) pair against the declared table.

An allowed event moves the run to the state TRANSITIONS names; any other leaves status.json
byte-identical (and the cancel flag as it was). Plus the guarantees users rely on: a cancel wins over
the late writes of the job it stopped, and an interrupted run never turns into a finished one.
"""

from __future__ import annotations

import os

import pytest

from callbacks import job, runstore
from devkit.factories import run_in_state

TOKENS = {}  # run directory -> the start token its creating page holds
DEAD = {"pid": 2**22 + 4321, "host": os.uname().nodename}  # a process that is gone, on this host

# One call per event, each through the public function that performs it.
EVENTS = {
    "create": lambda rdir: runstore.create(rdir),
    "import": lambda rdir: runstore.imported(rdir, data={"source": "imported m.json"}),
    "token": lambda rdir: runstore.issue_token(rdir),
    "claim": lambda rdir: runstore.claim_start(rdir, TOKENS.get(rdir)),
    "start": lambda rdir: runstore.start(rdir),
    "progress": lambda rdir: runstore.progress(rdir, stage="Clustering level 1", percent=40, log="line"),
    "heartbeat": lambda rdir: runstore.heartbeat(rdir),
    "finish": lambda rdir: runstore.finish(rdir, timings={"total": 1.0}, warnings=None),
    "fail": lambda rdir: runstore.fail(rdir, "It broke."),
    "cancel": lambda rdir: runstore.request_cancel(rdir),
    "stop": lambda rdir: runstore.stopped(rdir, log="Cancelled."),
    "interrupt": lambda rdir: runstore.mark_interrupted(rdir),
}
FROM = (runstore.NEW, *runstore.STATES)


def _at(tmp_path, state):
    """A run in ``state`` (queued or running: with a start token in TOKENS; running: its process is gone)."""
    rdir = tmp_path / runstore.new_id()
    if state in (runstore.QUEUED, runstore.RUNNING):
        runstore.create(rdir)
        TOKENS[rdir] = runstore.issue_token(rdir)
        if state == runstore.RUNNING:
            runstore.start(rdir, **DEAD)
    elif state is not runstore.NEW:
        run_in_state(rdir, state)
    return rdir


def _snapshot(rdir):
    status = rdir / "status.json"
    return (status.read_bytes() if status.exists() else None), runstore.cancel_requested(rdir)


def test_every_event_is_exercised():
    assert set(EVENTS) == set(runstore.TRANSITIONS)
    # nothing leaves a final state: a final state reaches only itself
    for event, moves in runstore.TRANSITIONS.items():
        for before, after in moves.items():
            assert before not in runstore.FINAL_STATES or after == before, (event, before, after)
            assert after in runstore.STATES


@pytest.mark.parametrize("event", sorted(EVENTS))
@pytest.mark.parametrize("before", FROM, ids=lambda s: s or "new")
def test_each_state_and_event(tmp_path, before, event):
    rdir = _at(tmp_path, before)
    snapshot = _snapshot(rdir)
    after = runstore.TRANSITIONS[event].get(before)
    if after is None:
        if event == "token":
            with pytest.raises(ValueError, match="queued"):  # a start token for a run nobody may start
                EVENTS[event](rdir)
        else:
            EVENTS[event](rdir)
        assert _snapshot(rdir) == snapshot, f"{event} changed a {before} run"
        return
    EVENTS[event](rdir)
    status = runstore.read_status(rdir)
    assert status["state"] == after
    assert _snapshot(rdir) != snapshot
    if after in runstore.FINAL_STATES and before not in runstore.FINAL_STATES:
        assert status.get("finished_ts") is not None  # every end stops the run's clock


def test_a_wrong_token_claims_nothing(tmp_path):
    rdir = _at(tmp_path, runstore.QUEUED)
    snapshot = _snapshot(rdir)
    assert not runstore.claim_start(rdir, "guess") and _snapshot(rdir) == snapshot


def test_a_live_running_run_is_not_marked_interrupted(tmp_path):
    rdir = tmp_path / runstore.new_id()
    run_in_state(rdir, runstore.RUNNING)  # this test's own process: alive
    runstore.heartbeat(rdir)
    snapshot = _snapshot(rdir)
    assert runstore.mark_interrupted(rdir)["state"] == runstore.RUNNING and _snapshot(rdir) == snapshot


def test_the_lifecycle_owns_the_state_field(tmp_path):
    rdir = tmp_path / runstore.new_id()
    run_in_state(rdir, runstore.RUNNING)
    snapshot = _snapshot(rdir)
    for call in (lambda: runstore.progress(rdir, state=runstore.DONE), lambda: runstore.finish(rdir, updated="x"),
                 lambda: runstore.start(rdir, state=runstore.RUNNING)):
        with pytest.raises(TypeError):
            call()
    assert _snapshot(rdir) == snapshot


def test_a_cancel_during_the_run_outlives_the_jobs_late_writes(tmp_path):
    rdir = tmp_path / runstore.new_id()
    run_in_state(rdir, runstore.RUNNING)
    assert runstore.request_cancel(rdir)["state"] == runstore.CANCELLED and runstore.cancel_requested(rdir)
    for late in (runstore.start, runstore.progress, runstore.heartbeat, runstore.finish, runstore.mark_interrupted,
                 lambda r: runstore.fail(r, "late error")):
        assert late(rdir)["state"] == runstore.CANCELLED
    # the job's own last word (its log) is kept, and the run stays cancelled
    status = runstore.stopped(rdir, log="Cancelled.")
    assert status["state"] == runstore.CANCELLED and status["log"] == "Cancelled."
    assert runstore.read_status(rdir)["state"] == runstore.CANCELLED
    assert runstore.list_runs(tmp_path)[0]["state"] == runstore.CANCELLED


def test_the_cancel_flag_alone_stops_a_run_from_finishing(tmp_path):
    """The flag is set but the cancelled status could not be written (a full disk): the job's late
    writes still cannot take the run to done."""
    rdir = tmp_path / runstore.new_id()
    run_in_state(rdir, runstore.RUNNING)
    (rdir / runstore.CANCEL_FLAG).touch()
    assert runstore.finish(rdir)["state"] == runstore.RUNNING
    assert runstore.stopped(rdir)["state"] == runstore.CANCELLED


def test_an_interrupted_run_cannot_become_done(tmp_path):
    rdir = tmp_path / runstore.new_id()
    run_in_state(rdir, runstore.RUNNING, **DEAD)
    assert runstore.list_runs(tmp_path)[0]["state"] == runstore.INTERRUPTED  # recorded by the listing
    assert runstore.read_status(rdir)["state"] == runstore.INTERRUPTED
    snapshot = _snapshot(rdir)
    for late in (runstore.finish, runstore.start, runstore.progress, runstore.heartbeat):
        assert late(rdir)["state"] == runstore.INTERRUPTED
    assert _snapshot(rdir) == snapshot and not runstore.has_results(runstore.read_status(rdir))


def test_a_cancel_while_the_results_are_saved_leaves_no_results(tmp_path, monkeypatch):
    """The cancel lands after the job's last check, before its finish: the refused finish ends the
    run as cancelled and removes what it wrote."""
    from tests.test_app_logic import _start

    rows = [f"{i},text number {i} about things" for i in range(40)]
    run_id = _start(tmp_path, "id,text\n" + "\n".join(rows), "4,2", text_column="text", id_column="id")
    rdir = runstore.run_dir(tmp_path, run_id)
    real_finish = runstore.finish

    def cancelled_first(r, **fields):
        runstore.request_cancel(r)
        return real_finish(r, **fields)

    monkeypatch.setattr(runstore, "finish", cancelled_first)
    status = job.run(tmp_path, run_id)
    assert status["state"] == runstore.CANCELLED and runstore.read_status(rdir)["state"] == runstore.CANCELLED
    assert not (rdir / "model.json").exists() and not (rdir / "memberships.csv").exists()
    assert "Cancelled." in status["log"]


def test_no_module_but_the_run_store_writes_status_files():
    """Every writer of status.json goes through the lifecycle events of callbacks/runstore.py."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    raw = re.compile(r"_write_status|_apply\(|update_status\([^)]*\bstate=|"
                     r"(write_json_atomic|atomic_write|open)\([^)]*status\.json")
    files = [p for d in ("callbacks", "hercules_run", "bench", "scripts") for p in (root / d).rglob("*.py")]
    offenders = [str(p.relative_to(root)) for p in files + [root / "app.py"]
                 if p.name != "runstore.py" and raw.search(p.read_text(encoding="utf-8"))]
    assert offenders == []
