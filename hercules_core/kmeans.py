"""k-means backends, automatic k, and the resampling refinement of Vo et al. (paper §3.3).

One interface (``kmeans``) over scikit-learn (small inputs) and faiss (large inputs); every
random step takes its seed from the caller.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import sparse
from sklearn.cluster import KMeans
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_samples

from .errors import ConfigError

log = logging.getLogger("hercules_core")

_CHUNK = 8192  # rows per block when assigning points to centroids (bounds memory)
_MEANS_ROWS = 1 << 15  # rows per block when summing cluster means
# float64 bytes per block in group_sums: 16 MB (5k rows of 384-d) took 0.5 s for 1M x 384, k=1000,
# against 1.1-1.5 s with 32k rows (100 MB per block, out of cache); same sums
_SUM_BYTES = 1 << 24
# float64 bytes per block in sq_dist_to_own: the converted rows and their gathered centres stay in the
# L2 cache (1.0 s for 1M x 384 against 2 s with 16k-row blocks; bit-identical)
_DIST_BYTES = 1 << 18
MAX_POINTS_PER_CENTROID = 256  # faiss's default: the faiss backend trains on at most this many points per centroid
# Lloyd iterations on that sample when the settle follows: a settle step over every row (its cheap
# steps) costs what a sample iteration does and moves towards the full data's partition, not the
# sample's. 1M x 384, k=1000: 25 -> 10 iterations, the same 12 settle steps, 11 s less, inertia
# +0.0003%; 104k MiniLM docstrings, k=200: inertia within the seed-to-seed spread (not used when the
# training sees every point: there, 10 iterations left 0.2-0.3% more inertia at k=1000)
SETTLED_SAMPLE_ITERATIONS = 10


@dataclass
class KMeansResult:
    labels: np.ndarray  # int32 (n,)
    centroids: np.ndarray  # float32 (k, d)
    backend: str


def one_blas_thread():
    """A context in which BLAS runs on one thread, for a loop of many small products: BLAS's threads
    wait on each other at every call, and when another process holds a core each call waits for it.
    At 1M x 384, k=1000: a settle step 5 s -> 0.7 s, k-means++ seeding on 20k rows 6.3 s -> 1.1 s."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def assign(X: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Index of the nearest centroid (Euclidean) for every row of X, in blocks."""
    X = np.asarray(X, dtype=np.float32)
    C = np.asarray(centroids, dtype=np.float32)
    c_sq = np.einsum("ij,ij->i", C, C)
    out = np.empty(len(X), dtype=np.int32)
    for start in range(0, len(X), _CHUNK):
        block = X[start:start + _CHUNK]
        # |x - c|^2 = |x|^2 - 2 x.c + |c|^2 ; |x|^2 is constant per row, so it can be dropped
        out[start:start + _CHUNK] = np.argmin(c_sq[None, :] - 2.0 * (block @ C.T), axis=1)
    return out


def _weighted_means(X: np.ndarray, labels: np.ndarray, k: int, weights: np.ndarray | None,
                    fallback: np.ndarray) -> np.ndarray:
    w = np.ones(len(X), dtype=np.float64) if weights is None else np.asarray(weights, dtype=np.float64)
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    # sums[c] = sum of w_i x_i over the rows of c: a sparse (k x block) product per block of rows,
    # so no float64 copy of the whole matrix is made (1M x 384 would need 3 GB)
    for start in range(0, len(X), _MEANS_ROWS):
        block = slice(start, start + _MEANS_ROWS)
        rows = np.asarray(labels[block])
        M = sparse.csr_matrix((w[block], (rows, np.arange(len(rows)))), shape=(k, len(rows)))
        sums += M @ np.asarray(X[block], dtype=np.float64)
    totals = np.bincount(labels, weights=w, minlength=k)
    out = np.array(fallback, dtype=np.float64, copy=True)
    nonempty = totals > 0
    out[nonempty] = sums[nonempty] / totals[nonempty, None]
    return out.astype(np.float32)


def weighted_means(X: np.ndarray, labels: np.ndarray, k: int, weights: np.ndarray | None = None) -> np.ndarray:
    """The (weighted) mean of the rows of ``X`` in each of the ``k`` groups (zeros for an empty group):
    a parent's centroid from its children weighted by their item counts is the mean of its items."""
    X = np.asarray(X, dtype=np.float32)
    return _weighted_means(X, labels, k, weights, np.zeros((k, X.shape[1]), np.float32))


def nearest_centroids(X: np.ndarray, C: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and Euclidean distance to the nearest row of ``C`` for every row of ``X``: the rule
    that places an item in a level-1 cluster, both when the fit settles level 1 and in assign."""
    d2, j = nearest_k(X, C, 1)
    return j[:, 0].astype(np.int32), np.sqrt(np.maximum(d2[:, 0], 0.0))


def nearest_k(X: np.ndarray, C: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances to and indices of the ``m`` nearest rows of ``C`` for every row of ``X``,
    nearest first.

    An exact (flat) faiss index: one BLAS product per block plus a multi-threaded selection, about
    twice as fast as ``KMeans.predict`` here and 6x faster than the same search in numpy.
    """
    import faiss

    index = faiss.IndexFlatL2(C.shape[1])
    index.add(np.ascontiguousarray(C, dtype=np.float32))
    return index.search(np.ascontiguousarray(X, dtype=np.float32), m)


def cluster_centroids(X: np.ndarray, labels: np.ndarray, k: int, *, normalize: bool,
                      weights: np.ndarray | None = None) -> np.ndarray:
    """The stored centroid of each of the ``k`` groups: the (weighted) mean of its rows, scaled to
    unit length when ``normalize`` (embeddings). float32 (k, d)."""
    c = weighted_means(X, labels, k, weights)
    if normalize:
        norms = np.linalg.norm(c, axis=1, keepdims=True)
        c = c / np.where(norms > 0, norms, 1.0)
    return np.ascontiguousarray(c, dtype=np.float32)


# settling stops when at most this share of the rows would still move (they stay: at least 99.2% of a
# run's own items are their nearest centroid's, the >= 99% assign agreement with a margin). A tighter
# stop moves more items for no user-visible gain and costs full passes at 1M items: on fortune_dev8
# [100, 20, 8] 0.001 gave 1.04x flat k-means at 99.98%, 0.008 gives 1.12x at 99.49% (min 99.43%)
SETTLE_TOLERANCE = 0.008
# a cheap settle step searches a row only among the SETTLE_CANDIDATES centroids nearest its own: at
# 1M x 384, k=1000, the true nearest was among the 16 nearest for every row but 4 in a million,
# and the step costs 0.6 s against 5 s for searching all 1000 (exact steps confirm the stop)
SETTLE_CANDIDATES = 32
# ... from this many dimensions up: below, faiss's search over every centroid is cheaper than a step
# group by group (1M x 16, k=1000: 0.37 s against 0.8 s a step)
CHEAP_MIN_DIM = 64


class Settled(NamedTuple):
    labels: np.ndarray  # int32 (n,)
    centroids: np.ndarray  # float32 (k, d): the groups' means (unit length when normalized)
    steps: int  # searches made (cheap and exact)
    moved: int  # rows whose group changed
    agreement: float | None  # share of rows whose nearest centroid is their own, when the last search was exact


def settle_to_nearest(X: np.ndarray, labels: np.ndarray, k: int, *, normalize: bool, max_steps: int) -> Settled:
    """Lloyd steps in the space of ``X`` from the partition ``labels`` until (nearly) every row's
    nearest centroid (:func:`nearest_centroids`, centroids by :func:`cluster_centroids`) is its own group.

    A partition made in another space (UMAP) or from centroids other than its means (resampling,
    normalisation, a capped number of faiss iterations, training on a sample) is not the
    nearest-centroid partition of its stored centroids, so assigning the same items again would move
    some of them. Stops at the first exact search where at most ``SETTLE_TOLERANCE`` of the rows
    would move (those stay, so at least 99.2% are their nearest centroid's) or after ``max_steps``
    searches (0: the partition is only given its centroids); never leaves a group empty.

    With more than ``2 * SETTLE_CANDIDATES`` groups of ``CHEAP_MIN_DIM`` or more dimensions a step
    searches each row only among the ``SETTLE_CANDIDATES`` centroids nearest its own
    (:func:`_nearest_among_neighbours`): centroids
    move little from step to step, and a row's nearest is one of its own centroid's neighbours. Such
    a step never moves a row away from a nearer centroid, so it is a (restricted) Lloyd step; once
    one finds at most the tolerance moving, an exact search over every centroid decides: stop, or
    move the rows it found and go on. The group sums follow the rows that moved.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = len(X)
    start = np.asarray(labels, dtype=np.int32)
    labels = start.copy()
    sums, counts = group_sums(X, labels, k)
    C = _centroids_from_sums(sums, counts, normalize)
    cheap = k > 2 * SETTLE_CANDIDATES and X.shape[1] >= CHEAP_MIN_DIM
    steps, exact, agreement = 0, not cheap, None
    while steps < max_steps:
        nearest = nearest_centroids(X, C)[0] if exact else _nearest_among_neighbours(X, labels, C)
        steps += 1
        moving = np.flatnonzero(nearest != labels)
        if len(moving) <= SETTLE_TOLERANCE * n:
            if exact:
                agreement = 1.0 - len(moving) / n if n else 1.0
                break
            exact = True  # confirm over every centroid before stopping
            continue
        exact = not cheap
        new = nearest.copy()
        if np.bincount(new, minlength=k).min() == 0:  # rare: refill, then recount from scratch
            new, _ = _fill_empty(X, new, C, None)
            sums, counts = group_sums(X, new, k)
        else:
            for s in range(0, len(moving), _MEANS_ROWS):  # float64 a block of moved rows at a time
                rows = moving[s:s + _MEANS_ROWS]
                m = len(rows)
                sums += sparse.csr_matrix((np.r_[np.ones(m), -np.ones(m)], (np.r_[new[rows], labels[rows]],
                                           np.r_[np.arange(m), np.arange(m)])), shape=(k, m)) @ X[rows].astype(np.float64)
            counts = np.bincount(new, minlength=k).astype(np.float64)
        labels = new
        C = _centroids_from_sums(sums, counts, normalize)
    return Settled(labels, C, steps, int(np.count_nonzero(labels != start)), agreement)


def group_sums(X: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """float64 sums of the rows of each group, and the group sizes."""
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    step = max(1024, _SUM_BYTES // (8 * max(1, X.shape[1])))
    for start in range(0, len(X), step):
        rows = np.asarray(labels[start:start + step])
        M = sparse.csr_matrix((np.ones(len(rows)), (rows, np.arange(len(rows)))), shape=(k, len(rows)))
        sums += M @ np.asarray(X[start:start + step], dtype=np.float64)
    return sums, np.bincount(labels, minlength=k).astype(np.float64)


def sq_dist_to_own(X: np.ndarray, groupings: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
    """For each (centres, labels) of ``groupings``: the float64 squared distance of every row of ``X``
    to ``centres[labels[i]]``.

    Exact differences, not |x|^2 - 2 x.c + |c|^2 (which loses the distances of rows near their centre
    to cancellation). Each block of rows is converted to float64 once for all groupings, and the
    block and its gathered centres are small enough to stay in cache.
    """
    n, d = X.shape
    pairs = [(np.asarray(c, dtype=np.float64), np.asarray(lab)) for c, lab in groupings]
    for centres, labels in pairs:
        if len(labels) != n or (n and (labels.min() < 0 or labels.max() >= len(centres))):
            raise ValueError(f"labels must give each of the {n} rows a centre in [0, {len(centres)})")
    out = [np.empty(n, dtype=np.float64) for _ in pairs]
    step = max(1, _DIST_BYTES // (8 * max(1, d)))
    rows, gathered = np.empty((min(step, n), d)), np.empty((min(step, n), d))
    for s in range(0, n, step):
        m = min(step, n - s)
        x, c = rows[:m], gathered[:m]
        x[...] = X[s:s + m]
        for (centres, labels), dist in zip(pairs, out):
            np.take(centres, labels[s:s + m], axis=0, out=c, mode="clip")  # checked above; "raise" buffers: 2x slower
            np.subtract(x, c, out=c)
            np.einsum("ij,ij->i", c, c, out=dist[s:s + m])
    return out


def _centroids_from_sums(sums: np.ndarray, counts: np.ndarray, normalize: bool) -> np.ndarray:
    c = sums / np.maximum(counts, 1.0)[:, None]
    if normalize:
        norms = np.linalg.norm(c, axis=1, keepdims=True)
        c = c / np.where(norms > 0, norms, 1.0)
    return np.ascontiguousarray(c, dtype=np.float32)


def _nearest_among_neighbours(X: np.ndarray, labels: np.ndarray, C: np.ndarray) -> np.ndarray:
    """For every row, the nearest of the ``SETTLE_CANDIDATES`` centroids nearest its own group's
    centroid (its own included): one BLAS product per group against that short list.

    Many small products: BLAS on one thread (:func:`one_blas_thread`)."""
    with one_blas_thread():
        return _nearest_among_neighbours_1(X, labels, C)


def _nearest_among_neighbours_1(X: np.ndarray, labels: np.ndarray, C: np.ndarray) -> np.ndarray:
    m = min(SETTLE_CANDIDATES, len(C))
    _, neighbours = nearest_k(C, C, m)
    c_sq = np.einsum("ij,ij->i", C, C)
    order = np.argsort(labels, kind="stable")
    ends = np.cumsum(np.bincount(labels, minlength=len(C)))
    nearest = labels.copy()
    begin = 0
    for j, end in enumerate(ends):
        for s in range(begin, end, _MEANS_ROWS):  # a block of the group's rows at a time
            rows = order[s:min(end, s + _MEANS_ROWS)]
            cand = neighbours[j]
            # |x - c|^2 = |x|^2 - 2 x.c + |c|^2; |x|^2 is the same for every candidate of a row
            nearest[rows] = cand[np.argmin(c_sq[cand] - 2.0 * (X[rows] @ C[cand].T), axis=1)]
        begin = end
    return nearest


def choose_backend(n: int, k: int, backend: str, large_threshold: int) -> str:
    if backend != "auto":
        return backend
    return "faiss" if n * k > large_threshold else "sklearn"


def kmeans(X: np.ndarray, k: int, *, rng: np.random.Generator, sample_weight: np.ndarray | None = None,
           n_init: int = 1, max_iter: int = 100, backend: str = "auto",
           large_threshold: int = 20_000_000, init: str = "k-means++", settled: bool = False) -> KMeansResult:
    """Cluster the rows of X into k groups; no group is left empty. ``init="random"`` seeds from k
    random rows instead of k-means++ (whose k sequential steps dominate a small re-run, stability.py).
    ``settled``: the caller goes on with :func:`settle_to_nearest` over every row, so a faiss run
    trained on a sample stops at ``SETTLED_SAMPLE_ITERATIONS``.

    Centroids are the (weighted) means of their members, so a parent's centroid computed from
    children weighted by their item counts equals the mean of all items under it.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = len(X)
    if not 1 <= k <= n:
        raise ConfigError(f"k must be between 1 and the number of points ({n}); got {k}.")
    chosen = choose_backend(n, k, backend, large_threshold)
    if chosen == "sklearn":
        model = KMeans(n_clusters=k, init=init, n_init=n_init, max_iter=max_iter,
                       random_state=_seed(rng), algorithm="lloyd")
        model.fit(X, sample_weight=sample_weight)
        best = model.cluster_centers_.astype(np.float32)
        labels = model.labels_.astype(np.int32)
    elif chosen == "faiss":
        labels, best = _faiss_kmeans(X, k, rng, sample_weight, n_init, max_iter, init, settled)
    elif chosen == "minibatch":
        from sklearn.cluster import MiniBatchKMeans

        model = MiniBatchKMeans(n_clusters=k, n_init=n_init, max_iter=max_iter, random_state=_seed(rng),
                                batch_size=4096)
        model.fit(X, sample_weight=sample_weight)
        best = model.cluster_centers_.astype(np.float32)
        labels = assign(X, best)
    else:  # pragma: no cover - validated by the config
        raise ConfigError(f"Unknown k-means backend {backend!r}.")
    labels, best = _fill_empty(X, labels, best, sample_weight)
    return KMeansResult(labels=labels, centroids=best, backend=chosen)


def _faiss_kmeans(X, k, rng, sample_weight, n_init, max_iter, init="k-means++", settled=False):
    import faiss

    n, d = X.shape
    # faiss's own init is uniform random, which is worse than k-means++ on clustered data: seed it
    # with k-means++ on a sample (the sample bounds the O(n k d) cost of the seeding). One local trial
    # (plain k-means++) instead of scikit-learn's greedy 2 + log k, and in float32 (_kmeans_plusplus).
    sample = rng.choice(n, size=min(n, max(20 * k, 10_000)), replace=False) if n > 10_000 else np.arange(n)
    # Unweighted points train on a seeded sample of at most MAX_POINTS_PER_CENTROID per centroid (what
    # faiss itself does by default), then every point is assigned; weighted points (upper levels,
    # few) all train, since weights need every point.
    train = X
    if sample_weight is None and n > MAX_POINTS_PER_CENTROID * k:
        train = X[np.sort(rng.choice(n, size=MAX_POINTS_PER_CENTROID * k, replace=False))]
    best_labels, best_cent, best_obj = None, None, np.inf
    for _ in range(max(1, n_init)):
        if init == "random":
            seeds = X[rng.choice(n, size=k, replace=False)]
        else:
            seeds = _kmeans_plusplus(X[sample], k, np.random.default_rng(_seed(rng)))
        km = faiss.Clustering(d, k)
        km.niter = min(max_iter, SETTLED_SAMPLE_ITERATIONS if settled and train is not X else 25)
        km.seed = _seed(rng)
        km.max_points_per_centroid = 1_000_000  # the sample (if any) is drawn above, from our seed
        km.min_points_per_centroid = 1
        km.verbose = False
        km.centroids.resize(0)
        faiss.copy_array_to_vector(seeds.astype(np.float32).ravel(), km.centroids)
        index = faiss.IndexFlatL2(d)
        w = None if sample_weight is None else np.ascontiguousarray(sample_weight, dtype=np.float32)
        if w is None:
            km.train(train, index)
        else:
            km.train(X, index, w)
        cent = faiss.vector_to_array(km.centroids).reshape(k, d).astype(np.float32)
        dist, lab = index.search(X, 1)
        obj = float(np.dot(dist[:, 0], w) if w is not None else dist[:, 0].sum())
        if obj < best_obj:
            best_labels, best_cent, best_obj = lab[:, 0].astype(np.int32), cent, obj
    del train
    # centroids = exact (weighted) means of the final assignment
    best_cent = _weighted_means(X, best_labels, k, sample_weight, best_cent)
    return best_labels, best_cent


def _kmeans_plusplus(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k rows of ``X`` chosen by k-means++ (one trial per centre): each next centre is drawn with
    probability proportional to the squared distance to the nearest centre chosen so far. float32
    throughout: scikit-learn's ``kmeans_plusplus`` upcasts the sample to float64 at every centre
    (30 s for 1000 centres from 20,000 x 384 here, against ~4 s)."""
    with one_blas_thread():  # k products of the sample with one row
        return _kmeans_plusplus_1(X, k, rng)


def _kmeans_plusplus_1(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = len(X)
    x_sq = np.einsum("ij,ij->i", X, X)
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(n)
    d2 = np.maximum(x_sq - 2.0 * (X @ X[chosen[0]]) + x_sq[chosen[0]], 0.0)
    for i in range(1, k):
        total = np.cumsum(d2, dtype=np.float64)
        j = int(np.searchsorted(total, rng.random() * total[-1], side="right")) if total[-1] > 0 \
            else int(rng.integers(n))  # every point is a centre already: any will do
        chosen[i] = j = min(j, n - 1)
        np.minimum(d2, np.maximum(x_sq - 2.0 * (X @ X[j]) + x_sq[j], 0.0), out=d2)
    return np.ascontiguousarray(X[chosen], dtype=np.float32)


def _fill_empty(X, labels, centroids, weights):
    """Give every empty cluster the point farthest from its centroid, so no cluster is empty."""
    k = len(centroids)
    for _ in range(k):
        counts = np.bincount(labels, minlength=k)
        empty = np.flatnonzero(counts == 0)
        if len(empty) == 0:
            break
        d = sq_dist_to_own(X, [(centroids, labels)])[0]  # in blocks: X - C[labels] twice was +4.5 GB at 1M x 384
        d[counts[labels] <= 1] = -1.0  # never take the last member of a cluster
        for e in empty:
            i = int(np.argmax(d))
            labels[i] = e
            d[i] = -1.0
        centroids = _weighted_means(X, labels, k, weights, centroids)
    return labels, centroids


def resample_refine(X: np.ndarray, result: KMeansResult, *, rng: np.random.Generator, iterations: int,
                    points_per_cluster: int, sample_weight: np.ndarray | None = None,
                    backend: str = "auto", large_threshold: int = 20_000_000) -> KMeansResult:
    """Vo et al.'s refinement (Algorithm 3, lines 14-24): re-fit on each cluster's core points.

    Each iteration keeps the ``points_per_cluster`` members closest to every centroid, runs k-means
    on that smaller set (seeded from the current centroids), and re-assigns the full data set.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    labels, cent = result.labels.copy(), result.centroids.copy()
    k = len(cent)
    for _ in range(iterations):
        d = sq_dist_to_own(X, [(cent, labels)])[0]
        order = np.lexsort((d, labels))  # by cluster, then distance
        starts = np.searchsorted(labels[order], np.arange(k))
        counts = np.bincount(labels, minlength=k)
        core = np.concatenate([order[s:s + min(points_per_cluster, c)] for s, c in zip(starts, counts)])
        core_labels = labels[core]
        w = None if sample_weight is None else sample_weight[core]
        # Lloyd iterations on the core set, starting from the current centroids (keeps cluster identity)
        for _ in range(20):
            new = _weighted_means(X[core], core_labels, k, w, cent)
            core_labels = assign(X[core], new)
            if np.allclose(new, cent):
                cent = new
                break
            cent = new
        labels = assign(X, cent)
        labels, cent = _fill_empty(X, labels, cent, sample_weight)
    cent = _weighted_means(X, labels, k, sample_weight, cent)
    return KMeansResult(labels=labels, centroids=cent, backend=result.backend + "+resampling")


def k_candidates(n: int, k_min: int, k_max: int, min_reduction: float, max_candidates: int = 12) -> list[int]:
    """The k values auto-k tries: within [k_min, k_max], at most n / min_reduction, below n."""
    upper = min(k_max, int(n / min_reduction), n - 1)
    lower = max(k_min, 2)
    if upper < lower:
        return []
    if upper - lower + 1 <= max_candidates:
        return list(range(lower, upper + 1))
    grid = np.unique(np.round(np.geomspace(lower, upper, max_candidates)).astype(int))
    return [int(k) for k in grid]


def choose_k(X: np.ndarray, candidates: list[int], *, method: str, rng: np.random.Generator,
             sample_weight: np.ndarray | None = None, sample_size: int = 3000) -> tuple[int | None, dict[int, float]]:
    """Pick k among ``candidates`` by a clustering metric computed on a sample of at most
    ``sample_size`` points (silhouette is O(n^2), so large levels are always sampled).

    Silhouette takes the smallest k whose mean score is within one standard error of the best
    (the standard error of the mean of the points' silhouettes): neighbouring k often score within
    noise of each other, and the simpler partition is then preferred (Breiman's one-SE rule).
    The other metrics take their best value.
    """
    X = np.asarray(X, dtype=np.float32)
    if not candidates:
        return None, {}
    if len(X) > sample_size:
        p = None if sample_weight is None else sample_weight / sample_weight.sum()
        idx = np.sort(rng.choice(len(X), size=sample_size, replace=False, p=p))
        Xs, ws = X[idx], None
    else:
        Xs, ws = X, sample_weight
    scores: dict[int, float] = {}
    errors: dict[int, float] = {}
    for k in candidates:
        if k >= len(Xs):
            continue
        res = kmeans(Xs, k, rng=rng, sample_weight=ws, n_init=1, backend="sklearn")
        if len(np.unique(res.labels)) < 2:
            continue
        if method == "silhouette":
            s = silhouette_samples(Xs, res.labels)
            scores[k], errors[k] = float(s.mean()), float(s.std() / np.sqrt(len(s)))
        elif method == "davies_bouldin":
            scores[k] = -float(davies_bouldin_score(Xs, res.labels))  # lower is better
        else:
            scores[k] = float(calinski_harabasz_score(Xs, res.labels))
    if not scores:
        return None, {}
    best = max(scores, key=lambda k: (scores[k], -k))
    if errors:
        best = min(k for k in scores if scores[k] >= scores[best] - errors[best])
    return best, scores
