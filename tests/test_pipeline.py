"""The one run pipeline: the CLI and the app's background job are two doors to the same run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from callbacks import configform, job, runstore, uploads
from hercules_core import Cancelled, HerculesConfig, data
from hercules_run.pipeline import (OUTPUT_FILES, CacheSettings, ModelIds, RunRequest, run_pipeline,
                                   save_outputs)
from tests.test_app_logic import data_url

ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["cats dogs pets", "stock market prices", "rain snow weather"]


def _csv() -> str:
    rows = [f"{i},text about {TOPICS[i % 3]} number {i},{i % 3}" for i in range(60)]
    return "id,text,label\n" + "\n".join(rows) + "\n"


def _model_json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_cli_and_app_runs_write_the_same_run(tmp_path):
    src = tmp_path / "d.csv"
    src.write_text(_csv())
    # each door gets its own cold cache, so that the counters can be compared too
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HERCULES_CACHE_DIR": str(tmp_path / "cli-cache")}
    proc = subprocess.run([sys.executable, "-m", "hercules_core", "run", str(src), "--text-column", "text",
                           "--id-column", "id", "--labels-column", "label", "--levels", "6,2",
                           "--embedder", "fake-hash", "--llm", "fake", "--out", str(tmp_path / "cli"), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]

    runs = tmp_path / "runs"
    os.environ["HERCULES_CACHE_DIR"] = str(tmp_path / "app-cache")
    try:
        desc = uploads.stage(runs, ["d.csv"], [data_url(_csv().encode())])
        spec = uploads.data_spec(desc, what="text", text_column="text", id_column="id", label_column="label")
        cfg = configform.config_from_form({"levels_text": "6,2"}, "fixed")
        run_id = job.create_run(runs, spec, cfg, {"text_embedder": "fake-hash", "llm": "fake"})
        status = job.run(runs, run_id)
    finally:
        os.environ.pop("HERCULES_CACHE_DIR")
    assert status["state"] == "done", status
    app_dir, cli_dir = runstore.run_dir(runs, run_id), tmp_path / "cli"

    for name in (*OUTPUT_FILES, "run_log.jsonl"):
        assert (app_dir / name).is_file() and (cli_dir / name).is_file(), name
    assert (app_dir / "memberships.csv").read_bytes() == (cli_dir / "memberships.csv").read_bytes()
    assert (app_dir / "hierarchy.txt").read_bytes() == (cli_dir / "hierarchy.txt").read_bytes()
    app_stats, cli_stats = _model_json(app_dir / "model.json")["stats"], _model_json(cli_dir / "model.json")["stats"]
    assert set(app_stats) == set(cli_stats) and {"cost", "cache", "timings", "models"} <= set(app_stats)
    assert set(app_stats["cost"]) == set(cli_stats["cost"]) and "estimate" in app_stats["cost"]
    assert app_stats["cost"]["estimate"] == cli_stats["cost"]["estimate"]  # the same planning, both doors
    assert app_stats["cost"]["llm"] == cli_stats["cost"]["llm"]
    assert app_stats["cache"]["misses"] == cli_stats["cache"]["misses"] > 0
    assert app_stats["cache"]["directory"].endswith("app-cache")  # the default folder: HERCULES_CACHE_DIR


def _request(out_dir, src, **kw):
    return RunRequest(prepare=lambda out: data.prepare(src, text_column="text", id_column="id"),
                      config=HerculesConfig(level_cluster_counts=(4, 2)), out_dir=out_dir,
                      models=ModelIds(text_embedder="fake-hash", llm="keywords"), **kw)


def test_pipeline_reports_stages_and_honours_cancel(tmp_path):
    src = tmp_path / "d.csv"
    src.write_text(_csv())
    stages, seen = [], {}
    result = run_pipeline(_request(tmp_path / "out", src, cache=CacheSettings(enabled=False)),
                          progress=lambda s, d, t: stages.append(s), on_data=lambda ds: seen.update(n=len(ds)),
                          on_estimate=lambda est: seen.update(est=est))
    assert seen["n"] == 60 and seen["est"]["clusters_per_level"] == [4, 2] and seen["est"]["llm"] is None
    assert stages[0] == "preparing data" and stages[-1] == "saving results"
    assert result.hierarchy.stats["cache"]["enabled"] is False
    assert all((tmp_path / "out" / name).is_file() for name in OUTPUT_FILES)

    with pytest.raises(Cancelled):
        run_pipeline(_request(tmp_path / "cancelled", src), cancel=lambda: True)
    assert not (tmp_path / "cancelled" / "model.json").exists()


def test_model_ids_treat_none_alike():
    assert ModelIds.from_dict({"text_embedder": "none", "llm": "", "captioner": None}) == ModelIds()
    assert ModelIds(llm="fake").as_dict() == {"text_embedder": None, "image_embedder": None, "llm": "fake",
                                              "captioner": None}


def test_save_outputs_keeps_an_imported_model_file(tmp_path):
    from devkit.factories import make_hierarchy

    h = make_hierarchy()
    (tmp_path / "model.json").write_text("as uploaded")
    save_outputs(h, tmp_path, write_model=False)
    assert (tmp_path / "model.json").read_text() == "as uploaded"
    assert all((tmp_path / n).is_file() for n in OUTPUT_FILES)
