"""Every CSV the app or the CLI writes escapes cells a spreadsheet would run as formulas.

WRITERS lists each function that produces CSV text; a scan of the source finds every function
that calls a CSV writer (``to_csv``, ``csv.writer``, ``csv.DictWriter``, ``frame_csv``,
``rows_csv``, pyarrow's ``write_csv`` / ``CSVWriter``) and fails
on one missing from the list, so a new CSV export cannot skip the escaping unnoticed. Each listed
writer is then fed the injection payloads and must write each of them as ``'`` + payload.
"""

from __future__ import annotations

import ast
import csv
import io as _io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from callbacks import routes
from hercules_core import io
from hercules_core.assign import AssignResult, save_assignments
from hercules_core.io import csv_safe_cell, csv_safe_frame
from devkit.factories import make_hierarchy, make_text_dataset

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["hercules_core", "hercules_run", "callbacks", "pages", "app.py", "model_registry.py", "serve.py"]
WRITERS = {
    "hercules_core/io.py::frame_csv",  # the shared writers: a frame, or rows of cells
    "hercules_core/io.py::rows_csv",
    "hercules_core/io.py::_memberships_csv",  # save_memberships: Arrow's CSV writer
    "hercules_core/assign.py::save_assignments",
    "callbacks/routes.py::evaluation_csv",
}
CSV_CALLS = {"to_csv", "writer", "DictWriter", "frame_csv", "rows_csv", "write_csv", "CSVWriter"}
PAYLOADS = [" =1+1", '=HYPERLINK("x")', "\t=1", "@SUM(1)", "\u00a0=1", "\r\n+1", "-2+3", "\tplain", "\rplain",
            "\u200b@x", "\uff1d1+1"]


def source_files():
    for name in SOURCES:
        path = ROOT / name
        yield from ([path] if path.suffix == ".py" else sorted(path.rglob("*.py")))


def csv_writers_in_source() -> set[str]:
    """``path::function`` of every function (or ``<module>``) that calls a CSV writer."""
    found = set()
    for path in source_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        rel = path.relative_to(ROOT).as_posix()

        def visit(node, owner):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    visit(child, child.name)
                    continue
                if isinstance(child, ast.Call):
                    fn = child.func
                    name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
                    if name in CSV_CALLS:
                        found.add(f"{rel}::{owner}")
                visit(child, owner)
        visit(tree, "<module>")
    return found


def test_every_csv_writer_is_listed():
    found = csv_writers_in_source()
    assert found == WRITERS, (f"CSV writers not in WRITERS (escape their cells with hercules_core.io."
                              f"csv_safe_cell / frame_csv, then list and test them): {sorted(found - WRITERS)}; "
                              f"listed but gone: {sorted(WRITERS - found)}")


def cells(text: str) -> list[list[str]]:
    return list(csv.reader(_io.StringIO(text)))


def assert_escaped(rows: list[list[str]], *, skip_header: bool = True):
    written = {c for row in rows[1 if skip_header else 0:] for c in row}
    for p in PAYLOADS:
        assert "'" + p in written, f"{p!r} was not escaped"
        assert p not in written, f"{p!r} was written raw"


# --------------------------------------------------------------------------- each writer

def test_frame_csv_escapes_text_and_keeps_numbers():
    frame = pd.DataFrame({"text": PAYLOADS, "n": np.arange(len(PAYLOADS)) - 3,
                          "x": np.linspace(-0.5, 0.5, len(PAYLOADS)), "flag": [True] * len(PAYLOADS)})
    rows = cells(io.frame_csv(frame))
    assert_escaped(rows)
    assert rows[1][1:] == ["-3", "-0.5", "True"]  # numbers stay numbers, negative ones included


def test_a_carriage_return_inside_a_cell_cannot_start_a_row():
    # a spreadsheet that breaks rows at a lone CR would see "=1" as a new, unescaped cell
    for text in (io.frame_csv(pd.DataFrame({"a": ["x\r=1"], "b": [1]})), io.rows_csv([["a", "b"], ["x\r=1", 1]])):
        assert text == 'a,b\r\n"x\r=1",1\r\n'


def test_rows_csv_escapes_every_cell():
    rows = cells(io.rows_csv([PAYLOADS, PAYLOADS, [-0.5, None, 3]]))
    assert_escaped(rows, skip_header=False)
    assert rows[2] == ["-0.5", "", "3"]


def test_save_memberships_escapes(tmp_path):
    h = make_hierarchy(make_text_dataset(len(PAYLOADS) * 3), ks=(len(PAYLOADS), 2))
    h.levels[1].titles = list(PAYLOADS)
    ids = [f"{p}{i}" if i >= len(PAYLOADS) else p for i, p in enumerate(PAYLOADS * 3)]  # unique item ids
    h.levels[0].ids = h.dataset.ids = ids
    io.save_memberships(h, tmp_path / "m.csv")
    rows = cells((tmp_path / "m.csv").read_bytes().decode("utf-8"))  # no newline translation
    assert_escaped([r[2:3] for r in rows])  # the L1_title column
    assert_escaped([r[0:1] for r in rows])  # the item ids
    # the same table as membership_frame, cell for cell, escaped
    frame = io.membership_frame(h)
    assert rows[0] == list(frame.columns)
    assert rows[1:] == [[csv_safe_cell(str(v)) for v in row] for row in frame.itertuples(index=False)]


def test_save_assignments_escapes_and_keeps_distance_a_number(tmp_path):
    n = len(PAYLOADS)
    frame = pd.DataFrame({"item_id": pd.Series(PAYLOADS, dtype=object),
                          "L1_cluster_id": pd.Series(["L1_0"] * n, dtype=object),
                          "L1_title": pd.Series(PAYLOADS, dtype=object),
                          "distance": np.full(n, -0.5, np.float32), "novel": np.zeros(n, bool)})
    result = AssignResult(frame=frame, labels=np.zeros((n, 1), np.int64), distance=frame["distance"].to_numpy(),
                          novel=frame["novel"].to_numpy(), vectors=np.zeros((n, 2), np.float32), how="test")
    save_assignments(result, tmp_path / "a.csv")
    rows = cells((tmp_path / "a.csv").read_bytes().decode("utf-8"))  # no newline translation
    assert_escaped([r[2:3] for r in rows])
    assert_escaped([r[0:1] for r in rows])
    assert {r[3] for r in rows[1:]} == {"-0.5"} and {r[4] for r in rows[1:]} == {"False"}


def test_evaluation_csv_escapes_notes_values_and_metric_names():
    evaluation = {str(i + 1): {"notes": [p], "silhouette": -0.5, "label": p} for i, p in enumerate(PAYLOADS)}
    evaluation["1"]["=cmd|' /C calc'!A0"] = 1.0  # a metric name from an imported model
    rows = cells(routes.evaluation_csv(evaluation))
    header = rows[0]
    assert "'=cmd|' /C calc'!A0" in header and "=cmd|' /C calc'!A0" not in header
    notes, label, silhouette = header.index("notes"), header.index("label"), header.index("silhouette")
    assert_escaped([[r[notes]] for r in rows])
    assert_escaped([[r[label]] for r in rows])
    assert {r[silhouette] for r in rows[1:]} == {"-0.5"}


# --------------------------------------------------------------------------- the rule itself

@pytest.mark.parametrize("text", PAYLOADS + ["=", "+", "-", "@", "\t", "\r", "\n", "\0x", "  \t =1", "-0.5"])
def test_formula_starts_are_escaped(text):
    assert csv_safe_cell(text) == "'" + text


@pytest.mark.parametrize("text", ["", "plain", "a=b", "1+1", "x-y", "'=already quoted", " plain", "0.5",
                                  "e@mail.org"])
def test_ordinary_text_is_left_alone(text):
    assert csv_safe_cell(text) == text


@pytest.mark.parametrize("value", [-0.5, -3, np.float32(-0.25), np.int64(-7), True, None, float("nan")])
def test_non_strings_are_left_alone(value):
    assert csv_safe_cell(value) is value


def test_csv_safe_frame_touches_text_columns_only():
    frame = pd.DataFrame({"s": ["=1", "ok"], "f": [-0.5, 1.0], "i": [-1, 2]})
    safe = csv_safe_frame(frame)
    assert safe["s"].tolist() == ["'=1", "ok"] and safe["f"].dtype == np.float64 and safe["i"].dtype == np.int64
    assert frame["s"].tolist() == ["=1", "ok"]  # a copy: the caller's frame is unchanged
