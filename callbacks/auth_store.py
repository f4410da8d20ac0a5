"""What the login keeps on the server, in the runs directory, so that every gunicorn worker and every web
replica sharing the runs volume sees the same thing (``callbacks/auth.py`` decides what to do with it):

- the session signing key (``<runs_dir>/.secret_key``, random, made once, mode 0600);
- failed logins per client address (``LoginThrottle``);
- revoked sessions and used CSRF tokens (``SessionLedger``).

The last two are diskcache stores (SQLite in WAL mode, safe across threads and processes), under
``<runs_dir>/.cache/auth-*``. Every entry expires; nothing here holds or derives from the password.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import diskcache

SECRET_KEY_ENV, SECRET_KEY_FILE = "HERCULES_SECRET_KEY", ".secret_key"
_KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
KEY_FILE_WAIT = 5.0  # seconds a process waits for the key another process is writing at that moment

# failed logins from one address: the first FREE_FAILURES cost nothing, then each one makes the address wait
# 1, 2, 4, ... seconds, at most LOCKOUT_SECONDS (15 min: from the 16th failure on, one guess per 15 min)
FREE_FAILURES = 5
LOCKOUT_SECONDS = 15 * 60
FORGET_AFTER = 60 * 60  # an address's failures are forgotten an hour after its last wait ended
THROTTLE_SIZE_LIMIT = 16 * 2**20  # bytes; beyond it the oldest addresses are dropped first
STORE_TIMEOUT = 10.0  # seconds SQLite waits for another process's write (each write takes milliseconds)


def _now() -> float:
    """The throttle's clock (a function, so tests can stop it)."""
    return time.time()


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


def _open_cache(directory: Path, **settings) -> diskcache.Cache:
    return diskcache.Cache(str(directory), timeout=STORE_TIMEOUT, **settings)


def lock_seconds(failures: int) -> int:
    """How long an address waits after its ``failures``-th failed login in a row."""
    if failures <= FREE_FAILURES:
        return 0
    return min(2 ** (failures - FREE_FAILURES - 1), LOCKOUT_SECONDS)


class LoginThrottle:
    """Failed logins per client address: ``(failures, locked_until)``, shared by all processes.

    A locked address is answered at once (the caller sends HTTP 429): no request thread ever sleeps, and
    other addresses (and ``/healthz``) never wait for it.
    """

    def __init__(self, directory: str | os.PathLike):
        # bounded: entries expire FORGET_AFTER after their lock ends, and past the size limit the
        # least recently stored ones go first
        self.cache = _open_cache(Path(directory), size_limit=THROTTLE_SIZE_LIMIT,
                                 eviction_policy="least-recently-stored")

    @staticmethod
    def _key(address: str | None) -> str:
        return "addr:" + (address or "unknown")

    def wait(self, address: str | None) -> int:
        """Seconds ``address`` must still wait before its next try (0: it may try now)."""
        _, until = self.cache.get(self._key(address), (0, 0.0))
        return max(0, math.ceil(until - _now()))

    def _charge(self, key: str) -> int:
        """Count one failure in advance (atomic over all processes); the wait instead if locked."""
        with self.cache.transact():
            now = _now()
            failures, until = self.cache.get(key, (0, 0.0))
            if until > now:
                return math.ceil(until - now)
            failures += 1
            lock = lock_seconds(failures)
            self.cache.set(key, (failures, now + lock), expire=lock + FORGET_AFTER)
        return 0

    def attempt(self, address: str | None, correct: Callable[[], bool]) -> tuple[bool, int]:
        """Try a password from ``address``: ``(accepted, wait)``.

        ``wait > 0`` with ``accepted`` False: the address is locked and the password was not looked at.
        An address with failures on record pays for the attempt before it is checked (and gets it back on
        success), so parallel guesses cannot all slip in before the first one is counted. A clean address
        giving the right password costs no write at all (scripts sending the Bearer token in parallel).
        """
        key = self._key(address)
        record = self.cache.get(key)
        if record is None and correct():
            return True, 0
        wait = self._charge(key)
        if wait:
            return False, wait
        if correct():
            self.cache.delete(key)  # a successful login forgets the address's failures
            return True, 0
        return False, 0

    def close(self) -> None:
        self.cache.close()


class SessionLedger:
    """Session ids revoked by a logout and CSRF tokens already used, each kept until the cookie that
    carried it would have expired anyway (so the store holds at most ``lifetime`` worth of them)."""

    def __init__(self, directory: str | os.PathLike, lifetime: float):
        # no eviction by size: dropping an entry early would make a logged-out cookie valid again
        self.cache = _open_cache(Path(directory), eviction_policy="none")
        self.lifetime = lifetime

    def revoke(self, session_id: str) -> None:
        self.cache.set(("session", session_id), True, expire=self.lifetime)

    def revoked(self, session_id: str) -> bool:
        return ("session", session_id) in self.cache

    def use_token(self, token: str) -> bool:
        """Mark a CSRF token used; False if it had been used before (atomic: one use wins)."""
        return self.cache.add(("csrf", token), True, expire=self.lifetime)

    def close(self) -> None:
        self.cache.close()
