"""Small builders of valid objects for the tests and benchmarks (no models involved)."""

from __future__ import annotations

import os

import numpy as np

from hercules_core.config import HerculesConfig
from hercules_core.dataset import Dataset
from hercules_core.hierarchy import Hierarchy, Level, cluster_id


FAST = dict(llm_retry_delay=0.0, llm_retry_max_delay=0.0)  # summariser retries without waiting


class ListLog:
    """A run log that only keeps its records (for asserting on them)."""

    def __init__(self):
        self.records = []

    def write(self, record):
        self.records.append(record)


def title_calls(llm) -> list[dict]:
    """The calls of a FakeLLM that asked for titles, without the description re-asks
    (hercules_core/descriptions.py)."""
    from hercules_core.clients.fakes import is_description_request

    return [c for c in llm.history if not is_description_request(c["prompt"], c["schema"])]


def make_text_dataset(n: int = 60, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    topics = ["cats dogs pets", "stocks bonds market", "rain snow weather"]
    texts, labels = [], []
    for i in range(n):
        t = int(rng.integers(len(topics)))
        texts.append(f"Item {i} about {topics[t]}. Extra words {int(rng.integers(1000))}.")
        labels.append(topics[t].split()[0])
    return Dataset(ids=[f"id{i}" for i in range(n)], modality="text", texts=texts, labels=labels, source="test")


def make_numeric_dataset(n: int = 60, p: int = 3, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    raw = rng.normal(size=(n, p)) * 10 + 50
    mean, scale = raw.mean(0), raw.std(0)
    return Dataset(
        ids=[str(i) for i in range(n)], modality="numeric", numeric=((raw - mean) / scale).astype(np.float32),
        numeric_raw=raw, feature_names=[f"v{j}" for j in range(p)],
        numeric_metadata={"v0": {"unit": "kg", "description": "weight"}},
        scaler_mean=mean, scaler_scale=scale, source="test",
    )


def make_hierarchy(dataset: Dataset | None = None, ks=(8, 3), dim: int = 16, seed: int = 0) -> Hierarchy:
    """A random but valid hierarchy over ``dataset`` with the given level sizes (bottom-up)."""
    rng = np.random.default_rng(seed)
    dataset = dataset or make_text_dataset(seed=seed)
    n = len(dataset)
    vecs = rng.normal(size=(n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    levels = [Level(0, list(dataset.ids), np.zeros(n, np.int32), np.ones(n, np.int64), vecs,
                    vecs.copy(), [f"t{i}" for i in range(n)], [f"d{i}" for i in range(n)],
                    np.zeros(n, bool), ["snippet"] * n)]
    for li, k in enumerate(ks, start=1):
        below = levels[-1]
        m = len(below)
        # every cluster gets at least one child
        parent = np.concatenate([np.arange(k), rng.integers(0, k, size=m - k)])
        rng.shuffle(parent)
        below.parent = parent.astype(np.int32)
        size = np.bincount(parent, weights=below.size, minlength=k).astype(np.int64)
        cent = np.stack([np.average(below.vectors[parent == j], axis=0, weights=below.size[parent == j])
                         for j in range(k)]).astype(np.float32)
        levels.append(Level(li, [cluster_id(li, j) for j in range(k)], np.full(k, -1, np.int32), size, cent,
                            rng.normal(size=(k, dim)).astype(np.float32), [f"Title {li}.{j}" for j in range(k)],
                            [f"Description of {li}.{j}" for j in range(k)], np.zeros(k, bool), ["fake-llm"] * k))
    h = Hierarchy(levels=levels, config=HerculesConfig(level_cluster_counts=tuple(ks)), dataset=dataset)
    h.validate()
    return h


def run_in_state(rdir, state: str, **fields) -> dict:
    """A run directory whose status is ``state``, reached through the run's lifecycle events (the only
    writers of status.json); ``fields`` go with the event that sets the state (with the start of a run
    that is then interrupted: its process, a dead pid on this host, is in the fields)."""
    from callbacks import runstore

    if state == runstore.QUEUED:
        return runstore.create(rdir, **fields)
    runstore.create(rdir)
    if state == runstore.CANCELLED:
        runstore.request_cancel(rdir)
        status = runstore.stopped(rdir, **fields)
    elif state == runstore.INTERRUPTED:
        runstore.start(rdir, **{"pid": 2**22 + 4321, "host": os.uname().nodename, **fields})
        status = runstore.mark_interrupted(rdir)
    elif state == runstore.RUNNING:
        status = runstore.start(rdir, **fields)
    else:
        runstore.start(rdir)
        status = runstore.finish(rdir, **fields) if state == runstore.DONE \
            else runstore.fail(rdir, fields.pop("error", "It failed."), **fields)
    assert status["state"] == state, status
    return status
