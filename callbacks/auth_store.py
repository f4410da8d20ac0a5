"""What the login keeps on the server, in the runs directory, so that every gunicorn worker and every web
replica sharing the runs volume sees the same thing (``callbacks/auth.py`` decides what to do with it):
the session signing key (``<runs_dir>/.secret_key``, random, made once, mode 0600). Nothing here holds or
derives from the password.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

SECRET_KEY_ENV, SECRET_KEY_FILE = "HERCULES_SECRET_KEY", ".secret_key"
_KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
KEY_FILE_WAIT = 5.0  # seconds a process waits for the key another process is writing at that moment


class KeyFileError(RuntimeError):
    """The session key file exists but cannot be used (the message says what to do)."""


def session_secret(runs_dir: str | os.PathLike) -> str:
    """``HERCULES_SECRET_KEY`` if set, else the random key kept in ``<runs_dir>/.secret_key``.

    The file is made with O_CREAT|O_EXCL: when several processes start at once exactly one creates it and
    the others read that one's key, so they all sign and accept the same cookies.
    """
    configured = os.environ.get(SECRET_KEY_ENV, "").strip()
    if configured:
        return configured
    path = Path(runs_dir) / SECRET_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return key


def _read_key(path: Path) -> str:
    # the process that won the race may not have written its key yet: give it a moment
    deadline = time.monotonic() + KEY_FILE_WAIT
    while True:
        try:
            value = path.read_text(encoding="ascii", errors="replace").strip()
        except OSError as e:
            raise KeyFileError(f"the session key file {path} cannot be read ({e.strerror}): fix its "
                               f"permissions or set {SECRET_KEY_ENV}.") from None
        if _KEY_PATTERN.fullmatch(value):
            return value
        if time.monotonic() >= deadline:
            raise KeyFileError(f"the session key file {path} does not hold a key: delete it (a new one is made "
                               f"and everyone logs in again) or set {SECRET_KEY_ENV}.")
        time.sleep(0.05)
