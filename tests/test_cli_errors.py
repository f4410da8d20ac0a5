"""CLI input mistakes (issue 7, defect 11): one ``error:`` line and exit 2, never "internal error";
levels larger than the data are said on stderr and kept in the run's notes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hercules_core import load_model

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "hercules_core", "run", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,a,b\n" + "".join(f"{i},{i % 5},{(i * 7) % 11}\n" for i in range(40)))
    return path


def _one_error(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    return lines[0]


BASE = ("--id-column", "id", "--embedder", "none", "--llm", "keywords", "--quiet")


def test_out_is_an_existing_file(table, tmp_path):
    existing = tmp_path / "result.txt"
    existing.write_text("keep me")
    line = _one_error(cli(table, "--out", existing, *BASE))
    assert "existing file" in line and existing.read_text() == "keep me"


def test_out_cannot_be_written(table, tmp_path):
    # root may write anywhere a mode allows; a folder under a file can be made by nobody
    line = _one_error(cli(table, "--out", tmp_path / "t.csv" / "sub", *BASE))
    assert "cannot be written" in line


@pytest.mark.parametrize("content", ["[1, 2, 3]", "null"])
def test_config_must_be_a_json_object(table, tmp_path, content):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(content)
    line = _one_error(cli(table, "--out", tmp_path / "o", "--config", cfg, *BASE))
    assert "JSON object" in line


def test_levels_larger_than_the_data_are_reported(table, tmp_path):
    proc = cli(table, "--out", tmp_path / "o", "--levels", "500,3", *BASE)
    assert proc.returncode == 0, proc.stderr
    assert "note: L1: asked for k=500" in proc.stderr
    notes = load_model(tmp_path / "o" / "model.json").stats["notes"]
    assert any("k=500" in n for n in notes)
    assert json.loads((tmp_path / "o" / "evaluation.json").read_text())
