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


def _spy_training_rows(monkeypatch):
    """Record how many rows each faiss k-means training sees."""
    import faiss

    seen, train = [], faiss.Clustering.train

    def spy(self, x, *args, **kwargs):
        seen.append(len(x))
        return train(self, x, *args, **kwargs)

    monkeypatch.setattr(faiss.Clustering, "train", spy)
    return seen


def test_faiss_level1_trains_on_a_seeded_sample_then_assigns_every_point(monkeypatch):
    """Above MAX_POINTS_PER_CENTROID points per centroid the faiss backend trains on a sample (as faiss
    does by default), assigns every point, finds the planted clusters and is the same for a seed."""
    X, y = blobs(n=4000, k=5, d=16, seed=2)
    monkeypatch.setattr(km, "MAX_POINTS_PER_CENTROID", 100)  # 500 of 4000 rows train
    seen = _spy_training_rows(monkeypatch)
    a = km.kmeans(X, 5, rng=np.random.default_rng(7), backend="faiss")
    b = km.kmeans(X, 5, rng=np.random.default_rng(7), backend="faiss")
    assert seen == [500, 500]
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.centroids, b.centroids)
    assert a.labels.shape == (4000,) and adjusted_rand_score(y, a.labels) == 1.0
    monkeypatch.setattr(km, "MAX_POINTS_PER_CENTROID", 10**6)  # full training: the same clusters
    full = km.kmeans(X, 5, rng=np.random.default_rng(7), backend="faiss")
    assert seen[-1] == 4000 and adjusted_rand_score(full.labels, a.labels) == 1.0
    np.testing.assert_allclose(np.sort(full.centroids, axis=0), np.sort(a.centroids, axis=0), atol=1e-4)


def test_weighted_faiss_levels_train_on_every_point(monkeypatch):
    X, _ = blobs(n=2000, k=4, d=8)
    monkeypatch.setattr(km, "MAX_POINTS_PER_CENTROID", 10)
    seen = _spy_training_rows(monkeypatch)
    km.kmeans(X, 4, rng=np.random.default_rng(0), sample_weight=np.ones(2000), backend="faiss")
    assert seen == [2000]


def test_kmeans_plusplus_draws_distinct_rows_deterministically():
    X, _ = blobs(n=500, k=5, d=8)
    a = km._kmeans_plusplus(X, 50, np.random.default_rng(4))
    b = km._kmeans_plusplus(X, 50, np.random.default_rng(4))
    assert a.dtype == np.float32 and np.array_equal(a, b)
    assert len(np.unique(a, axis=0)) == 50 and all((X == c).all(axis=1).any() for c in a)


@pytest.mark.parametrize("normalize", [False, True])
def test_settle_with_cheap_steps_ends_where_every_row_is_searched(monkeypatch, normalize):
    """Cheap steps search each row among its own centroid's few neighbours only; the stop is decided
    by an exact search, so from a start far from settled every row still ends at its nearest
    centroid (within the tolerance), the centroids are the groups' means, the reported agreement is
    what a full search measures, and the partition is the one searching every centroid reaches."""
    X, y = blobs(n=4000, k=40, d=96, seed=3)
    if normalize:
        X /= np.linalg.norm(X, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    start = y.astype(np.int32)
    shuffled = rng.random(4000) < 0.3  # 30% of the rows in a random group: far from settled
    start[shuffled] = rng.integers(0, 40, int(shuffled.sum()))
    monkeypatch.setattr(km, "SETTLE_CANDIDATES", 4)  # 40 groups > 2 x 4: cheap steps
    searches = []
    real = km.nearest_centroids
    monkeypatch.setattr(km, "nearest_centroids", lambda X, C: searches.append(len(X)) or real(X, C))
    cheap = km.settle_to_nearest(X, start, 40, normalize=normalize, max_steps=50)
    assert adjusted_rand_score(y, start) < 0.6 and adjusted_rand_score(y, cheap.labels) > 0.99
    assert cheap.steps > len(searches) >= 1  # most steps were cheap; an exact one decided the stop
    nearest, _ = real(X, cheap.centroids)
    assert cheap.agreement == np.mean(nearest == cheap.labels) >= 1 - km.SETTLE_TOLERANCE
    np.testing.assert_allclose(cheap.centroids, km.cluster_centroids(X, cheap.labels, 40, normalize=normalize),
                               atol=1e-5)
    monkeypatch.setattr(km, "SETTLE_CANDIDATES", 40)  # every step searches every centroid
    full = km.settle_to_nearest(X, start, 40, normalize=normalize, max_steps=50)
    assert len(searches) - 1 > 0 and full.agreement >= 1 - km.SETTLE_TOLERANCE
    assert adjusted_rand_score(full.labels, cheap.labels) > 0.99


def test_cheap_step_is_the_exact_search_when_the_neighbours_hold_the_nearest(monkeypatch):
    X, _ = blobs(n=2000, k=6, d=16, seed=5)
    labels = km.kmeans(X, 30, rng=np.random.default_rng(1), backend="sklearn").labels
    C = km.cluster_centroids(X, labels, 30, normalize=False)
    exact, _ = km.nearest_centroids(X, C)
    monkeypatch.setattr(km, "SETTLE_CANDIDATES", 30)
    assert np.array_equal(km._nearest_among_neighbours(X, labels, C), exact)
    monkeypatch.setattr(km, "SETTLE_CANDIDATES", 1)  # only its own centroid: nobody moves
    assert np.array_equal(km._nearest_among_neighbours(X, labels, C), labels)


def test_settle_agreement_is_unknown_when_the_steps_run_out():
    X, _ = blobs(n=2000, k=6, d=16, seed=5)
    start = np.random.default_rng(0).integers(0, 6, 2000).astype(np.int32)
    out = km.settle_to_nearest(X, start, 6, normalize=False, max_steps=1)
    assert out.steps == 1 and out.moved > 0 and out.agreement is None


def test_sq_dist_to_own_is_the_plain_float64_formula_in_blocks(monkeypatch):
    """Blocks, one float64 conversion for several groupings and the gathered centres change nothing:
    bit for bit the squared distances of X - centres[labels] in float64 (summaries pick samples by them)."""
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(1001, 24)) * 3 + 50).astype(np.float32)  # far from 0: cancellation would show
    fine = rng.integers(0, 17, len(X))
    coarse = np.arange(17)[rng.permutation(17)] % 4
    C1, C2 = rng.normal(size=(17, 24)) + 50, (rng.normal(size=(4, 24)) + 50).astype(np.float32)
    X64 = X.astype(np.float64)
    expected = [np.einsum("ij,ij->i", X64 - C1[fine], X64 - C1[fine]),
                np.einsum("ij,ij->i", X64 - C2[coarse[fine]], X64 - C2[coarse[fine]]).astype(np.float64)]
    monkeypatch.setattr(km, "_DIST_BYTES", 8 * 24 * 64)  # 64 rows per block: the last block is partial
    got = km.sq_dist_to_own(X, [(C1, fine), (C2, coarse[fine])])
    assert all(g.dtype == np.float64 and np.array_equal(g, e) for g, e in zip(got, expected))
    X[:17] = C1  # rows on their centre: exactly 0
    on_centre = np.r_[np.arange(17), fine[17:]]
    assert (km.sq_dist_to_own(X, [(C1.astype(np.float32), on_centre)])[0][:17] == 0).all()
    with pytest.raises(ValueError, match="a centre in"):
        km.sq_dist_to_own(X, [(C1, fine + 1)])


def test_group_sums_do_not_depend_on_the_block_size(monkeypatch):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(5000, 8)).astype(np.float32)
    labels = rng.integers(0, 30, 5000)
    sums, counts = km.group_sums(X, labels, 31)
    expected = np.stack([X[labels == j].astype(np.float64).sum(axis=0) for j in range(31)])
    np.testing.assert_allclose(sums, expected, rtol=1e-12, atol=1e-12)
    assert np.array_equal(counts, np.bincount(labels, minlength=31)) and (sums[30] == 0).all()
    monkeypatch.setattr(km, "_SUM_BYTES", 1)  # the smallest block (1024 rows)
    assert np.allclose(km.group_sums(X, labels, 31)[0], sums, rtol=1e-12, atol=1e-12)


def test_a_sample_trained_run_that_the_settle_continues_stops_early(monkeypatch):
    """When the settle follows over every row, faiss's training on a sample stops at
    SETTLED_SAMPLE_ITERATIONS (the settle's steps replace the rest); trained on every point, or not
    settled, it keeps its 25. Once settled, both reach the same partition."""
    import faiss

    X, _ = blobs(n=4000, k=5, d=8, seed=2)
    monkeypatch.setattr(km, "MAX_POINTS_PER_CENTROID", 100)  # 5 x 100 = 500 of 4000 rows train
    iterations, train = [], faiss.Clustering.train
    monkeypatch.setattr(faiss.Clustering, "train",
                        lambda self, *a, **kw: iterations.append(self.niter) or train(self, *a, **kw))
    early = km.kmeans(X, 5, rng=np.random.default_rng(3), backend="faiss", settled=True)
    full = km.kmeans(X, 5, rng=np.random.default_rng(3), backend="faiss")
    km.kmeans(X[:400], 5, rng=np.random.default_rng(3), backend="faiss", settled=True)  # every row trains
    assert iterations == [km.SETTLED_SAMPLE_ITERATIONS, 25, 25]
    a, b = (km.settle_to_nearest(X, r.labels, 5, normalize=False, max_steps=50) for r in (early, full))
    assert adjusted_rand_score(a.labels, b.labels) > 0.99 and a.agreement >= 1 - km.SETTLE_TOLERANCE
