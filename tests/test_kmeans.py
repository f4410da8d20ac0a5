import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from hercules_core import kmeans as km
from hercules_core.errors import ConfigError


def blobs(n=600, k=6, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * 6
    y = rng.integers(0, k, size=n)
    return (centers[y] + rng.normal(size=(n, d))).astype(np.float32), y


@pytest.mark.parametrize("backend", ["sklearn", "faiss", "minibatch"])
def test_backends_recover_planted_clusters(backend):
    X, y = blobs()
    res = km.kmeans(X, 6, rng=np.random.default_rng(1), backend=backend, n_init=3)
    assert res.backend == backend
    assert res.labels.shape == (600,) and res.centroids.shape == (6, 8)
    assert adjusted_rand_score(y, res.labels) > 0.95
    assert np.bincount(res.labels, minlength=6).min() > 0


def test_same_seed_same_result_and_no_global_rng():
    X, _ = blobs()
    a = km.kmeans(X, 5, rng=np.random.default_rng(3))
    np.random.seed(123)  # global state must not matter
    b = km.kmeans(X, 5, rng=np.random.default_rng(3))
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.centroids, b.centroids)


def test_weighted_centroids_are_weighted_means():
    X, _ = blobs(n=200)
    w = np.random.default_rng(0).integers(1, 20, size=200).astype(float)
    for backend in ("sklearn", "faiss"):
        res = km.kmeans(X, 4, rng=np.random.default_rng(0), sample_weight=w, backend=backend)
        for j in range(4):
            m = res.labels == j
            np.testing.assert_allclose(res.centroids[j], np.average(X[m], axis=0, weights=w[m]), atol=1e-3)


def test_weights_change_the_result():
    # two points far apart with a huge weight pull a centroid; unweighted they would not
    X = np.array([[0.0], [1.0], [2.0], [10.0]], dtype=np.float32)
    w = np.array([1, 1, 1, 1000.0])
    res = km.kmeans(X, 1, rng=np.random.default_rng(0), sample_weight=w)
    assert res.centroids[0, 0] > 9.9


def test_no_empty_clusters_even_with_duplicates():
    X = np.zeros((50, 3), dtype=np.float32)
    X[:3] = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    res = km.kmeans(X, 5, rng=np.random.default_rng(0))
    assert np.bincount(res.labels, minlength=5).min() >= 1


def test_k_out_of_range():
    with pytest.raises(ConfigError, match="k must be between"):
        km.kmeans(np.zeros((3, 2), np.float32), 4, rng=np.random.default_rng(0))


def test_assign_matches_bruteforce():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20000, 5)).astype(np.float32)
    C = rng.normal(size=(7, 5)).astype(np.float32)
    brute = np.argmin(((X[:, None, :] - C[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(km.assign(X, C), brute)


def test_resampling_keeps_k_and_labels_valid():
    X, y = blobs(n=800, k=5)
    res = km.kmeans(X, 5, rng=np.random.default_rng(0))
    ref = km.resample_refine(X, res, rng=np.random.default_rng(0), iterations=3, points_per_cluster=10)
    assert ref.backend.endswith("+resampling")
    assert np.bincount(ref.labels, minlength=5).min() > 0
    assert np.array_equal(ref.labels, km.assign(X, ref.centroids)) or adjusted_rand_score(y, ref.labels) > 0.9
    assert adjusted_rand_score(y, ref.labels) > 0.9


def test_k_candidates_respect_min_reduction():
    assert max(km.k_candidates(15, 2, 50, 2.0)) == 7  # never 15 -> 14: at least halve
    assert km.k_candidates(3, 2, 50, 2.0) == []
    c = km.k_candidates(10_000, 2, 500, 2.0)
    assert len(c) <= 12 and c[0] == 2 and c[-1] == 500


@pytest.mark.parametrize("method", ["silhouette", "davies_bouldin", "calinski_harabasz"])
def test_choose_k_finds_planted_k(method):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 6, size=900)
    X = (10 * np.eye(6)[y] + rng.normal(size=(900, 6))).astype(np.float32)  # six well-separated blobs
    k, scores = km.choose_k(X, list(range(2, 12)), method=method, rng=np.random.default_rng(0), sample_size=500)
    assert k == 6, scores
