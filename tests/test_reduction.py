import numpy as np
import pytest
from sklearn.decomposition import PCA

from hercules_core.errors import InputError
from hercules_core.reduction import fit_pca, project, reduce_hierarchy
from devkit.factories import make_hierarchy, make_numeric_dataset, make_text_dataset


def blobs(n=600, d=12, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, d)) * 5
    return (centers[rng.integers(0, 4, n)] + rng.normal(size=(n, d))).astype(np.float32)


@pytest.mark.parametrize("k", [2, 3])
def test_projection_equals_sklearn_transform(k):
    X = blobs()
    params = fit_pca(X, k, random_state=0)
    ref = PCA(n_components=k, random_state=0).fit(X)
    out = project(params, X)
    assert out.dtype == np.float32 and out.shape == (len(X), k)
    np.testing.assert_allclose(out, ref.transform(X), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(params["explained_variance_ratio"], ref.explained_variance_ratio_, rtol=1e-5)
    assert params["n_components"] == k and params["components"].shape == (k, X.shape[1])
    assert "600 of 600 rows" in params["fitted_on"]


def test_projection_of_other_arrays_and_of_many_blocks():
    X = blobs(n=70_000, d=6)  # more rows than one projection block
    params = fit_pca(X, 2, random_state=1, max_fit_rows=5_000)
    assert "5000 of 70000 rows" in params["fitted_on"]
    naive = (X.astype(np.float64) - params["mean"]) @ params["components"].T
    np.testing.assert_allclose(project(params, X), naive, rtol=1e-4, atol=1e-4)
    # float64 input (e.g. centroids computed in float64) is projected too, result float32
    assert project(params, X[:5].astype(np.float64)).dtype == np.float32


def test_fit_on_a_sample_is_deterministic_and_close_to_the_full_fit():
    X = blobs(n=4_000)
    a = fit_pca(X, 2, random_state=3, max_fit_rows=1_000)
    b = fit_pca(X, 2, random_state=3, max_fit_rows=1_000)
    np.testing.assert_array_equal(a["components"], b["components"])
    full = fit_pca(X, 2, random_state=3)
    # same leading subspace: |cos| between matching components near 1
    cos = np.abs(np.sum(a["components"] * full["components"], axis=1))
    assert np.all(cos > 0.95)


def test_padding_when_fewer_dimensions_than_components():
    X = np.random.default_rng(0).normal(size=(50, 1)).astype(np.float32)
    params = fit_pca(X, 3, random_state=0)
    assert params["components"].shape == (3, 1)
    assert np.all(params["components"][1:] == 0) and np.all(params["explained_variance_ratio"][1:] == 0)
    out = project(params, X)
    assert out.shape == (50, 3) and np.all(out[:, 1:] == 0)
    np.testing.assert_allclose(np.abs(out[:, 0]), np.abs(X[:, 0] - X[:, 0].mean()), rtol=1e-5, atol=1e-6)


def test_degenerate_inputs():
    one_row = fit_pca(np.ones((1, 4), np.float32), 2, random_state=0)
    assert project(one_row, np.ones((1, 4), np.float32)).tolist() == [[0.0, 0.0]]
    constant = fit_pca(np.ones((10, 4), np.float32), 2, random_state=0)
    assert np.all(np.isfinite(constant["explained_variance_ratio"]))
    with pytest.raises(InputError, match="NaN"):
        fit_pca(np.array([[np.nan, 1.0], [0.0, 1.0]]), 2, random_state=0)
    with pytest.raises(InputError, match="2-D"):
        fit_pca(np.ones(5), 2, random_state=0)
    params = fit_pca(blobs(d=5), 2, random_state=0)
    with pytest.raises(InputError, match="fitted on 5 dimensions"):
        project(params, np.ones((3, 4)))


def test_reduce_hierarchy_sets_every_level():
    h = make_hierarchy(make_text_dataset(120), ks=(10, 4, 2), dim=24)
    reduce_hierarchy(h, 2, random_state=0)
    assert set(h.reducers) == {"representation", "description"}
    assert h.reducers["representation"]["fitted_on"].startswith("levels[0].vectors: 120 of 120 rows")
    for lv in h.levels:
        assert set(lv.reductions) == {"representation", "description"}
        for space, arr in (("representation", lv.vectors), ("description", lv.desc_embeddings)):
            red = lv.reductions[space]
            assert red.dtype == np.float32 and red.shape == (len(lv), 2)
            np.testing.assert_allclose(red, project(h.reducers[space], arr), rtol=1e-6)


def test_description_space_fitted_on_upper_levels_when_items_have_none():
    h = make_hierarchy(ks=(6, 2), dim=8)
    h.levels[0].desc_embeddings = None
    h.levels[2].desc_embeddings = None
    reduce_hierarchy(h, 3, random_state=0)
    assert h.reducers["description"]["fitted_on"].startswith("levels[1:].desc_embeddings: 6 of 6 rows")
    assert "description" not in h.levels[0].reductions and "description" not in h.levels[2].reductions
    assert h.levels[1].reductions["description"].shape == (6, 3)


def test_one_numeric_variable_is_padded():
    h = make_hierarchy(make_numeric_dataset(p=1), ks=(5, 2), dim=1)
    h.levels[0].desc_embeddings = None
    for lv in h.levels[1:]:
        lv.desc_embeddings = None
    reduce_hierarchy(h, 2, random_state=0)
    assert "description" not in h.reducers
    for lv in h.levels:
        red = lv.reductions["representation"]
        assert red.shape == (len(lv), 2) and np.all(red[:, 1] == 0)


def test_description_mode_upper_vectors_use_the_description_reducer():
    # numeric items (3-d) but upper levels clustered on 8-d description embeddings
    h = make_hierarchy(make_numeric_dataset(p=3), ks=(6, 2), dim=3)
    rng = np.random.default_rng(0)
    for lv in h.levels:
        lv.desc_embeddings = rng.normal(size=(len(lv), 8)).astype(np.float32)
    h.levels[2].vectors = rng.normal(size=(2, 8)).astype(np.float32)
    reduce_hierarchy(h, 2, random_state=0)
    np.testing.assert_allclose(h.levels[2].reductions["representation"],
                               project(h.reducers["description"], h.levels[2].vectors), rtol=1e-6)
    np.testing.assert_allclose(h.levels[1].reductions["representation"],
                               project(h.reducers["representation"], h.levels[1].vectors), rtol=1e-6)


def test_one_array_for_both_spaces_is_fitted_and_projected_once(monkeypatch):
    from hercules_core import reduction
    h = make_hierarchy(ks=(6, 2), dim=8)
    h.levels[0].desc_embeddings = h.levels[0].vectors  # what a text run in direct mode does
    calls = []
    real = reduction.fit_pca
    monkeypatch.setattr(reduction, "fit_pca", lambda X, *a, **k: calls.append(len(X)) or real(X, *a, **k))
    reduce_hierarchy(h, 2, random_state=0)
    assert calls == [60]
    assert h.reducers["description"]["fitted_on"].startswith("levels[0].desc_embeddings: 60 of 60 rows")
    r = h.levels[0].reductions
    np.testing.assert_array_equal(r["representation"], r["description"])
