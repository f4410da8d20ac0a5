"""The CLI end to end: real offline MiniLM on fortune_dev8, a scikit-learn numeric set, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from hercules_core.io import load_model

ROOT = Path(__file__).resolve().parents[1]
FORTUNE = ROOT.parent / "shared" / "data" / "fortune_dev8.csv"
if not FORTUNE.exists():  # a fresh clone without shared/: the committed 200-row cut of the same file
    FORTUNE = ROOT / "tests" / "data" / "fortune_sample.csv"


def cli(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "hercules_core", "run", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


@pytest.mark.slow
def test_cli_fortune_with_minilm(tmp_path):
    out = tmp_path / "out"
    cli(FORTUNE, "--text-column", "text", "--id-column", "id", "--labels-column", "label",
        "--levels", "40,8", "--embedder", "minilm", "--llm", "keywords", "--seed", "1", "--out", out, "--quiet")
    for name in ("model.json", "memberships.csv", "hierarchy.txt", "run_log.jsonl", "evaluation.json"):
        assert (out / name).stat().st_size > 0, name
    df = pd.read_csv(FORTUNE)
    members = pd.read_csv(out / "memberships.csv", dtype=str)
    assert list(members.columns) == ["item_id", "L1_cluster_id", "L1_title", "L2_cluster_id", "L2_title"]
    assert members.item_id.tolist() == df.id.astype(str).tolist()  # ids preserved, in order
    assert members.L1_cluster_id.nunique() == 40 and members.L2_cluster_id.nunique() == 8
    ev = json.loads((out / "evaluation.json").read_text())
    top = ev["2"]
    for key in ("adjusted_rand_score", "normalized_mutual_info_score", "homogeneity_score",
                "completeness_score", "v_measure_score", "silhouette_score"):
        assert key in top
    assert top["adjusted_rand_score"] > 0.2  # real MiniLM embeddings find real topics
    h = load_model(out / "model.json")
    assert h.stats["models"]["text_embedder"] == "all-MiniLM-L6-v2"
    assert h.levels[0].vectors.shape == (len(df), 384)
    text = (out / "hierarchy.txt").read_text()
    assert all(f"L2_{j}" in text for j in range(8))


def test_cli_numeric_sklearn_wine(tmp_path):
    from sklearn.datasets import load_wine

    wine = load_wine(as_frame=True)
    frame = wine.frame.rename(columns={"target": "label"})
    frame.insert(0, "wine_id", [f"w{i}" for i in range(len(frame))])
    path = tmp_path / "wine.csv"
    frame.to_csv(path, index=False)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"alcohol": {"unit": "% vol", "description": "alcohol content"}}))
    out = tmp_path / "out"
    cli(path, "--id-column", "wine_id", "--labels-column", "label", "--levels", "12,3", "--embedder", "fake-hash",
        "--llm", "fake", "--numeric-metadata", meta, "--out", out, "--quiet")
    h = load_model(out / "model.json")
    assert h.dataset.modality == "numeric" and len(h.dataset.feature_names) == 13
    assert [len(lv) for lv in h.levels] == [178, 12, 3]
    assert h.evaluation[2]["adjusted_rand_score"] > 0.5  # wine's 3 cultivars are well separated
    log = [json.loads(line) for line in (out / "run_log.jsonl").read_text().splitlines()]
    calls = [r for r in log if r.get("event") == "llm_call"]
    assert calls and all("prompt" in r and "seconds" in r for r in calls)
    assert any("% vol" in r["prompt"] for r in calls)  # units reach the prompt


def test_cli_bad_input_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,x,y\na,1,2\nb,nan,3\nc,4,5\n")
    proc = cli(bad, "--id-column", "id", "--embedder", "fake-hash", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "b" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr

    proc = cli(tmp_path / "missing.csv", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "missing.csv" in proc.stderr

    proc = cli(bad, "--levels", "5,20", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "must decrease" in proc.stderr

    good = tmp_path / "good.csv"
    good.write_text("id,x,y\na,1,2\nb,2,3\nc,4,5\n")
    proc = cli(good, "--embedder", "nope", "--id-column", "id", "--out", tmp_path / "o", check=False)
    assert proc.returncode == 2 and "Unknown text embedder 'nope'" in proc.stderr


def test_cli_images_zip_digits(tmp_path):
    import zipfile

    from tests.test_data import write_digits

    paths = write_digits(tmp_path / "digits", n=60)
    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in paths:
            zf.write(p, f"digits/{p.name}")
    out = tmp_path / "out"
    cli(archive, "--images", "--levels", "10,3", "--embedder", "fake-hash", "--llm", "fake", "--out", out, "--quiet")
    h = load_model(out / "model.json")
    assert h.dataset.modality == "image" and len(h.dataset.image_paths) == 60
    # images were extracted under the output directory, so the saved paths stay valid
    assert all(Path(p).is_file() and str(out) in p for p in h.dataset.image_paths)
    assert h.stats["models"]["image_embedder"] == "image-features"
    assert [len(lv) for lv in h.levels] == [60, 10, 3]
    assert all(c.title for c in h.iter_clusters())


def test_cli_images_with_a_captioner(tmp_path):
    """--captioner: captions from an OpenAI-compatible vision endpoint become the L0 descriptions."""
    import os
    import zipfile

    from devkit.openai_stub_server import StubServer
    from tests.test_data import write_digits

    paths = write_digits(tmp_path / "digits", n=12)
    archive = tmp_path / "digits.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in paths:
            zf.write(p, p.name)
    out = tmp_path / "out"
    with StubServer(models=("vision",)) as s:
        env = {**os.environ, "HERCULES_CAPTION_BASE_URL": s.base_url, "HERCULES_CAPTION_MODEL": "vision",
               "HERCULES_CAPTION_API_KEY": "sk-caption-secret"}
        proc = subprocess.run([sys.executable, "-m", "hercules_core", "run", str(archive), "--images",
                               "--captioner", "openai-vision", "--levels", "3", "--embedder", "fake-hash",
                               "--llm", "keywords", "--out", str(out), "--quiet", "--no-cache"],
                              cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        n_caption_requests = len(s.requests)
    h = load_model(out / "model.json")
    assert n_caption_requests == 12
    assert all(d.startswith("A stub caption") for d in h.levels[0].descriptions)
    assert h.stats["models"]["captioner"] is not None
    assert not any("sk-caption-secret" in f.read_text(errors="ignore") for f in out.glob("*.*") if f.is_file())


# --------------------------------------------------------------------------- --config and the flags
def _config_of(*flags: str):
    from hercules_run import cli as cli_module

    return cli_module._config(cli_module.build_parser().parse_args(["run", "data.csv", "--out", "o", *map(str, flags)]))


@pytest.mark.parametrize("settings, typed, wins", [
    ({"max_levels": 3}, ["--max-levels", "4"], {"max_levels": 4}),
    ({"random_state": 7}, ["--seed", "8"], {"random_state": 8}),
    ({"representation_mode": "description"}, ["--mode", "direct"], {"representation_mode": "direct"}),
    ({"auto_k_method": "davies_bouldin"}, ["--auto-k-method", "silhouette"], {"auto_k_method": "silhouette"}),
    ({"use_llm_for_l0_descriptions": True}, ["--no-llm-l0"], {"use_llm_for_l0_descriptions": False}),
    ({"use_resampling": True, "weight_by_size": False}, ["--no-resampling", "--weights"],
     {"use_resampling": False, "weight_by_size": True}),
    ({"level_cluster_counts": None, "auto_k_min": 4, "auto_k_max": 9}, ["--levels", "6,2", "--k-range", "5,8"],
     {"level_cluster_counts": (6, 2), "auto_k_min": 5, "auto_k_max": 8}),
])
def test_a_config_file_keeps_its_values_unless_a_flag_is_typed(tmp_path, settings, typed, wins):
    """The flags' defaults used to overwrite --config: {"max_levels": 3} ran with 5."""
    path = tmp_path / "c.json"
    path.write_text(json.dumps(settings))
    cfg = _config_of("--llm", "keywords", "--config", path)
    assert {k: getattr(cfg, k) for k in settings} == {k: tuple(v) if isinstance(v, list) else v
                                                       for k, v in settings.items()}
    cfg = _config_of("--llm", "keywords", "--config", path, *typed)
    assert {k: getattr(cfg, k) for k in wins} == wins


def test_recommendations_then_config_file_then_flags(tmp_path):
    """Defaults < the settings recommended for the LLM < --config < typed flags, in the CLI as in the form."""
    import model_registry

    rec = model_registry.recommended_config("smollm2")
    assert rec["llm_concurrency"] == 1 and rec["llm_initial_batch_size"] == 1
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"llm_concurrency": 3, "llm_initial_batch_size": 6}))
    cfg = _config_of("--llm", "smollm2", "--config", path, "--llm-concurrency", "2")
    assert (cfg.llm_concurrency, cfg.llm_initial_batch_size, cfg.prompt_style) == (2, 6, rec["prompt_style"])


def test_cli_errors_name_the_flag(tmp_path, capsys):
    from hercules_run import cli as cli_module

    code = cli_module.main(["run", str(tmp_path / "d.csv"), "--out", str(tmp_path / "o"), "--llm", "keywords",
                            "--max-levels", "0"])
    assert code == 2 and capsys.readouterr().err.strip() == "error: --max-levels must be an integer >= 1; got 0."
