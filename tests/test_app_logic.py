"""Unit tests of the web app's plain functions: run store, uploads, config form, job, routes."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from callbacks import configform, job, routes, runstore, uploads
from hercules_core import ConfigError, InputError, load_model


@pytest.fixture(autouse=True)
def _private_model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HERCULES_CACHE_DIR", str(tmp_path / "model-cache"))


def data_url(data: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


# ----------------------------------------------------------------------------- run store
def test_run_ids_are_checked_before_touching_paths(tmp_path):
    rid = runstore.new_id()
    assert runstore.valid_id(rid)
    assert runstore.run_dir(tmp_path, rid) == tmp_path / rid
    for bad in ("../etc", "x" * 32, rid.upper(), rid + "/..", "", None, 5, "../" + rid):
        assert not runstore.valid_id(bad)
        with pytest.raises(ValueError):
            runstore.run_dir(tmp_path, bad)


def test_status_updates_merge_and_cancel_wins(tmp_path):
    rdir = tmp_path / runstore.new_id()
    runstore.create(rdir, created="2020-01-01T00:00:00+00:00")
    runstore.start(rdir)
    runstore.progress(rdir, percent=10)
    assert runstore.read_status(rdir)["percent"] == 10 and runstore.read_status(rdir)["created"].startswith("2020")
    runstore.request_cancel(rdir)
    assert runstore.cancel_requested(rdir)
    # a late write of the dying job cannot resurrect the run
    assert runstore.start(rdir)["state"] == "cancelled"
    assert runstore.progress(rdir, percent=50)["state"] == "cancelled"
    runs = runstore.list_runs(tmp_path)
    assert [r["run_id"] for r in runs] == [rdir.name] and runs[0]["state"] == "cancelled"


def test_dead_running_process_is_shown_interrupted(tmp_path):
    rdir = tmp_path / runstore.new_id()
    import os
    runstore.create(rdir)
    runstore.start(rdir, pid=2**22 + 12345, host=os.uname().nodename)
    assert runstore.list_runs(tmp_path)[0]["state"] == "interrupted"


def test_model_cache_reloads_changed_files_and_evicts(tmp_path):
    calls = []
    cache = runstore.ModelCache(lambda p: calls.append(p) or p.read_text(), size=2)
    files = []
    for i in range(3):
        f = tmp_path / f"m{i}.json"
        f.write_text(str(i))
        files.append(f)
    assert cache.get(files[0]) == "0" and cache.get(files[0]) == "0"
    assert len(calls) == 1
    import os
    files[0].write_text("changed")
    os.utime(files[0], ns=(1, 10**18))
    assert cache.get(files[0]) == "changed"
    cache.get(files[1])
    cache.get(files[2])
    assert len(cache._items) == 2


# ----------------------------------------------------------------------------- uploads
def test_classify_and_reject_with_reasons():
    assert uploads.classify(["a.csv"]) == "table"
    assert uploads.classify(["a.txt", "b.txt"]) == "txt"
    assert uploads.classify(["a.png", "b.jpg"]) == "images"
    assert uploads.classify(["x.zip"]) == "zip"
    with pytest.raises(InputError, match="Unsupported file type"):
        uploads.classify(["report.pdf"])
    with pytest.raises(InputError, match="single image"):
        uploads.classify(["a.png"])
    with pytest.raises(InputError, match="one table"):
        uploads.classify(["a.csv", "b.csv"])


def test_stage_table_stores_generated_names_and_suggests_columns(tmp_path):
    csv = "id,text,label,score\n1,a long text about cats and dogs,pets,1.5\n2,another long text on stocks,money,2\n"
    desc = uploads.stage(tmp_path, ["../../evil name.csv"], [data_url(csv.encode())])
    udir = runstore.upload_dir(tmp_path, desc["upload_id"])
    assert [p.name for p in udir.iterdir() if p.suffix == ".csv"] == ["f00000.csv"]
    assert desc["suggest"] == {"what": "text", "text_column": "text", "numeric_columns": ["score"],
                               "id_column": "id", "label_column": "label"}
    rows, cols = uploads.preview_rows(tmp_path, desc)
    assert cols == ["id", "text", "label", "score"] and len(rows) == 2


def test_preview_gives_long_text_the_spare_width():
    """The new-run preview: the long-text column takes the spare width (flex), wraps and has the whole
    cell in its tooltip; ids, labels and numbers are narrow and fixed; a table without long text
    spreads its columns over the grid."""
    from callbacks import page_new_run

    rows = [{"id": f"f{i:05d}", "text": f"A quotation number {i} that runs well past twenty-five characters.",
             "label": "work", "score": i / 3} for i in range(20)]
    defs = {d["field"]: d for d in uploads.preview_column_defs(["id", "text", "label", "score"], rows)}
    text = defs["text"]
    assert text["flex"] == 1 and text["minWidth"] >= 280 and text["wrapText"] and text["autoHeight"]
    assert text["tooltipField"] == "text" and "maxWidth" not in text
    for c in ("id", "label", "score"):
        assert "flex" not in defs[c] and 80 <= defs[c]["width"] <= 240 and defs[c]["tooltipField"] == c
    assert defs["id"]["width"] < 160 and defs["score"]["type"] == "numericColumn" and "type" not in defs["id"]
    # one long value among short ones is still long text; missing values do not count
    rows[3]["label"] = "x" * 100
    rows[4]["id"] = None
    assert uploads.preview_column_defs(["id", "label"], rows)[1]["flex"] == 1
    numeric = uploads.preview_column_defs(["a", "b"], [{"a": 1, "b": 2.5}])
    assert all(d["flex"] == 1 and "wrapText" not in d for d in numeric)
    assert uploads.preview_column_defs(["empty"], []) == [
        {"field": "empty", "headerName": "empty", "tooltipField": "empty", "flex": 1, "minWidth": 80}]
    assert page_new_run.preview_grid_options("cats")["quickFilterText"] == "cats"
    assert page_new_run.preview_grid_options(None)["quickFilterText"] == ""


def test_stage_rejects_too_big_and_unreadable(tmp_path):
    with pytest.raises(InputError, match="more than the"):
        uploads.stage(tmp_path, ["a.csv"], [data_url(b"x" * 3000)], max_bytes=1000)
    with pytest.raises(InputError, match="mine.jsonl line 2 is not valid JSON"):
        uploads.stage(tmp_path, ["mine.jsonl"], [data_url(b'{"a": 1}\n{broken\n')])
    assert not any((tmp_path / runstore.UPLOADS).iterdir())  # nothing of a rejected upload is kept
    with pytest.raises(InputError, match="damaged"):
        uploads.decode_data_url("not a data url")


def test_txt_uploads_one_per_line_or_file(tmp_path):
    desc = uploads.stage(tmp_path, ["a.txt", "b.txt"], [data_url(b"first text\n\nsecond"), data_url(b"third")])
    udir = runstore.upload_dir(tmp_path, desc["upload_id"])
    by_line = uploads.txt_frame(udir, desc, "line")
    assert by_line["id"].tolist() == ["a:1", "a:3", "b:1"]
    by_file = uploads.txt_frame(udir, desc, "file")
    assert by_file["id"].tolist() == ["a.txt", "b.txt"]


def test_data_spec_says_what_is_missing():
    desc = {"upload_id": runstore.new_id(), "kind": "table", "names": ["t.csv"], "files": ["f00000.csv"],
            "columns": ["id", "text", "x"]}
    with pytest.raises(InputError, match="Upload a data file"):
        uploads.data_spec(None)
    with pytest.raises(InputError, match="column that holds the texts"):
        uploads.data_spec(desc, what="text")
    with pytest.raises(InputError, match="at least one numeric"):
        uploads.data_spec(desc, what="numeric", numeric_columns=[])
    spec = uploads.data_spec(desc, what="numeric", numeric_columns=["x", "id"], id_column="id")
    assert spec.numeric_columns == ("x",) and spec.id_column == "id" and spec.modality == "numeric"
    assert spec.files == (f"{desc['upload_id']}/f00000.csv",) and spec.names == ("t.csv",)


def _zip_of_pngs(n: int = 12) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            img = Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8))
            b = io.BytesIO()
            img.save(b, format="PNG")
            zf.writestr(f"digits/{i:03d}.png", b.getvalue())
    return buf.getvalue()


def test_prepare_from_zip_with_separate_labels_file(tmp_path):
    desc = uploads.stage(tmp_path, ["digits.zip"], [data_url(_zip_of_pngs())])
    labels_csv = "id,label\n" + "".join(f"digits/{i:03d}.png,{i % 3}\n" for i in range(12))
    ldesc = uploads.stage_labels(tmp_path, "labels.csv", data_url(labels_csv.encode()))
    spec = uploads.data_spec(desc, labels=ldesc, runs_dir=tmp_path)
    rdir = tmp_path / runstore.new_id()
    ds = uploads.prepare_from_spec(spec, tmp_path, rdir)
    assert ds.modality == "image" and len(ds) == 12 and ds.ids[0] == "digits/000.png"
    assert ds.labels[:3] == ["0", "1", "2"]
    assert all(p.startswith(str(rdir.resolve())) for p in ds.image_paths)


# ----------------------------------------------------------------------------- config form
def test_form_values_to_config_and_errors():
    values = {f.name: getattr(configform.DEFAULTS, f.name) for f in configform.FIELDS}
    values.update(levels_text="30, 6", topic_seed="  ", random_state="7")
    cfg = configform.config_from_form(values, "fixed")
    assert cfg.level_cluster_counts == (30, 6) and cfg.topic_seed is None and cfg.random_state == 7
    assert configform.config_from_form(values, "auto").level_cluster_counts is None
    with pytest.raises(ConfigError, match="decrease"):
        configform.config_from_form(dict(values, levels_text="5,20"), "fixed")
    with pytest.raises(ConfigError, match="whole numbers"):
        configform.config_from_form(dict(values, levels_text="a,b"), "fixed")
    with pytest.raises(ConfigError, match="Random seed must be a whole number"):
        configform.config_from_form(dict(values, random_state=1.5), "fixed")


def test_model_options_mark_unavailable_and_hide_tests():
    ids_user = [o["value"] for o in configform.model_options("llm", include_tests=False)]
    assert "keywords" in ids_user and "fake" not in ids_user
    assert "fake" in [o["value"] for o in configform.model_options("llm", include_tests=True)]
    for o in configform.model_options("text_embedder", include_tests=False):
        assert o["disabled"] == ("unavailable" in o["label"])


def test_cost_estimate_counts_llm_work(tmp_path):
    from callbacks import page_new_run
    from hercules_core import cost

    rows = "\n".join(f"{i},text number {i} about things" for i in range(1000))
    desc = uploads.stage(tmp_path, ["d.csv"], [data_url(("id,text\n" + rows).encode())])
    summary = page_new_run.data_summary(tmp_path, desc, {"what": "text", "text_column": "text", "id_column": "id"})
    cfg = configform.config_from_form({"levels_text": "20,5"}, "fixed")
    free = cost.estimate_run(summary, cfg, llm_id="keywords", with_text_embedder=True)
    # items, every "title. description", every title alone (the title-quality score)
    assert free["llm_calls"] == 0 and sum(free["clusters_per_level"]) == 25 and free["texts_to_embed"] == 1000 + 25 + 25
    paid = cost.estimate_run(summary, cfg, llm_id="fake", with_text_embedder=True)
    assert paid["llm_calls"] == 4 and paid["prompt_tokens"] > 0
    assert "4 LLM call(s) to fake" in page_new_run.estimate_text(summary, cfg, {"llm": "fake", "text_embedder": "minilm"})


@pytest.mark.parametrize("what", ["text", "numeric"])
def test_preview_and_cli_estimate_agree(tmp_path, capsys, what):
    """The app's cost preview and the CLI's estimate: line are one computation (600 items: more than
    the 256 the estimate samples)."""
    from callbacks import page_new_run
    from hercules_run.cli import main

    rng = np.random.default_rng(0)
    topics = ["cats dogs pets", "stock market prices", "rain snow weather"]
    rows = [f"{i},text about {topics[i % 3]} number {i},{rng.normal():.3f},{rng.normal() * 10:.2f}" for i in range(600)]
    csv = "id,text,x,y\n" + "\n".join(rows) + "\n"
    (tmp_path / "d.csv").write_text(csv)
    cols = ["--text-column", "text"] if what == "text" else ["--numeric-columns", "x,y"]
    assert main(["run", str(tmp_path / "d.csv"), *cols, "--id-column", "id", "--levels", "30,6", "--embedder",
                 "fake-hash", "--llm", "fake", "--out", str(tmp_path / "out"), "--quiet", "--no-cache"]) == 0
    line = next(l for l in capsys.readouterr().err.splitlines() if l.startswith("estimate: "))

    desc = uploads.stage(tmp_path / "runs", ["d.csv"], [data_url(csv.encode())])
    choice = {"text_column": "text", "numeric_columns": ["x", "y"], "id_column": "id"}
    shown = page_new_run.cost_preview(desc, what, {"levels_text": "30,6"}, "fixed",
                                      {"text_embedder": "fake-hash", "llm": "fake"}, True, tmp_path / "runs", choice)
    assert "LLM call(s) to fake" in line
    assert shown.children == line.removeprefix("estimate: ") + " (600 items)."


def test_preview_prepares_an_upload_once_per_data_choice(tmp_path, monkeypatch):
    from callbacks import page_new_run
    from callbacks.runstore import LRU

    prepared = []
    real = uploads.estimate_summary  # prepares the data (in the bounded reader process)
    monkeypatch.setattr(uploads, "estimate_summary", lambda spec, rd: prepared.append(spec) or real(spec, rd))
    rows = "\n".join(f"{i},some text {i},note {i % 7}" for i in range(300))
    desc = uploads.stage(tmp_path, ["d.csv"], [data_url(("id,text,other\n" + rows).encode())])
    summaries, models = LRU(4), {"text_embedder": "fake-hash", "llm": "fake"}
    texts = set()
    for levels in ("20,5", "21,5", "22,5", "22,6"):  # keystrokes in the settings
        shown = page_new_run.cost_preview(desc, "text", {"levels_text": levels}, "fixed", models, True, tmp_path,
                                          {"text_column": "text", "id_column": "id"}, summaries)
        texts.add(shown.children)
    assert len(prepared) == 1 and len(texts) == 4
    page_new_run.cost_preview(desc, "text", {"levels_text": "20,5"}, "fixed", models, True, tmp_path,
                              {"text_column": "other", "id_column": "id"}, summaries)
    assert len(prepared) == 2  # another column is another data set

    dup = uploads.stage(tmp_path, ["e.csv"], [data_url(b"id,text\n1,a\n1,b\n2,c\n")])
    for _ in range(2):  # a rejected upload is not read again on every keystroke either
        shown = page_new_run.cost_preview(dup, "text", {"levels_text": "2"}, "fixed", models, True, tmp_path,
                                          {"text_column": "text", "id_column": "id"}, summaries)
        assert "unique" in shown.children
    assert len(prepared) == 3


# ----------------------------------------------------------------------------- job
def test_overall_percent_is_monotone_over_a_run():
    stages = [("preparing data", 0, 1), ("embedding items", 0, 10), ("embedding items", 10, 10),
              ("clustering level 1", 1, 1), ("summarizing level 1", 5, 10), ("embedding level 1 descriptions", 1, 1),
              ("clustering level 2", 1, 1), ("summarizing level 2", 3, 3), ("reduction", 1, 1), ("evaluation", 1, 1),
              ("saving results", 0, 1)]
    values = [job.overall_percent(s, d, t, 2) for s, d, t in stages]
    assert values == sorted(values) and 0 < values[0] and values[-1] < 100


def _start(tmp_path, csv: str, levels: str = "6,2", models=None, what="text", **choice):
    desc = uploads.stage(tmp_path, ["d.csv"], [data_url(csv.encode())])
    spec = uploads.data_spec(desc, what=what, **choice)
    cfg = configform.config_from_form({"levels_text": levels}, "fixed")
    models = models or {"text_embedder": "fake-hash", "llm": "keywords"}
    return job.create_run(tmp_path, spec, cfg, models)


def test_job_runs_end_to_end_and_writes_every_artifact(tmp_path):
    rows = [f"{i},text about {['cats dogs', 'stock market', 'rain snow'][i % 3]} number {i},{i % 3}" for i in range(60)]
    run_id = _start(tmp_path, "id,text,label\n" + "\n".join(rows), text_column="text", id_column="id",
                    label_column="label")
    sent = []
    status = job.run(tmp_path, run_id, lambda *a: sent.append(a))
    assert status["state"] == "done", status
    rdir = runstore.run_dir(tmp_path, run_id)
    for name in ("model.json", "memberships.csv", "hierarchy.txt", "evaluation.json", "run_log.jsonl"):
        assert (rdir / name).is_file(), name
    h = load_model(rdir / "model.json")
    assert h.n_items == 60 and h.dataset.labels is not None
    percents = [s[0] for s in sent]
    assert percents == sorted(percents) and percents[-1] == 100 and sent[-1][1] == "Done"
    assert runstore.read_status(rdir)["data"]["n_items"] == 60
    ev = json.loads((rdir / "evaluation.json").read_text())
    csv_text = routes.evaluation_csv(ev)
    frame = pd.read_csv(io.StringIO(csv_text))
    assert list(frame["level"]) == [1, 2] and "adjusted_rand_score" in frame.columns


def test_job_failure_is_reported_not_raised(tmp_path):
    run_id = _start(tmp_path, "id,text\n1,a\n1,b\n2,c\n", text_column="text", id_column="id")
    status = job.run(tmp_path, run_id)
    assert status["state"] == "failed" and "unique" in status["error"]


def test_job_honours_the_cancel_flag(tmp_path):
    rows = [f"{i},text number {i} about things" for i in range(40)]
    run_id = _start(tmp_path, "id,text\n" + "\n".join(rows), text_column="text", id_column="id")
    runstore.request_cancel(runstore.run_dir(tmp_path, run_id))
    status = job.run(tmp_path, run_id)
    assert status["state"] == "cancelled"
    assert not (runstore.run_dir(tmp_path, run_id) / "model.json").exists()


def test_cost_preview_uses_the_core_estimate_and_reports_problems(tmp_path):
    from dash import html

    from callbacks import page_new_run

    def text(component):
        return component.children if isinstance(component, html.Div) else ""

    desc = uploads.stage(tmp_path, ["d.csv"], [data_url(b"id,text\n1,a b c\n2,d e f\n3,g h i\n4,j k l\n")])
    models = {"text_embedder": "fake-hash", "llm": "fake"}
    ok = page_new_run.cost_preview(desc, "text", {"levels_text": "2"}, "fixed", models, True, tmp_path,
                                   {"text_column": "text", "id_column": "id"})
    assert "LLM call" in text(ok) and "4 items" in text(ok)
    missing = page_new_run.cost_preview(desc, "text", {"levels_text": "2"}, "fixed", models, True, tmp_path, {})
    assert "Pick the column" in text(missing)
    bad_levels = page_new_run.cost_preview(desc, "text", {"levels_text": "2,5"}, "fixed", models, True, tmp_path, {})
    assert "decrease" in text(bad_levels)
    assert "Upload data" in text(page_new_run.cost_preview(None, None, {"levels_text": "2"}, "fixed", models, True))


def test_choosing_an_llm_applies_the_registry_recommendations(monkeypatch):
    from dash import no_update

    from callbacks import page_new_run

    monkeypatch.setattr(configform.registry, "recommended_config",
                        lambda llm: {"llm_initial_batch_size": 1, "not_a_form_field": 3} if llm == "tiny" else {},
                        raising=False)
    id_list = [{"type": "cfg", "name": n} for n in ("llm_initial_batch_size", "random_state", "levels_text")]
    assert page_new_run.recommended_values("tiny", id_list, [8, 0, "20,5"]) == [1, no_update, no_update]
    # another LLM without that recommendation: back to the default the CLI would use, not the last one's 1
    default = configform.DEFAULTS.llm_initial_batch_size
    assert page_new_run.recommended_values("keywords", id_list, [1, 0, "20,5"]) == [default, no_update, no_update]


def test_each_run_sees_only_its_own_warnings(tmp_path):
    """Two runs in one process (a threaded worker): warnings logged by a run, also from the worker
    threads hercules_core starts for it (here: the captioner's), reach that run's live log only."""
    import logging
    import threading

    from hercules_core.clients.openai_compat import OpenAICompatCaptioner

    captioner = OpenAICompatCaptioner("http://127.0.0.1:9/v1", "vision")  # unreadable images fail before a request
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    reporters, both_started = {}, threading.Barrier(2, timeout=30)

    def one_run(name):
        reporters[name] = job.Reporter(tmp_path / name, 2)
        stop = job.capture_warnings(name, reporters[name])
        try:
            both_started.wait()
            logging.getLogger("hercules_core").warning("plain warning of %s", name)
            assert captioner.caption([str(bad)])[0].startswith("(caption failed")
            both_started.wait()
        finally:
            stop()

    threads = [threading.Thread(target=one_run, args=(n,)) for n in ("run-a", "run-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, other in (("run-a", "run-b"), ("run-b", "run-a")):
        text = "\n".join(reporters[name].lines)
        assert f"plain warning of {name}" in text and "Captioning" in text and text.count("Captioning") == 1
        assert other not in text
    logging.getLogger("hercules_core").warning("after both runs")  # nobody listens any more
    assert not any("after both runs" in line for r in reporters.values() for line in r.lines)
