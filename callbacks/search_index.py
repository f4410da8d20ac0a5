"""The explorer's search: SQLite FTS5 (trigram tokenizer) indexes instead of a loop over every text.

Two indexes, both over lowercased text so that a hit is exactly a case-insensitive substring match:

* clusters (titles and descriptions of every level >= 1): small, built in memory when a model is
  loaded, so an edited title is found as soon as the edited model is (re)loaded;
* items (id + text, or id + title for non-text runs): built once per run into ``search.sqlite``
  beside the model (written to a temporary file, then renamed) when the run is opened in the explorer
  (``ExploreModel.load``): above ``CHILD_ITEMS`` by a child process (``python -m
  callbacks.search_index MODEL``; ~2 s at 100k, ~10-18 s at 1M) so that the web process's callbacks
  do not share its interpreter lock with the build (in a thread, the first search took 0.25 s at
  100k and 0.85 s at 1M while it ran), up to it by a thread (0.2-0.4 s at 20k); until it is ready
  a search answers with cluster hits and says items are being indexed. A model without a run
  directory keeps its item index in memory, built on its first search.

The trigram index serves ``GLOB '*q*'`` from three characters on; a two-character query would scan
every row, so items are searched from three characters (clusters from two).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
import threading
import zlib
from pathlib import Path
from typing import Iterable, Iterator

logger = logging.getLogger("hercules.search")
ROOT = Path(__file__).resolve().parent.parent  # where ``-m callbacks.search_index`` imports from
FILE_NAME = "search.sqlite"
CHILD_ITEMS = 50_000  # above this many items a child process writes the index, up to it a thread
ITEM_MIN_CHARS = 3
BATCH = 20_000
FIND_SQL = "SELECT rowid, text FROM t WHERE text GLOB ? ORDER BY rowid LIMIT ?"
_SCHEMA = "CREATE VIRTUAL TABLE t USING fts5(text, tokenize='trigram', detail='none')"


def normalize(query: str) -> str:
    return " ".join(str(query or "").lower().split())


def _glob(q: str) -> str:
    """A GLOB pattern matching ``q`` anywhere: its ``*``, ``?`` and ``[`` made literal as one-character
    classes. GLOB, not ``LIKE ... ESCAPE``: FTS5 serves LIKE from its trigram index only without an
    ESCAPE clause, and with one it scanned every row (0.4 s at 1M items for a query that matched
    nothing). Texts and queries are both lowercased, so the case-sensitive GLOB finds what a
    case-insensitive LIKE would."""
    return "*" + "".join(f"[{c}]" if c in "*?[" else c for c in q) + "*"


def _fill(con: sqlite3.Connection, rows: Iterable[tuple[int, str]]) -> None:
    con.execute(_SCHEMA)
    con.execute("CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT)")
    it = iter(rows)
    while True:
        chunk = [r for _, r in zip(range(BATCH), it)]
        if not chunk:
            break
        con.executemany("INSERT INTO t(rowid, text) VALUES (?, ?)", chunk)
    con.execute("INSERT INTO t(t) VALUES ('optimize')")


def _find(con: sqlite3.Connection, q: str, limit: int) -> list[tuple[int, str]]:
    return con.execute(FIND_SQL, (_glob(q), int(limit))).fetchall()


class MemoryIndex:
    """An FTS5 index in memory (rowid -> text), thread-safe."""

    def __init__(self, rows: Iterable[tuple[int, str]]):
        self._con = sqlite3.connect(":memory:", check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            _fill(self._con, rows)

    def find(self, q: str, limit: int) -> list[tuple[int, str]]:
        with self._lock:
            return _find(self._con, q, limit)


class ItemIndex:
    """The items' index of one run: ``search.sqlite`` in ``directory`` (or in memory without one).

    ``rows()`` yields ``(item index, lowercased text)``; ``fingerprint`` identifies the items (a file
    made for other items is rebuilt).
    """

    def __init__(self, directory: str | os.PathLike | None, rows, n: int, fingerprint: str,
                 model_path: str | os.PathLike | None = None):
        self.path = Path(directory) / FILE_NAME if directory else None
        # a child process builds the file of a big run (the thread of a small one is done before the
        # child would have imported its modules: 0.2 s at 20k items against ~2 s)
        self.model_path = Path(model_path) if model_path and n > CHILD_ITEMS else None
        self._rows, self.n, self.fingerprint = rows, n, fingerprint
        self._memory: MemoryIndex | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._ok = False
        self.error: str | None = None

    def _valid_file(self) -> bool:
        if self.path is None or not self.path.is_file():
            return False
        try:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as con:
                v = con.execute("SELECT v FROM meta WHERE k = 'fingerprint'").fetchone()
            return bool(v) and v[0] == self.fingerprint
        except sqlite3.Error:
            return False

    def _build_file(self) -> None:
        if self.model_path is None:
            self.error = write_file(self.path, self._rows(), self.fingerprint)
            return
        try:
            done = subprocess.run([sys.executable, "-m", "callbacks.search_index", str(self.model_path),
                                   str(self.path), self.fingerprint], cwd=ROOT, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL)
        except OSError as e:
            done = subprocess.CompletedProcess([], 1, "", str(e))
        if done.returncode != 0:  # the child's message names server paths: for the log, not the page
            logger.error("search index of %s: exit code %s: %s", self.model_path, done.returncode,
                         (done.stderr or "").strip()[-2000:])
            self.error = "The item search index could not be written (see the server log); only clusters are searched."

    def ready(self, wait: float = 0.0) -> bool:
        """Whether item search can run now; starts the build (in the background for a run directory)
        the first time, and waits up to ``wait`` seconds for it."""
        if self.path is None:
            with self._lock:
                if self._memory is None:
                    self._memory = MemoryIndex(self._rows())
            return True
        if self._ok:
            return True
        if self._thread is None or not self._thread.is_alive():
            if self._valid_file():
                self._ok = True
                return True
            with self._lock:
                if self.error is None and (self._thread is None or not self._thread.is_alive()):
                    self._thread = threading.Thread(target=self._build_file, name="search-index", daemon=True)
                    self._thread.start()
        thread = self._thread
        if thread is not None:
            thread.join(wait)
        # the file is renamed into place complete: valid as soon as it is there, even before the
        # thread has reaped its child process
        self._ok = self.error is None and self._valid_file()
        return self._ok

    def find(self, q: str, limit: int) -> list[tuple[int, str]]:
        if self._memory is not None:
            return self._memory.find(q, limit)
        with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as con:
            return _find(con, q, limit)


def write_file(path: Path, rows: Iterable[tuple[int, str]], fingerprint_: str) -> str | None:
    """Write the index of ``rows`` to ``path`` (a temporary file, then renamed); an error message or None."""
    tmp = path.with_name(f".{FILE_NAME}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        con = sqlite3.connect(tmp)
        try:
            con.execute("PRAGMA journal_mode=OFF")
            con.execute("PRAGMA synchronous=OFF")
            _fill(con, rows)
            con.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fingerprint_,))
            con.commit()
        finally:
            con.close()
        os.replace(tmp, path)
        return None
    except (OSError, sqlite3.Error) as e:
        return f"The item search index could not be written ({e}); only clusters are searched."
    finally:
        tmp.unlink(missing_ok=True)


def item_texts(h) -> list[str]:
    """What items are searched by beside their ids: the texts of a text run, else the item titles."""
    ds = h.dataset
    return ds.texts if ds.modality == "text" and ds.texts is not None else h.levels[0].titles


def fingerprint(ids: list[str]) -> str:
    """A cheap identity of a run's items: their count and a CRC of their ids."""
    crc = 0
    for i in range(0, len(ids), 50_000):
        crc = zlib.crc32("\x00".join(ids[i:i + 50_000]).encode("utf-8", "replace"), crc)
    return f"{len(ids)}:{crc:08x}"


def rows_of(ids: list[str], texts: list[str]) -> Iterator[tuple[int, str]]:
    for j, (i, t) in enumerate(zip(ids, texts)):
        yield j, f"{i}\n{t}".lower()


def main(argv: list[str]) -> int:
    """``python -m callbacks.search_index MODEL INDEX FINGERPRINT``: the child process that writes a
    run's items index (ItemIndex), away from the web process."""
    from hercules_core import load_model

    try:  # background work: the web process and the browser it serves come first on a small machine
        os.nice(10)
    except (AttributeError, OSError):
        pass
    model, index, expected = Path(argv[0]), Path(argv[1]), argv[2]
    h = load_model(model, verify=False)  # a file of this server's run directory, verified when opened
    ids = h.levels[0].ids
    if fingerprint(ids) != expected:
        print("the model changed since it was opened", file=sys.stderr)
        return 2
    error = write_file(index, rows_of(ids, item_texts(h)), expected)
    if error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
