"""Curation (hercules_core.curate): structural edits keep every invariant and untouched ids, undo and
redo are exact, the log survives save/load, replay reproduces the curated run on its origin and says
what did not apply elsewhere, compare measures agreement, and the CLI does both."""

from __future__ import annotations

import json
import threading
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devkit.factories import make_text_dataset
from hercules_core import Hercules, HerculesConfig, InputError, curate, edits
from hercules_core.clients.fakes import FakeEmbedder
from hercules_core.dataset import Dataset
from hercules_core.io import _memberships_csv, load_model, save_memberships, save_model
from hercules_core.keywords import KeywordSummarizer
from hercules_run.cli import main as cli_main


def _fit(seed: int = 0, n: int = 150, ks=(10, 4, 2), dataset: Dataset | None = None):
    cfg = HerculesConfig(level_cluster_counts=ks, random_state=seed, reduce_method="none", stability_runs=2)
    ds = dataset or make_text_dataset(n, seed=3)
    return Hercules(cfg, text_embedder=FakeEmbedder(dim=32)).fit(ds).hierarchy_


@lru_cache(maxsize=None)
def _origin(seed: int = 0):
    return _fit(seed)


def fresh(seed: int = 0):
    """A private copy of a fitted hierarchy (edits never change their input, but tests may)."""
    return curate._copy(_origin(seed))


def csv(h) -> bytes:
    return b"".join(_memberships_csv(h))


def state(h) -> str:
    """Everything an edit may change, as one comparable string (arrays by their bytes)."""
    out = {"csv": csv(h).decode(), "edits": h.edits, "evaluation": {str(k): v for k, v in h.evaluation.items()},
           "stability": (h.stats or {}).get("stability"), "clusters_per_level": h.stats.get("clusters_per_level"),
           "assign": {k: (v.tobytes().hex() if isinstance(v, np.ndarray) else v) for k, v in (h.assign_info or {}).items()},
           "levels": []}
    for lv in h.levels:
        out["levels"].append({
            "ids": lv.ids, "parent": lv.parent.tolist(), "size": lv.size.tolist(), "titles": lv.titles,
            "descriptions": lv.descriptions, "sources": lv.sources, "fallback": lv.fallback.tolist(),
            "marks": lv.description_marks,
            "vectors": None if lv.vectors is None else np.asarray(lv.vectors, np.float32).tobytes().hex(),
            "desc": None if lv.desc_embeddings is None else np.asarray(lv.desc_embeddings, np.float32).tobytes().hex(),
            "red": {k: np.asarray(v, np.float32).tobytes().hex() for k, v in sorted(lv.reductions.items())}})
    return json.dumps(out, sort_keys=True, default=str)


def item_sets(h, level):
    a = h.assignments(level)
    return {cid: frozenset(np.flatnonzero(a == j).tolist()) for j, cid in enumerate(h.levels[level].ids)}


# ----------------------------------------------------------------------------- property tests

OPS = st.lists(st.tuples(st.sampled_from(["merge", "split", "move", "dissolve", "retitle", "undo", "redo"]),
                         st.integers(0, 10_000), st.integers(0, 10_000), st.integers(2, 4)),
               min_size=1, max_size=6)


def _pick(h, level, r):
    ids = h.levels[level].ids
    return ids[r % len(ids)]


def _step(h, op, a, b, k):
    """One random edit on ``h`` (None when the random choice is not a valid edit)."""
    level = 1 + a % h.top_level
    try:
        if op == "merge":
            ids = h.levels[level].ids
            if len(ids) < 2:
                return None
            first = a % len(ids)
            second = (first + 1 + b % (len(ids) - 1)) % len(ids)
            return curate.merge(h, [ids[first], ids[second]], who="prop")
        if op == "split":
            return curate.split(h, _pick(h, level, b), k)
        if op == "move":
            level = 1 + a % max(h.top_level - 1, 1)
            if level >= h.top_level:
                return None
            return curate.move(h, _pick(h, level, b), _pick(h, level + 1, a))
        if op == "dissolve":
            return curate.dissolve(h, _pick(h, level, b))
        if op == "retitle":
            g = curate._copy(h)
            edits.apply_edit(g, _pick(g, level, b), f"Hand title {b}", "Hand description.")
            return curate.Change(g, g.edit_log[-1])
        if op == "undo":
            return curate.undo(h)
        return curate.redo(h)
    except InputError:
        return None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_random_edit_sequences_keep_invariants_ids_and_undo_exactly(ops):
    h0 = fresh()
    h = h0
    for op, a, b, k in ops:
        before = state(h)
        change = _step(h, op, a, b, k)
        assert state(h) == before, f"{op} changed its input"
        if change is None:
            continue
        g = change.hierarchy
        g.validate()
        if op in ("undo", "redo"):
            h = g
            continue
        effect = change.entry["effect"]
        gone = set(effect["removed"])
        # untouched clusters keep their id, parent, title and items
        touched = gone | set(effect["touched"]) | set(effect["created"])
        for level in range(1, h.top_level + 1):
            old_sets, new_sets = item_sets(h, level), item_sets(g, level)
            for cid in h.levels[level].ids:
                if cid in gone:
                    assert cid not in new_sets
                    continue
                assert cid in new_sets, f"{op} lost the untouched id {cid}"
                if cid not in touched:
                    assert old_sets[cid] == new_sets[cid]
                    assert g.cluster(cid).title == h.cluster(cid).title
                    p_old, p_new = h.cluster(cid).parent, g.cluster(cid).parent
                    assert (p_old and p_old.id) == (p_new and p_new.id)
        for cid in effect["created"]:  # fresh ids: never issued before at that level
            assert cid not in set(h.levels[int(cid[1:cid.index('_')])].ids)
        # undo is exact; redo gives the edit back exactly
        undone = curate.undo(g).hierarchy
        assert csv(undone) == csv(h)
        assert state(undone) == state(h)
        assert state(curate.redo(undone).hierarchy) == state(g)
        h = g
    # the log survives save and load, and replaying it onto the origin gives the curated hierarchy
    if h.edit_log:
        replayed, report = curate.replay(h, h0)
        assert report["applied"] == len(h.edit_log), report["results"]
        assert csv(replayed) == csv(h)
        for level in range(1, h.top_level + 1):
            assert replayed.levels[level].ids == h.levels[level].ids
            assert replayed.levels[level].titles == h.levels[level].titles


def test_the_log_survives_save_and_load(tmp_path):
    h = curate.merge(fresh(), ["L1_0", "L1_1"], who="ana").hierarchy
    h = curate.split(h, "L1_2", 2).hierarchy
    edits.apply_edit(h, "L1_3", "Hand", "Hand text.")
    h = curate.undo(h).hierarchy  # one entry on the redo stack
    save_model(h, tmp_path / "m.json")
    g = load_model(tmp_path / "m.json")
    assert json.loads(json.dumps(h.edit_log)) == g.edit_log and len(g.edit_log) == 2
    assert [e["op"] for e in g.redo_log] == ["retitle"]
    assert g.edit_counters == h.edit_counters
    assert state(curate.redo(g).hierarchy) != state(g)
    assert csv(curate.undo(curate.undo(g).hierarchy).hierarchy) == csv(_origin())


def test_a_model_without_edits_has_an_empty_log_and_no_curation_section(tmp_path):
    save_model(fresh(), tmp_path / "m.json")
    assert "curation" not in json.loads((tmp_path / "m.json").read_text())
    h = load_model(tmp_path / "m.json")
    assert h.edit_log == [] and h.redo_log == [] and h.edit_counters == {}


# ----------------------------------------------------------------------------- each op

def test_merge_goes_under_the_largest_parent_gets_a_fresh_id_and_removes_emptied_parents():
    h = fresh()
    # two level-2 clusters with different parents; the smaller one's parent then has one child left
    l2 = h.levels[2]
    by_parent = {}
    for j, p in enumerate(l2.parent):
        by_parent.setdefault(int(p), []).append(j)
    single = [js for js in by_parent.values() if len(js) == 1]
    a, b = (single[0][0], next(j for js in by_parent.values() if len(js) > 1 for j in js)) if single else (0, 1)
    ids = [l2.ids[a], l2.ids[b]]
    largest = max((a, b), key=lambda j: l2.size[j])
    change = curate.merge(h, ids, who="ana")
    g = change.hierarchy
    (new,) = change.entry["effect"]["created"]
    assert new == f"L2_{max(int(c.split('_')[1]) for c in l2.ids) + 1}"
    assert g.cluster(new).parent.id == h.cluster(l2.ids[largest]).parent.id
    assert g.cluster(new).size == h.cluster(ids[0]).size + h.cluster(ids[1]).size
    assert item_sets(g, 2)[new] == item_sets(h, 2)[ids[0]] | item_sets(h, 2)[ids[1]]
    assert change.entry["who"] == "ana" and change.entry["at"].endswith("+00:00")
    assert change.entry["effect"]["items_moved"]["2"] == g.cluster(new).size
    for level in range(1, g.top_level + 1):  # no empty cluster anywhere
        assert all(np.bincount(g.levels[level - 1].parent, minlength=len(g.levels[level])) > 0)
    if single and h.cluster(l2.ids[a]).parent.id != h.cluster(l2.ids[largest]).parent.id:
        assert h.cluster(l2.ids[a]).parent.id in change.entry["effect"]["removed"]


def test_ids_are_never_reissued_even_after_undo():
    h = fresh()
    first = curate.merge(h, ["L1_0", "L1_1"])
    undone = curate.undo(first.hierarchy).hierarchy
    second = curate.merge(undone, ["L1_2", "L1_3"])
    assert first.entry["effect"]["created"] != second.entry["effect"]["created"]


@pytest.mark.parametrize("ids, message", [
    (["L1_0"], "at least two different clusters"),
    (["L1_0", "L1_0"], "at least two different clusters"),
    (["L1_0", "L2_0"], "Only clusters of one level"),
    (["L1_0", "L1_999"], "has no cluster 'L1_999'"),
    (["L0_0", "L0_1"], "Level 0 holds the items"),
    (["<b>", "L1_0"], "is not a cluster id"),
    ("L1_0", "two or more clusters"),
])
def test_bad_merges_say_what_is_wrong(ids, message):
    with pytest.raises(InputError, match=message):
        curate.merge(fresh(), ids)


def test_split_is_deterministic_keeps_the_parent_and_covers_the_items():
    h = fresh()
    cid = max(h.levels[1].ids, key=lambda c: h.cluster(c).size)
    a, b = curate.split(h, cid, 3), curate.split(h, cid, 3)
    assert csv(a.hierarchy) == csv(b.hierarchy) and a.entry["seed"] == b.entry["seed"]
    new = a.entry["effect"]["created"]
    assert len(new) == 3 and cid in a.entry["effect"]["removed"]
    g = a.hierarchy
    assert {g.cluster(c).parent.id for c in new} == {h.cluster(cid).parent.id}
    sets = item_sets(g, 1)
    assert frozenset().union(*(sets[c] for c in new)) == item_sets(h, 1)[cid]
    # an upper level splits its children, which move, whole, under the new clusters
    top = next(c for j, c in enumerate(h.levels[3].ids) if len(h.children_of(3, j)) >= 2)
    up = curate.split(h, top, 2)
    assert len(up.entry["effect"]["created"]) == 2 and up.entry["effect"]["items_moved"]["2"] == 0


@pytest.mark.parametrize("k, message", [(1, "between 2 and"), (10_000, "between 2 and"), (2.5, "whole number"),
                                        (True, "whole number")])
def test_split_k_out_of_range_is_refused(k, message):
    with pytest.raises(InputError, match="only one item"):
        curate.split(fresh(), min(fresh().levels[1].ids, key=lambda c: fresh().cluster(c).size), 2)
    h = fresh()
    with pytest.raises(InputError, match=message):
        curate.split(h, max(h.levels[1].ids, key=lambda c: h.cluster(c).size), k)


def test_move_changes_only_the_parent_and_refuses_nonsense():
    h = fresh()
    cid = "L1_0"
    old = h.cluster(cid).parent.id
    target = next(c for c in h.levels[2].ids if c != old)
    g = curate.move(h, cid, target).hierarchy
    assert g.cluster(cid).parent.id == target and item_sets(g, 1)[cid] == item_sets(h, 1)[cid]
    with pytest.raises(InputError, match="already under"):
        curate.move(h, cid, old)
    with pytest.raises(InputError, match="one level up"):
        curate.move(h, cid, "L3_0")
    with pytest.raises(InputError, match="top level"):
        curate.move(h, "L3_0", "L3_1")


def test_dissolve_sends_items_to_the_nearest_sibling_and_needs_one():
    h = fresh()
    lv = h.levels[1]
    cid = next(c for j, c in enumerate(lv.ids) if np.sum(lv.parent == lv.parent[j]) >= 2)
    j = lv.ids.index(cid)
    siblings = [s for s in np.flatnonzero(lv.parent == lv.parent[j]) if s != j]
    g = curate.dissolve(h, cid).hierarchy
    X = h.levels[0].vectors
    for i in h.members(1, j)[:10]:
        d = [np.linalg.norm(X[i] - lv.vectors[s]) for s in siblings]
        assert g.cluster(g.levels[1].ids[g.levels[0].parent[i]]).id == lv.ids[siblings[int(np.argmin(d))]]
    lonely = curate.merge(h, list(h.levels[3].ids)).hierarchy  # one top cluster: no sibling
    with pytest.raises(InputError, match="no sibling"):
        curate.dissolve(lonely, lonely.levels[3].ids[0])


def test_derived_values_are_recomputed_for_touched_clusters():
    h = fresh()
    change = curate.merge(h, ["L1_0", "L1_1"])
    g = change.hierarchy
    (new,) = change.entry["effect"]["created"]
    j = g.levels[1].ids.index(new)
    m = g.members(1, j)
    expect = h.levels[0].vectors[m].mean(0)
    expect /= np.linalg.norm(expect)
    assert np.allclose(g.levels[1].vectors[j], expect, atol=1e-5)
    red = g.levels[1].reductions["representation"][j]
    from hercules_core.reduction import project
    assert np.allclose(red, project(g.reducers["representation"], g.levels[1].vectors[j:j + 1])[0], atol=1e-5)
    assert g.stats["stability"]["levels"]["1"]["jaccard"][j] is None  # not measured after the edit
    assert len(g.assign_info["thresholds"]) == len(g.levels[1])
    assert g.stats["clusters_per_level"][0] == len(g.levels[1])
    # the evaluation of the changed levels is stale until reevaluate measures it, as part of the edit
    assert 1 in curate.stale_levels(g) and g.evaluation[1]["n_clusters"] == len(h.levels[1])
    r = curate.reevaluate(g)
    e = r.hierarchy
    assert curate.stale_levels(e) == [] and e.evaluation[1]["n_clusters"] == len(g.levels[1])
    assert e.evaluation[1]["curated"] and "title_fluency" in e.evaluation[1]
    assert state(curate.undo(e).hierarchy) == state(h)
    assert state(curate.redo(curate.undo(e).hierarchy).hierarchy) == state(e)
    # a second edit before re-evaluating: undoing it gives back the first edit's stale levels
    two = curate.merge(g, ["L1_2", "L1_3"]).hierarchy
    assert state(curate.undo(curate.reevaluate(two).hierarchy).hierarchy) == state(g)


# ----------------------------------------------------------------------------- re-titling

class CountingSummarizer:
    """The keyword summariser, counting the clusters it is asked to summarise."""

    def __init__(self, h):
        self.inner = KeywordSummarizer(h.dataset, h.dataset.texts, config=h.config)
        self.model_id = "counting"
        self.asked: list[str] = []

    def summarize(self, requests, *, level_requests=None, progress=None):
        self.asked += [r.key for r in requests]
        return self.inner.summarize(requests, level_requests=level_requests, progress=progress)


def test_retitling_asks_only_for_touched_clusters_and_ancestors_and_spares_hand_edits():
    h = fresh()
    target = h.cluster("L1_0").parent.id
    edits.apply_edit(h, target, "My own title", "Mine.")
    change = curate.merge(h, ["L1_0", "L1_1"])
    g = change.hierarchy
    ids = curate.to_retitle(g, change.entry)
    new = change.entry["effect"]["created"][0]
    ancestors = []
    c = g.cluster(new)
    while c.parent is not None:
        c = c.parent
        ancestors.append(c.id)
    assert new in ids and target not in ids
    assert set(ids) <= {new} | set(change.entry["effect"]["touched"]) | set(ancestors)
    assert "children_changed" in g.edits[target]  # flagged instead of overwritten
    summ = CountingSummarizer(g)
    done = curate.resummarize(g, ids, summ)
    assert sorted(summ.asked) == sorted(ids)
    r = done.hierarchy
    assert r.cluster(target).title == "My own title"
    assert r.cluster(new).source == "keywords" and done.entry["resummarized"] == sorted(ids, key=curate._id_key)
    # the new titles are part of the edit: undo restores the old ones, redo the new ones
    assert csv(curate.undo(r).hierarchy) == csv(h)
    assert csv(curate.redo(curate.undo(r).hierarchy).hierarchy) == csv(r)
    cost = curate.retitle_cost(g, ids, llm_id="some-llm")
    assert cost["clusters"] == len(ids) and 1 <= cost["llm_calls"] <= len(ids)
    assert curate.retitle_cost(g, ids)["llm_calls"] == 0  # the run used keywords: no LLM call


# ----------------------------------------------------------------------------- saved models

@pytest.mark.parametrize("items", ["inline", "columnar"])
def test_edit_model_saves_under_the_lock_and_undo_restores_the_files(tmp_path, items):
    path = tmp_path / "model.json"
    h = fresh()
    save_model(h, path, items=items)
    save_memberships(h, tmp_path / "m0.csv")
    seen = []

    def on_saved(g):
        seen.append(len(g.edit_log))
        save_memberships(g, tmp_path / "memberships.csv")

    curate.edit_model(path, "merge", {"ids": ["L1_0", "L1_1"]}, who="ana", on_saved=on_saved)
    g = load_model(path)  # verifies the items file's per-level cluster ids against the hierarchy
    assert [e["op"] for e in g.edit_log] == ["merge"] and seen == [1]
    assert (tmp_path / "memberships.csv").read_bytes() != (tmp_path / "m0.csv").read_bytes()
    curate.edit_model(path, "undo", {}, on_saved=on_saved)
    assert (tmp_path / "memberships.csv").read_bytes() == (tmp_path / "m0.csv").read_bytes()
    curate.edit_model(path, "redo", None, on_saved=on_saved)
    assert len(load_model(path).edit_log) == 1
    # the background half: re-title and re-measure, written only while the edit is the last one
    seq = load_model(path).edit_log[-1]["seq"]
    done = curate.resummarize_model(path, seq, CountingSummarizer(h), on_saved=on_saved)
    g = load_model(path)
    assert done is not None and curate.stale_levels(g) == [] and g.edit_log[-1]["resummarized"]
    assert g.cluster(g.edit_log[-1]["effect"]["created"][0]).source == "keywords"
    assert curate.resummarize_model(path, seq - 1, CountingSummarizer(h)) is None
    with pytest.raises(InputError, match="Unknown edit"):
        curate.edit_model(path, "explode", {})
    with pytest.raises(InputError, match="nothing to redo"):
        curate.edit_model(path, "redo", {})
    assert len(load_model(path).edit_log) == 1  # refused edits write nothing


def test_a_structural_edit_saves_a_larger_model_with_its_items_file(tmp_path, monkeypatch):
    from hercules_core import columnar

    path = tmp_path / "model.json"
    h = fresh()
    save_model(h, path, items="inline")
    monkeypatch.setattr(curate, "EDIT_INLINE_MAX_ITEMS", h.n_items - 1)  # this model counts as large
    curate.edit_model(path, "merge", {"ids": ["L1_0", "L1_1"]})
    assert columnar.has_items_file(path)  # rewriting it inline was most of a 20,000-item edit's time
    g = load_model(path)
    assert csv(g) == csv(curate.merge(h, ["L1_0", "L1_1"]).hierarchy)
    curate.edit_model(path, "undo", {})
    assert csv(load_model(path)) == csv(h)
    monkeypatch.setattr(curate, "EDIT_INLINE_MAX_ITEMS", h.n_items)  # small: stays one JSON
    path2 = tmp_path / "small.json"
    save_model(h, path2, items="inline")
    curate.edit_model(path2, "merge", {"ids": ["L1_0", "L1_1"]})
    assert not columnar.has_items_file(path2)


def test_two_tabs_editing_one_model_at_once_both_land(tmp_path):
    path = tmp_path / "model.json"
    h = fresh()
    save_model(h, path)
    pairs = [["L1_2", "L1_3"], ["L1_6", "L1_7"]]
    errors = []

    def edit(ids):
        try:
            curate.edit_model(path, "merge", {"ids": ids}, who="tab")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=edit, args=(p,)) for p in pairs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    g = load_model(path)
    assert sorted(e["args"]["ids"] for e in g.edit_log) == sorted(pairs)
    assert not {c for p in pairs for c in p} & set(g.levels[1].ids)
    assert len(g.levels[1]) == len(h.levels[1]) - 2
    assert csv(curate.undo(curate.undo(g).hierarchy).hierarchy) == csv(h)


def test_title_edits_of_a_saved_model_are_logged_and_undone(tmp_path):
    path = tmp_path / "model.json"
    save_model(fresh(), path)
    edits.edit_cluster(path, "L2_1", title="Weather", description="Rain.", who="bo")
    h = load_model(path)
    assert h.edit_log[-1]["op"] == "retitle" and h.edit_log[-1]["who"] == "bo"
    curate.edit_model(path, "undo", {})
    h = load_model(path)
    assert h.cluster("L2_1").title == _origin().cluster("L2_1").title and "L2_1" not in h.edits


# ----------------------------------------------------------------------------- replay and compare

def _curated(h):
    h = curate.merge(h, ["L1_0", "L1_1"]).hierarchy
    h = curate.split(h, max(h.levels[1].ids, key=lambda c: h.cluster(c).size), 2).hierarchy
    h = curate.dissolve(h, "L1_5").hierarchy
    return h


def test_replay_onto_another_seed_reports_what_did_not_apply():
    cur = _curated(fresh(0))
    other = _fit(1)
    g, report = curate.replay(cur, other)
    assert report["entries"] == 3 and report["applied"] + report["skipped"] == 3
    g.validate()
    for r in report["results"]:
        assert r["status"] in ("applied", "skipped")
        if r["status"] == "skipped":
            assert r["reason"] and r["matches"] is not None
    # an impossible threshold: nothing applies, and each entry says why
    g2, rep2 = curate.replay(curate.export_log(cur), other, threshold=1.01)
    assert rep2["applied"] == 0 and all("Jaccard" in r["reason"] for r in rep2["results"])
    assert csv(g2) == csv(other)


def test_replay_onto_grown_data_matches_over_shared_items():
    ds = make_text_dataset(150, seed=3)
    grown = make_text_dataset(180, seed=3)  # the same 150 items first, then 30 more
    assert grown.ids[:150] == ds.ids
    cur = curate.merge(fresh(0), ["L1_0", "L1_1"]).hierarchy
    h_new = _fit(0, dataset=grown)
    g, report = curate.replay(cur, h_new)
    assert report["items"] == {"origin": 150, "new": 180, "shared": 150}
    g.validate()


def test_compare_identical_runs_and_a_merge():
    h = fresh()
    same = curate.compare(h, h)
    for r in same["levels"]:
        assert len(r["matched"]) == r["clusters_a"] == r["clusters_b"]
        assert r["weighted_jaccard"] == 1.0 and r["ari"] == 1.0
        assert not (r["splits"] or r["merges"] or r["new"] or r["vanished"] or r["retitled"])
    merged = curate.merge(h, ["L1_0", "L1_1"]).hierarchy
    r1 = curate.compare(h, merged)["levels"][0]
    assert {"b": merged.levels[1].ids[-1], "from": ["L1_0", "L1_1"]} in r1["merges"]
    assert r1["weighted_jaccard"] < 1.0
    back = curate.compare(merged, h)["levels"][0]
    assert any(s["a"] == merged.levels[1].ids[-1] and sorted(s["into"]) == ["L1_0", "L1_1"] for s in back["splits"])


# ----------------------------------------------------------------------------- CLI

def test_cli_replay_and_compare(tmp_path, capsys):
    save_model(_curated(fresh(0)), tmp_path / "curated.json")
    save_model(_origin(0), tmp_path / "origin.json")
    out = tmp_path / "out"
    assert cli_main(["replay", str(tmp_path / "curated.json"), str(tmp_path / "origin.json"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "3 of 3 edits applied" in err
    assert (out / "memberships.csv").read_bytes() == csv(load_model(tmp_path / "curated.json"))
    report = json.loads((out / "replay_report.json").read_text())
    assert report["applied"] == 3
    # an exported log works the same
    (tmp_path / "log.json").write_text(json.dumps(curate.export_log(load_model(tmp_path / "curated.json"))))
    assert cli_main(["replay", str(tmp_path / "log.json"), str(tmp_path / "origin.json"), "--out",
                     str(tmp_path / "out2"), "--retitle", "keywords"]) == 0
    capsys.readouterr()
    assert cli_main(["compare", str(tmp_path / "curated.json"), str(out / "model.json"), "--json",
                     str(tmp_path / "c.json")]) == 0
    table = capsys.readouterr().out
    assert "w.Jaccard" in table and " 1.000  1.000" in table
    assert json.loads((tmp_path / "c.json").read_text())["levels"][0]["agreement"] == 1.0


def test_a_damaged_log_is_a_clear_error_not_a_crash(tmp_path):
    from hercules_core.errors import ModelFileError

    g = curate.merge(fresh(), ["L1_0", "L1_1"]).hierarchy
    save_model(g, tmp_path / "m.json")
    doc = json.loads((tmp_path / "m.json").read_text())
    entry = doc["curation"]["log"][-1]
    entry["before"]["levels"]["1"]["rows"]["L1_0"]["vector"] = {"dtype": "float32", "shape": [3]}
    entry["targets"]["L1_0"] = "junk"
    (tmp_path / "m.json").write_text(json.dumps(doc))
    with pytest.raises(ModelFileError, match="edit log is damaged"):
        curate.edit_model(tmp_path / "m.json", "undo", {})
    replayed, report = curate.replay(tmp_path / "m.json", fresh())
    assert report["applied"] == 0 and "damaged" in report["results"][0]["reason"]


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    save_model(_origin(0), tmp_path / "origin.json")
    assert cli_main(["compare", str(tmp_path / "missing.json"), str(tmp_path / "origin.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "junk.json").write_text('{"format": "hercules-edit-log", "entries": 3}')
    assert cli_main(["replay", str(tmp_path / "junk.json"), str(tmp_path / "origin.json"), "--out",
                     str(tmp_path / "o")]) == 2
    assert "malformed" in capsys.readouterr().err
    assert cli_main(["replay", str(tmp_path / "origin.json"), str(tmp_path / "origin.json"), "--out",
                     str(tmp_path / "o"), "--threshold", "2"]) == 2
    assert "--threshold" in capsys.readouterr().err
