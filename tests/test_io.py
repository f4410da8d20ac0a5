import base64
import json
import threading
import time

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.preprocessing import StandardScaler

from hercules_core import io
from hercules_core.errors import ModelFileError
from hercules_core.evaluation import evaluate_all
from hercules_core.reduction import reduce_hierarchy
from devkit.factories import make_hierarchy, make_numeric_dataset, make_text_dataset


# --------------------------------------------------------------------------- helpers

def same_array(a, b, name):
    if a is None or b is None:
        assert a is None and b is None, name
        return
    assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), name


def assert_same_hierarchy(h, g, *, l0_vectors=True):
    assert g.config == h.config
    for f in ("ids", "modality", "texts", "image_paths", "feature_names", "numeric_metadata", "labels",
              "notes", "source"):
        assert getattr(g.dataset, f) == getattr(h.dataset, f), f
    for f in ("numeric", "numeric_raw", "scaler_mean", "scaler_scale"):
        same_array(getattr(h.dataset, f), getattr(g.dataset, f), f"dataset.{f}")
    assert len(g.levels) == len(h.levels)
    for a, b in zip(h.levels, g.levels):
        assert (b.level, b.ids, b.titles, b.descriptions, b.sources) == (a.level, a.ids, a.titles, a.descriptions,
                                                                         a.sources)
        for f in ("parent", "size", "fallback", "desc_embeddings"):
            same_array(getattr(a, f), getattr(b, f), f"L{a.level}.{f}")
        if l0_vectors or a.level > 0:
            same_array(a.vectors, b.vectors, f"L{a.level}.vectors")
        else:
            assert b.vectors is None
        assert set(b.reductions) == set(a.reductions)
        for space in a.reductions:
            same_array(a.reductions[space], b.reductions[space], f"L{a.level}.reductions.{space}")
    assert set(g.reducers) == set(h.reducers)
    for space, params in h.reducers.items():
        assert set(g.reducers[space]) == set(params)
        for k, v in params.items():
            if isinstance(v, np.ndarray):
                same_array(v, g.reducers[space][k], f"reducers.{space}.{k}")
            else:
                assert g.reducers[space][k] == v
    assert g.evaluation == h.evaluation
    same_array(h.topic_embedding, g.topic_embedding, "topic_embedding")


def full_hierarchy(dataset, **kw):
    h = make_hierarchy(dataset, **kw)
    reduce_hierarchy(h, 2, random_state=0)
    if dataset.labels is None:
        dataset.labels = [f"g{i % 3}" for i in range(len(dataset))]
    evaluate_all(h)
    h.topic_embedding = np.random.default_rng(5).normal(size=h.levels[1].desc_embeddings.shape[1]).astype(np.float32)
    return h


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("kind", ["text", "numeric"])
def test_save_load_identical(tmp_path, kind):
    ds = make_text_dataset(90) if kind == "text" else make_numeric_dataset(90, p=4)
    h = full_hierarchy(ds, ks=(9, 4, 2), dim=4 if kind == "numeric" else 16)
    h.stats = {"timings": {"total": np.float64(1.5)}, "n": np.int64(3), "bad": float("nan"), "models": ("a", "b")}
    path = tmp_path / "model.json"
    io.save_model(h, path)
    g = io.load_model(path)
    assert_same_hierarchy(h, g)
    assert g.stats == {"timings": {"total": 1.5}, "n": 3, "bad": None, "models": ["a", "b"]}
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == io.INLINE_SCHEMA_VERSION == 1 and doc["format"] == "hercules-model"
    clusters = {c["id"]: c for c in doc["clusters"]}
    assert len(clusters) == sum(len(lv) for lv in h.levels[1:])
    top, l1 = clusters["L3_0"], clusters["L1_0"]
    assert top["parent"] is None and top["children"] == [h.levels[2].ids[j] for j in h.children_of(3, 0)]
    assert l1["parent"] == h.levels[2].ids[h.levels[1].parent[0]]
    assert l1["children"] == [h.levels[0].ids[j] for j in h.children_of(1, 0)] and l1["size"] == len(l1["children"])
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_numeric_is_rebuilt_bit_exactly_from_raw_and_scaler(tmp_path):
    raw = np.random.default_rng(0).normal(size=(50, 3)) * [1, 1e3, 1e-3] + [0, 5e4, 7]
    scaler = StandardScaler().fit(raw)
    ds = make_numeric_dataset(50, p=3)
    ds.numeric_raw, ds.numeric = raw, scaler.transform(raw).astype(np.float32)
    ds.scaler_mean, ds.scaler_scale = scaler.mean_, scaler.scale_
    h = make_hierarchy(ds, ks=(5, 2), dim=3)
    io.save_model(h, tmp_path / "m.json")
    assert "numeric" not in json.loads((tmp_path / "m.json").read_text())["dataset"]  # stored once
    same_array(ds.numeric, io.load_model(tmp_path / "m.json").dataset.numeric, "numeric")


def test_without_item_vectors(tmp_path):
    h = full_hierarchy(make_text_dataset(60))
    io.save_model(h, tmp_path / "m.json", include_item_vectors=False)
    g = io.load_model(tmp_path / "m.json")
    assert g.levels[0].vectors is None and g.levels[0].desc_embeddings is not None
    assert_same_hierarchy(h, g, l0_vectors=False)


def test_shared_item_embeddings_are_stored_once(tmp_path):
    h = make_hierarchy(make_text_dataset(60), dim=32)
    h.levels[0].desc_embeddings = h.levels[0].vectors  # what a text run in direct mode does
    io.save_model(h, tmp_path / "m.json")
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["levels"][0]["desc_embeddings"] == {"same_as": "vectors"}
    g = io.load_model(tmp_path / "m.json")
    assert g.levels[0].desc_embeddings is g.levels[0].vectors
    assert_same_hierarchy(h, g)


def test_odd_text_survives(tmp_path):
    ds = make_text_dataset(30)
    ds.texts[0] = "bad byte \udcff kept, emoji \U0001F600, quote \" and backslash \\ and @x:1@"
    ds.ids[1] = "@" + "0" * 16 + ":0@"  # looks like a splice placeholder: must stay text
    h = make_hierarchy(ds, dim=600)  # arrays big enough to be spliced in by save_model
    h.levels[1].titles[0] = "Ünïcödé — 标题"
    io.save_model(h, tmp_path / "m.json")
    assert_same_hierarchy(h, io.load_model(tmp_path / "m.json"))


def big_hierarchy(vectors, descs):
    h = make_hierarchy(make_text_dataset(len(vectors)), ks=(40, 8), dim=8)
    rng = np.random.default_rng(2)
    h.levels[0].vectors, h.levels[0].desc_embeddings = vectors, descs
    for lv in h.levels[1:]:
        lv.vectors = unit(rng.normal(size=(len(lv), vectors.shape[1])))
        lv.desc_embeddings = unit(rng.normal(size=(len(lv), vectors.shape[1])))
    reduce_hierarchy(h, 2, random_state=0)
    return h


def as_float_lists(node):
    if io._is_encoded(node):
        return io.decode_array(node).tolist()
    if isinstance(node, dict):
        return {k: as_float_lists(v) for k, v in node.items()}
    if isinstance(node, list):
        return [as_float_lists(v) for v in node]
    return node


@pytest.mark.parametrize("kind", ["random", "clustered"])
def test_size_at_most_a_fifth_of_plain_json_lists(tmp_path, kind):
    rng = np.random.default_rng(0)
    n, d = 2000, 384
    if kind == "random":
        V, D = unit(rng.normal(size=(n, d))), unit(rng.normal(size=(n, d)))
    else:
        centers, y = rng.normal(size=(20, d)), rng.integers(0, 20, n)
        V, D = unit(centers[y] * 2 + rng.normal(size=(n, d))), unit(centers[y] + rng.normal(size=(n, d)))
    h = big_hierarchy(V, D)
    path = tmp_path / "m.json"
    t = time.perf_counter()
    io.save_model(h, path)
    seconds = time.perf_counter() - t
    size = path.stat().st_size
    # the same document, every array written as a plain JSON list of numbers, same json settings
    plain = json.dumps(as_float_lists(json.loads(path.read_text())), ensure_ascii=False).encode("utf-8")
    ratio = size / len(plain)
    print(f"\n{kind}: model {size / 1e6:.2f} MB, plain-list JSON {len(plain) / 1e6:.2f} MB, "
          f"ratio {ratio:.4f}, save {seconds:.2f} s")
    assert ratio <= 0.2
    same_array(V, io.load_model(path).levels[0].vectors, "vectors")


# --------------------------------------------------------------------------- bad files

@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m.json"
    io.save_model(make_hierarchy(), path)
    return path


def rewrite(path, change):
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_unreadable_and_not_json(tmp_path, saved):
    with pytest.raises(ModelFileError, match="does not exist or is not a file"):
        io.load_model(tmp_path / "missing.json")
    with pytest.raises(ModelFileError, match="does not exist or is not a file"):
        io.load_model(tmp_path)
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ModelFileError, match="not a HERCULES model JSON .*truncated or corrupt"):
        io.load_model(saved)
    saved.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(ModelFileError, match="not a HERCULES model JSON"):
        io.load_model(saved)
    saved.write_text('{"levels": []}')
    with pytest.raises(ModelFileError, match='not a HERCULES model JSON \\(no "format"'):
        io.load_model(saved)


def test_schema_version_checks(saved):
    rewrite(saved, lambda d: d.update(schema_version=3))
    with pytest.raises(ModelFileError, match=r"saved by a newer version \(schema 3\); this version reads "
                                             r"schema 2: upgrade"):
        io.load_model(saved)
    rewrite(saved, lambda d: d.pop("schema_version"))
    with pytest.raises(ModelFileError, match="has no schema_version"):
        io.load_model(saved)
    rewrite(saved, lambda d: d.update(schema_version="1"))
    with pytest.raises(ModelFileError, match="invalid schema_version '1'"):
        io.load_model(saved)


def test_missing_fields_are_named(saved):
    def drop(d):
        del d["config"]
        del d["levels"][1]["titles"]
        del d["dataset"]["ids"]
    rewrite(saved, drop)
    with pytest.raises(ModelFileError, match=r"missing required field\(s\): config, dataset\.ids, levels\[1\]\.titles"):
        io.load_model(saved)


def test_damaged_content(saved):
    good = saved.read_text()

    def corrupt_data(d):
        enc = d["levels"][1]["vectors"]
        enc["data"] = '"' + enc["data"][1:]  # not a base85 character
    rewrite(saved, corrupt_data)
    with pytest.raises(ModelFileError, match="not base85"):
        io.load_model(saved)
    saved.write_text(good)
    rewrite(saved, lambda d: d["levels"][0]["vectors"].update(shape=[7, 16]))
    with pytest.raises(ModelFileError, match="expected 112|bytes"):
        io.load_model(saved)
    saved.write_text(good)
    rewrite(saved, lambda d: d["levels"][1]["titles"].pop())
    with pytest.raises(ModelFileError, match="inconsistent: Level 1: titles"):
        io.load_model(saved)
    saved.write_text(good)
    rewrite(saved, lambda d: d["config"].update(max_levels=0))
    with pytest.raises(ModelFileError, match="invalid config: max_levels"):
        io.load_model(saved)
    saved.write_text(good)
    rewrite(saved, lambda d: d["levels"][1].update(parent=io.encode_array(np.zeros(3, np.int32))))
    with pytest.raises(ModelFileError):
        io.load_model(saved)


def test_failed_save_keeps_the_previous_file(saved):
    before = saved.read_bytes()
    h = make_hierarchy()
    h.stats = {"client": object()}  # not storable: save fails while building the document
    with pytest.raises(TypeError, match="stats.client"):
        io.save_model(h, saved)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


# --------------------------------------------------------------------------- array codec

@given(hnp.arrays(dtype=st.sampled_from([np.float32, np.float64, np.int32, np.int64, np.int8, np.uint16,
                                         np.bool_]),
                  shape=hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=40)))
@settings(max_examples=300, deadline=None)
def test_encode_decode_round_trip(a):
    enc = json.loads(json.dumps(io.encode_array(a)))
    b = io.decode_array(enc)
    assert b.shape == a.shape
    if a.dtype in (np.float32, np.float64, np.int32, np.int64, np.bool_):
        assert b.dtype == a.dtype and b.tobytes() == a.tobytes()  # bit-exact, NaN payloads included
    else:
        assert b.dtype == np.int32 and np.array_equal(a, b)


@given(st.binary(max_size=300))
def test_base85_matches_the_standard_library(data):
    assert bytes(io._b85encode(data)) == base64.b85encode(data)
    assert bytes(io._b85decode(base64.b85encode(data).decode())) == data


def test_encoding_specials_and_compression():
    special = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, 3.4e38], np.float32)
    assert io.decode_array(io.encode_array(special)).tobytes() == special.tobytes()
    enc = io.encode_array(np.zeros((100, 100), np.float32))
    assert len(enc["data"]) < 200 and all(enc["zlib"])
    e = io.encode_array(unit(np.random.default_rng(0).normal(size=(500, 64))))
    assert e["zlib"] == [False, False, False, True]  # only the sign/exponent plane compresses
    big_endian = np.arange(12, dtype=">f8").reshape(3, 4)[:, ::2]  # non-native order, not contiguous
    back = io.decode_array(io.encode_array(big_endian))
    assert back.dtype == np.float64 and back.dtype.isnative and np.array_equal(back, big_endian)
    with pytest.raises(TypeError, match="dtype <U1"):
        io.encode_array(np.array(["a"]))
    with pytest.raises(ModelFileError, match="Unknown array encoding"):
        io.decode_array({**io.encode_array(special), "encoding": "raw"})


# --------------------------------------------------------------------------- memberships and text

def test_membership_frame_matches_assignments():
    h = make_hierarchy(make_text_dataset(70), ks=(7, 3, 2))
    frame = io.membership_frame(h)
    assert list(frame.columns) == ["item_id", "L1_cluster_id", "L1_title", "L2_cluster_id", "L2_title",
                                   "L3_cluster_id", "L3_title"]
    assert frame.item_id.tolist() == h.levels[0].ids
    for level in (1, 2, 3):
        a = h.assignments(level)
        assert frame[f"L{level}_cluster_id"].tolist() == [h.levels[level].ids[j] for j in a]
        assert frame[f"L{level}_title"].tolist() == [h.levels[level].titles[j] for j in a]


def test_csv_escapes_formulas(tmp_path):
    ds = make_text_dataset(12)
    ds.ids = ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "plain", "a=b"] + [f"id{i}" for i in range(5)]
    h = make_hierarchy(ds, ks=(3, 2))
    h.levels[1].titles[0] = '=HYPERLINK("http://x","y")'
    io.save_memberships(h, tmp_path / "m.csv")
    back = pd.read_csv(tmp_path / "m.csv", dtype=str, keep_default_na=False)
    assert back.item_id.tolist()[:7] == ["'=1+1", "'+cmd", "'-2", "'@SUM(A1)", "'\tx", "plain", "a=b"]
    assert (back.L1_title == "'=HYPERLINK(\"http://x\",\"y\")").sum() == (h.assignments(1) == 0).sum()
    assert io.membership_frame(h).item_id[0] == "=1+1"  # the frame itself is not altered


def test_hierarchy_text(tmp_path, capsys):
    h = make_hierarchy(make_text_dataset(80), ks=(9, 4, 2))
    h.levels[2].descriptions[0] = "two\nlines"
    text = io.hierarchy_text(h)
    first = [line.split()[0] for line in text.splitlines()]
    cluster_ids = [cid for lv in h.levels[1:] for cid in lv.ids]
    assert sorted(first) == sorted(cluster_ids)  # every cluster exactly once, nothing else
    lines = text.splitlines()
    assert not lines[0].startswith(" ") and lines[0].startswith("L3_")
    assert f"L2_0 [{h.levels[2].size[0]} items, by fake-llm] Title 2.0 — two lines" in text
    h.levels[2].fallback[0], h.levels[2].sources[0] = True, "keywords"
    assert f"L2_0 [{h.levels[2].size[0]} items, fallback: keywords] Title 2.0" in io.hierarchy_text(h)
    h.levels[2].fallback[0], h.levels[2].sources[0] = False, "fake-llm"
    assert all(line.startswith("    L1_") for line in lines if line.strip().startswith("L1_"))
    short = io.hierarchy_text(h, max_children=1)
    # parse the tree back: for every shown cluster, shown children + "… and N more" == all children
    stack, seen = [], {}
    for line in short.splitlines():
        depth, token = (len(line) - len(line.lstrip(" "))) // 2, line.split()
        del stack[depth:]
        if token[0] == "…":
            seen[stack[-1]][1] += int(token[2])
            continue
        if stack:
            seen[stack[-1]][0] += 1
        stack.append(token[0])
        seen[token[0]] = [0, 0]
    for cid, (shown, more) in seen.items():
        level, j = h.cluster(cid).level, h.cluster(cid).index
        assert shown == (1 if level > 1 else 0) and shown + more == (len(h.children_of(level, j)) if level > 1 else 0)
    with_items = io.hierarchy_text(h, include_items=True)
    assert all(f"\n      {i} — {t}\n" in with_items for i, t in zip(h.levels[0].ids, h.levels[0].titles))
    io.print_hierarchy(h, max_children=2)
    assert capsys.readouterr().out == io.hierarchy_text(h, max_children=2)
    io.save_hierarchy_text(h, tmp_path / "h.txt")
    assert (tmp_path / "h.txt").read_text(encoding="utf-8") == text


def test_save_evaluation(tmp_path):
    io.save_evaluation({1: {"silhouette_score": np.float32(0.5), "x": float("nan")}}, tmp_path / "e.json")
    assert json.loads((tmp_path / "e.json").read_text()) == {"1": {"silhouette_score": 0.5, "x": None}}


# --------------------------------------------------------------------------- run log

def test_run_log_threads(tmp_path):
    log = io.RunLog(tmp_path / "logs" / "run.jsonl")

    def work(t):
        for i in range(100):
            log.write({"event": "llm_call", "thread": t, "i": i, "prompt": "x" * (i * 37),
                       "prompt_tokens_est": 10, "completion_tokens_est": 2, "seconds": 0.5,
                       "error": "boom" if i == 0 else None})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "logs" / "run.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 1000 and len(log.records) == 1000
    assert sorted((r["thread"], r["i"]) for r in records) == [(t, i) for t in range(10) for i in range(100)]
    assert all("T" in r["time"] for r in records)
    assert log.summary() == {"llm_calls": 1000, "llm_errors": 10, "prompt_tokens_est": 10_000,
                             "completion_tokens_est": 2_000, "llm_seconds": 500.0}


def test_run_log_redacts_and_serialises(tmp_path):
    log = io.RunLog(tmp_path / "run.jsonl")
    log.write({"event": "stage", "api_key": "sk-secret", "headers": {"Authorization": "Bearer x", "Accept": "*"},
               "value": np.float32(1.5), "nan": float("nan"), "obj": object})
    rec = json.loads((tmp_path / "run.jsonl").read_text())
    assert rec["api_key"] == "***" and rec["headers"] == {"Authorization": "***", "Accept": "*"}
    assert rec["value"] == 1.5 and rec["nan"] is None and "sk-secret" not in (tmp_path / "run.jsonl").read_text()
    assert log.records[0]["api_key"] == "***"
    memory_only = io.RunLog()
    memory_only.write({"event": "llm_call", "prompt_tokens_est": 3})
    assert memory_only.records[0]["event"] == "llm_call" and memory_only.summary()["llm_calls"] == 1


def _log_from_process(path, tag):
    log = io.RunLog(path)
    for i in range(200):
        log.write({"event": "stage", "proc": tag, "i": i, "payload": "y" * 5000})


def test_run_log_processes_share_a_file(tmp_path):
    import multiprocessing
    path = tmp_path / "run.jsonl"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_log_from_process, args=(path, t)) for t in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((r["proc"], r["i"]) for r in records) == [(t, i) for t in range(3) for i in range(200)]
