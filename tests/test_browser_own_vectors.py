"""Own embeddings in the new-run form, in headless Chromium: a Parquet upload's vector column is
offered and chosen (the estimate then embeds no item), the run finishes; a .npy beside a CSV is
staged through the chunk route and acknowledged."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from devkit import browser_support as bs

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

bs.skip_without_browser()
from devkit.browser_support import browser, page  # noqa: E402,F401  (the shared fixtures)
from tests.test_browser import configure, run_and_watch, upload  # noqa: E402

TOPICS = ["cats dogs pets", "stock market prices", "rain snow weather"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from bs.serve_module(tmp_path_factory)


def _vectors(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(size=(3, 8)) * 3)[np.arange(n) % 3] + rng.normal(size=(n, 8))


def test_a_vector_column_is_chosen_in_the_form_and_runs(page, server, tmp_path):
    n = 90
    path = tmp_path / "own.parquet"
    table = pa.table({"id": [f"i{k}" for k in range(n)], "text": [f"text {k} about {TOPICS[k % 3]}" for k in range(n)]})
    X = _vectors(n).astype(np.float32)
    pq.write_table(table.append_column("emb", pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 8)), path)
    upload(page, server, path)
    assert page.query_selector(".upload-ok"), page.inner_text("#data-upload-msg")
    page.wait_for_selector("#data-vector-box", state="visible")
    options = page.eval_on_selector_all("#data-vector-col option", "els => els.map(e => [e.value, e.textContent])")
    assert [o for o in options if o[1]] == [["", "(none: embed the texts)"], ["emb", "emb"]]  # not id or text
    configure(page, "6,2", llm="keywords")
    assert f"{n + 16} texts to embed" in page.inner_text("#cost-preview")
    page.select_option("#data-vector-col", "emb")
    page.wait_for_function("() => document.querySelector('#cost-preview').innerText.includes('; 0 texts to embed;')",
                           timeout=20_000)
    run_id, _ = run_and_watch(page, "own-vectors")
    assert "Run finished" in page.inner_text(".run-result"), page.inner_text(".run-result")
    assert page.errors == [], page.errors


def test_a_vectors_file_beside_a_csv(page, server, tmp_path):
    n = 30
    csv = tmp_path / "d.csv"
    csv.write_text("id,text\n" + "".join(f"i{k},text {k} about {TOPICS[k % 3]}\n" for k in range(n)))
    np.save(tmp_path / "v.npy", _vectors(n))
    upload(page, server, csv)
    assert not page.is_visible("#data-vector-box")  # a CSV has no vector column
    page.set_input_files("#vectors-upload input[type=file]", str(tmp_path / "v.npy"))
    page.wait_for_selector("#vectors-upload-msg .text-success", timeout=20_000)
    assert "30 vectors of 8 dimensions from v.npy" in page.inner_text("#vectors-upload-msg")
    page.wait_for_function("() => document.querySelector('#cost-preview').innerText.includes('; 0 texts to embed;')",
                           timeout=20_000)
    assert page.errors == [], page.errors
