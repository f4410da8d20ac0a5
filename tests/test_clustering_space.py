"""The clustering space (UMAP before level 1): shapes, determinism, the cache, the saved record,
what assigning new items relies on, and the hierarchy invariants when clustering in it."""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hercules_core import io, reduction
from hercules_core.cache import Cache
from hercules_run.cli import _config, build_parser
from hercules_core.clients.fakes import FakeEmbedder
from hercules_core.config import HerculesConfig
from hercules_core.errors import ConfigError
from hercules_core.hercules import Hercules
from devkit.factories import make_numeric_dataset, make_text_dataset
from tests.test_hercules import check_invariants

# small neighbourhoods keep UMAP fast on test-sized data; "umap" bypasses the 300-item auto floor
UMAP = dict(reduce_method="umap", reduce_neighbors=10)


def fit(ds, cache=None, embedder=None, **cfg):
    model = Hercules(HerculesConfig(**cfg), text_embedder=embedder or FakeEmbedder(32), cache=cache)
    return model.fit(ds).hierarchy_


@pytest.fixture(scope="module")
def text_ds():
    return make_text_dataset(n=240, seed=3)


@pytest.fixture(scope="module")
def umap_h(text_ds):
    return fit(text_ds, level_cluster_counts=(12, 3), random_state=7, **UMAP)


def test_levels_cluster_reduced_vectors_but_store_original_space_centroids(text_ds, umap_h):
    h = umap_h
    check_invariants(h)
    rec = h.reducers[reduction.CLUSTERING]
    assert rec["method"] == "umap" and rec["metric"] == "cosine" and rec["version"] == reduction.CLUSTERING_VERSION
    assert rec["items"].shape == (240, 5) and rec["items"].dtype == np.float32
    assert rec["centroids_L1"].shape == (12, 5) and rec["centroids_L2"].shape == (3, 5)
    # level 1 is k-means in the reduced space, then settled in the stored space (what assign uses):
    # every item sits nearest its own cluster's stored centroid, and the reduced centroids that the
    # level above clusters are the means of the reduced items
    a1 = h.assignments(1)
    stored = ((h.levels[0].vectors[:, None, :] - h.levels[1].vectors[None]) ** 2).sum(-1)
    assert np.mean(stored.argmin(1) == a1) == 1.0
    for j in range(12):
        np.testing.assert_allclose(rec["centroids_L1"][j], rec["items"][a1 == j].mean(0), atol=1e-5)
    # stored vectors stay in the embedding space: level-1 vectors are the (unit) means of their items
    assert h.levels[1].vectors.shape == (12, 32)
    items = h.levels[0].vectors
    for j in range(12):
        mean = items[a1 == j].mean(0)
        np.testing.assert_allclose(h.levels[1].vectors[j], mean / np.linalg.norm(mean), atol=1e-5)
    assert h.stats["clustering_space"]["method"] == "umap"
    assert any("UMAP" in note for note in h.stats["notes"])


def test_same_seed_same_space_and_hierarchy_other_seed_other_space(text_ds, umap_h):
    again = fit(text_ds, level_cluster_counts=(12, 3), random_state=7, **UMAP)
    np.testing.assert_array_equal(again.reducers["clustering"]["items"], umap_h.reducers["clustering"]["items"])
    for a, b in zip(umap_h.levels, again.levels):
        assert np.array_equal(a.parent, b.parent)
    other = fit(text_ds, level_cluster_counts=(12, 3), random_state=8, **UMAP)
    assert not np.array_equal(other.reducers["clustering"]["items"], umap_h.reducers["clustering"]["items"])


def test_reduced_vectors_are_cached_by_content(tmp_path, text_ds, umap_h, monkeypatch):
    with Cache(tmp_path / "cache") as cache:
        first = fit(text_ds, cache=cache, level_cluster_counts=(12, 3), random_state=7, **UMAP)
        assert cache.stats()["by_kind"]["red"] == {"hits": 0, "misses": 1}

        def no_umap(*a, **k):
            raise AssertionError("UMAP was recomputed although its result is cached")

        import umap

        monkeypatch.setattr(umap, "UMAP", no_umap)
        second = fit(text_ds, cache=cache, level_cluster_counts=(12, 3), random_state=7, **UMAP)
        assert cache.stats()["by_kind"]["red"]["hits"] == 1
        assert next(n for n in second.stats["notes"] if "UMAP" in n).endswith("from the cache.")
    for h in (first, second):
        np.testing.assert_array_equal(h.reducers["clustering"]["items"], umap_h.reducers["clustering"]["items"])
        assert np.array_equal(h.levels[1].parent, umap_h.levels[1].parent)


def test_model_records_the_space_and_reloads(tmp_path, umap_h):
    path = tmp_path / "model.json"
    io.save_model(umap_h, path)
    g = io.load_model(path)
    assert g.config.reduce_method == "umap" and g.config.reduce_neighbors == 10
    rec, rec2 = umap_h.reducers["clustering"], g.reducers["clustering"]
    assert set(rec2) == set(rec)
    for key, value in rec.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(rec2[key], value)
        else:
            assert rec2[key] == value
    np.testing.assert_array_equal(reduction.clustering_centroids(g, 1), rec["centroids_L1"])


def test_a_model_saved_before_the_clustering_space_loads_as_unreduced(tmp_path):
    h = fit(make_text_dataset(n=40), level_cluster_counts=(4,), reduce_method="none")
    path = tmp_path / "model.json"
    io.save_model(h, path)
    doc = json.loads(path.read_text())
    for key in [k for k in doc["config"] if k.startswith("reduce_")]:
        del doc["config"][key]
    path.write_text(json.dumps(doc))
    g = io.load_model(path)
    assert g.config.reduce_method == "none" and "clustering" not in g.reducers
    np.testing.assert_array_equal(reduction.clustering_centroids(g, 1), g.levels[1].vectors)


def test_without_a_reducer_the_clustering_centroids_are_the_level_vectors():
    h = fit(make_text_dataset(n=40), level_cluster_counts=(4,), reduce_method="none")
    assert "clustering" not in h.reducers
    np.testing.assert_array_equal(reduction.clustering_centroids(h, 1), h.levels[1].vectors)


def test_original_space_level1_centroids_hold_their_items(umap_h):
    # what assign relies on: the nearest stored (original-space) level-1 centroid of an item is,
    # for nearly every item, the cluster it was put in by k-means in the reduced space
    h = umap_h
    items, C = h.levels[0].vectors, h.levels[1].vectors
    nearest = ((items[:, None, :] - C[None]) ** 2).sum(-1).argmin(1)
    assert np.mean(nearest == h.assignments(1)) >= 0.9


def test_auto_reduces_embeddings_of_enough_items_only():
    cfg = HerculesConfig()
    assert reduction.choose_method(cfg, "text", 1225, 384)[0] == "umap"
    assert reduction.choose_method(cfg, "image", 1797, 297)[0] == "umap"
    assert reduction.choose_method(cfg, "numeric", 5000, 13)[0] == "none"  # a narrow table: as it is
    assert reduction.choose_method(cfg, "numeric", 1797, 64)[0] == "umap"  # a wide one (pixels): reduced
    assert reduction.choose_method(cfg.replace(representation_mode="description"), "numeric", 500, 3)[0] == "umap"
    method, why = reduction.choose_method(cfg, "text", 200_000, 384)
    assert method == "none" and "reduce_max_items" in why and "reduce_method='umap'" in why
    method, why = reduction.choose_method(cfg, "text", 100, 384)
    assert method == "none" and "reduce_min_items" in why
    assert reduction.choose_method(cfg.replace(reduce_method="umap"), "numeric", 100, 3)[0] == "umap"
    assert reduction.choose_method(cfg.replace(reduce_method="umap"), "text", 5, 384)[0] == "none"
    assert reduction.choose_method(cfg.replace(reduce_method="none"), "text", 5000, 384)[0] == "none"
    h = fit(make_numeric_dataset(n=400), level_cluster_counts=(8, 2))
    assert "clustering" not in h.reducers and h.stats["clustering_space"] == {"method": "none"}


def test_description_mode_reduces_level_one_only():
    ds = make_text_dataset(n=120)
    h = fit(ds, level_cluster_counts=(10, 3), representation_mode="description", random_state=1, **UMAP)
    check_invariants(h)
    rec = h.reducers["clustering"]
    assert "centroids_L1" in rec and "centroids_L2" not in rec


def test_config_and_cli_flags():
    with pytest.raises(ConfigError, match="reduce_method"):
        HerculesConfig(reduce_method="tsne")
    with pytest.raises(ConfigError, match="reduce_neighbors"):
        HerculesConfig(reduce_neighbors=1)
    with pytest.raises(ConfigError, match="reduce_min_dist"):
        HerculesConfig(reduce_min_dist=2.0)
    args = build_parser().parse_args(["run", "x.csv", "--out", "o", "--reduce", "none", "--reduce-dims", "3",
                                      "--reduce-neighbors", "20", "--llm", "keywords"])
    cfg = _config(args)
    assert (cfg.reduce_method, cfg.reduce_components, cfg.reduce_neighbors) == ("none", 3, 20)
    assert _config(build_parser().parse_args(["run", "x.csv", "--out", "o", "--llm", "keywords"])).reduce_method == "auto"


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(12, 60), ks=st.lists(st.integers(1, 12), min_size=1, max_size=3), seed=st.integers(0, 2**16),
       weighted=st.booleans())
def test_hierarchy_invariants_hold_in_the_reduced_space(n, ks, seed, weighted):
    ks = tuple(sorted(set(ks), reverse=True))
    ds = make_numeric_dataset(n=n, p=3, seed=seed)
    h = fit(ds, level_cluster_counts=ks, random_state=seed, weight_by_size=weighted, reduce_method="umap",
            reduce_neighbors=5)
    check_invariants(h)


def test_progress_says_what_the_reduction_step_is_doing(text_ds):
    seen = []
    Hercules(HerculesConfig(level_cluster_counts=(6,), **UMAP), text_embedder=FakeEmbedder(32),
             progress=lambda stage, done, total: seen.append(stage)).fit(text_ds)
    umap_stages = [s for s in seen if "UMAP" in s]
    assert umap_stages and "compiles" in umap_stages[0]  # the ~20 s of numba compilation is announced
    assert seen.index(umap_stages[0]) < seen.index("clustering level 1")


def test_assign_reports_how_often_it_reproduces_level1_and_the_figure_survives_saving(tmp_path, text_ds, umap_h):
    """New items go to the nearest original-space level-1 centroid; the model measures at fit how often
    that is a training item's own cluster (all of them once level 1 is settled), and assign says so."""
    from hercules_core.assign import assign, describe

    agreement = umap_h.assign_info["training_agreement"]
    assert agreement == 1.0 and "approximate" not in describe(umap_h)
    result = assign(umap_h, text_ds, text_embedder=FakeEmbedder(32))
    assert agreement == pytest.approx(np.mean(result.labels[:, 0] == umap_h.levels[0].parent), abs=1e-4)
    assert f"{agreement:.1%} of the time" in describe(umap_h) and f"{agreement:.1%}" in result.how
    io.save_model(umap_h, tmp_path / "m.json")
    assert describe(io.load_model(tmp_path / "m.json")) == describe(umap_h)
    unreduced = fit(text_ds, level_cluster_counts=(12, 3), reduce_method="none")
    assert unreduced.assign_info["training_agreement"] >= 0.99 and "approximate" not in describe(unreduced)
    low = dict(umap_h.assign_info, training_agreement=0.7)
    umap_h.assign_info, saved = low, umap_h.assign_info
    try:
        assert describe(umap_h).endswith("70.0% of the time: treat the clusters given to new items as approximate.")
    finally:
        umap_h.assign_info = saved


def test_the_fits_settle_measures_the_agreement_assign_reports(monkeypatch):
    """Level 1's settle ends with a search over every centroid; the fit hands its agreement to the
    assign section instead of searching again: the figure is the one a full search gives, also when
    the settle used its cheap steps (many clusters, 64+ dimensions)."""
    import importlib

    from hercules_core import kmeans as km

    assign_mod = importlib.import_module("hercules_core.assign")  # the package exports a function of that name

    ds = make_text_dataset(n=900, seed=5)
    monkeypatch.setattr(km, "SETTLE_CANDIDATES", 4)  # 20 clusters > 2 x 4: cheap steps
    searches = []
    real = assign_mod.nearest_centroids
    monkeypatch.setattr(assign_mod, "nearest_centroids", lambda X, C: searches.append(1) or real(X, C))
    h = fit(ds, embedder=FakeEmbedder(64), level_cluster_counts=(20, 4), reduce_method="none")
    assert searches == []  # the fit did not search again
    measured = assign_mod.assignment_info(h)["training_agreement"]
    assert searches == [1] and h.assign_info["training_agreement"] == measured >= 0.99
