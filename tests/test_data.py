"""Tests of hercules_core.data: every accepted input form, every rejected one, table files, images."""

from __future__ import annotations

import json
import logging
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from sklearn.datasets import load_digits

from hercules_core import data
from hercules_core.data import (collect_images, default_l0_descriptions, default_l0_titles, prepare,
                                read_table)
from hercules_core.dataset import Dataset
from hercules_core.errors import InputError

FORTUNE = Path("/work/shared/data/fortune_dev8.csv")
TEXTS = ["Cats purr. They sleep a lot.", "Stocks fell sharply! Bonds rose.", "Rain again today?"]


def write_digits(folder: Path, n: int = 30, size: int = 32) -> list[Path]:
    """Write ``n`` sklearn digits as ``size`` x ``size`` grayscale PNGs named digit{i}_{label}.png."""
    folder.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    paths = []
    for i in range(n):
        arr = (digits.images[i] * (255 / 16)).astype(np.uint8)
        p = folder / f"digit{i:03d}_{digits.target[i]}.png"
        Image.fromarray(arr, mode="L").resize((size, size), Image.Resampling.NEAREST).save(p)
        paths.append(p)
    return paths


def err(fn, *args, **kwargs) -> str:
    with pytest.raises(InputError) as exc:
        fn(*args, **kwargs)
    return str(exc.value)


# ----------------------------------------------------------------------------- texts
def test_list_and_tuple_of_texts():
    for container in (list, tuple):
        ds = prepare(container(TEXTS))
        assert ds.modality == "text" and ds.ids == ["0", "1", "2"] and ds.texts == TEXTS
        assert ds.source == f"{container.__name__} of 3 texts"
        assert ds.numeric is None and ds.image_paths is None and ds.labels is None


def test_dict_keeps_key_order_and_stringifies_ids():
    ds = prepare({"z": TEXTS[0], 5: TEXTS[1], "a": TEXTS[2]})
    assert ds.ids == ["z", "5", "a"] and ds.texts == TEXTS and ds.source == "dict of 3 texts"


def test_series_index_is_ids_unless_default():
    assert prepare(pd.Series(TEXTS, index=["c", "b", "a"])).ids == ["c", "b", "a"]
    assert prepare(pd.Series(TEXTS)).ids == ["0", "1", "2"]
    assert prepare(pd.Series(TEXTS + ["x"])[1:]).ids == ["1", "2", "3"]  # a slice keeps its row labels


def test_dataframe_with_columns_and_labels():
    df = pd.DataFrame({"key": ["k1", "k2", "k3"], "body": TEXTS, "lab": ["pets", "money", "weather"]})
    ds = prepare(df, text_column="body", id_column="key", labels_column="lab")
    assert ds.ids == ["k1", "k2", "k3"] and ds.texts == TEXTS and ds.labels == ["pets", "money", "weather"]
    assert ds.source == "DataFrame column 'body'"
    # auto: the id and label columns are excluded, one text column is left
    assert prepare(df, id_column="key", labels_column="lab").texts == TEXTS


def test_explicit_ids_and_labels():
    ds = prepare(TEXTS, ids=[10, 11, 12], labels={"10": "a", "11": "b", "12": "a"})
    assert ds.ids == ["10", "11", "12"] and ds.labels == ["a", "b", "a"]
    assert prepare(TEXTS, labels=[1, 2, 1]).labels == ["1", "2", "1"]
    assert "ids were given twice" in err(prepare, {"a": "x", "b": "y"}, ids=["1", "2"])
    assert "3 items" in err(prepare, TEXTS, ids=["1", "2"])


def test_missing_labels_named():
    msg = err(prepare, TEXTS, labels=["a", None, " "])
    assert "2 items have no label" in msg and "1, 2" in msg
    msg = err(prepare, TEXTS, labels={"0": "a"})
    assert "1, 2" in msg
    assert "labels has 2 entries" in err(prepare, TEXTS, labels=["a", "b"])


def test_ids_and_labels_of_every_cell_type():
    """Columns of strs or ints (checked in bulk) and mixed ones (cell by cell) give the same ids,
    labels and messages."""
    assert prepare(TEXTS, ids=[7.0, 8, "x"]).ids == ["7", "8", "x"]  # a float id that is an integer
    assert prepare(TEXTS, ids=[3, 1, 2], labels=[0, 1, 0]).labels == ["0", "1", "0"]
    for blank in ("", " \t", None, float("nan")):
        assert "1 items have no id (rows 1)" in err(prepare, TEXTS, ids=["a", blank, "c"])
        assert "1 items have no label: ids 2" in err(prepare, TEXTS, labels=["a", "b", blank])
    for dup in (["a", "b", "a"], [1, 2, 1]):
        assert "1 ids occur more than once: " + str(dup[0]) in err(prepare, TEXTS, ids=dup)
    assert "Texts must be strings" in err(prepare, pd.DataFrame({"t": ["x", 2, "y"]}), text_column="t")


def test_non_string_texts_named():
    msg = err(prepare, ["a text", 42, "another", "more", "and more"])
    assert "mixes types" in msg and "1 (value 42)" in msg and "strings" in msg
    df = pd.DataFrame({"id": ["a", "b", "c"], "t": ["x", 3.5, "y"]})
    msg = err(prepare, df, text_column="t", id_column="id")
    assert "must be strings" in msg and "b (3.5)" in msg


def test_empty_texts_dropped_with_note_and_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="hercules_core"):
        ds = prepare({"a": "one", "b": "  \n", "c": None, "d": "two"}, labels=["x", "y", "z", "x"])
    assert ds.ids == ["a", "d"] and ds.texts == ["one", "two"] and ds.labels == ["x", "x"]
    assert any("Dropped 2 empty texts" in n and "b, c" in n for n in ds.notes)
    assert "Dropped 2 empty texts" in caplog.text
    msg = err(prepare, {"a": "one", "b": "", "c": "two"}, drop_empty_texts=False)
    assert "ids b" in msg and "drop_empty_texts" in msg


def test_texts_na_strings_survive_csv(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("id,text\n007,None\n008,NA\n009,real text\n")
    ds = prepare(p, text_column="text", id_column="id")
    assert ds.ids == ["007", "008", "009"] and ds.texts == ["None", "NA", "real text"]


def test_numeric_text_column_rejected(tmp_path):
    df = pd.DataFrame({"n": [1, 2, 3]})
    assert "numeric_columns=['n']" in err(prepare, df, text_column="n")


# ----------------------------------------------------------------------------- numeric
@pytest.mark.parametrize("value, p, names", [
    ([1.0, 2, 5, 7], 1, ["x0"]),
    ([[1, 2], [3, 5], [5, 1], [0, 0]], 2, ["x0", "x1"]),
    (np.array([1.0, 2, 5, 7]), 1, ["x0"]),
    (np.array([[1, 2], [3, 5], [5, 1], [0, 0]]), 2, ["x0", "x1"]),
    (pd.Series([1.0, 2, 5, 7]), 1, ["x0"]),
    (pd.DataFrame({"a": [1, 3, 5, 0], "b": [2.0, 5, 1, 0]}), 2, ["a", "b"]),
])
def test_numeric_forms(value, p, names):
    ds = prepare(value)
    assert ds.modality == "numeric" and ds.ids == ["0", "1", "2", "3"] and ds.feature_names == names
    assert ds.numeric.dtype == np.float32 and ds.numeric.shape == (4, p)
    assert ds.numeric_raw.dtype == np.float64
    np.testing.assert_allclose(ds.numeric.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(ds.numeric.std(0), 1, atol=1e-5)
    np.testing.assert_allclose((ds.numeric_raw - ds.scaler_mean) / ds.scaler_scale, ds.numeric, atol=1e-5)


def test_numeric_dicts_and_raw_kept():
    ds = prepare({"a": [1, 10], "b": [2, 20], "c": [3, 60]})
    assert ds.ids == ["a", "b", "c"] and ds.source == "dict of 3 numeric items"
    np.testing.assert_array_equal(ds.numeric_raw, [[1, 10], [2, 20], [3, 60]])
    assert prepare({"a": 1.5, "b": 2.5}).numeric_raw.shape == (2, 1)


def test_dataframe_numeric_columns_and_metadata():
    df = pd.DataFrame({"id": ["p", "q", "r"], "w": [60.0, 80, 70], "h": [1.6, 1.9, 1.7], "note": ["x", "y", "z"]})
    meta = {"w": {"unit": "kg", "description": "weight"}}
    ds = prepare(df, numeric_columns=["w", "h"], id_column="id", numeric_metadata=meta)
    assert ds.ids == ["p", "q", "r"] and ds.feature_names == ["w", "h"] and ds.numeric_metadata == meta
    msg = err(prepare, df, numeric_columns=["w"], numeric_metadata={"weight": {"unit": "kg"}})
    assert "unknown features weight" in msg and "w" in msg
    assert "units" in err(prepare, df, numeric_columns=["w"], numeric_metadata={"w": {"units": "kg"}})
    assert "only applies to numeric" in err(prepare, TEXTS, numeric_metadata={"x0": {}})
    # numeric override on a mixed table uses the numeric columns and says what it ignored
    ds = prepare(df, modality="numeric", id_column="id")
    assert ds.feature_names == ["w", "h"] and any("note" in n for n in ds.notes)


def test_nan_and_inf_named_with_columns():
    df = pd.DataFrame({"a": [1.0, np.nan, 3, 4], "b": [1.0, 2, np.inf, 4], "c": [1.0, 2, 3, 4]},
                      index=["r0", "r1", "r2", "r3"])
    msg = err(prepare, df)
    assert "ids r1, r2" in msg and "columns a, b" in msg and "impute" in msg
    assert "ids 1" in err(prepare, [[1, 2], [None, 3], [4, 5]])


def test_non_numeric_values_named():
    df = pd.DataFrame({"id": ["u", "v", "w"], "a": [1, 2, 3], "b": ["1.5", "oops", "2"]})
    msg = err(prepare, df, numeric_columns=["a", "b"], id_column="id")
    assert "column 'b'" in msg and "v ('oops')" in msg
    assert "same length" in err(prepare, [[1, 2], [3, 4], [5]])
    assert "non-numeric" in err(prepare, [[1, 2], [3, "x"], [5, 6]])


def test_constant_column_kept_without_nan():
    ds = prepare(pd.DataFrame({"a": [1.0, 2, 3], "k": [5.0, 5, 5]}))
    assert np.isfinite(ds.numeric).all() and (ds.numeric[:, 1] == 0).all() and ds.scaler_scale[1] == 1.0
    assert any("Constant columns k" in n for n in ds.notes)


def test_modality_overrides_that_do_not_fit():
    assert "modality='numeric'" in err(prepare, TEXTS, modality="numeric")
    assert "modality='text'" in err(prepare, [1, 2, 3], modality="text")
    assert "modality='image'" in err(prepare, np.ones((3, 2)), modality="image")
    assert "modality must be one of" in err(prepare, TEXTS, modality="video")
    assert "not image files" in err(prepare, TEXTS, modality="image")


# ----------------------------------------------------------------------------- general errors
def test_duplicate_ids_named_up_to_ten():
    df = pd.DataFrame({"id": [f"d{i}" for i in range(15)] * 2, "t": ["x"] * 30})
    msg = err(prepare, df, text_column="t", id_column="id")
    assert "15 ids occur more than once" in msg and "d0, d1" in msg and "(and 5 more)" in msg
    assert "d14" not in msg


def test_empty_single_and_max_items():
    assert "empty" in err(prepare, [])
    assert "need at least 2 items to cluster" in err(prepare, ["only one"])
    assert "need at least 2 items to cluster" in err(prepare, ["one", "  "])
    assert "max_items=2" in err(prepare, TEXTS, max_items=2)
    assert "Unsupported input type" in err(prepare, 42)
    assert "only apply to a DataFrame" in err(prepare, TEXTS, text_column="t")
    assert "either text_column or numeric_columns" in err(prepare, pd.DataFrame({"a": [1]}), text_column="a",
                                                          numeric_columns=["a"])
    assert "1-D" in err(prepare, np.zeros((2, 2, 2)))
    assert "empty" in err(prepare, np.array([]))
    assert "no numeric columns" in err(prepare, np.zeros((3, 0)))
    assert "no rows" in err(prepare, pd.DataFrame({"t": pd.Series([], dtype=str)}), text_column="t")
    assert "not an existing file" in err(prepare, "a long text, not a path " * 500)  # no OSError
    assert "not an existing file" in err(prepare, "one text only")


def test_non_string_column_names():
    ds = prepare(pd.DataFrame(np.arange(12.0).reshape(4, 3) ** 2), numeric_columns=[0, 2])
    assert ds.feature_names == ["0", "2"]


def test_missing_columns_list_available():
    df = pd.DataFrame({"alpha": ["a", "b"], "beta": ["c", "d"]})
    msg = err(prepare, df, text_column="gamma")
    assert "'gamma'" in msg and "alpha, beta" in msg
    msg = err(prepare, df)  # two text-like columns: ambiguous
    assert "alpha, beta" in msg and "text_column" in msg and "numeric_columns" in msg


# ----------------------------------------------------------------------------- files
@pytest.mark.parametrize("ext", [".csv", ".tsv", ".txt", ".json", ".jsonl", ".parquet", ".xlsx"])
def test_table_formats_round_trip(tmp_path, ext):
    df = pd.DataFrame({"id": ["007", "008", "009"], "text": TEXTS, "score": [1.5, 2.0, 3.25]})
    p = tmp_path / f"t{ext}"
    if ext in (".csv", ".tsv", ".txt"):
        df.to_csv(p, sep="," if ext == ".csv" else "\t", index=False)
    elif ext == ".json":
        p.write_text(json.dumps(df.to_dict(orient="records")))
    elif ext == ".jsonl":
        p.write_text("\n".join(json.dumps(r) for r in df.to_dict(orient="records")) + "\n")
    elif ext == ".parquet":
        df.to_parquet(p)
    else:
        df.to_excel(p, index=False)
    back = read_table(p)
    assert list(back.columns) == ["id", "text", "score"] and back["text"].tolist() == TEXTS
    assert back["score"].tolist() == [1.5, 2.0, 3.25]
    ds = prepare(p, text_column="text", id_column="id")
    assert ds.ids == ["007", "008", "009"] and ds.texts == TEXTS and ds.source == f"t{ext} column 'text'"
    num = prepare(p, numeric_columns=["score"], id_column="id")
    assert num.feature_names == ["score"] and num.numeric_raw[:, 0].tolist() == [1.5, 2.0, 3.25]


def test_auto_detection_on_files(tmp_path):
    p = tmp_path / "mixed.csv"
    p.write_text("text,score\nhello there how are you today,1\ngeneral kenobi you are a bold one,2\n"
                 "so uncivilised said the general,3\n")
    ds = prepare(p)
    assert ds.modality == "text" and any("ignored columns score" in n for n in ds.notes)
    # short texts (names, categories) beside numbers: the numbers are the items
    p = tmp_path / "iris.csv"
    p.write_text("length,width,species\n5.1,3.5,setosa\n7.0,3.2,versicolor\n6.3,3.3,virginica\n")
    ds = prepare(p)
    assert ds.modality == "numeric" and ds.feature_names == ["length", "width"]
    assert any("ignored columns species" in n for n in ds.notes)
    # columns named like ids or labels are never clustered unless named as the items
    p = tmp_path / "named.csv"
    p.write_text("ID,a,b,Label\n1,1,2,x\n2,3,4,y\n3,5,7,x\n")
    ds = prepare(p)
    assert ds.feature_names == ["a", "b"] and ds.ids == ["0", "1", "2"] and ds.labels is None
    assert prepare(p, numeric_columns=["ID", "a"]).feature_names == ["ID", "a"]
    p = tmp_path / "nums.csv"
    p.write_text("id,a,b\nx,1,2\ny,3,4\nz,5,7\n")
    ds = prepare(p, id_column="id")
    assert ds.modality == "numeric" and ds.feature_names == ["a", "b"] and ds.ids == ["x", "y", "z"]
    p = tmp_path / "na.csv"
    p.write_text("a,b\n1,2\nNA,4\n5,6\n")  # "NA" in a numeric column is missing, not text
    assert "ids 1" in err(prepare, p) and "columns a" in err(prepare, p)


def test_bad_table_files(tmp_path):
    p = tmp_path / "data.foo"
    p.write_text("x")
    assert "unknown table extension '.foo'" in err(prepare, p)
    p = tmp_path / "ragged.csv"
    p.write_text("a,b\n1,2\n3,4,5,6\n")
    assert "ragged.csv" in err(read_table, p)
    p = tmp_path / "bad.jsonl"
    p.write_text('{"t": "ok"}\n{broken\n')
    assert "line 2" in err(read_table, p)
    p = tmp_path / "bad.parquet"
    p.write_bytes(b"not parquet at all")
    assert "bad.parquet" in err(read_table, p)
    p = tmp_path / "bad.json"
    p.write_text('"just a string"')
    assert "list of objects" in err(read_table, p)
    p = tmp_path / "s.xlsx"
    pd.DataFrame({"t": TEXTS}).to_excel(p, index=False, sheet_name="Main")
    assert "Main" in err(read_table, p, sheet="Other")
    assert read_table(p, sheet="Main")["t"].tolist() == TEXTS
    assert "not found" in err(read_table, tmp_path / "missing.csv")
    assert "not an existing file" in err(prepare, tmp_path / "missing.csv")


def test_fortune_dev8():
    ds = prepare(FORTUNE, text_column="text", id_column="id", labels_column="label")
    assert ds.modality == "text" and len(ds) == 1225
    assert ds.ids[0] == "f00000" and ds.ids[1] == "f00001" and all(i.startswith("f") for i in ds.ids)
    assert len(set(ds.ids)) == 1225 and len(set(ds.labels)) == 8
    assert ds.source == "fortune_dev8.csv column 'text'"


# ----------------------------------------------------------------------------- images
def test_list_of_image_paths(tmp_path):
    paths = write_digits(tmp_path / "d", n=5)
    ds = prepare([str(p) for p in paths])
    assert ds.modality == "image" and ds.ids == ["0", "1", "2", "3", "4"]
    assert ds.image_paths == [str(p.resolve()) for p in paths] and ds.source == "list of 5 image paths"
    assert default_l0_titles(ds)[0] == paths[0].stem
    assert default_l0_descriptions(ds)[0] == f"Image {paths[0].name}"
    assert prepare(paths).modality == "image"  # Path objects too


def test_folder_recursive_skips_non_images(tmp_path):
    root = tmp_path / "digits"
    write_digits(root / "a", n=3)
    write_digits(root / "b", n=2)
    (root / "readme.txt").write_text("not an image")
    (root / "__MACOSX").mkdir()
    (root / "__MACOSX" / "._x.png").write_bytes(b"junk")
    ds = prepare(root)
    rel = [Path(p).relative_to(root).as_posix() for p in ds.image_paths]
    assert rel == sorted(rel) and len(rel) == 5 and rel[0].startswith("a/") and rel[-1].startswith("b/")
    assert ds.source == "folder digits/" and any("readme.txt" in n for n in ds.notes)
    assert collect_images(root) == ds.image_paths


def test_zip_extracted_and_checked(tmp_path):
    paths = write_digits(tmp_path / "d", n=6)
    zp = tmp_path / "digits.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        for p in paths:
            zf.write(p, f"imgs/{p.name}")
        zf.writestr("imgs/notes.md", "hello")
    out = tmp_path / "out"
    ds = prepare(zp, extract_dir=out)
    assert ds.modality == "image" and len(ds) == 6 and ds.source == "zip digits.zip"
    assert all(Path(p).is_relative_to(out.resolve()) for p in ds.image_paths)
    assert not (out / "imgs" / "notes.md").exists()  # only images are extracted
    assert "extract_dir" in err(prepare, zp)


@pytest.mark.parametrize("bad_name", ["../evil.png", "a/../../evil.png", "/tmp/evil_abs.png"])
def test_zip_slip_rejected(tmp_path, bad_name):
    paths = write_digits(tmp_path / "d", n=2)
    zp = tmp_path / "slip.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        zf.write(paths[0], "ok.png")
        zf.writestr(bad_name, paths[1].read_bytes())
    out = tmp_path / "deep" / "out"
    msg = err(prepare, zp, extract_dir=out)
    assert "unsafe entry" in msg and bad_name in msg
    assert not (tmp_path / "deep" / "evil.png").exists() and not (out / "ok.png").exists()


def test_zip_bomb_limits(tmp_path, monkeypatch):
    zp = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bmp", b"\0" * (3 << 20))
    assert "compression ratio" in err(prepare, zp, extract_dir=tmp_path / "o")
    paths = write_digits(tmp_path / "d", n=4)
    zp = tmp_path / "many.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        for p in paths:
            zf.write(p, p.name)
    monkeypatch.setattr(data, "MAX_ZIP_ENTRIES", 3)
    assert "4 entries" in err(prepare, zp, extract_dir=tmp_path / "o")
    monkeypatch.setattr(data, "MAX_ZIP_ENTRIES", 100)
    monkeypatch.setattr(data, "MAX_ZIP_BYTES", 10)
    assert "2 GiB" in err(prepare, zp, extract_dir=tmp_path / "o")
    (tmp_path / "notzip.zip").write_text("nope")
    assert "notzip.zip" in err(prepare, tmp_path / "notzip.zip", extract_dir=tmp_path / "o")


def test_corrupt_and_non_image_files_named(tmp_path):
    paths = write_digits(tmp_path / "d", n=3)
    bad = tmp_path / "d" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    msg = err(prepare, [*paths, bad])
    assert "broken.png" in msg and "cannot be opened" in msg
    assert "broken.png" in err(prepare, tmp_path / "d")  # image extension in a folder: still an error
    txt = tmp_path / "notes.txt"
    txt.write_text("hi")
    msg = err(prepare, [*paths, txt])
    assert "notes.txt" in msg and "not image files" in msg
    assert "do not exist" in err(prepare, [*paths, tmp_path / "gone.png"])
    assert "single image" in err(prepare, paths[0])


# ----------------------------------------------------------------------------- level 0
def test_default_l0_titles_and_descriptions():
    ds = prepare(["First sentence here. Second one.", "Line one\nline two", "word " * 50])
    titles = default_l0_titles(ds, max_chars=30)
    assert titles[0] == "First sentence here." and titles[1] == "Line one"
    assert len(titles[2]) <= 30 and titles[2].endswith("…")
    desc = default_l0_descriptions(ds, max_chars=40)
    assert desc[0] == "First sentence here. Second one." and len(desc[2]) <= 40 and desc[2].endswith("…")
    assert not desc[2][:-1].endswith("wor")  # cut at a word boundary

    num = prepare(pd.DataFrame({f"v{j}": [j + 0.123456, 1234.5, 0.000123456] for j in range(12)},
                               index=["a", "b", "c"]))
    assert default_l0_titles(num) == ["Item a", "Item b", "Item c"]
    d = default_l0_descriptions(num, precision=2, max_vals=3)
    assert d[0] == "v0=0.12, v1=1.12, v2=2.12, …"
    assert d[1].startswith("v0=1234.5, ") and d[2].startswith("v0=0.00012, ")
    assert default_l0_descriptions(num, precision=0, max_vals=2)[1] == "v0=1234, v1=1234, …"
    assert default_l0_descriptions(num, max_chars=12)[0] == "v0=0.12,…"  # word boundary


def _reference_number(v: float, precision: int) -> str:
    """How a number read one at a time (the reference for the batched formatting)."""
    if not math.isfinite(v):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    if abs(v) < 1 or abs(v) >= 1e6:
        return f"{v:.{max(precision, 1)}g}"
    fixed = f"{v:.{precision}f}"
    return fixed.rstrip("0").rstrip(".") if "." in fixed else fixed


def test_numeric_descriptions_match_one_number_at_a_time():
    """Batched formatting gives the strings of formatting each number on its own: integers, -0.0,
    tiny, huge, nan/inf, trailing zeros, values on and next to rounding ties, every precision,
    names with "%" or the row separator, more or fewer names than shown, truncation, float32."""
    from hercules_core.data import _truncate

    rng = np.random.default_rng(3)
    edge = [0.0, -0.0, 1.0, -7.0, 1e14, 999999999999999.0, 1e15, -1e16, 1.5e300, 5e-324, 1e-5, -0.00012345, 0.125,
            0.0999, 0.995, 1.005, 1.125, 2.5, -2.5, 2.675, 10.5, 3.0000001, 2.50000001, 999999.995, 999999.4,
            1e6, 1234567.891, 0.5, -0.05, 123.456789, math.nan, math.inf, -math.inf, 1 / 3, 2 / 3, 100.10]
    mixed = np.concatenate([edge, rng.normal(size=600) * 10.0 ** rng.integers(-7, 9, 600),
                            np.round(rng.normal(size=400) * 1e5) / 10.0 ** rng.integers(0, 4, 400),  # few decimals
                            rng.integers(-5, 6, 400) * 0.125 + rng.integers(-9, 10, 400)])  # exact binary ties
    raw = rng.permutation(np.resize(mixed, 12 * 150)).reshape(150, 12)
    names = ["v0", "a%d", " lead", "x\x01y", "é", "v5", "v6", "v7", "v8", "v9", "v10", "v11"]
    for precision in (0, 1, 2, 3, 6, 20):
        for max_vals, max_chars, cols in ((10, 300, 12), (3, 40, 12), (12, 300, 12), (0, 300, 12), (10, 300, 5)):
            shown = names[:cols] if cols == 12 else names[2:2 + cols]  # the latter starts with a space
            ds = Dataset(ids=[str(i) for i in range(len(raw))], modality="numeric", numeric_raw=raw[:, :cols],
                         feature_names=shown)
            expected = []
            for row in raw[:, :cols]:
                parts = [f"{n}={_reference_number(float(v), precision)}"
                         for n, v in zip(shown[:max_vals], row[:max_vals])]
                if len(shown) > max_vals:
                    parts.append("…")
                expected.append(_truncate(", ".join(parts), max_chars))
            assert default_l0_descriptions(ds, max_chars, precision, max_vals) == expected, (precision, max_vals)
    single = Dataset(ids=["a"], modality="numeric", numeric_raw=np.array([[1.25, 0.5]], dtype=np.float32),
                     feature_names=["p", "q"])
    assert default_l0_descriptions(single) == ["p=1.25, q=0.5"]


# ----------------------------------------------------------------------------- properties
@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.dictionaries(st.text(min_size=1, max_size=8).filter(str.strip),
                       st.text(alphabet="abc xyz.", min_size=1, max_size=30).filter(str.strip),
                       min_size=2, max_size=25))
def test_dict_ids_preserved_and_unique(d):
    ds = prepare(d)
    assert ds.ids == list(d.keys()) and len(set(ds.ids)) == len(ds.ids)
    assert ds.texts == list(d.values())


@settings(max_examples=40, deadline=None, derandomize=True)
@given(st.lists(st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3), min_size=2, max_size=30))
def test_numeric_scaling_is_finite_and_invertible(rows):
    ds = prepare(rows)
    assert np.isfinite(ds.numeric).all()
    np.testing.assert_allclose(ds.numeric_raw, rows)
    back = ds.numeric.astype(np.float64) * ds.scaler_scale + ds.scaler_mean
    np.testing.assert_allclose(back, rows, atol=1e-6 * (1 + np.abs(rows).max()) * 10)
