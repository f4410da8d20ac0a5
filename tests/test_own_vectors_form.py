"""Bring your own embeddings through the app (issue 18 item 2): the new-run form offers a Parquet
table's vector columns (told from the schema) and a .npy/.npz beside a CSV or .txt upload; a run
started from the form is the command line's run with ``--vector-column`` / ``--vectors``; problems
with the vectors are form messages; the estimate counts no embedding of items."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from callbacks import configform, job, page_new_run, runstore, uploads
from hercules_core import InputError
from hercules_core import data as core_data
from hercules_run import cli
from tests.test_app_logic import data_url

TOPICS = ["cats dogs pets and their owners", "stock market prices fall again", "rain snow and cold weather"]
N, D = 45, 8
MODELS = {"text_embedder": "fake-hash", "llm": "keywords"}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "cache"))


def _vectors(n: int = N) -> np.ndarray:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, D)).astype(np.float32) * 3
    # the clusters of the vectors cut across the texts' topics: a run on the texts would differ
    return centres[(np.arange(n) // 3) % 3] + rng.normal(size=(n, D)).astype(np.float32)


def _frame(n: int = N) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"i{k}" for k in range(n)], "text": [f"text {k} about {TOPICS[k % 3]}" for k in range(n)],
                         "score": np.arange(n) * 0.5})


def _parquet(vectors: np.ndarray, extra: bool = False) -> bytes:
    table = pa.Table.from_pandas(_frame(len(vectors)), preserve_index=False)
    table = table.append_column("emb", pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]))
    if extra:
        table = table.append_column("emb64", pa.array([list(map(float, v)) for v in vectors], type=pa.list_(pa.float64())))
        table = table.append_column("tags", pa.array([["a", "b"]] * len(vectors), type=pa.list_(pa.string())))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _npy(vectors: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, vectors)
    return buf.getvalue()


def _csv(n: int = N) -> bytes:
    return _frame(n).to_csv(index=False).encode()


def _stage_vectors(runs, name: str, blob: bytes) -> dict:
    upload_id = uploads.put_bytes(runs, "vectors", [name], [blob])
    return uploads.stage_side(runs, {"upload_id": upload_id}, "vectors")


def _choice(desc, vector_column=None) -> dict:
    """The form's preselected columns, and the vector column the user picks."""
    sug = desc.get("suggest") or {}
    return page_new_run.form_choice(sug.get("what"), sug.get("text_column"), sug.get("numeric_columns"),
                                    sug.get("id_column"), sug.get("label_column"), desc.get("txt_mode"), vector_column)


def _app_run(runs, desc, choice, vectors=None):
    spec = uploads.data_spec(uploads.load_descriptor(runs, {"upload_id": desc["upload_id"]}), vectors=vectors,
                             runs_dir=runs, **choice)
    cfg = configform.config_from_form({"levels_text": "6,2"}, "fixed")
    run_id = job.create_run(runs, spec, cfg, MODELS)
    status = job.run(runs, run_id)
    assert status["state"] == "done", status
    return runstore.run_dir(runs, run_id)


def _cli_run(tmp_path, name, *args):
    out = tmp_path / name
    assert cli.main(["run", *map(str, args), "--levels", "6,2", "--embedder", "fake-hash", "--llm", "keywords",
                     "--out", str(out), "--quiet"]) == 0
    return out


def test_the_form_lists_only_the_vector_columns(tmp_path):
    runs = tmp_path / "runs"
    desc = uploads.stage(runs, ["d.parquet"], [data_url(_parquet(_vectors(), extra=True))])
    assert desc["vector_columns"] == ["emb", "emb64"]  # not the strings, the numbers or the list of strings
    shown = page_new_run.upload_outputs(runs, {"upload_id": desc["upload_id"]})
    assert [o["value"] for o in shown["vector_opts"]] == ["", "emb", "emb64"] and shown["vector"] == ""
    assert shown["vector_box"] != page_new_run.HIDDEN
    # the vectors are neither text, id, label nor numeric choices, nor read for the preview
    for key in ("text_opts", "num_opts", "id_opts", "label_opts"):
        assert not {"emb", "emb64"} & {o["value"] for o in shown[key]}, key
    rows, columns = uploads.preview_rows(runs, {"upload_id": desc["upload_id"]})
    assert "emb" not in columns and "emb" not in rows[0] and "text" in columns
    assert shown["text"] == "text"

    csv = uploads.stage(runs, ["d.csv"], [data_url(_csv())])
    shown = page_new_run.upload_outputs(runs, {"upload_id": csv["upload_id"]})
    assert shown["vector_box"] == page_new_run.HIDDEN and [o["value"] for o in shown["vector_opts"]] == [""]
    with pytest.raises(InputError, match="holds no vectors"):  # a browser value naming another column
        uploads.data_spec(uploads.load_descriptor(runs, {"upload_id": desc["upload_id"]}),
                          **_choice(desc, "score"))


def test_vector_columns_are_told_from_the_schema_alone(tmp_path, monkeypatch):
    path = tmp_path / "d.parquet"
    path.write_bytes(_parquet(_vectors(), extra=True))
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", lambda *a, **k: pytest.fail("the data was read"))
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: pytest.fail("the data was read"))
    assert core_data.vector_columns(path) == ["emb", "emb64"]
    assert core_data.vector_columns(tmp_path / "d.csv") == []


def test_a_vector_column_through_the_form_is_the_cli_run(tmp_path):
    blob = _parquet(_vectors())
    (tmp_path / "d.parquet").write_bytes(blob)
    out = _cli_run(tmp_path, "cli", tmp_path / "d.parquet", "--vector-column", "emb", "--text-column", "text",
                   "--id-column", "id")
    runs = tmp_path / "runs"
    desc = uploads.stage(runs, ["d.parquet"], [data_url(blob)])
    app = _app_run(runs, desc, _choice(desc, "emb"))
    assert (app / "memberships.csv").read_bytes() == (out / "memberships.csv").read_bytes()
    # and the vectors mattered: the same upload clustered on its texts is another run
    texts = _app_run(runs, desc, _choice(desc))
    assert (texts / "memberships.csv").read_bytes() != (app / "memberships.csv").read_bytes()


def test_a_npy_beside_a_csv_through_the_form_is_the_cli_run(tmp_path):
    X = _vectors()
    (tmp_path / "d.csv").write_bytes(_csv())
    np.save(tmp_path / "v.npy", X)
    out = _cli_run(tmp_path, "cli", tmp_path / "d.csv", "--vectors", tmp_path / "v.npy", "--text-column", "text",
                   "--id-column", "id")
    runs = tmp_path / "runs"
    desc = uploads.stage(runs, ["d.csv"], [data_url(_csv())])
    side = _stage_vectors(runs, "v.npy", _npy(X))
    assert (side["n"], side["dim"]) == (N, D)
    app = _app_run(runs, desc, _choice(desc), vectors={"upload_id": side["upload_id"]})
    assert (app / "memberships.csv").read_bytes() == (out / "memberships.csv").read_bytes()


def test_the_estimate_counts_no_embedding_of_items(tmp_path):
    runs = tmp_path / "runs"
    desc = uploads.stage(runs, ["d.parquet"], [data_url(_parquet(_vectors()))])

    def shown(vector_column):
        choice = _choice(desc, vector_column)
        what = choice.pop("what")
        return page_new_run.cost_preview({"upload_id": desc["upload_id"]}, what, {"levels_text": "6,2"}, "fixed",
                                         MODELS, True, runs, choice).children

    assert f"; {N + 16} texts to embed;" in shown(None)  # the items, each cluster's text and title
    assert "; 0 texts to embed;" in shown("emb")


def test_problems_with_the_vectors_are_form_messages(tmp_path):
    runs = tmp_path / "runs"
    bad = _vectors()
    bad[4, 2] = np.nan
    with pytest.raises(InputError, match=r"my vectors\.npy has 1 vectors with NaN or infinite values \(rows 5"):
        _stage_vectors(runs, "my vectors.npy", _npy(bad))
    with pytest.raises(Exception, match="not a vectors file"):
        uploads.begin(runs, "vectors", ["v.csv"], [10])

    desc = uploads.stage(runs, ["d.csv"], [data_url(_csv())])
    short = _stage_vectors(runs, "short.npy", _npy(_vectors(N - 5)))
    choice = _choice(desc)
    what = choice.pop("what")
    msg = page_new_run.cost_preview({"upload_id": desc["upload_id"]}, what, {"levels_text": "6,2"}, "fixed", MODELS,
                                    True, runs, dict(choice, vectors={"upload_id": short["upload_id"]}))
    assert msg.className == "text-danger config-error"
    assert msg.children == f"short.npy holds {N - 5:,} vectors but d.csv has {N:,} rows: give one vector per row, " \
                           "in the table's order."
    _, message = page_new_run.start_run(runs, True, None, {"upload_id": desc["upload_id"]}, None,
                                        dict(choice, what=what), {"levels_text": "6,2"}, "fixed", MODELS,
                                        vectors={"upload_id": short["upload_id"]})
    assert "holds 40 vectors" in message.children and "start-error" in message.className

    # a list column whose vectors differ in length: told before the start, as the run would
    table = pa.Table.from_pandas(_frame(6), preserve_index=False).append_column(
        "emb", pa.array([[1.0, 2.0]] * 5 + [[1.0]], type=pa.list_(pa.float32())))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    ragged = uploads.stage(runs, ["r.parquet"], [data_url(buf.getvalue())])
    choice = _choice(ragged, "emb")
    what = choice.pop("what")
    msg = page_new_run.cost_preview({"upload_id": ragged["upload_id"]}, what, {"levels_text": "2"}, "fixed", MODELS,
                                    True, runs, choice)
    assert "differ in length" in msg.children and "r.parquet" in msg.children and "f00000" not in msg.children
