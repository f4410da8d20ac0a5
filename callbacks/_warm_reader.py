"""Imported once by the fork server of :mod:`callbacks.bounded`: one tiny table read, so that pandas'
lazy imports (parsers, JSON writer, string methods) are done before any reader is forked from it
(measured: a small upload's first read in a fresh child took ~25 ms instead of ~4 ms)."""

from __future__ import annotations

import os
import tempfile

from callbacks import uploads


def _warm() -> None:
    fd, path = tempfile.mkstemp(suffix=".csv")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("id,text,x\n1,a short text,1.5\n2,another text,2.5\n")
        uploads.table_summary(path)
    except Exception:  # a warm-up only
        pass
    finally:
        os.unlink(path)


_warm()
