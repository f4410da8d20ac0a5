"""Item-level arrays in a columnar file beside model.json (issue 18, "data that is not JSON"): round
trips bit-identical, old all-JSON models load unchanged, one-file bundles, forged items files and
bundles refused before anything is read, edits keep the items file, the app imports, opens and
downloads a columnar run."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from callbacks import page_runs, runstore
from callbacks.context import AppContext
from hercules_core import columnar, io
from hercules_core.assign import assignment_info
from hercules_core.edits import edit_cluster
from hercules_core.errors import ModelFileError
from devkit.factories import make_hierarchy, make_numeric_dataset, make_text_dataset, run_in_state
from tests.test_app_logic import data_url
from tests.test_io import assert_same_hierarchy, full_hierarchy
from tests.test_model_bombs import runs_left

DATA = Path(__file__).parent / "data"


def text_model():
    ds = make_text_dataset(90)
    ds.texts[3] = "=cmd|' /C calc'!A0 ünïcödé \udcff"  # a lone surrogate, as read with surrogateescape
    h = full_hierarchy(ds, ks=(9, 4, 2))
    h.reducers["clustering"] = {"version": 1, "method": "umap", "items": np.ones((90, 5), np.float32),
                                "centroids_L1": np.zeros((9, 5), np.float32)}
    h.assign_info = assignment_info(h)
    return h


def items_files(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("*.items-*.arrow"))


@pytest.fixture
def saved(tmp_path):
    h = text_model()
    path = tmp_path / "model.json"
    io.save_model(h, path, items="columnar")
    return h, path


# --------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("kind", ["text", "numeric"])
def test_columnar_round_trip_is_bit_identical_and_maps_the_vectors(tmp_path, kind):
    h = text_model() if kind == "text" else full_hierarchy(make_numeric_dataset(90, p=4), ks=(9, 4, 2), dim=4)
    path = tmp_path / "model.json"
    io.save_model(h, path, items="columnar")
    g = io.load_model(path)
    assert_same_hierarchy(h, g)
    assert (g.assign_info or {}).keys() == (h.assign_info or {}).keys() and g.reducers.keys() == h.reducers.keys()
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == io.SCHEMA_VERSION == 2 and doc["items"]["rows"] == 90
    # the JSON holds no item-level value; the items file holds them, one column each
    assert doc["dataset"]["ids"] == {"column": "id"} and doc["levels"][0]["vectors"] == {"column": "vector"}
    assert len(path.read_bytes()) < 40_000
    [name] = items_files(tmp_path)
    assert doc["items"]["file"] == name and doc["items"]["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
    table = pa.ipc.open_file(pa.memory_map(str(tmp_path / name))).read_all()
    assert table.num_rows == 90 and table.column("id").to_pylist() == h.dataset.ids
    # readers get the memberships as dictionary columns named like memberships.csv's
    assert table.column("L3_cluster_id").to_pylist() == [h.levels[3].ids[j] for j in h.assignments(3)]
    # 2-D arrays are views of the mapped file, not copies (and cannot be written by mistake)
    assert not g.levels[0].vectors.flags.writeable and not g.levels[0].vectors.flags.owndata
    assert g.levels[0].parent.flags.writeable  # small 1-D arrays are ordinary copies


def test_auto_is_inline_up_to_the_threshold_and_columnar_above(tmp_path, monkeypatch):
    monkeypatch.setattr(columnar, "INLINE_MAX_ITEMS", 89)
    h = text_model()
    io.save_model(h, tmp_path / "a.json")
    assert json.loads((tmp_path / "a.json").read_text())["schema_version"] == 2 and items_files(tmp_path)
    monkeypatch.setattr(columnar, "INLINE_MAX_ITEMS", 90)
    io.save_model(h, tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text())["schema_version"] == 1
    assert items_files(tmp_path) == [n for n in items_files(tmp_path) if n.startswith("a.")]
    # saving a columnar model inline to the same path removes its items file, and vice versa
    io.save_model(h, tmp_path / "a.json", items="inline")
    assert items_files(tmp_path) == []
    assert_same_hierarchy(h, io.load_model(tmp_path / "a.json"))
    with pytest.raises(ValueError, match="items must be one of"):
        io.save_model(h, tmp_path / "c.json", items="parquet")


def test_without_item_vectors(tmp_path):
    h = text_model()
    io.save_model(h, tmp_path / "m.json", items="columnar", include_item_vectors=False)
    assert_same_hierarchy(h, io.load_model(tmp_path / "m.json"), l0_vectors=False)


@pytest.mark.parametrize("name", ["model_v1_text.json", "model_v1_numeric.json"])
def test_models_saved_before_the_change_load_unchanged(name):
    """tests/data/model_v1_*.json were written by the all-JSON code (schema 1) before this change;
    model_v1_fingerprints.json holds what that code loaded from them."""
    expected = json.loads((DATA / "model_v1_fingerprints.json").read_text())[name]
    got = json.loads(json.dumps(fingerprint(io.load_model(DATA / name)), sort_keys=True))
    assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


def test_an_old_model_saved_again_round_trips_both_ways(tmp_path):
    h = io.load_model(DATA / "model_v1_text.json")
    io.save_model(h, tmp_path / "model.json", items="columnar")
    assert_same_hierarchy(h, io.load_model(tmp_path / "model.json"))


def fingerprint(h):
    """sha256 of every array (dtype, shape, bytes) and of every list of strings a hierarchy holds
    (the function that wrote model_v1_fingerprints.json with the old code)."""
    def a(x):
        return None if x is None else f"{x.dtype}{list(x.shape)}:" + hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()

    def s(x):
        return None if x is None else hashlib.sha256(json.dumps(list(x)).encode()).hexdigest()

    ds = h.dataset
    out = {"dataset": {f: s(getattr(ds, f)) for f in ("ids", "texts", "image_paths", "labels", "feature_names")}
           | {f: a(getattr(ds, f)) for f in ("numeric", "numeric_raw", "scaler_mean", "scaler_scale")}}
    for lv in h.levels:
        out[f"L{lv.level}"] = {f: a(getattr(lv, f)) for f in ("parent", "size", "fallback", "vectors", "desc_embeddings")} \
            | {f: s(getattr(lv, f)) for f in ("ids", "titles", "descriptions", "sources")} \
            | {f"reductions.{k}": a(v) for k, v in lv.reductions.items()}
    out["reducers"] = {sp: {k: a(v) if isinstance(v, np.ndarray) else v for k, v in p.items()}
                       for sp, p in h.reducers.items()}
    out["assign"] = {k: a(v) if isinstance(v, np.ndarray) else v for k, v in (h.assign_info or {}).items()}
    out["edits"], out["evaluation"] = h.edits, json.loads(json.dumps(h.evaluation, default=str))
    return out


# --------------------------------------------------------------------------- edits

def test_edits_rewrite_the_json_and_keep_the_items_file(saved):
    h, path = saved
    [name] = items_files(path.parent)
    before = (path.parent / name).stat()
    edit_cluster(path, "L2_1", title="Weather", description="Rain.")
    edit_cluster(path, "L1_0", title="Cats", description="Pets.")
    g = io.load_model(path)
    assert (g.cluster("L2_1").title, g.cluster("L1_0").title, g.cluster("L1_0").source) == ("Weather", "Cats", "edited")
    assert items_files(path.parent) == [name] and (path.parent / name).stat().st_mtime_ns == before.st_mtime_ns
    assert g.levels[0].titles == h.levels[0].titles and np.array_equal(g.levels[0].vectors, h.levels[0].vectors)


def test_edits_of_an_old_model_keep_it_one_json(tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes((DATA / "model_v1_text.json").read_bytes())
    edit_cluster(path, "L1_1", title="Edited", description="By hand.")
    assert json.loads(path.read_text())["schema_version"] == 1 and items_files(tmp_path) == []
    assert io.load_model(path).cluster("L1_1").title == "Edited"


# --------------------------------------------------------------------------- bundles

def test_a_bundle_carries_the_whole_model_and_loads_in_place(saved, tmp_path):
    h, path = saved
    bundle = tmp_path / "m.hercules"
    columnar.write_bundle(path, bundle)
    with zipfile.ZipFile(bundle) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    [name] = items_files(path.parent)
    assert set(infos) == {"model.json", name} and infos[name].compress_type == zipfile.ZIP_STORED
    g = io.load_model(bundle)
    assert_same_hierarchy(h, g)
    assert not g.levels[0].vectors.flags.owndata  # mapped inside the ZIP, nothing extracted
    out = tmp_path / "unpacked"
    out.mkdir()
    assert_same_hierarchy(h, io.load_model(columnar.extract_bundle(bundle, out)))


def test_missing_items_file_says_what_to_do(saved):
    _, path = saved
    for p in path.parent.glob("*.arrow"):
        p.unlink()
    with pytest.raises(ModelFileError, match=r"keeps its items in model\.items-[0-9a-f]{16}\.arrow, which is "
                                             r"missing: copy it beside the model, or download the run's \.hercules"):
        io.load_model(path)


# --------------------------------------------------------------------------- forged items files

def rewrite_items(path: Path, table: pa.Table, **declare) -> None:
    """Replace the model's items file by ``table`` with a matching size and sha256 (what a forger
    would do), and optionally change the declarations in the JSON."""
    doc = json.loads(path.read_text())
    ref = doc["items"]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table)
    data = sink.getvalue().to_pybytes()
    (path.parent / ref["file"]).write_bytes(data)
    ref.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    for k, v in declare.items():
        ref["columns"][k] = v
    path.write_text(json.dumps(doc))


def current_table(path: Path) -> pa.Table:
    ref = json.loads(path.read_text())["items"]
    return pa.ipc.open_file(pa.memory_map(str(path.parent / ref["file"]))).read_all()


def test_a_changed_byte_fails_the_sha256(saved):
    _, path = saved
    [name] = items_files(path.parent)
    data = bytearray((path.parent / name).read_bytes())
    data[len(data) // 2] ^= 1
    (path.parent / name).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="does not match the model \\(sha256 differs\\)"):
        io.load_model(path)


def test_a_truncated_items_file_is_refused_by_its_size(saved):
    _, path = saved
    [name] = items_files(path.parent)
    p = path.parent / name
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(ModelFileError, match="bytes, the model says .*truncated or belongs to another model"):
        io.load_model(path, verify=False)


def test_vectors_wider_than_declared_are_refused(saved):
    _, path = saved
    t = current_table(path)
    wide = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(90 * 4096, np.float32)), 4096)
    rewrite_items(path, t.set_column(t.schema.get_field_index("vector"), "vector", wide))
    with pytest.raises(ModelFileError, match=r"items column 'vector' is fixed_size_list<item: float>\[4096\], "
                                             r"the model declares fixed_size_list<item: float>\[16\]"):
        io.load_model(path)


def test_more_rows_than_declared_are_refused(saved):
    _, path = saved
    t = current_table(path)
    rewrite_items(path, pa.concat_tables([t, t.slice(0, 10)]))
    with pytest.raises(ModelFileError, match="holds 100 rows, the model declares 90"):
        io.load_model(path)


@pytest.mark.parametrize("decl, message", [
    ({"dtype": "float32", "shape": [90, 800_000_000]}, "a stored vector has 1 to 65,536 values"),
    ({"dtype": "float32", "shape": [800_000_000, 16]}, "declares 800,000,000 rows but the items file has 90"),
    ({"dtype": "complex", "shape": [90, 16]}, "invalid dtype or shape"),
])
def test_forged_declarations_are_refused_before_reading(saved, decl, message, monkeypatch):
    _, path = saved
    rewrite_items(path, current_table(path), vector=decl)
    monkeypatch.setattr(pa.ipc, "open_file", lambda *a, **k: pytest.fail("read a forged items file"))
    with pytest.raises(ModelFileError, match=message):
        io.load_model(path)


def test_cluster_columns_must_agree_with_the_hierarchy(saved):
    _, path = saved
    t = current_table(path)
    col = t.column("L2_cluster_id").combine_chunks()
    swapped = pa.DictionaryArray.from_arrays(pa.array(np.roll(col.indices.to_numpy(), 1)), col.dictionary)
    rewrite_items(path, t.set_column(t.schema.get_field_index("L2_cluster_id"), "L2_cluster_id", swapped))
    with pytest.raises(ModelFileError, match="L2_cluster_id disagrees with the hierarchy"):
        io.load_model(path)


@pytest.mark.parametrize("file", ["../x.items-0123456789abcdef.arrow", "/etc/passwd", "model.json",
                                  "sub/m.items-0123456789abcdef.arrow"])
def test_the_reference_names_a_plain_file_beside_the_model(saved, file):
    _, path = saved
    doc = json.loads(path.read_text())
    doc["items"]["file"] = file
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="the \"items\" reference is damaged"):
        io.load_model(path)


# --------------------------------------------------------------------------- forged bundles

def zip_of(path: Path, entries: dict[str, bytes], stored: bool = True) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return path


def bundle_entries(path: Path) -> dict[str, bytes]:
    [name] = items_files(path.parent)
    return {"model.json": path.read_bytes(), name: (path.parent / name).read_bytes()}


@pytest.mark.parametrize("change, message", [
    (lambda e: {f"../{k}": v for k, v in e.items()}, "unsafe entry|must hold model.json"),
    (lambda e: {("/tmp/model.json" if k == "model.json" else k): v for k, v in e.items()}, "unsafe entry|must hold"),
    (lambda e: {**e, "extra.txt": b"x"}, "and nothing else"),
    (lambda e: {k: v for k, v in e.items() if k == "model.json"}, "the bundle holds no items file"),
])
def test_forged_bundles_are_refused(saved, tmp_path, change, message):
    _, path = saved
    bundle = zip_of(tmp_path / "f.hercules", change(bundle_entries(path)))
    with pytest.raises(ModelFileError, match=message):
        io.load_model(bundle)


def test_a_deflated_items_entry_is_refused(saved, tmp_path):
    _, path = saved
    bundle = zip_of(tmp_path / "f.hercules", bundle_entries(path), stored=False)
    with pytest.raises(ModelFileError, match="must be stored uncompressed"):
        io.load_model(bundle)


def test_a_bundle_whose_items_differ_from_its_model_is_refused(saved, tmp_path):
    _, path = saved
    entries = bundle_entries(path)
    name = next(k for k in entries if k != "model.json")
    data = bytearray(entries[name])
    data[-200] ^= 1
    bundle = zip_of(tmp_path / "f.hercules", {**entries, name: bytes(data)})
    with pytest.raises(ModelFileError, match="sha256 differs"):
        io.load_model(bundle)


# --------------------------------------------------------------------------- the app

def test_the_app_imports_opens_and_downloads_a_bundle(saved, tmp_path):
    h, path = saved
    bundle = tmp_path / "m.hercules"
    columnar.write_bundle(path, bundle)
    runs = tmp_path / "runs"
    run_id, msg = page_runs.import_model(runs, "my model.hercules", data_url(bundle.read_bytes()))
    assert runstore.valid_id(run_id), msg
    assert "90 items" in msg
    rdir = runs / run_id
    assert (rdir / "model.json").is_file() and items_files(rdir) and not list(rdir.glob("*.hercules"))
    assert (rdir / "memberships.csv").is_file()
    ctx = AppContext(runs_dir=runs)
    em = ctx.model(run_id)
    assert_same_hierarchy(h, em.h)
    assert em.xy(0, "representation").shape == (90, 2)
    # the run's model download is the bundle, which loads as the same model
    from app import create_app

    app = create_app(runs)
    r = app.server.test_client().get(f"/files/{run_id}/download/model.json")
    assert r.status_code == 200 and f"hercules-{run_id}-model.hercules" in r.headers["Content-Disposition"]
    (tmp_path / "d.hercules").write_bytes(r.data)
    assert_same_hierarchy(h, io.load_model(tmp_path / "d.hercules"))


def test_a_forged_bundle_import_leaves_nothing_and_says_why(saved, tmp_path):
    _, path = saved
    entries = bundle_entries(path)
    bundle = zip_of(tmp_path / "f.hercules", {**entries, "../../evil.json": b"{}"})
    runs = tmp_path / "runs"
    run_id, msg = page_runs.import_model(runs, "evil.hercules", data_url(bundle.read_bytes()))
    assert run_id is None and runs_left(runs) == []
    assert "evil.hercules" in msg and str(runs) not in msg, msg


def test_an_inline_run_downloads_its_json(tmp_path):
    runs = tmp_path / "runs"
    run_id = runstore.new_id()
    rdir = runs / run_id
    run_in_state(rdir, runstore.DONE)
    io.save_model(make_hierarchy(), rdir / "model.json")
    from app import create_app

    r = create_app(runs).server.test_client().get(f"/files/{run_id}/download/model.json")
    assert r.status_code == 200 and f"hercules-{run_id}-model.json" in r.headers["Content-Disposition"]
    assert json.loads(r.data)["schema_version"] == 1
