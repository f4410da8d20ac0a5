"""The ZIP budget (issue 7, defect 3): the whole archive is judged before anything is extracted, a
refused or failed archive leaves nothing on disk, and a huge directory fails in seconds."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from callbacks import configform, job, runstore, uploads
from hercules_core import InputError, data, prepare
from tests.test_app_logic import data_url


def _png(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(seed).random((8, 8)) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_many_small_entries_of_zeros_are_refused_before_extraction(tmp_path):
    """Entries of exactly 1 MiB of zeros each pass the per-entry check; the archive as a whole does not."""
    zp = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(200):
            zf.writestr(f"img/{i:04d}.bmp", b"\0" * (1 << 20))
    assert zp.stat().st_size < 1 << 20  # a < 1 MB upload that would unpack to 200 MiB
    out = tmp_path / "out"
    t0 = time.monotonic()
    with pytest.raises(InputError, match="whole archive"):
        prepare(zp, extract_dir=out)
    assert time.monotonic() - t0 < 5
    assert _files(out) == [] and not out.exists()


def test_sixty_thousand_tiny_entries_fail_fast_with_nothing_extracted(tmp_path):
    zp = tmp_path / "tiny.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        for i in range(60_000):
            zf.writestr(f"t/{i}.png", b"x")
    out = tmp_path / "out"
    t0 = time.monotonic()
    with pytest.raises(InputError, match="60,000 entries"):
        prepare(zp, extract_dir=out)
    assert time.monotonic() - t0 < 10  # the directory is read, nothing is written
    assert not out.exists()


def test_a_failed_extraction_removes_what_it_wrote(tmp_path):
    zp = tmp_path / "broken.zip"
    good = _png()
    with zipfile.ZipFile(zp, "w") as zf:
        zf.writestr("a/0.png", good)
        zf.writestr("a/1.png", good)
        zf.writestr("b/2.png", _png(1))
    raw = bytearray(zp.read_bytes())
    pos = raw.rfind(_png(1)[20:40])  # corrupt the last entry's data: its CRC check fails
    raw[pos:pos + 8] = b"\xff" * 8
    zp.write_bytes(bytes(raw))
    out = tmp_path / "run" / "images"
    (tmp_path / "run").mkdir()
    with pytest.raises(InputError, match="cannot extract 'b/2.png'"):
        prepare(zp, extract_dir=out)
    assert _files(tmp_path / "run") == [] and not out.exists()


def test_a_failed_run_keeps_no_extracted_images(tmp_path):
    """A ZIP that extracts but holds a corrupt image: the run fails and its images folder is gone."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(5):
            zf.writestr(f"imgs/{i}.png", _png(i))
        zf.writestr("imgs/broken.png", b"not an image at all")
    desc = uploads.stage(tmp_path, ["photos.zip"], [data_url(buf.getvalue())])
    run_id = job.create_run(tmp_path, uploads.data_spec(desc), configform.config_from_form({"levels_text": "2"},
                                                                                            "fixed"),
                            {"image_embedder": "image-features", "llm": "keywords"})
    status = job.run(tmp_path, run_id)
    assert status["state"] == "failed" and "broken.png" in status["error"], status
    assert str(tmp_path) not in status["error"]
    assert not (runstore.run_dir(tmp_path, run_id) / "images").exists()


def test_an_archive_larger_than_the_free_space_is_refused(tmp_path, monkeypatch):
    zp = tmp_path / "ok.zip"
    with zipfile.ZipFile(zp, "w") as zf:
        for i in range(3):
            zf.writestr(f"{i}.png", _png(i))
    monkeypatch.setattr(data, "_free_bytes", lambda folder: 10)
    with pytest.raises(InputError, match="free"):
        prepare(zp, extract_dir=tmp_path / "o")
