"""Assigning new items to a saved hierarchy: correctness on the training items, novelty, every
modality and mode, the model file's assignment section, bad input, the CLI."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from hercules_core import AssignError, Hercules, HerculesConfig, InputError, assign, load_model, prepare, save_model
from hercules_core.cache import Cache, CachedEmbedder
from hercules_core.clients.fakes import FakeEmbedder
from hercules_core.clients.image_features import ImageFeatureEmbedder
from hercules_core.dataset import Dataset
from hercules_core.errors import ConfigError
from hercules_core.io import membership_frame
from devkit.factories import make_text_dataset

ROOT = Path(__file__).resolve().parents[1]


def blobs_frame(n=3000, p=6, seed=0):
    X, y = make_blobs(n_samples=n, n_features=p, centers=12, cluster_std=2.0, random_state=seed)
    df = pd.DataFrame(X * [1, 10, 100, 1, 5, 0.1][:p] + 50, columns=[f"v{j}" for j in range(p)])
    df.insert(0, "id", [f"r{i}" for i in range(n)])
    return df


def fit(ds, emb=None, image_emb=None, **cfg):
    cfg.setdefault("level_cluster_counts", (30, 8, 3))
    return Hercules(HerculesConfig(**cfg), text_embedder=emb, image_embedder=image_emb).fit(ds).hierarchy_


def level1_agreement(h, result):
    return float(np.mean(result.labels[:, 0] == h.levels[0].parent))


@pytest.fixture(scope="module")
def numeric_model(tmp_path_factory):
    df = blobs_frame()
    path = tmp_path_factory.mktemp("num") / "data.csv"
    df.to_csv(path, index=False)
    h = fit(prepare(path, numeric_columns=[c for c in df.columns if c != "id"], id_column="id"))
    model = path.parent / "model.json"
    save_model(h, model)
    return h, model, path, df


def test_training_items_get_their_own_level1_clusters_back_numeric(numeric_model):
    h, model, path, df = numeric_model
    loaded = load_model(model)
    result = assign(loaded, path, id_column="id")
    assert level1_agreement(h, result) >= 0.99
    # the parents follow the tree: every level agrees with memberships.csv wherever level 1 does
    members = membership_frame(h)
    same = result.labels[:, 0] == h.levels[0].parent
    for level in range(1, h.top_level + 1):
        col = f"L{level}_cluster_id"
        assert (result.frame[col].to_numpy()[same] == members[col].to_numpy()[same]).all()
    assert list(result.frame.columns) == list(members.columns) + ["distance", "novel"]
    assert result.frame["item_id"].tolist() == df["id"].tolist()
    # about 5% of the training items lie beyond their cluster's 95th percentile, by construction
    assert 0.02 <= result.novel.mean() <= 0.08


def test_far_away_items_are_novel_and_typical_ones_are_not(numeric_model):
    h, model, path, df = numeric_model
    cols = [c for c in df.columns if c != "id"]
    centre = df[cols].iloc[:1].to_numpy()
    far = centre + df[cols].std().to_numpy() * 40
    new = pd.DataFrame(np.vstack([centre, far]), columns=cols)
    result = assign(load_model(model), new)
    assert result.novel.tolist() == [False, True]
    assert result.distance[1] > 10 * result.distance[0]


def test_columns_are_taken_by_name_not_position(numeric_model):
    h, model, path, df = numeric_model
    shuffled = df[["id"] + list(reversed([c for c in df.columns if c != "id"]))].head(200)
    result = assign(load_model(model), shuffled, id_column="id")
    assert np.mean(result.labels[:, 0] == h.levels[0].parent[:200]) >= 0.99


def test_text_direct_and_the_embedding_cache(tmp_path):
    ds = make_text_dataset(n=300)
    # reduce_method="none": k-means cells in the stored space, so assignment reproduces level 1
    # exactly (with the UMAP space, tests/test_clustering_space.py measures how nearly)
    h = fit(ds, FakeEmbedder(32), level_cluster_counts=(12, 3), reduce_method="none")
    save_model(h, tmp_path / "model.json")
    loaded = load_model(tmp_path / "model.json")
    inner = FakeEmbedder(32)
    cache = Cache(tmp_path / "cache")
    emb = CachedEmbedder(inner, cache)
    frame = pd.DataFrame({"text": ds.texts, "id": ds.ids})
    result = assign(loaded, frame, text_embedder=emb, id_column="id")
    assert level1_agreement(h, result) >= 0.99
    calls = inner.texts_embedded
    again = assign(loaded, frame, text_embedder=emb, id_column="id")
    assert inner.texts_embedded == calls  # every text came from the cache the second time
    assert np.array_equal(again.labels, result.labels)
    cache.close()


def test_numeric_description_mode_embeds_the_same_value_strings(numeric_model):
    h0, _, path, df = numeric_model
    ds = prepare(path, numeric_columns=[c for c in df.columns if c != "id"], id_column="id")
    h = fit(ds, FakeEmbedder(64), representation_mode="description", level_cluster_counts=(10, 3),
            reduce_method="none")
    result = assign(h, path, text_embedder=FakeEmbedder(64), id_column="id")
    assert level1_agreement(h, result) >= 0.99
    assert "value strings" in result.how and "exactly as in training" in result.how


def test_image_direct(tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    paths = []
    for i in range(120):
        p = tmp_path / f"{i:03d}.png"
        Image.fromarray((d.images[i] * 255 / 16).astype(np.uint8)).resize((32, 32)).save(p)
        paths.append(str(p))
    emb = ImageFeatureEmbedder(show_progress=False)
    h = fit(prepare(paths), image_emb=emb, level_cluster_counts=(10, 3))
    save_model(h, tmp_path / "model.json")
    result = assign(load_model(tmp_path / "model.json"), paths[:50], image_embedder=emb)
    assert np.mean(result.labels[:, 0] == h.levels[0].parent[:50]) >= 0.99
    with pytest.raises(ConfigError, match="needs the image embedder"):
        assign(h, paths[:5])


# ----------------------------------------------------------------------------- self-consistency
class PlantedImages:
    """An image embedder that returns planted image-like vectors (non-negative, unit length) by path."""

    model_id = "planted-images"

    def __init__(self, paths, vectors):
        self.table = dict(zip(paths, vectors))

    def embed_images(self, paths):
        return np.stack([self.table[p] for p in paths])


def planted_numeric(n=400, p=20, seed=0):
    X, y = make_blobs(n_samples=n, n_features=p, centers=6, cluster_std=3.0, random_state=seed)
    df = pd.DataFrame(X * 7 + 30, columns=[f"v{j}" for j in range(p)])
    return prepare(df, numeric_columns=list(df.columns)), None, None


def planted_text(n=400, seed=0):
    return make_text_dataset(n=n, seed=seed), FakeEmbedder(32), None


def planted_images(n=400, seed=0):
    X, y = make_blobs(n_samples=n, n_features=48, centers=8, cluster_std=2.5, random_state=seed)
    X = np.abs(X).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    paths = [f"/planted/{kind}_{i}.png" for i, kind in zip(range(n), ("cat", "dog", "car", "tree") * n)]
    ds = Dataset(ids=[f"img{i}" for i in range(n)], modality="image", image_paths=paths, source="test")
    return ds, FakeEmbedder(32), PlantedImages(paths, X)


@pytest.mark.parametrize("kind, mode, reduce", [
    ("text", "direct", "auto"), ("text", "description", "auto"), ("text", "direct", "umap"),
    ("numeric", "direct", "auto"), ("numeric", "description", "auto"), ("numeric", "direct", "umap"),
    ("image", "direct", "auto"), ("image", "description", "umap"),
])
def test_the_runs_own_items_assign_back_to_their_level1_clusters(tmp_path, kind, mode, reduce):
    """With the default clustering space (UMAP before level 1), level 1 is settled to the rule assign
    uses (nearest stored level-1 centroid), so a run's own items come back to their clusters."""
    ds, text_emb, image_emb = {"text": planted_text, "numeric": planted_numeric, "image": planted_images}[kind]()
    if mode == "description" and text_emb is None:
        text_emb = FakeEmbedder(64)
    # many level-1 clusters per planted group: their borders inside a group are where UMAP and the
    # stored space disagree (before settling: 86-98% came back on these sets)
    h = fit(ds, text_emb, image_emb, level_cluster_counts=(30, 4), representation_mode=mode, reduce_method=reduce)
    assert h.stats["clustering_space"]["method"] == "umap"
    save_model(h, tmp_path / "model.json")
    loaded = load_model(tmp_path / "model.json")
    result = assign(loaded, ds, text_embedder=text_emb, image_embedder=image_emb)
    assert level1_agreement(h, result) >= 0.99
    assert loaded.assign_info["training_agreement"] >= 0.99
    assert "approximate" not in result.how


# ----------------------------------------------------------------------------- bad input changes nothing
def test_model_of_another_modality_says_so(numeric_model):
    h, model, *_ = numeric_model
    before = model.read_bytes()
    with pytest.raises(InputError, match="This model clusters numeric items, but the data holds text items"):
        assign(h, ["a new text", "another one"], text_embedder=FakeEmbedder(32))
    assert model.read_bytes() == before


def test_missing_text_column_names_the_columns(tmp_path):
    h = fit(make_text_dataset(n=80), FakeEmbedder(32), level_cluster_counts=(6, 2))
    path = tmp_path / "new.csv"
    pd.DataFrame({"body": ["x y", "z"], "id": [1, 2]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="no column named 'text'.*body, id"):
        assign(h, path, text_embedder=FakeEmbedder(32))
    with pytest.raises(InputError, match="no column 'message'"):
        assign(h, path, text_embedder=FakeEmbedder(32), text_column="message")


def test_missing_numeric_columns_and_dimension_mismatch(numeric_model):
    h, *_ = numeric_model
    with pytest.raises(InputError, match="no column\\(s\\) 'v5'"):
        assign(h, pd.DataFrame({f"v{j}": [1.0, 2.0] for j in range(5)}))
    with pytest.raises(InputError, match="Dimension mismatch: the model was built on 6 numeric variables"):
        assign(h, np.ones((3, 4)))


def test_a_different_embedder_is_refused():
    h = fit(make_text_dataset(n=80), FakeEmbedder(32), level_cluster_counts=(6, 2))
    with pytest.raises(ConfigError, match="built with the text embedder 'fake-hash-32', but 'fake-hash-16'"):
        assign(h, ["new text"], text_embedder=FakeEmbedder(16))


def test_old_models_without_assignment_data_ask_for_a_rerun(numeric_model, tmp_path):
    h, model, path, _ = numeric_model
    doc = json.loads(model.read_text())
    assert doc["assign"]["version"] == 1
    del doc["assign"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    with pytest.raises(AssignError, match="missing the \"assign\" section.*Re-run"):
        assign(load_model(old), path)


# ----------------------------------------------------------------------------- CLI
def cli(*args):
    return subprocess.run([sys.executable, "-m", "hercules_core", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_cli_assign_writes_memberships_columns_plus_distance_and_novel(numeric_model, tmp_path):
    h, model, path, df = numeric_model
    new = tmp_path / "new.csv"
    df.head(100).to_csv(new, index=False)
    proc = cli("assign", model, new, "--id-column", "id", "--out", tmp_path / "out", "--quiet")
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(tmp_path / "out" / "assignments.csv", dtype=str)
    assert list(out.columns) == list(membership_frame(h).columns) + ["distance", "novel"]
    assert out["item_id"].tolist() == df["id"].head(100).tolist()
    assert (out["L1_cluster_id"] == membership_frame(h)["L1_cluster_id"].head(100)).mean() >= 0.99
    assert "100 items assigned" in proc.stderr and "standardised with the model's own means" in proc.stderr


def test_cli_assign_bad_input_is_one_error_line(numeric_model, tmp_path):
    h, model, path, df = numeric_model
    new = tmp_path / "new.csv"
    df.drop(columns=["v2"]).head(5).to_csv(new, index=False)
    proc = cli("assign", model, new, "--out", tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "'v2'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "assignments.csv").exists()


@pytest.mark.slow
def test_cli_run_then_assign_with_minilm_reproduces_level1(tmp_path):
    """Real MiniLM embeddings: the embedder is found in the registry by the id the model saved, and
    the texts come from the embedding cache the run filled (the assign step embeds nothing new)."""
    fortune = ROOT.parent / "shared" / "data" / "fortune_dev8.csv"
    if not fortune.exists():
        fortune = ROOT / "tests" / "data" / "fortune_sample.csv"
    cache = tmp_path / "cache"
    run = subprocess.run([sys.executable, "-m", "hercules_core", "run", fortune, "--text-column", "text",
                          "--id-column", "id", "--levels", "40,8", "--embedder", "minilm", "--llm", "keywords",
                          "--reduce", "none", "--cache-dir", cache, "--out", tmp_path / "run", "--quiet"], cwd=ROOT, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    proc = cli("assign", tmp_path / "run" / "model.json", fortune, "--id-column", "id", "--cache-dir", cache,
               "--out", tmp_path / "assigned", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "embedded with all-MiniLM-L6-v2" in proc.stderr
    n = len(pd.read_csv(fortune))
    assert f"cache: {n:,} hits, 0 misses" in proc.stderr
    members = pd.read_csv(tmp_path / "run" / "memberships.csv", dtype=str)
    out = pd.read_csv(tmp_path / "assigned" / "assignments.csv", dtype=str)
    assert out["item_id"].tolist() == members["item_id"].tolist()
    assert (out["L1_cluster_id"] == members["L1_cluster_id"]).mean() >= 0.99
    assert (out["L2_cluster_id"] == members["L2_cluster_id"]).mean() >= 0.99
