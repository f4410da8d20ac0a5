"""One data spec: the same file through the command line and the app gives the same run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from callbacks import configform, job, page_new_run, runstore, uploads
from hercules_core import HerculesConfig, InputError, load_model
from hercules_run import cli
from hercules_run.pipeline import ModelIds
from hercules_run.spec import DataSpec, RunSpec, settings_summary
from tests.test_app_logic import data_url

TOPICS = ["cats dogs pets and their owners", "stock market prices fall again", "rain snow and cold weather"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "cache"))


def _text_table() -> bytes:
    rows = [f"{i},text {i} about {TOPICS[i % 3]},{i % 3},{i * 0.5}" for i in range(45)]
    return ("id,text,label,score\n" + "\n".join(rows) + "\n").encode()


def _lines() -> bytes:
    return "\n".join(f"line {i} about {TOPICS[i % 3]}" + ("\n" if i % 7 == 0 else "") for i in range(45)).encode()


def _numeric() -> tuple[bytes, bytes, bytes]:
    rng = np.random.default_rng(0)
    rows = [f"r{i},{rng.normal(i % 3 * 5):.3f},{rng.normal():.3f},{rng.normal(10 + i % 3):.3f}" for i in range(45)]
    labels = "id,label\n" + "".join(f"r{i},{'abc'[i % 3]}\n" for i in range(45))
    meta = {"weight": {"unit": "kg", "description": "body weight"}}
    return ("id,weight,height,age\n" + "\n".join(rows) + "\n").encode(), labels.encode(), json.dumps(meta).encode()


def _cli_run(tmp_path, files: list, *flags) -> tuple[int, object]:
    out = tmp_path / "cli"
    code = cli.main(["run", *map(str, files), *map(str, flags), "--levels", "6,2", "--embedder", "fake-hash", "--llm",
                     "keywords", "--out", str(out), "--quiet"])
    return code, out


def _app_run(tmp_path, names, blobs, labels=None, metadata=None, **overrides):
    """Stage the upload and build the spec as the new-run page does: its preselected columns."""
    runs = tmp_path / "runs"
    desc = uploads.stage(runs, names, [data_url(b) for b in blobs])
    sug = desc.get("suggest") or {}
    choice = page_new_run.form_choice(sug.get("what"), sug.get("text_column"), sug.get("numeric_columns"),
                                      sug.get("id_column"), sug.get("label_column"), desc.get("txt_mode"))
    choice.update(overrides)
    lref = uploads.stage_labels(runs, labels[0], data_url(labels[1])) if labels else None
    mref = uploads.stage_metadata(runs, metadata[0], data_url(metadata[1])) if metadata else None
    spec = uploads.data_spec(uploads.load_descriptor(runs, {"upload_id": desc["upload_id"]}),
                             labels=lref and {"upload_id": lref["upload_id"]},
                             metadata=mref and {"upload_id": mref["upload_id"]}, runs_dir=runs, **choice)
    cfg = configform.config_from_form({"levels_text": "6,2"}, "fixed")
    run_id = job.create_run(runs, spec, cfg, {"text_embedder": "fake-hash", "llm": "keywords"})
    status = job.run(runs, run_id)
    assert status["state"] == "done", status
    return runstore.run_dir(runs, run_id)


def _same_run(app_dir, cli_dir):
    assert (app_dir / "memberships.csv").read_bytes() == (cli_dir / "memberships.csv").read_bytes()
    a, c = load_model(app_dir / "model.json").dataset, load_model(cli_dir / "model.json").dataset
    assert (a.ids, a.labels, a.modality, a.source) == (c.ids, c.labels, c.modality, c.source)
    return a


def test_a_table_of_texts_through_both_doors(tmp_path):
    (tmp_path / "d.csv").write_bytes(_text_table())
    code, out = _cli_run(tmp_path, [tmp_path / "d.csv"], "--id-column", "id", "--labels-column", "label")
    assert code == 0
    ds = _same_run(_app_run(tmp_path, ["d.csv"], [_text_table()]), out)
    assert ds.ids[:2] == ["0", "1"] and ds.labels[:2] == ["0", "1"] and ds.texts[0].startswith("text 0")


def test_a_txt_file_one_item_per_line_through_both_doors(tmp_path):
    (tmp_path / "notes.txt").write_bytes(_lines())
    code, out = _cli_run(tmp_path, [tmp_path / "notes.txt"])  # one file: one item per line by default
    assert code == 0
    ds = _same_run(_app_run(tmp_path, ["notes.txt"], [_lines()]), out)
    assert len(ds) == 45 and ds.ids[:3] == ["1", "3", "4"]  # line numbers; the blank line is no item


def test_a_numeric_table_with_a_labels_file_and_metadata_through_both_doors(tmp_path):
    table, labels, meta = _numeric()
    for name, blob in (("d.csv", table), ("labels.csv", labels), ("meta.json", meta)):
        (tmp_path / name).write_bytes(blob)
    code, out = _cli_run(tmp_path, [tmp_path / "d.csv"], "--id-column", "id", "--labels-file",
                         tmp_path / "labels.csv", "--numeric-metadata", tmp_path / "meta.json")
    assert code == 0
    app_dir = _app_run(tmp_path, ["d.csv"], [table], labels=("labels.csv", labels), metadata=("meta.json", meta))
    ds = _same_run(app_dir, out)
    assert ds.modality == "numeric" and ds.feature_names == ["weight", "height", "age"]
    assert ds.labels[:3] == ["a", "b", "c"] and ds.numeric_metadata == {"weight": {"unit": "kg",
                                                                                   "description": "body weight"}}
    assert load_model(out / "model.json").dataset.numeric_metadata == ds.numeric_metadata


def test_txt_mode_is_one_option_in_both_doors(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("first text\n\nsecond")
    b.write_text("third")
    args = cli.build_parser().parse_args(["run", str(a), str(b), "--out", str(tmp_path / "o")])
    assert cli.data_spec(args).txt_mode == "file"  # several files: one item per file, as the app's default
    args = cli.build_parser().parse_args(["run", str(a), str(b), "--txt-mode", "line", "--out", "x"])
    spec = cli.data_spec(args)
    from hercules_run.spec import prepare

    assert prepare(spec).ids == ["a:1", "a:3", "b:1"]
    desc = uploads.stage(tmp_path / "runs", ["a.txt", "b.txt"], [data_url(b"first text\n\nsecond"),
                                                                 data_url(b"third")])
    assert desc["txt_mode"] == "file"
    with pytest.raises(InputError, match="save a table as .csv"):
        cli.data_spec(cli.build_parser().parse_args(["run", str(a), "--text-column", "t", "--out", "x"]))


def test_run_spec_round_trips_and_reads_an_old_spec(tmp_path):
    runs = tmp_path / "runs"
    desc = uploads.stage(runs, ["d.csv"], [data_url(_text_table())])
    spec = uploads.data_spec(desc, what="text", text_column="text", id_column="id")
    rs = RunSpec(spec, HerculesConfig(level_cluster_counts=(6, 2)), ModelIds(text_embedder="fake-hash"))
    assert RunSpec.from_dict(json.loads(json.dumps(rs.to_dict()))) == rs
    # a run queued by the previous version saved the upload id and the form's choices
    old = {"upload_id": desc["upload_id"], "kind": "table", "names": ["d.csv"], "n_files": 1, "what": "text",
           "text_column": "text", "id_column": "id", "label_column": None}
    assert uploads.spec_of_record(old, runs) == spec
    assert uploads.spec_of_record(spec.to_dict(), runs) == spec
    with pytest.raises(InputError, match="outside|not where"):
        from hercules_run.spec import prepare

        prepare(DataSpec(files=("../../etc/passwd",), kind="txt"), uploads.uploads_root(runs))


def test_upload_records_have_one_shape_and_old_labels_records_still_load(tmp_path):
    ldesc = uploads.stage_labels(tmp_path, "labels.csv", data_url(b"id,label\n1,a\n2,b\n"))
    assert ldesc["names"] == ["labels.csv"] and ldesc["files"] == ["labels.csv"] and "file" not in ldesc
    udir = runstore.upload_dir(tmp_path, ldesc["upload_id"])
    runstore.write_json_atomic(udir / "upload.json", {"upload_id": ldesc["upload_id"], "kind": "labels",
                                                      "name": "mine.csv", "file": "labels.csv", "n": 2})
    back = uploads.load_descriptor(tmp_path, {"upload_id": ldesc["upload_id"]}, kinds=("labels",))
    assert back["names"] == ["mine.csv"] and back["files"] == ["labels.csv"]


def test_one_settings_summary_for_runs_and_imported_models():
    cfg = HerculesConfig(level_cluster_counts=None, topic_seed="food")
    assert settings_summary(cfg, {"llm": "keywords", "captioner": None}) == {
        "levels": "auto (silhouette)", "mode": "direct", "seed": 0, "topic_seed": "food", "llm": "keywords"}
    assert RunSpec(DataSpec(files=("a.csv",), kind="table"), cfg).summary() == settings_summary(cfg)


def test_the_app_preselects_what_prepare_picks_on_auto(tmp_path):
    from hercules_core import data

    table = b"ID,length,width,species,Label\n1,5.1,3.5,setosa,a\n2,7.0,3.2,versicolor,b\n3,6.3,3.3,virginica,c\n"
    desc = uploads.stage(tmp_path, ["iris.csv"], [data_url(table)])
    assert desc["suggest"] == {"what": "numeric", "text_column": "species", "numeric_columns": ["length", "width"],
                               "id_column": "ID", "label_column": "Label"}
    (tmp_path / "iris.csv").write_bytes(table)
    ds = data.prepare(tmp_path / "iris.csv", id_column="ID", labels_column="Label")
    assert ds.feature_names == desc["suggest"]["numeric_columns"]
