"""A model.json cannot cost unbounded memory or leave debris (security issue: model bombs).

Every hostile file is generated here (nothing big in git). A shape bomb declares a huge array in
a small file; the loader must refuse it from the header alone, before it allocates or inflates
anything, and name the field. A deeply nested file must be a clear ModelFileError, and importing
either on the runs page must leave runs/ empty and give the page a message.
"""

from __future__ import annotations

import json
import tracemalloc
import zlib

import numpy as np
import pytest

from callbacks import page_runs, runstore, uploads
from hercules_core import io
from hercules_core.assign import assignment_info
from hercules_core.errors import ModelFileError
from devkit.factories import make_hierarchy, make_text_dataset
from tests.test_app_logic import data_url
from tests.test_io import assert_same_hierarchy, full_hierarchy

BOMB_ROWS = 800_000_000


@pytest.fixture
def doc(tmp_path):
    """The JSON document of a small valid model (60 items, 8 then 3 clusters)."""
    path = tmp_path / "good.json"
    io.save_model(make_hierarchy(), path)
    return json.loads(path.read_text())


@pytest.fixture
def no_inflation(monkeypatch):
    """Fail the test if anything starts inflating zlib data while it runs."""
    def refuse(*_a, **_k):
        raise AssertionError("a zlib stream was inflated: the declared shape was not checked first")
    monkeypatch.setattr(io.zlib, "decompressobj", refuse)


def zeros_bomb(n_bytes: int) -> dict:
    """A bool array header declaring ``n_bytes`` elements, with a real zlib stream of that many
    zeros (built in chunks: ~780 KB of data for 800 MB, compressed without holding 800 MB)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    chunk, parts = bytes(1 << 24), []
    for done in range(0, n_bytes, len(chunk)):
        parts.append(c.compress(chunk[:min(len(chunk), n_bytes - done)]))
    packed = b"".join(parts) + c.flush()
    return {"dtype": "bool", "shape": [n_bytes], "encoding": io.ARRAY_ENCODING, "zlib": [True],
            "lengths": [len(packed)], "data": str(io._b85encode(packed), "ascii")}


def tiny_bomb(shape: list[int], dtype: str = "float32") -> dict:
    """A header declaring ``shape`` whose compressed planes are a few bytes each."""
    itemsize = np.dtype(io._DTYPES[dtype]).itemsize
    packed = zlib.compress(bytes(1000))
    return {"dtype": dtype, "shape": shape, "encoding": io.ARRAY_ENCODING, "zlib": [True] * itemsize,
            "lengths": [len(packed)] * itemsize, "data": str(io._b85encode(packed * itemsize), "ascii")}


def write(tmp_path, doc, name="model.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def runs_left(runs):
    return sorted(p.name for p in runs.iterdir()) if runs.exists() else []


# --------------------------------------------------------------------------- shape bombs

def test_a_shape_bomb_is_refused_from_its_header_before_anything_is_inflated(tmp_path, doc, no_inflation):
    doc["levels"][1]["fallback"] = zeros_bomb(BOMB_ROWS)  # 800 MB of zeros in a ~1 MB file
    path = write(tmp_path, doc)
    assert path.stat().st_size < 2 * 1024**2
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError,
                           match=r"levels\[1\]\.fallback declares 800,000,000 rows but the level has 8 clusters"):
            io.load_model(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the document itself (a ~1 MB file) is all that was held: nothing of the declared 800 MB
    assert peak < 40 * 1024**2, f"loading allocated {peak / 1024**2:.0f} MB"


@pytest.mark.parametrize("where, change, message", [
    ("vectors rows", lambda d: d["levels"][1].update(vectors=tiny_bomb([BOMB_ROWS, 16])),
     r"levels\[1\]\.vectors declares 800,000,000 rows but the level has 8 clusters"),
    ("item rows", lambda d: d["levels"][0].update(parent=tiny_bomb([BOMB_ROWS], "int32")),
     r"levels\[0\]\.parent declares 800,000,000 rows but the level has 60 items"),
    ("dataset rows", lambda d: d["dataset"].update(numeric=tiny_bomb([BOMB_ROWS, 3])),
     r"dataset\.numeric declares 800,000,000 rows but the dataset has 60 items"),
    ("too wide", lambda d: d["levels"][0].update(vectors=tiny_bomb([60, 10_000_000])),
     r"levels\[0\]\.vectors declares shape \[60, 10000000\]; a stored vector has at most 65,536 values"),
    ("too long", lambda d: d.update(topic_embedding=tiny_bomb([BOMB_ROWS])),
     r"topic_embedding declares shape \[800000000\]; a stored vector has at most 65,536"),
    ("too many dimensions", lambda d: d["levels"][2].update(vectors=tiny_bomb([3, 1000, 1000])),
     r"levels\[2\]\.vectors has shape \[3, 1000, 1000\]; expected 2 dimensions"),
    ("assign rows", lambda d: d.update(assign={"version": 1, "thresholds": tiny_bomb([BOMB_ROWS])}),
     r"assign\.thresholds declares 800,000,000 rows but level 1 has 8 clusters"),
    ("reducer rows", lambda d: d.update(reducers={"clustering": {"items": tiny_bomb([BOMB_ROWS, 2])}}),
     r"reducers\.clustering\.items declares 800,000,000 rows but the dataset has 60 items"),
    ("centroid rows", lambda d: d.update(reducers={"clustering": {"centroids_L1": tiny_bomb([BOMB_ROWS, 2])}}),
     r"reducers\.clustering\.centroids_L1 declares 800,000,000 rows but level 1 has 8 clusters"),
])
def test_every_decoded_array_is_checked_against_the_document(tmp_path, doc, no_inflation, where, change, message):
    change(doc)
    with pytest.raises(ModelFileError, match=message):
        io.load_model(write(tmp_path, doc))


def test_an_array_cannot_declare_more_than_its_bytes_can_inflate_to(tmp_path, doc, no_inflation):
    # a reducer array has no row count to check against; 65,536 x 65,536 floats (16 GB) from a
    # few bytes of zlib is still refused: deflate inflates one byte to at most 1032
    doc["reducers"] = {"extra": {"components": tiny_bomb([65_536, 65_536])}}
    with pytest.raises(ModelFileError, match=r"reducers\.extra\.components declares 4,294,967,296 bytes in "
                                             r"plane 0, more than its \d+ compressed bytes can hold"):
        io.load_model(write(tmp_path, doc))
    # decode_array on its own refuses the same header before allocating or inflating
    with pytest.raises(ModelFileError, match="Encoded array declares 4,294,967,296 bytes in plane 0"):
        io.decode_array(tiny_bomb([65_536, 65_536]))


def test_the_inflation_bound_admits_the_most_compressible_real_arrays():
    # an all-zero plane is the best case of deflate (~1030x): the bound must not refuse it
    for a in (np.zeros(3_000_000, bool), np.ones(2_000_000, np.int64), np.zeros((5000, 300), np.float32)):
        enc = io.encode_array(a)
        assert all(enc["zlib"]) and np.array_equal(io.decode_array(enc), a)


# --------------------------------------------------------------------------- nesting

def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [100_000, 200])
def test_deep_nesting_is_a_model_file_error(tmp_path, doc, depth):
    # 100,000 deep overflows json's parser (RecursionError); 200 parses but is no model's shape
    text = json.dumps(doc)[:-1] + ', "stats": {"x": ' + deep(depth) + "}}"
    path = tmp_path / "deep.json"
    path.write_text(text)
    with pytest.raises(ModelFileError, match="nested too deeply"):
        io.load_model(path)


# --------------------------------------------------------------------------- import on the runs page

def test_importing_a_bomb_leaves_runs_empty_and_says_why(tmp_path, doc, no_inflation):
    runs = tmp_path / "runs"
    doc["levels"][1]["fallback"] = zeros_bomb(BOMB_ROWS)
    run_id, msg = page_runs.import_model(runs, "bomb.json", data_url(json.dumps(doc).encode()))
    assert run_id is None and runs_left(runs) == []
    assert msg.startswith("bomb.json: levels[1].fallback declares 800,000,000 rows") and str(runs) not in msg


def test_importing_a_deeply_nested_file_leaves_runs_empty_and_says_why(tmp_path):
    runs = tmp_path / "runs"
    text = '{"format": "hercules-model", "schema_version": 1, "stats": ' + deep(100_000) + "}"
    run_id, msg = page_runs.import_model(runs, "deep.json", data_url(text.encode()))
    assert run_id is None and runs_left(runs) == []
    assert msg.startswith("deep.json is not a HERCULES model JSON: it is nested too deeply")


def test_import_cleans_up_after_any_failure(tmp_path, monkeypatch, doc):
    from callbacks import bounded, model_import

    runs = tmp_path / "runs"
    blob = data_url(json.dumps(doc).encode())
    monkeypatch.setattr(bounded, "_ctx", lambda: False)  # in this process, where the patches below apply

    def broken(*_a, **_k):
        raise RuntimeError("a bug while writing the outputs")
    monkeypatch.setattr(model_import, "save_outputs", broken)
    run_id, msg = page_runs.import_model(runs, "model.json", blob)
    assert run_id is None and runs_left(runs) == []
    assert "internal error occurred (RuntimeError)" in msg and "a bug" not in msg

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt
    monkeypatch.setattr(model_import, "save_outputs", interrupted)
    with pytest.raises(KeyboardInterrupt):  # not swallowed, but cleaned up after
        page_runs.import_model(runs, "model.json", blob)
    assert runs_left(runs) == []


@pytest.mark.parametrize("name", ["notmodel.json", f"hercules-{'a' * 32}-model.json", "model.json"])
def test_import_messages_name_the_users_file_as_given(tmp_path, name):
    runs = tmp_path / "runs"
    run_id, msg = page_runs.import_model(runs, name, data_url(b'{"levels": []}'))
    assert run_id is None and runs_left(runs) == []
    assert msg.startswith(f"{name} is not a HERCULES model JSON"), msg
    assert msg.count("model.json") == 1 and "notnot" not in msg


def test_user_text_replaces_whole_stored_names_only(tmp_path):
    rdir = tmp_path / "run"
    desc = {"names": ["notmodel.json"], "files": ["model.json"]}
    message = f"{rdir}/model.json is bad; model.json, xmodel.json and model.json.bak are other files"
    assert uploads.user_text(message, desc, rdir) == \
        "notmodel.json is bad; notmodel.json, xmodel.json and model.json.bak are other files"


# --------------------------------------------------------------------------- legitimate models

def test_a_legitimate_model_of_a_few_thousand_items_still_round_trips(tmp_path):
    h = full_hierarchy(make_text_dataset(3000), ks=(60, 12, 3), dim=32)
    h.assign_info = assignment_info(h)
    path = tmp_path / "m.json"
    io.save_model(h, path)
    g = io.load_model(path)
    assert_same_hierarchy(h, g)
    assert np.array_equal(g.assign_info["thresholds"], h.assign_info["thresholds"])
    runs = tmp_path / "runs"
    run_id, msg = page_runs.import_model(runs, "model.json", data_url(path.read_bytes()))
    assert runstore.valid_id(run_id) and "3,000 items" in msg
    assert runs_left(runs) == [run_id] and (runs / run_id / "status.json").is_file()


def test_a_consistent_model_too_big_to_open_is_refused_by_the_bounded_reader(tmp_path, monkeypatch):
    """Every shape agrees with the ids, so the header checks pass: 40,000 items x 4,096 zeros (655 MB
    decoded) from a file of a few MB. The import opens it in the bounded reader, which is stopped at its
    memory limit: a message, nothing left in runs/, and the web server never loads it."""
    h = make_hierarchy(make_text_dataset(40_000), (8, 3), dim=4)
    h.levels[0].vectors = np.zeros((40_000, 4096), dtype=np.float32)
    path = tmp_path / "m.json"
    io.save_model(h, path, items="inline")  # the zeros compress: a small file that decodes to 655 MB
    assert path.stat().st_size < 20 * 1024**2
    monkeypatch.setenv("HERCULES_READ_MEMORY_MB", "500")
    runs = tmp_path / "runs"
    run_id, msg = page_runs.import_model(runs, "huge-model.json", data_url(path.read_bytes()))
    assert run_id is None and runs_left(runs) == []
    assert msg == ("huge-model.json needs more than 0.5 GB of memory to read: open it with the command-line tool, "
                   "or ask the administrator to raise HERCULES_READ_MEMORY_MB."), msg
    monkeypatch.setenv("HERCULES_READ_MEMORY_MB", "4096")  # the default: it opens
    run_id, msg = page_runs.import_model(runs, "huge-model.json", data_url(path.read_bytes()))
    assert runstore.valid_id(run_id) and "40,000 items" in msg
