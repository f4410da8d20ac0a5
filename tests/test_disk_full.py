"""A full disk (issue 7, defect 4), on a real 2 MB tmpfs: every write path says "disk full" on the
page, a run is never left dead or half-done, and the explorer refuses what did not finish."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess

import pytest

from callbacks import configform, job, runstore, shell, uploads
from callbacks.context import AppContext
from hercules_core import ModelFileError
from tests import dash_client
from tests.test_app_logic import data_url


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root, or CAP_SYS_ADMIN in a container)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot make a small disk to fill")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a 2 MB tmpfs here (needs root with CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(folder, leave: int = 0):
    """Write a filler file until the disk holds at most ``leave`` free bytes."""
    path = folder / "filler.bin"
    with open(path, "wb") as fh:
        try:
            while shutil.disk_usage(folder).free > leave:
                fh.write(b"\0" * min(65536, max(shutil.disk_usage(folder).free - leave, 1)))
                fh.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return path


def _csv(n: int = 40) -> bytes:
    return ("id,text\n" + "".join(f"{i},words {i} about topic {i % 4}\n" for i in range(n))).encode()


def test_an_upload_that_fills_the_disk_is_refused_with_the_reason(small_disk, monkeypatch):
    from app import create_app

    runs = small_disk / "runs"
    app = create_app(runs, include_test_models=True)
    client = app.server.test_client()
    headers = {"X-Hercules-Upload": "1"}
    big = _csv(100_000)  # ~3.3 MB: more than the whole disk
    free_before = shutil.disk_usage(small_disk).free
    # declared when the upload starts: refused before a byte is sent
    r = client.post("/upload", json={"purpose": "data", "names": ["big table.csv"], "sizes": [len(big)]},
                    headers=headers)
    assert r.status_code == 507 and "disk space left" in r.get_json()["error"], r.get_data(as_text=True)
    # the disk fills while the chunks arrive (someone else took the space): refused with the reason, and
    # the partial copy is removed, for the data, a labels file and a model import alike
    monkeypatch.setattr(uploads, "free_bytes", lambda runs_dir: 10**12)
    for purpose, name, blob in (("data", "big table.csv", big), ("labels", "labels.csv", big),
                                ("model", "model.json", b"{" + b" " * 3_000_000 + b"}")):
        r = client.post("/upload", json={"purpose": purpose, "names": [name], "sizes": [len(blob)]}, headers=headers)
        uid = r.get_json()["upload_id"]
        r = client.post(f"/upload/{uid}/chunk?file=0&offset=0", data=blob, headers=headers)
        text = r.get_data(as_text=True)
        assert r.status_code == 507 and "disk is full" in text and name in text, text
        assert str(runs) not in text and "f00000" not in text
        assert not any((runs / runstore.UPLOADS).iterdir())  # the partial copy is gone ...
        assert shutil.disk_usage(small_disk).free >= free_before - 64 * 1024  # ... and its space is free again
    assert [p for p in runs.iterdir() if runstore.valid_id(p.name)] == []


def test_a_run_on_a_full_disk_fails_with_the_reason_and_cannot_be_opened(small_disk):
    runs = small_disk / "runs"
    runs.mkdir()
    desc = uploads.stage(runs, ["d.csv"], [data_url(_csv())])
    run_id = job.create_run(runs, uploads.data_spec(desc, what="text", text_column="text", id_column="id"),
                            configform.config_from_form({"levels_text": "4,2"}, "fixed"),
                            {"text_embedder": "fake-hash", "llm": "keywords"})
    rdir = runstore.run_dir(runs, run_id)
    token = runstore.issue_token(rdir)
    filler = fill(small_disk)
    out = shell.run_in_background(AppContext(runs_dir=runs), lambda *_: None, {"run_id": run_id, "token": token})
    assert out["state"] == "failed" and "disk is full" in out["message"], out  # what the page shows
    status = runstore.read_status(rdir)
    assert status["state"] == "failed" and "disk is full" in status["error"] and status.get("finished_ts")
    assert str(runs) not in status["error"]
    assert not (rdir / "model.json").exists()
    with pytest.raises(ModelFileError, match="failed"):
        AppContext(runs_dir=runs).model(run_id)
    os.unlink(filler)
    listed = {r["run_id"]: r for r in runstore.list_runs(runs)}
    assert listed[run_id]["state"] == "failed" and "disk is full" in listed[run_id]["error"]
