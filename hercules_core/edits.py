"""Hand edits of cluster titles and descriptions, saved into the model file.

An edit sets the cluster's source to ``edited`` and keeps the model's original text in
``Hierarchy.edits[cluster_id]["original"]`` (saved in the model JSON), so nothing written by the
model is lost. :func:`edit_cluster` is safe for concurrent writers of one file: under an
exclusive lock it re-reads the model, changes only that cluster, and replaces the file atomically;
two edits of different clusters both survive, and the last write per cluster wins.

Every edit also appends a ``retitle`` entry to the model's edit log (:mod:`hercules_core.curate`),
so undo, redo and replay see title edits like structural ones.

Edited text is plain text, rendered like LLM text (as text, never as HTML): control characters
are removed, titles are one line, and both have length limits.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .errors import InputError
from .hierarchy import CLUSTER_ID_RE, Hierarchy
from .io import load_model, save_model

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: edits are then not safe across processes
    fcntl = None

EDITED = "edited"
TITLE_MAX = 120
DESCRIPTION_MAX = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def clean_text(value: object, what: str, max_chars: int, *, one_line: bool) -> str:
    """``value`` as plain text within the limits; InputError saying what is wrong otherwise."""
    if not isinstance(value, str):
        raise InputError(f"The {what} must be text.")
    text = _CONTROL.sub(" ", value.replace("\r\n", "\n").replace("\t", " "))
    text = " ".join(text.split()) if one_line else "\n".join(" ".join(line.split()) for line in text.split("\n"))
    text = text.strip()
    if not text:
        raise InputError(f"The {what} cannot be empty; type some text or cancel.")
    if len(text) > max_chars:
        raise InputError(f"The {what} has {len(text):,} characters; at most {max_chars:,} are allowed. Shorten it.")
    return text


def apply_edit(h: Hierarchy, cluster_id: str, title: str, description: str, *, who: object = None,
               at: str | None = None) -> None:
    """Set one cluster's title and description in memory (source ``edited``, original kept) and append a
    ``retitle`` entry to the edit log (``hercules_core.curate``: undo, redo and replay see it)."""
    from .curate import log_retitle, title_record

    try:
        c = h.cluster(cluster_id)
    except KeyError:
        raise InputError(f"The model has no cluster {str(cluster_id)[:40]!r}.") from None
    lv = h.levels[c.level]
    j = c.index
    before = title_record(h, cluster_id)
    if cluster_id not in h.edits:  # the model's own text, kept however often it is edited
        h.edits[cluster_id] = {"original": {"title": lv.titles[j], "description": lv.descriptions[j],
                                            "source": lv.sources[j], "fallback": bool(lv.fallback[j])}}
    h.edits[cluster_id]["edited"] = at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    h.edits[cluster_id].pop("children_changed", None)  # the person has written it since
    lv.titles[j], lv.descriptions[j], lv.sources[j] = title, description, EDITED
    lv.fallback[j] = False  # a person wrote it: no longer a keyword fallback
    if lv.description_marks:
        lv.description_marks[j] = ""  # ... nor an extractive description
    log_retitle(h, cluster_id, before, who=who)


@contextmanager
def model_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock for read-modify-write of one model file (a ``.lock`` beside it)."""
    path = Path(path)
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def edit_cluster(model_path: str | os.PathLike, cluster_id: str, *, title: object, description: object,
                 on_saved: Callable[[Hierarchy], None] | None = None, who: object = None) -> Hierarchy:
    """Edit one cluster's title and description in a saved model file, safely for concurrent edits.

    The text is checked first (InputError, nothing written). ``on_saved(h)`` runs while the lock is
    still held, so files derived from the model (memberships CSV, hierarchy text) are written in the
    same order as the model itself. Returns the saved hierarchy.
    """
    title = clean_text(title, "title", TITLE_MAX, one_line=True)
    description = clean_text(description, "description", DESCRIPTION_MAX, one_line=False)
    if not isinstance(cluster_id, str) or not CLUSTER_ID_RE.fullmatch(cluster_id) \
            or cluster_id.startswith("L0_"):
        raise InputError("Only clusters (level 1 and above) can be edited.")
    with model_lock(model_path):
        # re-read: another edit may have landed since this one was typed (a file this installation wrote)
        h = load_model(model_path, verify=False)
        apply_edit(h, cluster_id, title, description, who=who)
        # edits change clusters only: the items file (if any) is kept, not rewritten
        save_model(h, model_path, include_item_vectors=h.levels[0].vectors is not None, items="keep")
        if on_saved is not None:
            on_saved(h)
    return h
