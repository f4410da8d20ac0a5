"""Partial uploads on disk: a file arrives in chunks at known offsets and can resume after a cut.

An upload is made by :func:`create` (the server picks the opaque id and the stored file names; the
sizes are declared up front) in ``<runs_dir>/_uploads/<upload_id>/``, described by ``transfer.json``.
Each chunk is appended by :func:`append` at the offset the file has reached (the file's size on disk
is the one record of what arrived: nothing to keep in step), copied from the request in pieces of
:data:`COPY_BYTES`, so no more than one piece of a chunk is in memory. A chunk at another offset is
refused with the offset the server holds; a chunk that would pass the declared size is refused.
:func:`complete` checks every file arrived in full; staging then writes ``upload.json``
(:mod:`callbacks.uploads`), and only an upload with that record can be named by a run.

Unfinished uploads nobody touched for ``HERCULES_UPLOAD_TTL_HOURS`` (default 24) are removed by
:func:`sweep` (called on every new upload).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path
from typing import Any, BinaryIO

from hercules_core import InputError

from . import runstore

TRANSFER = "transfer.json"
RECORD = "upload.json"  # written by staging when the upload is complete and checked
CHUNK_BYTES = 8 * 1024**2  # what the browser sends per request
MAX_CHUNK_BYTES = 64 * 1024**2  # the most one chunk request may carry
COPY_BYTES = 1024**2
DEFAULT_TTL_HOURS = 24.0


class TransferError(InputError):
    """A chunk or transfer request the server refuses; ``status`` is the HTTP answer, ``received`` the
    offsets the server holds (for a client that resumes)."""

    def __init__(self, message: str, status: int = 400, received: list[int] | None = None):
        super().__init__(message)
        self.status, self.received = status, received


def ttl_seconds() -> float:
    raw = os.environ.get("HERCULES_UPLOAD_TTL_HOURS", "").strip()
    try:
        hours = float(raw) if raw else DEFAULT_TTL_HOURS
    except ValueError:
        hours = DEFAULT_TTL_HOURS
    return max(hours, 0.0) * 3600


def create(runs_dir: str | os.PathLike, purpose: str, names: list[str], sizes: list[int],
           files: list[str]) -> dict[str, Any]:
    """A new empty upload of ``files`` (stored names) with the user's ``names`` and declared ``sizes``."""
    sweep(runs_dir)
    upload_id = runstore.new_id()
    udir = runstore.upload_dir(runs_dir, upload_id)
    transfer = {"upload_id": upload_id, "purpose": purpose, "names": names, "sizes": sizes, "files": files,
                "created": time.time()}
    try:
        for attempt in range(3):  # the uploads folder may be removed (empty) at the same moment
            try:
                udir.mkdir(parents=True)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        for f in files:
            runstore.inside(udir, f).touch()
        runstore.write_json_atomic(udir / TRANSFER, transfer)
    except OSError as e:
        shutil.rmtree(udir, ignore_errors=True)
        raise TransferError(f"The upload could not be started: {runstore.os_error_text(e)}.", 507) from None
    return transfer


def load(runs_dir: str | os.PathLike, upload_id: Any) -> tuple[Path, dict[str, Any]]:
    """The folder and transfer record of an upload named by the client; 404 when there is none."""
    if not runstore.valid_id(upload_id):
        raise TransferError("No such upload.", 404)
    udir = runstore.upload_dir(runs_dir, upload_id)
    transfer = runstore.read_json(udir / TRANSFER)
    if not isinstance(transfer, dict) or transfer.get("upload_id") != upload_id:
        raise TransferError("This upload is no longer on the server; upload the file again.", 404)
    return udir, transfer


def received(udir: Path, transfer: dict[str, Any]) -> list[int]:
    """Bytes of each file on disk (a missing file: 0)."""
    out = []
    for f in transfer["files"]:
        try:
            out.append(runstore.inside(udir, f).stat().st_size)
        except (OSError, ValueError):
            out.append(0)
    return out


def status(runs_dir: str | os.PathLike, upload_id: Any) -> dict[str, Any]:
    """What the client needs to resume: the offsets reached, the declared sizes, whether it is staged."""
    udir, transfer = load(runs_dir, upload_id)
    got = received(udir, transfer)
    return {"upload_id": upload_id, "received": got, "sizes": transfer["sizes"],
            "complete": got == transfer["sizes"], "staged": (udir / RECORD).is_file()}


def append(runs_dir: str | os.PathLike, upload_id: Any, index: Any, offset: Any, stream: BinaryIO,
           length: int) -> int:
    """Write ``length`` bytes of ``stream`` to file ``index`` of the upload at ``offset``; the new offset.

    ``offset`` must be where the file ends (else 409 with the offsets held: the client resumes there),
    and the chunk must stay within the declared size (else 413). A chunk cut short keeps what arrived.
    """
    udir, transfer = load(runs_dir, upload_id)
    if (udir / RECORD).is_file():
        raise TransferError("This upload is already complete.", 409, transfer["sizes"])
    try:
        index, offset = int(index), int(offset)
    except (TypeError, ValueError):
        raise TransferError("The chunk request needs a file number and an offset.") from None
    if not 0 <= index < len(transfer["files"]) or offset < 0 or length < 0:
        raise TransferError("The chunk request names no file of this upload.")
    if length > MAX_CHUNK_BYTES:
        raise TransferError(f"A chunk may carry at most {MAX_CHUNK_BYTES // 1024**2} MB.", 413)
    declared = int(transfer["sizes"][index])
    path = runstore.inside(udir, transfer["files"][index])
    try:
        with open(path, "r+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # a retried chunk waits for the request it replaces
            at = os.fstat(fh.fileno()).st_size
            if offset != at:
                raise TransferError(f"The server holds {at} bytes of this file, not {offset}: resume from there.",
                                    409, received(udir, transfer))
            if offset + length > declared:
                raise TransferError(f"{transfer['names'][index]} is larger than the {declared:,} bytes declared "
                                    "when the upload started; start it again.", 413)
            fh.seek(offset)
            left = length
            while left:
                piece = stream.read(min(COPY_BYTES, left))
                if not piece:
                    break  # the connection was cut: what arrived stays, the client resumes after it
                fh.write(piece)
                left -= len(piece)
            fh.flush()
            return offset + length - left
    except OSError as e:
        if e.errno in runstore.DISK_FULL:  # keep nothing: a partial copy would hold the space others need
            shutil.rmtree(udir, ignore_errors=True)
        raise TransferError(f"{transfer['names'][index]} could not be saved: {runstore.os_error_text(e)}.",
                            507) from None


def complete(runs_dir: str | os.PathLike, upload_id: Any, purposes: tuple[str, ...]) -> tuple[Path, dict[str, Any]]:
    """The folder and record of an upload whose files all arrived in full, for one of ``purposes``."""
    try:
        udir, transfer = load(runs_dir, upload_id)
    except TransferError:
        raise InputError("The upload is no longer on the server; upload the file again.") from None
    if transfer.get("purpose") not in purposes:
        raise InputError("This upload was made for another box; upload the file here again.")
    if received(udir, transfer) != transfer["sizes"]:
        raise InputError("The upload is incomplete: some of the file did not arrive. Upload it again.")
    return udir, transfer


def remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty, or gone


def sweep(runs_dir: str | os.PathLike, now: float | None = None) -> list[str]:
    """Remove unfinished uploads untouched for the TTL; the ids removed."""
    root = Path(runs_dir) / runstore.UPLOADS
    limit = (time.time() if now is None else now) - ttl_seconds()
    gone = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return gone
    for d in entries:
        if not runstore.valid_id(d.name) or not (d / TRANSFER).is_file() or (d / RECORD).is_file():
            continue
        try:
            newest = max(p.stat().st_mtime for p in d.iterdir())
        except (OSError, ValueError):
            continue
        if newest < limit:
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d.name)
    return gone
