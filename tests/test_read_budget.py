"""The table budget (``hercules_core.data.ReadBudget``) and the bounded reader (``callbacks.bounded``).

A table file is judged from what it declares before it is materialised (a Parquet footer, an xlsx's
ZIP directory and sheet dimension, a CSV header) and counted while it is read; the web app reads
uploads in a child process it kills above a memory or time limit. Every file here is made by the
test; the bombs are a few kB.
"""

from __future__ import annotations

import json
import os
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callbacks import bounded, runstore, uploads
from hercules_core import InputError, read_table
from hercules_core import data as core_data
from hercules_core.data import DEFAULT_READ_BUDGET, ReadBudget
from tests import table_bombs as tb
from tests.test_app_logic import data_url
from tests.test_reuse_app import app_ctx, text_model  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.timeout(300)]


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _err(fn, *args, **kw) -> str:
    with pytest.raises(InputError) as e:
        fn(*args, **kw)
    return str(e.value)


def _uploads_left(runs: Path) -> list[Path]:
    root = runs / "_uploads"
    return sorted(root.iterdir()) if root.exists() else []


# ----------------------------------------------------------------------------- the three attacks
def test_an_xlsx_declaring_a_whole_sheet_is_refused_from_its_dimension(tmp_path):
    p = tb.xlsx_bomb(tmp_path / "big.xlsx")
    assert p.stat().st_size < 10_000
    rss, t0 = _rss(), time.monotonic()
    msg = _err(read_table, p)
    assert time.monotonic() - t0 < 2 and _rss() - rss < 100 * 1024**2
    assert msg == ("big.xlsx declares 1,048,576 rows × 16,384 columns (17 billion cells), more than the 50,000,000"
                   " cells allowed: save only the data range, or export it as CSV.")


def test_an_xlsx_hiding_a_far_cell_behind_a_small_dimension_is_counted_while_read(tmp_path):
    p = tb.xlsx_bomb(tmp_path / "liar.xlsx", dimension="A1:A3")
    rss, t0 = _rss(), time.monotonic()
    msg = _err(read_table, p)
    assert time.monotonic() - t0 < 30 and _rss() - rss < 200 * 1024**2
    assert msg.startswith("liar.xlsx has at least 1,048,576 rows × 16,384 columns (17 billion cells)"), msg
    # named .xls it is still a ZIP workbook: read as one, with the same budget
    xls = tmp_path / "old.xls"
    xls.write_bytes(tb.xlsx_bomb(tmp_path / "b2.xlsx").read_bytes())
    assert "old.xls declares 1,048,576 rows × 16,384 columns" in _err(read_table, xls)


def test_sixty_million_zero_rows_of_parquet_are_refused_from_the_footer(tmp_path):
    p = tb.zero_rows_parquet(tmp_path / "zeros.parquet")
    assert p.stat().st_size < 1024**2
    rss, t0 = _rss(), time.monotonic()
    msg = _err(read_table, p)
    assert time.monotonic() - t0 < 1 and _rss() - rss < 50 * 1024**2
    assert msg == "zeros.parquet declares 60,000,000 rows, more than the 10,000,000 allowed: sample or split the file."


def test_a_csv_of_a_million_columns_is_refused_from_its_header(tmp_path):
    p = tb.wide_csv(tmp_path / "wide.csv")
    t0 = time.monotonic()
    msg = _err(read_table, p)
    assert time.monotonic() - t0 < 1
    assert msg.startswith("wide.csv: its first line (the header) is longer than 1 MB") and "10,000 columns" in msg
    narrow = tmp_path / "w2.csv"  # a header within 1 MB but wider than the budget
    narrow.write_text(",".join(f"c{i}" for i in range(20_001)) + "\n" + ",".join("1" * 20_001) + "\n")
    assert _err(read_table, narrow) == ("w2.csv: its header has 20,001 columns, more than the 10,000 allowed: keep"
                                        " only the columns you need.")


@pytest.mark.parametrize("make, name, expected", [
    (tb.xlsx_bomb, "big.xlsx", "big.xlsx declares 1,048,576 rows × 16,384 columns (17 billion cells)"),
    (tb.zero_rows_parquet, "zeros.parquet", "zeros.parquet declares 60,000,000 rows"),
    (tb.wide_csv, "wide.csv", "wide.csv: its first line (the header) is longer than 1 MB"),
])
def test_the_attacks_staged_as_uploads_get_a_message_naming_the_users_file(tmp_path, make, name, expected):
    raw = make(tmp_path / name).read_bytes()
    runs = tmp_path / "runs"
    msg = _err(uploads.stage, runs, [name], [data_url(raw)])
    assert msg.startswith(expected) and "f00000" not in msg and str(runs) not in msg, msg
    assert _uploads_left(runs) == []  # nothing of a refused upload is kept
    if name.endswith(".csv"):
        assert "header" in _err(uploads.stage_labels, runs, name, data_url(raw))


def test_the_assign_panel_refuses_the_bombs_with_a_message(app_ctx, tmp_path):  # noqa: F811
    ctx, run_id = app_ctx
    raw = tb.zero_rows_parquet(tmp_path / "more.parquet").read_bytes()
    out = assign_panel_staged(ctx, run_id, "more.parquet", raw)
    assert out["store"] is None and out["disabled"]
    assert "more.parquet declares 60,000,000 rows" in json.dumps(out["msg"].to_plotly_json())


def assign_panel_staged(ctx, run_id, name, raw):
    from callbacks import assign_panel

    return assign_panel.staged(ctx, run_id, [name], [data_url(raw)])


# ----------------------------------------------------------------------------- the budget, format by format
SMALL = ReadBudget(max_rows=100, max_columns=5, max_cells=300, max_bytes=64 * 1024, max_seconds=30)


def _frame(n: int, cols: int = 2) -> pd.DataFrame:
    return pd.DataFrame({f"c{j}": [f"text {i} {j}" for i in range(n)] for j in range(cols)})


def _write(df: pd.DataFrame, p: Path) -> Path:
    ext = p.suffix
    if ext in (".csv", ".tsv", ".txt"):
        df.to_csv(p, sep="\t" if ext != ".csv" else ",", index=False)
    elif ext == ".json":
        p.write_text(json.dumps(df.to_dict(orient="records")))
    elif ext == ".jsonl":
        p.write_text("\n".join(json.dumps(r) for r in df.to_dict(orient="records")) + "\n")
    elif ext == ".parquet":
        df.to_parquet(p)
    else:
        df.to_excel(p, index=False)
    return p


EXTS = [".csv", ".tsv", ".txt", ".json", ".jsonl", ".parquet", ".xlsx"]


@pytest.mark.parametrize("ext", EXTS)
def test_each_format_within_the_budget_reads_and_over_it_says_what(tmp_path, ext):
    ok = _write(_frame(100), tmp_path / f"ok{ext}")
    assert read_table(ok, budget=SMALL).shape == (100, 2)
    rows = _write(_frame(101), tmp_path / f"rows{ext}")
    msg = _err(read_table, rows, budget=SMALL)
    # an xlsx states its sheet's rows (the header row too) and its own advice
    expected = "declares 102 rows, more than the 100 allowed: save only the data range" if ext == ".xlsx" else \
        "101 rows, more than the 100 allowed: sample or split the file."
    assert msg.startswith(f"rows{ext} ") and expected in msg, msg
    cols = _write(_frame(3, 6), tmp_path / f"cols{ext}")
    msg = _err(read_table, cols, budget=SMALL)
    assert "6 columns, more than the 5 allowed" in msg, msg
    cells = _write(_frame(80, 4), tmp_path / f"cells{ext}")
    msg = _err(read_table, cells, budget=SMALL)
    assert "4 columns" in msg and "cells), more than the 300 cells allowed" in msg, msg  # a CSV stops at 76 rows


@pytest.mark.parametrize("ext", [".csv", ".json", ".jsonl", ".xlsx", ".parquet"])
def test_bytes_over_the_budget_are_refused_before_parsing(tmp_path, ext, monkeypatch):
    p = _write(pd.DataFrame({"t": [f"{i} " + "x" * 2000 for i in range(50)]}), tmp_path / f"big{ext}")
    budget = ReadBudget(max_bytes=20_000)
    monkeypatch.setattr(pd, "read_csv", lambda *a, **k: pytest.fail("parsed"))
    monkeypatch.setattr(pd, "read_parquet", lambda *a, **k: pytest.fail("parsed"))
    monkeypatch.setattr(json, "load", lambda *a, **k: pytest.fail("parsed"))
    msg = _err(read_table, p, budget=budget)
    assert msg.startswith(f"big{ext} ") and "allowed" in msg and ("kB" in msg or "MB" in msg), msg


def test_a_slow_read_stops_at_the_time_limit(tmp_path, monkeypatch):
    p = _write(_frame(20_000), tmp_path / "slow.jsonl")  # the clock is looked at every 16,384 lines
    clock = iter(range(0, 10**6, 7))
    monkeypatch.setattr(core_data.time, "monotonic", lambda: next(clock))
    msg = _err(read_table, p, budget=ReadBudget(max_seconds=5))
    assert msg == "slow.jsonl takes more than 5 s to read: sample or split it, or save it as CSV or Parquet."


def test_separators_inside_a_quoted_header_do_not_count(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text('"a,b,c,d,e,f,g",x\n1,2\n')
    assert list(read_table(p, budget=SMALL).columns) == ["a,b,c,d,e,f,g", "x"]


def test_budget_values_are_checked():
    for bad in (0, -1, float("nan"), float("inf"), True, "10"):
        with pytest.raises(InputError, match="max_rows must be a positive number"):
            ReadBudget(max_rows=bad)


def test_the_server_reads_its_budget_from_the_environment(monkeypatch):
    assert bounded.read_budget() == DEFAULT_READ_BUDGET
    monkeypatch.setenv("HERCULES_MAX_ROWS", "1000")
    monkeypatch.setenv("HERCULES_MAX_TABLE_MB", "10")
    monkeypatch.setenv("HERCULES_READ_MEMORY_MB", "512")
    b = bounded.read_budget()
    assert b.max_rows == 1000 and b.max_bytes == 10 * 1024**2 and b.max_cells == DEFAULT_READ_BUDGET.max_cells
    assert bounded.memory_limit() == 512 * 1024**2
    monkeypatch.setenv("HERCULES_MAX_CELLS", "lots")
    assert "HERCULES_MAX_CELLS='lots' is not a number" in _err(bounded.read_budget)


# ----------------------------------------------------------------------------- the legitimate big cases
class _Meta:
    """A Parquet footer as pyarrow reports it, without the file."""

    def __init__(self, rows, columns, uncompressed, groups=10):
        self.num_rows, self.num_row_groups = rows, groups
        self._group = type("G", (), {"total_byte_size": uncompressed // groups})()
        self.schema_arrow = list(range(columns))

    def row_group(self, i):
        return self._group


@pytest.mark.parametrize("rows, columns, uncompressed, ok", [
    (1_000_000, 3, 1_600_000_000, True),    # id, text, 384-float embedding: 1.6 GB
    (10_000_000, 5, 3_000_000_000, True),
    (60_000_000, 1, 480_000_000, False),    # the zero-rows attack
    (1_000_000, 3, 5 * 1024**3, False),     # more bytes than the budget
    (1_000_000, 60, 100_000_000, False),    # 60 M cells
])
def test_the_default_budget_judges_parquet_by_its_footer(tmp_path, monkeypatch, rows, columns, uncompressed, ok):
    import pyarrow.parquet as pq

    meta = _Meta(rows, columns, uncompressed)
    fake = type("PF", (), {"__init__": lambda self, p: None, "metadata": meta, "schema_arrow": meta.schema_arrow})
    monkeypatch.setattr(pq, "ParquetFile", fake)
    monkeypatch.setattr(pd, "read_parquet", lambda p: pd.DataFrame({"id": [1, 2], "text": ["a", "b"]}))
    p = tmp_path / "emb.parquet"
    p.write_bytes(b"PAR1")
    if ok:
        assert len(read_table(p)) == 2
    else:
        assert "emb.parquet declares" in _err(read_table, p)


def test_an_embedding_parquet_scaled_down_1000_times_fits_a_budget_scaled_the_same(tmp_path):
    """1,000 rows of (id, text, 384 floats): its own footer says ~2 MB (float dictionaries included), so
    the real file's 1.6-2.2 GB fits the default budget's 4 GB, and the scaled file reads within the
    scaled budget."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 1000
    emb = np.random.default_rng(0).random((n, 384), dtype=np.float32)
    table = pa.table({"id": [f"id{i}" for i in range(n)], "text": [f"a short text number {i}" for i in range(n)],
                      "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), 384)})
    p = tmp_path / "emb.parquet"
    pq.write_table(table, p)
    md = pq.ParquetFile(p).metadata
    raw = sum(md.row_group(i).total_byte_size for i in range(md.num_row_groups))
    assert 1.5e6 < raw < 2.5e6 and raw * 1000 < DEFAULT_READ_BUDGET.max_bytes
    d = DEFAULT_READ_BUDGET
    scaled = ReadBudget(max_rows=d.max_rows // 1000, max_cells=d.max_cells // 1000, max_bytes=d.max_bytes // 1000)
    df = read_table(p, budget=scaled)
    assert df.shape == (1000, 3) and len(df["emb"].iloc[0]) == 384


def test_a_csv_of_short_texts_scaled_from_190_mb_fits(tmp_path):
    """1.9 MB of `id,text` rows (the 190 MB case scaled by 100) within a budget scaled the same way."""
    p = tmp_path / "short.csv"
    with open(p, "w") as fh:
        fh.write("id,text\n")
        i = 0
        while fh.tell() < 1_900_000:
            fh.write(f"{i},cat dog market rain number {i}\n")
            i += 1
    d = DEFAULT_READ_BUDGET
    scaled = ReadBudget(max_rows=d.max_rows // 100, max_cells=d.max_cells // 100, max_bytes=d.max_bytes // 100)
    assert len(read_table(p, budget=scaled)) == i and p.stat().st_size * 100 < d.max_bytes


def test_a_moderately_large_table_stages_through_the_bounded_reader(tmp_path):
    n = 200_000
    df = pd.DataFrame({"id": np.arange(n), "text": [f"item {i} about topic {i % 13} and more words" for i in range(n)],
                       "x": np.random.default_rng(1).normal(size=n)})
    raw = df.to_csv(index=False).encode()
    rss = _rss()
    desc = uploads.stage(tmp_path, ["moderate.csv"], [data_url(raw)])
    assert desc["n_rows"] == n and desc["columns"] == ["id", "text", "x"] and desc["suggest"]["text_column"] == "text"
    assert _rss() - rss < 150 * 1024**2  # the frame lived in the reader, not here
    rows, cols = uploads.preview_rows(tmp_path, {"upload_id": desc["upload_id"]})
    assert len(rows) == uploads.PREVIEW_ROWS and cols == ["id", "text", "x"] and rows[3]["text"].startswith("item 3 ")


# ----------------------------------------------------------------------------- the preview is saved at staging
def test_the_preview_comes_from_the_rows_saved_at_staging(tmp_path, monkeypatch):
    long = "word " * 200
    desc = uploads.stage(tmp_path, ["p.csv"], [data_url(f"id,text\n1,{long}\n2,short\n".encode())])
    monkeypatch.setattr(uploads, "read_table", lambda *a, **k: pytest.fail("the preview read the table again"))
    monkeypatch.setattr(bounded, "bounded_call", lambda *a, **k: pytest.fail("the preview read the table again"))
    rows, cols = uploads.preview_rows(tmp_path, {"upload_id": desc["upload_id"]})
    assert cols == ["id", "text"] and rows[1] == {"id": 2, "text": "short"}
    assert rows[0]["text"] == long[:300] + "…"
    rows, _ = uploads.preview_rows(tmp_path, {"upload_id": desc["upload_id"]}, max_rows=1, max_chars=10)
    assert rows == [{"id": 1, "text": long[:10] + "…"}]


def test_an_upload_staged_without_a_saved_preview_is_read_by_the_bounded_reader(tmp_path, monkeypatch):
    desc = uploads.stage(tmp_path, ["p.csv"], [data_url(b"id,text\n1,a\n2,b\n")])
    (runstore.upload_dir(tmp_path, desc["upload_id"]) / uploads.PREVIEW_FILE).unlink()
    calls = []
    real = bounded.bounded_call
    monkeypatch.setattr(bounded, "bounded_call", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    rows, cols = uploads.preview_rows(tmp_path, {"upload_id": desc["upload_id"]})
    assert rows == [{"id": 1, "text": "a"}, {"id": 2, "text": "b"}] and calls == [uploads.table_summary]


def test_a_wide_table_previews_fewer_rows(tmp_path):
    df = pd.DataFrame(np.ones((600, 1000)), columns=[f"c{j}" for j in range(1000)])
    desc = uploads.stage(tmp_path, ["wide.csv"], [data_url(df.to_csv(index=False).encode())])
    rows, cols = uploads.preview_rows(tmp_path, {"upload_id": desc["upload_id"]})
    assert len(cols) == 1000 and len(rows) == 100


# ----------------------------------------------------------------------------- the bounded reader
def _hog(mb: int) -> int:
    blocks = [b"\x01" * (50 * 1024**2) for _ in range(mb // 50)]
    return len(blocks)


def _sleep(s: float) -> str:
    time.sleep(s)
    return "woke"


def _crash() -> None:
    os._exit(3)


def _refuse() -> None:
    raise InputError("data.csv is not usable: fix it.")


def _fail() -> None:
    raise KeyError("deep inside a parser")


def test_a_reader_over_its_memory_limit_is_killed_and_the_caller_lives():
    rss, t0 = _rss(), time.monotonic()
    msg = _err(bounded.bounded_call, _hog, 3000, max_rss_bytes=300 * 1024**2, what="huge.parquet")
    assert msg == ("huge.parquet needs more than 0.3 GB of memory to read: sample or split it, or save it as CSV or"
                   " Parquet.")
    assert time.monotonic() - t0 < 20 and _rss() - rss < 50 * 1024**2
    assert bounded.bounded_call(_hog, 100, max_rss_bytes=1024**3) == 2


def test_a_reader_over_its_time_limit_is_killed():
    t0 = time.monotonic()
    msg = _err(bounded.bounded_call, _sleep, 30, max_seconds=1, what="slow.xlsx")
    assert msg.startswith("slow.xlsx needs more than 1 s to read") and time.monotonic() - t0 < 10


def test_a_reader_that_dies_or_fails_becomes_one_message():
    assert _err(bounded.bounded_call, _crash, what="x.csv").startswith("x.csv could not be read: the reader stopped")
    assert _err(bounded.bounded_call, _refuse) == "data.csv is not usable: fix it."
    failed = _err(bounded.bounded_call, _fail, what="y.csv")
    assert failed.startswith("y.csv could not be read: an internal error occurred (KeyError)")
    assert "deep inside" not in failed  # the details go to the server log, not to the page


def test_readers_serve_many_threads_at_once():
    out, errors = [], []

    def call():
        try:
            out.append(bounded.bounded_call(_sleep, 0.2))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and out == ["woke"] * 8
    assert time.monotonic() - t0 < 30


def test_the_per_upload_overhead_is_small(tmp_path):
    raw = data_url(b"id,text\n" + b"\n".join(b"%d,some text %d" % (i, i) for i in range(200)))
    uploads.stage(tmp_path, ["warm.csv"], [raw])
    times = []
    for k in range(10):
        t0 = time.perf_counter()
        uploads.stage(tmp_path, [f"s{k}.csv"], [raw])
        times.append(time.perf_counter() - t0)
    median = sorted(times)[5]
    print(f"stage of a 200-row CSV: median {median * 1000:.0f} ms")
    assert median < 1.0


# ----------------------------------------------------------------------------- malformed tables
def _xlsx_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    pd.DataFrame({"id": [1, 2], "text": ["a", "b"]}).to_excel(buf, index=False)
    return buf.getvalue()


XLSX = _xlsx_bytes()
CSV = b'id,text,score\n1,"a, quoted text",1.5\n2,another,2\n3,"multi\nline",3\n'
JSON = json.dumps([{"id": 1, "text": "a"}, {"id": 2, "text": "b", "x": [1, 2]}]).encode()
JSONL = b'{"id": 1, "text": "a"}\n{"id": 2, "text": "b"}\n'
XLSX_EDITS = st.tuples(st.integers(0, len(XLSX)), st.binary(min_size=1, max_size=8))
CSV_EDITS = [b",", b'"', b"\n", b"\0", b"\t", b"," * 25, b"\xff\xfe", b"\r", b"'"]
TINY = ReadBudget(max_rows=50, max_columns=20, max_cells=400, max_bytes=256 * 1024, max_seconds=5)


def _mangle(data: bytes, edits: list[tuple[int, bytes]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, chunk in edits:
        p = pos % (len(out) + 1)
        out[p:p + len(chunk)] = chunk
    return bytes(out[:cut] if cut is not None else out)


def _xlsx_with_sheet(xml_edit: str) -> bytes:
    import io

    src = zipfile.ZipFile(io.BytesIO(XLSX))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            raw = src.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                raw = raw.decode().replace("<sheetData>", xml_edit + "<sheetData>", 1).encode()
            out.writestr(info, raw)
    return buf.getvalue()


tables = st.one_of(
    st.tuples(st.sampled_from([".csv", ".tsv", ".txt", ".json", ".jsonl", ".parquet", ".xlsx", ".xls"]),
              st.binary(max_size=2000)),
    st.tuples(st.sampled_from([".csv", ".tsv", ".txt"]),
              st.builds(_mangle, st.just(CSV), st.lists(st.tuples(st.integers(0, 200),
                                                                  st.sampled_from(CSV_EDITS)), max_size=6),
                        st.one_of(st.none(), st.integers(0, 80)))),
    st.tuples(st.sampled_from([".json", ".jsonl"]),
              st.builds(_mangle, st.sampled_from([JSON, JSONL]),
                        st.lists(st.tuples(st.integers(0, 100), st.sampled_from([b"{", b"}", b"[", b"]", b'"', b":",
                                                                                 b",", b"\n", b"null", b"1e999"])),
                                 max_size=5),
                        st.one_of(st.none(), st.integers(0, 90)))),
    st.tuples(st.just(".xlsx"), st.builds(_mangle, st.just(XLSX),
                                          st.lists(XLSX_EDITS, max_size=3),
                                          st.one_of(st.none(), st.integers(0, len(XLSX))))),
    st.tuples(st.just(".xlsx"), st.builds(_xlsx_with_sheet, st.sampled_from([
        '<dimension ref="A1:XFD1048576"/>', '<dimension ref="ZZZZ1:A0"/>', '<dimension ref=""/>',
        '<dimension ref="A1:B2:C3"/>', '<dimension/>', '<dimension ref="B2"/>', '<dimension ref="A-1:B9999999999"/>',
        '<cols><col min="1" max="16384" width="9"/></cols>']))),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables)
def test_malformed_tables_give_a_frame_or_a_message(tmp_path_factory, case):
    ext, raw = case
    p = tmp_path_factory.mktemp("m") / f"t{ext}"
    p.write_bytes(raw)
    t0 = time.monotonic()
    try:
        df = read_table(p, budget=TINY)
    except InputError as e:
        assert str(e)
    else:
        assert isinstance(df, pd.DataFrame) and len(df) <= TINY.max_rows and len(df.columns) <= TINY.max_columns
    assert time.monotonic() - t0 < 5


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables)
def test_malformed_tables_through_the_bounded_reader(tmp_path_factory, case):
    ext, raw = case
    p = tmp_path_factory.mktemp("b") / f"t{ext}"
    p.write_bytes(raw)
    try:
        rec = bounded.bounded_call(uploads.table_summary, str(p), TINY, max_seconds=20, what=p.name)
    except InputError as e:
        assert str(e)
    else:
        assert rec["n_rows"] <= TINY.max_rows and isinstance(rec["preview"]["rows"], list)
