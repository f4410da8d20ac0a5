"""Bring your own embeddings (issue 18): a Parquet vector column or a .npy/.npz file, validated, used
as the items' representation of a text run; runs that embed no text build no text embedder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import model_registry
from hercules_core import ConfigError, Hercules, HerculesConfig, InputError, cost, load_model
from hercules_core import data as core_data
from hercules_run import cli
from hercules_run.spec import DataSpec, prepare

TOPICS = ["cats dogs pets and their owners", "stock market prices fall again", "rain snow and cold weather"]
N, D = 60, 12


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "cache"))


def _vectors(n: int = N) -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, D)).astype(np.float32) * 3
    return centres[np.arange(n) % 3] + rng.normal(size=(n, D)).astype(np.float32)


def _frame(n: int = N) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"i{k}" for k in range(n)], "text": [f"text {k} about {TOPICS[k % 3]}" for k in range(n)],
                         "label": [str(k % 3) for k in range(n)]})


def _parquet(path, vectors, fixed: bool = True, frame=None):
    frame = _frame(len(vectors)) if frame is None else frame
    table = pa.Table.from_pandas(frame, preserve_index=False)
    flat = pa.array(np.asarray(vectors).ravel())
    col = pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]) if fixed else \
        pa.array([list(map(float, v)) for v in vectors], type=pa.list_(pa.float64()))
    pq.write_table(table.append_column("emb", col), path)
    return path


def _cli(tmp_path, name, *args):
    out = tmp_path / name
    code = cli.main(["run", *map(str, args), "--levels", "6,2", "--llm", "keywords", "--reduce", "none",
                     "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_a_vector_column_and_a_npy_file_give_the_same_run_and_no_text_is_embedded(tmp_path, monkeypatch):
    built = []
    real = model_registry.get_text_embedder
    monkeypatch.setattr(model_registry, "get_text_embedder", lambda *a, **k: built.append(a) or real(*a, **k))
    X = _vectors()
    _parquet(tmp_path / "d.parquet", X)
    _frame().to_csv(tmp_path / "d.csv", index=False)
    np.save(tmp_path / "v.npy", X)
    a = _cli(tmp_path, "col", tmp_path / "d.parquet", "--vector-column", "emb", "--id-column", "id",
             "--labels-column", "label", "--embedder", "fake-hash")
    b = _cli(tmp_path, "npy", tmp_path / "d.csv", "--vectors", tmp_path / "v.npy", "--id-column", "id",
             "--labels-column", "label", "--embedder", "fake-hash")
    assert (a / "memberships.csv").read_bytes() == (b / "memberships.csv").read_bytes()
    assert built == []  # the embedder asked for was not built: nothing needed it
    h = load_model(a / "model.json")
    assert h.dataset.modality == "text" and h.dataset.texts[0].startswith("text 0")
    np.testing.assert_allclose(h.levels[0].vectors, X, rtol=1e-6)  # clustered as given: no z-scaling
    assert h.stats["models"]["text_embedder"] is None
    assert any("own 12-d vectors" in n for n in h.stats["notes"])
    assert h.evaluation[1]["adjusted_rand_score"] is not None


def test_a_list_column_of_doubles_reads_as_float32_and_the_estimate_embeds_nothing(tmp_path):
    X = _vectors()
    _parquet(tmp_path / "d.parquet", X, fixed=False)
    ds = prepare(DataSpec(files=(str(tmp_path / "d.parquet"),), kind="table", vector_column="emb",
                          text_column="text", id_column="id"))
    assert ds.embeddings.dtype == np.float32 and ds.embeddings.shape == (N, D) and ds.modality == "text"
    est = cost.estimate_run(ds, HerculesConfig(level_cluster_counts=(6, 2)), llm_id="keywords",
                            with_text_embedder=True)
    assert est["texts_to_embed"] == 0
    plain = cost.estimate_run(core_data.prepare(_frame(), text_column="text"), HerculesConfig(level_cluster_counts=(6, 2)),
                              llm_id="keywords")
    assert plain["texts_to_embed"] >= N


def test_empty_texts_drop_their_vectors_too():
    frame = _frame()
    frame.loc[5, "text"] = ""
    X = _vectors()
    ds = core_data.prepare(frame, text_column="text", id_column="id", vectors=X)
    assert len(ds) == N - 1 and "i5" not in ds.ids
    np.testing.assert_array_equal(ds.embeddings[5], X[6])


@pytest.mark.parametrize("case, message", [
    ("lengths", "differ in length"),
    ("nan", "NaN or infinite"),
    ("rows", "60 items but 59 vectors"),
    ("strings", "not lists of numbers"),
    ("missing", "no vector in rows 4"),
    ("csv", "Parquet"),
])
def test_bad_vectors_are_refused_with_what_to_do(tmp_path, case, message):
    X = _vectors()
    path = tmp_path / "d.parquet"
    spec = dict(files=(str(path),), kind="table", vector_column="emb", text_column="text")
    if case == "lengths":
        table = pa.Table.from_pandas(_frame(), preserve_index=False)
        rows = [list(map(float, v)) for v in X]
        rows[7] = rows[7][:-1]
        pq.write_table(table.append_column("emb", pa.array(rows)), path)
    elif case == "nan":
        X[3, 2] = np.nan
        _parquet(path, X)
    elif case == "rows":
        _frame().to_csv(tmp_path / "d.csv", index=False)
        np.save(tmp_path / "v.npy", X[:-1])
        spec = dict(files=(str(tmp_path / "d.csv"),), kind="table", vectors_file=str(tmp_path / "v.npy"),
                    text_column="text")
    elif case == "strings":
        pq.write_table(pa.Table.from_pandas(_frame().assign(emb="x"), preserve_index=False), path)
    elif case == "missing":
        rows = [list(map(float, v)) for v in X]
        rows[3] = None
        pq.write_table(pa.Table.from_pandas(_frame(), preserve_index=False).append_column("emb", pa.array(rows)), path)
    else:
        _frame().to_csv(tmp_path / "d.csv", index=False)
        spec["files"] = (str(tmp_path / "d.csv"),)
    with pytest.raises(InputError, match=message):
        prepare(DataSpec(**spec))


def test_own_vectors_with_numeric_columns_or_twice_are_refused():
    with pytest.raises(InputError, match="represent texts"):
        DataSpec(files=("d.parquet",), kind="table", vector_column="emb", numeric_columns=("a",))
    with pytest.raises(InputError, match="given twice"):
        DataSpec(files=("d.parquet",), kind="table", vector_column="emb", vectors_file="v.npy")


def test_description_mode_needs_a_text_embedder_even_with_own_vectors():
    ds = core_data.prepare(_frame(), text_column="text", vectors=_vectors())
    cfg = HerculesConfig(level_cluster_counts=(6, 2), representation_mode="description", reduce_method="none")
    with pytest.raises(ConfigError, match="needs a text embedder"):
        Hercules(cfg).fit(ds)
    Hercules(dataclass_replace(cfg, representation_mode="direct")).fit(ds)  # direct mode needs none


def dataclass_replace(cfg, **kw):
    import dataclasses

    return dataclasses.replace(cfg, **kw)


def test_a_numeric_run_builds_no_text_embedder_and_embeds_no_descriptions(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a numeric direct run must not build a text embedder")

    monkeypatch.setattr(model_registry, "get_text_embedder", refuse)
    rng = np.random.default_rng(1)
    pd.DataFrame(rng.normal(size=(50, 4)), columns=list("abcd")).to_csv(tmp_path / "n.csv", index=False)
    out = _cli(tmp_path, "num", tmp_path / "n.csv", "--embedder", "minilm")
    h = load_model(out / "model.json")
    assert all(lv.desc_embeddings is None for lv in h.levels)
    assert any("was not loaded" in n for n in h.stats["notes"])
