"""Unit tests of the explorer: figure builders, highlight patches, tree, pane, search, selection."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import plotly.io
import pytest
from dash import html, no_update

from callbacks import figures, ids, page_evaluate, page_explore, pane, paging, tree
from callbacks.explore_model import ExploreModel, make_key
from hercules_core.evaluation import evaluate_all
from hercules_core.reduction import reduce_hierarchy
from devkit.factories import make_hierarchy, make_numeric_dataset, make_text_dataset
from devkit.dash_http import component_text


@pytest.fixture(scope="module")
def em():
    h = make_hierarchy(make_text_dataset(120), ks=(12, 4))
    h.dataset.texts[7] = "A <b>bold</b> claim about unicorns"
    h.levels[2].titles[0] = "<script>alert(1)</script>"
    reduce_hierarchy(h, 2, 0)
    evaluate_all(h)
    return ExploreModel.from_hierarchy(h)


def test_keys_parse_strictly(em):
    assert em.parse("L2:3") == (2, 3) and em.parse(make_key(0, 119)) == (0, 119)
    for bad in ("L2:4", "L3:0", "L0:120", "L-1:0", "L1:1:1", "x", None, 3, "L1: 1"):
        assert em.parse(bad) is None


def test_related_marks_ancestors_and_descendants(em):
    h = em.h
    j = 5
    parent = int(h.levels[1].parent[j])
    assert em.related(2, 1, j).nonzero()[0].tolist() == [parent]
    items = em.related(0, 1, j)
    assert set(np.flatnonzero(items)) == set(h.members(1, j))
    assert em.related(1, 1, j).sum() == 1


def test_bubble_sizes_scalings():
    c = np.array([1, 4, 100])
    lin, sq, lg = (figures.bubble_sizes(c, s) for s in ("linear", "sqrt", "log"))
    for s in (lin, sq, lg):
        assert s[-1] == 60 and np.all(np.diff(s) > 0)
    assert lin[1] < sq[1] < lg[1]


def test_scatter_figure_traces_colours_and_escaping(em):
    fig, view = figures.scatter_figure(em, 1, "representation", color_level=2, size_scale="sqrt")
    assert view == {"level": 1, "space": "representation", "color_level": 2, "size_scale": "sqrt", "items": True}
    bubbles = fig["data"][figures.T_BUBBLES]
    assert bubbles["type"] == "scattergl" and len(bubbles["x"]) == 12
    # children share their ancestor's colour
    parent = em.h.levels[1].parent
    for j in range(12):
        assert bubbles["marker"]["color"][j] == figures.PALETTE[int(parent[j])]
    assert len(fig["data"][figures.T_ITEMS]["x"]) == 120
    json.dumps(fig)  # plain JSON: no numpy left inside
    fig2, _ = figures.scatter_figure(em, 2, "representation")
    hover = json.dumps(fig2["data"][figures.T_BUBBLES]["customdata"])
    assert "<script>" not in hover and "&lt;script&gt;" in hover


def test_svg_bubbles_over_a_density_image(em, monkeypatch):
    """Items as an image and a few bubbles: SVG, every marker trace (no WebGL context for the browser
    to make); items as points, or many bubbles: WebGL."""
    def kinds(**kw):
        fig, _ = figures.scatter_figure(em, 1, **kw)
        return {t["type"] for t in fig["data"] if t["mode"] == "markers"}

    assert kinds() == {"scattergl"}  # 120 item points
    assert kinds(items_max=50) == {"scatter"}  # an image and 12 bubbles
    monkeypatch.setattr(figures, "GL_POINTS", 10)
    assert kinds(items_max=50) == {"scattergl"}


def test_item_layer_hidden_above_threshold(em):
    fig, view = figures.scatter_figure(em, 1, items_max=50)
    assert view["items"] is False and fig["data"][figures.T_ITEMS]["x"] == []
    patch = figures.highlight_patch(em, view, "L1:2").to_plotly_json()
    size = len(plotly.io.json.to_json_plotly(patch))
    assert size < 20_000
    ops = {tuple(o["location"]): o["params"]["value"] for o in patch["operations"]}
    sel_x = ops[("data", figures.T_SEL_ITEMS, "x")]
    assert len(sel_x) == len(em.members(1, 2))


def test_highlight_patch_fades_unrelated_and_marks_selection(em):
    fig, view = figures.scatter_figure(em, 1)
    sel_level, sel = 2, 1
    ops = {tuple(o["location"]): o["params"]["value"]
           for o in figures.highlight_patch(em, view, make_key(sel_level, sel)).to_plotly_json()["operations"]}
    opacity = ops[("data", figures.T_BUBBLES, "marker", "opacity")]
    kids = set(em.h.children_of(2, sel).tolist())
    assert [j for j, o in enumerate(opacity) if o == 1.0] == sorted(kids)
    assert ops[("data", figures.T_SELECTED, "customdata")][0][0] == "L2:1"
    cleared = {tuple(o["location"]): o["params"]["value"]
               for o in figures.highlight_patch(em, view, None).to_plotly_json()["operations"]}
    assert cleared[("data", figures.T_BUBBLES, "marker", "opacity")] == figures.BASE_OPACITY
    assert cleared[("data", figures.T_SELECTED, "x")] == []


def test_item_selection_rings_its_ancestors(em):
    fig, view = figures.scatter_figure(em, 1)
    vals = figures.highlight_values(em, view, "L0:7")
    # its L2 ancestor is drawn as a ring (L1 is the bubble level itself)
    assert [c[0] for c in vals[(figures.T_CONTEXT, "customdata")]] == [make_key(2, em.ancestor(0, 7, 2))]
    assert vals[(figures.T_BUBBLES, "marker", "opacity")].count(1.0) == 1


def test_sunburst_and_its_patch(em):
    fig = figures.sunburst_figure(em)
    tr = fig["data"][0]
    assert len(tr["ids"]) == 16 and tr["parents"][:4] == ["", "", "", ""]
    assert sum(v for v, p in zip(tr["values"], tr["parents"]) if p == "") == 120
    colors = figures.sunburst_colors(em, "L1:0")
    kept = [i for i, c in zip(tr["ids"], colors) if c != figures.FADED]
    assert set(kept) == {"L1:0", make_key(2, em.ancestor(1, 0, 2))}


def test_sunburst_draws_fewer_rings_when_they_hold_many_sectors():
    small = ExploreModel.from_hierarchy(make_hierarchy(make_text_dataset(300), ks=(40, 8, 2)))
    assert figures.sunburst_figure(small)["data"][0]["maxdepth"] == 3  # 50 sectors: every ring
    for ks in ((1000, 100, 10), (200, 40, 8)):
        big = ExploreModel.from_hierarchy(make_hierarchy(make_text_dataset(3000), ks=ks))
        tr = figures.sunburst_figure(big)["data"][0]
        # the outer ring waits for a click on its parent; every cluster is still in the data
        assert tr["maxdepth"] == 2 and len(tr["ids"]) == sum(ks)


def test_metrics_and_confusion_figures(em):
    fig = figures.metrics_figure(em.h.evaluation)
    names = {t["name"] for t in fig["data"]}
    assert {"silhouette (items)", "ARI", "items"} <= names
    from hercules_core.evaluation import confusion_table
    cf = figures.confusion_figure(confusion_table(em.h, 2), dict(zip(em.h.levels[2].ids, em.h.levels[2].titles)))
    assert len(cf["data"][0]["y"]) == 4 and "&lt;script&gt;" in cf["data"][0]["y"][0]
    table = page_evaluate.metrics_table(em.h.evaluation)
    assert "adjusted_rand_score" in component_text(table)


def test_tree_is_lazy_and_opens_the_selection_path(em):
    top = tree.tree(em)
    assert len(top) == 4 and all(n.children[2].children == [] for n in top)  # nothing below the top yet
    opened = tree.tree(em, "L0:7")
    text = component_text(opened)
    assert em.h.levels[0].ids[7] in text and em.h.levels[1].ids[em.ancestor(0, 7, 1)] in text
    kids, glyph = tree.toggle(em, "L2:0", [])
    assert glyph == "▾" and len(kids) == len(em.h.children_of(2, 0))
    assert tree.toggle(em, "L2:0", kids) == ([], "▸")
    assert tree.toggle(em, "../etc", []) is None


def _keys(component) -> list[str]:
    """The node keys of every tree label / pane link inside a component tree."""
    blob = json.dumps(component, cls=plotly.utils.PlotlyJSONEncoder)
    return [m for m in re.findall(r'"key": "(L\d+:\d+)"', blob)]


def test_tree_and_pane_list_items_a_page_at_a_time(monkeypatch):
    """A cluster's items are listed whatever the hierarchy's size, never more than a page per response."""
    h = make_hierarchy(make_text_dataset(700), ks=(3, 1))
    reduce_hierarchy(h, 2, 0)
    em = ExploreModel.from_hierarchy(h)
    big = int(np.argmax(h.levels[1].size))
    kids = em.children(1, big)
    assert len(kids) > 2 * paging.PAGE
    first = tree.children(em, 1, big)
    items = [k for k in _keys(first) if k.startswith("L0:")]
    assert items == [make_key(0, int(k)) for k in kids[:paging.PAGE]]
    assert f"1–{paging.PAGE} of {len(kids):,}" in component_text(first)
    second = tree.turn_page(em, make_key(1, big), 1)
    assert [k for k in _keys(second) if k.startswith("L0:")] == [make_key(0, int(k)) for k in kids[100:200]]
    last = tree.turn_page(em, make_key(1, big), 10**6)  # clamped to the last page
    assert 0 < len([k for k in _keys(last) if k.startswith("L0:")]) <= paging.PAGE
    assert tree.turn_page(em, "L2:0", 1) is None and tree.turn_page(em, "x", 1) is None
    # a selected item deep in the list opens its own page
    deep = int(kids[250])
    opened = tree.tree(em, make_key(0, deep))
    assert make_key(0, deep) in _keys(opened) and len([k for k in _keys(opened) if k.startswith("L0:")]) <= paging.PAGE
    # the pane: a page of links, and the next one on demand
    p = pane.cluster_pane(em, make_key(1, big))
    assert len([k for k in _keys(p) if k.startswith("L0:")]) <= paging.PAGE + pane.SAMPLES
    nxt = pane.item_page(em, make_key(1, big), 2)
    assert [k for k in _keys(nxt) if k.startswith("L0:")] == [make_key(0, int(k)) for k in kids[200:300]]
    assert paging.clicked_page({"type": "x", "key": "L1:0", "page": 2}, 1) == 2
    assert paging.clicked_page({"type": "x", "key": "L1:0", "page": 2}, 0) is None  # appeared, not clicked


def test_pane_shows_everything_as_text(em):
    p = pane.cluster_pane(em, "L2:0", "r" * 32)
    text = component_text(p)
    assert "<script>alert(1)</script>" in text  # shown literally: Dash renders strings as text
    assert "Parent" not in text and "Children (" in text and "Representative samples" in text
    item = pane.cluster_pane(em, "L0:7")
    assert "A <b>bold</b> claim about unicorns" in component_text(item) and "Raw data" in component_text(item)
    assert "Overview" in component_text(pane.cluster_pane(em, "bogus"))


def test_numeric_pane_statistics_in_original_units():
    h = make_hierarchy(make_numeric_dataset(80, p=3), ks=(6, 2))
    reduce_hierarchy(h, 2, 0)
    em = ExploreModel.from_hierarchy(h)
    members = em.members(1, 0)
    stats = pane.numeric_stats(em, members)
    assert stats[0]["unit"] == "kg"
    assert stats[0]["mean"] == pytest.approx(h.dataset.numeric_raw[members, 0].mean())
    assert "Statistics (original units)" in component_text(pane.cluster_pane(em, "L1:0"))
    assert len(pane.representatives(em, 1, 0)) == min(6, len(members))


def test_overview_lists_totals_and_config(em):
    text = component_text(pane.overview(em))
    assert "120" in text and "clusters per level" in text and "level_cluster_counts" in text


def test_search_finds_titles_descriptions_and_items(em):
    hits = em.search("unicorn")
    assert [h["key"] for h in hits] == ["L0:7"]
    assert em.search("description of 1.3")[0]["key"] == "L1:3"
    assert em.search("x") == []
    assert "No match" in component_text(page_explore.search_results(em, "zzzzqqq"))


def _old_search(em, query, limit=25):
    """The loop the index replaced (kept here as the reference of what a search finds)."""
    q = " ".join(str(query or "").lower().split())
    h = em.h
    texts = {lv.level: [f"{t}\n{d}".lower() for t, d in zip(lv.titles, lv.descriptions)] for lv in h.levels}
    texts[0] = [f"{i}\n{t}".lower() for i, t in zip(h.levels[0].ids, h.dataset.texts)]
    hits = []
    for level in list(range(em.top, 0, -1)) + [0]:
        hits += [make_key(level, j) for j, t in enumerate(texts[level]) if q in t]
    return hits[:limit]


@pytest.mark.parametrize("query", ["unicorn", "item 1", "ITEM 11", "title 1", "description of 2", "id10",
                                   "pets.", "about rain", "%", "_", "words 9", "dogs pets", "t1.", "zzzq",
                                   "*", "?", "[a]", "ite*", "item ?"])
def test_search_index_finds_what_the_loop_found(em, query):
    assert [h["key"] for h in em.search(query)] == _old_search(em, query)


def test_item_search_uses_the_trigram_index():
    """A query is answered from the FTS5 index, not by reading every row (a scan took 0.4 s at 1M)."""
    import sqlite3

    from callbacks import search_index

    con = sqlite3.connect(":memory:")
    search_index._fill(con, search_index.rows_of(["a1", "a2"], ["Item one about cats", "item two"]))
    plan = " ".join(str(r) for r in con.execute("EXPLAIN QUERY PLAN " + search_index.FIND_SQL,
                                                (search_index._glob("item t?o [x]"), 25)))
    assert ":G" in plan  # the GLOB constraint went to the index (without it the plan says "INDEX 64:")
    assert search_index._find(con, "item t", 25) == [(1, "a2\nitem two")]


def test_search_index_file_and_edited_titles(tmp_path):
    """Items are indexed once into search.sqlite beside the model; an edited title is found after the
    edit (the model is reloaded), the old one no longer."""
    from hercules_core import save_model
    from hercules_core.edits import edit_cluster

    h = make_hierarchy(make_text_dataset(200), ks=(6, 2))
    reduce_hierarchy(h, 2, 0)
    path = tmp_path / "model.json"
    save_model(h, path)
    em = ExploreModel.load(path)
    assert [x["key"] for x in em.search("item 17 about", wait=30)] == ["L0:17"]
    assert (tmp_path / "search.sqlite").is_file()
    built = (tmp_path / "search.sqlite").stat().st_mtime_ns
    edit_cluster(path, h.levels[1].ids[3], title="Marmalade sandwiches", description="x")
    em2 = ExploreModel.load(path)
    assert [x["key"] for x in em2.search("marmalade")] == ["L1:3"]
    assert em2.search("title 1.3") == []
    assert [x["key"] for x in em2.search("item 17 about", wait=30)] == ["L0:17"]
    assert (tmp_path / "search.sqlite").stat().st_mtime_ns == built  # the items' index is kept
    assert em2.item_search_note("it") and em2.item_search_note("item") is None


@pytest.mark.parametrize("child", [False, True])
def test_opening_a_run_builds_the_item_index_before_any_search(tmp_path, monkeypatch, child):
    """In a thread, or (a big run, here made big by the threshold) in a child process."""
    from callbacks import search_index
    from hercules_core import save_model

    if child:
        monkeypatch.setattr(search_index, "CHILD_ITEMS", 10)

    h = make_hierarchy(make_text_dataset(200), ks=(6, 2))
    reduce_hierarchy(h, 2, 0)
    save_model(h, tmp_path / "model.json")
    em = ExploreModel.load(tmp_path / "model.json")
    assert (em.items_index.model_path is not None) == child
    deadline = time.monotonic() + 30
    while not (tmp_path / "search.sqlite").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "search.sqlite").is_file()  # no search asked for it
    assert [x["key"] for x in em.search("item 17 about", wait=0)] == ["L0:17"]


def test_a_failed_index_child_says_so_without_server_paths(tmp_path, monkeypatch):
    from callbacks import search_index

    monkeypatch.setattr(search_index, "CHILD_ITEMS", 0)
    ix = search_index.ItemIndex(tmp_path, lambda: iter([]), 5, "5:0", model_path=tmp_path / "gone.json")
    assert ix.ready(wait=60) is False
    assert "only clusters are searched" in ix.error and str(tmp_path) not in ix.error


def test_selection_from_every_kind_of_click(em):
    f = page_explore.selection_from_trigger
    assert f(em, ids.SCATTER, {"points": [{"customdata": ["L1:3", "x"]}]}) == "L1:3"
    assert f(em, ids.SUNBURST, {"points": [{"id": "L2:1"}]}) == "L2:1"
    assert f(em, {"type": ids.TREE_SELECT_T, "key": "L0:5"}, 1) == "L0:5"
    assert f(em, {"type": ids.SEARCH_HIT_T, "key": "L0:5"}, 0) is no_update  # appeared, not clicked
    assert f(em, {"type": ids.PANE_LINK_T, "key": "L9:0"}, 1) is no_update
    assert f(em, ids.SCATTER, {"points": []}) is no_update
    assert f(em, ids.CLEAR, 1) is None


def test_rendered_components_never_use_raw_html(em):
    for comp in (pane.cluster_pane(em, "L2:0"), pane.cluster_pane(em, "L0:7"), pane.overview(em), tree.tree(em)):
        blob = json.dumps(comp, cls=plotly.utils.PlotlyJSONEncoder)
        assert "dangerouslySetInnerHTML" not in blob and "Markdown" not in blob
    assert isinstance(pane.overview(em), html.Div)


def _graph_figure(children):
    graphs = [c for c in children if getattr(c, "id", None) == "eval-auto-k-graph"]
    return graphs[0].figure if graphs else None


def test_evaluate_page_shows_how_automatic_k_chose_the_top_level(tmp_path):
    from hercules_core import Hercules, HerculesConfig
    from hercules_core.dataset import Dataset
    from hercules_core.io import load_model, save_model

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(6), 60)
    X = (10 * np.eye(6)[y] + rng.normal(size=(len(y), 6))).astype(np.float32)
    ds = Dataset(ids=[str(i) for i in range(len(y))], modality="numeric", numeric=X, numeric_raw=X.astype(float),
                 feature_names=[f"v{j}" for j in range(6)], scaler_mean=np.zeros(6), scaler_scale=np.ones(6))
    h = Hercules(HerculesConfig(level_cluster_counts=None)).fit(ds).hierarchy_
    save_model(h, tmp_path / "m.json")
    for model in (h, load_model(tmp_path / "m.json")):  # also from a saved model
        view = page_evaluate.auto_k_view(model)
        assert "has k=6" in component_text(html.Div(view)) and "silhouette" in component_text(html.Div(view))
        fig = _graph_figure(view)
        assert fig["data"][1]["x"] == [6]  # the chosen k is marked
        assert fig["data"][0]["x"][:4] == [3, 4, 5, 6] and max(fig["data"][0]["y"]) == fig["data"][1]["y"][0]
    fixed = Hercules(HerculesConfig(level_cluster_counts=(12, 6))).fit(ds).hierarchy_
    assert page_evaluate.auto_k_view(fixed) == []


def test_auto_k_view_of_a_run_that_scored_every_level(em):
    """Models from before the top-down automatic k carry scores for every level: the top one is shown,
    without claiming the one-SE rule or the branching of the levels below."""
    h = em.h
    saved = h.stats
    try:
        h.stats = {**(saved or {}), "auto_k_scores": {"1": {"12": 0.3, "6": 0.2}, "2": {"4": 0.5, "3": 0.4}}}
        view = page_evaluate.auto_k_view(h)
        text = component_text(html.Div(view))
        assert "L2 has k=4" in text and "every level" in text
        assert "children per cluster" not in text and "standard error" not in text
        assert _graph_figure(view)["data"][0]["x"] == [3, 4]
    finally:
        h.stats = saved


@pytest.mark.parametrize("scores", [None, "x", {"9": {"3": 0.5}}, {"x": {"3": 0.5}}, {"1": {"a": "b", "3": "nan"}},
                                    {"1": {"3": float("nan")}}, {"1": []}, {True: {"3": 1.0}}])
def test_auto_k_view_ignores_malformed_stats(em, scores):
    h = em.h
    saved = h.stats
    try:
        h.stats = {**(saved or {}), "auto_k_scores": scores}
        assert page_evaluate.auto_k_view(h) == []
    finally:
        h.stats = saved


@pytest.fixture(scope="module")
def real_em(tmp_path_factory):
    """A real small run (fake embedder: unit-length vectors, so centroids are re-normalised), saved and loaded."""
    from hercules_core import Hercules, HerculesConfig, save_model
    from hercules_core.clients.fakes import FakeEmbedder

    h = Hercules(HerculesConfig(level_cluster_counts=(12, 4, 2)), text_embedder=FakeEmbedder(32)) \
        .fit(make_text_dataset(150)).hierarchy_
    assert h.stats["centroids_normalized"]
    path = tmp_path_factory.mktemp("run") / "model.json"
    save_model(h, path)
    return ExploreModel.load(path)


@pytest.mark.parametrize("level", [1, 2, 3])
def test_bubbles_sit_at_the_mean_of_their_items(real_em, level):
    fig, view = figures.scatter_figure(real_em, level, "representation")
    assert view["items"]
    items, bubbles = fig["data"][figures.T_ITEMS], fig["data"][figures.T_BUBBLES]
    ixy = np.column_stack([items["x"], items["y"]])
    bxy = np.column_stack([bubbles["x"], bubbles["y"]])
    span = float(np.ptp(ixy, axis=0).max())
    for j in range(len(real_em.h.levels[level])):
        mean = ixy[real_em.members(level, j)].mean(axis=0)
        assert np.linalg.norm(bxy[j] - mean) < 1e-3 * span, (level, j)
    # the selection ring and the ancestors' rings use the same positions
    over = figures.highlight_values(real_em, view, make_key(level, 0))
    assert np.allclose([over[(figures.T_SELECTED, "x")][0], over[(figures.T_SELECTED, "y")][0]], bxy[0], atol=1e-3)
    assert "mean of its items" in fig["layout"]["title"]["text"]


def test_description_space_draws_each_description_where_it_embeds(real_em):
    """In the description space a bubble is its own title + description embedding (what the space is
    for: where the LLM's text lands among the items), and the figure says so."""
    fig, _ = figures.scatter_figure(real_em, 1, "description")
    bubbles = fig["data"][figures.T_BUBBLES]
    own = real_em.h.levels[1].reductions["description"]
    assert np.allclose(np.column_stack([bubbles["x"], bubbles["y"]]), own, atol=1e-3)
    assert "where its own title and description embed" in fig["layout"]["title"]["text"]


def test_report_bubbles_use_the_same_positions(real_em):
    from hercules_core.report import report_data

    data = report_data(real_em.h)
    for lv in data["levels"]:
        xy = real_em.xy(lv["level"], "representation")
        assert np.allclose(np.array(lv["xy"]).T, xy, atol=1e-3)


def test_evaluate_page_says_why_metrics_coincide(real_em):
    """At L1 the children are the items, and in a text run the items' description embeddings are the
    item vectors: the page says so under the table. NMI and V-measure (beta=1) are one measure: one line."""
    import copy

    ev = real_em.h.evaluation
    l1 = ev[1]
    assert l1["children_silhouette_score"] == l1["silhouette_score"] == l1["llm_silhouette_score"]
    assert l1["normalized_mutual_info_score"] == pytest.approx(l1["v_measure_score"])
    table = page_evaluate.metrics_table(ev)
    text = component_text(table)
    assert "At L1 the children of a cluster are its items" in text
    assert "At L1 the description metrics equal them too" in text
    assert "NMI and V-measure are the same measure here" in text
    names = [t["name"] for t in figures.metrics_figure(ev)["data"]]
    assert "NMI = V-measure" in names and "NMI" not in names and "V-measure" not in names
    # numbers that differ are drawn and left as they are, without the notes
    other = copy.deepcopy(ev)
    other[2]["v_measure_score"] = 0.123
    other[1]["llm_silhouette_score"] = 0.5
    names = [t["name"] for t in figures.metrics_figure(other)["data"]]
    assert "NMI" in names and "V-measure" in names
    notes = page_evaluate.coincidence_notes(other)
    assert len(notes) == 1 and notes[0].startswith("At L1 the children")
    assert page_evaluate.coincidence_notes({}) == []
    # a model's evaluation read back from JSON has str keys and no labels
    plain = {str(k): {**v, "normalized_mutual_info_score": None, "v_measure_score": None} for k, v in ev.items()}
    assert len(page_evaluate.coincidence_notes(plain)) == 2


def test_a_100k_item_run_sends_bounded_responses():
    """At 100,000 items every item is drawn (a density image), yet the first scatter, a click on the
    biggest cluster, a zoom, the pane and the tree each stay small."""
    h = make_hierarchy(make_text_dataset(100_000), ks=(1000, 100, 10), dim=8)
    reduce_hierarchy(h, 2, 0)
    em = ExploreModel.from_hierarchy(h)

    def size(obj) -> int:
        return len(plotly.io.json.to_json_plotly(obj.to_plotly_json() if hasattr(obj, "to_plotly_json") else obj))

    fig, view = figures.scatter_figure(em, 1)
    assert view["image"] and fig["layout"]["images"][figures.IMG_ITEMS]["source"].startswith("data:image/png")
    assert size(fig) < 400_000
    biggest = make_key(3, int(np.argmax(h.levels[3].size)))
    assert size(figures.highlight_patch(em, view, biggest)) < 200_000
    x0, x1, y0, y1 = view["range"]
    rng = figures.view_range({"xaxis.range[0]": x0, "xaxis.range[1]": (x0 + x1) / 2}, view, None)
    assert rng == [x0, (x0 + x1) / 2, y0, y1]
    assert size(figures.zoom_patch(em, view, rng, biggest)) < 200_000
    l1 = make_key(1, int(np.argmax(h.levels[1].size)))
    assert size(pane.cluster_pane(em, l1)) < 60_000 and size(tree.tree(em, make_key(0, 99_999))) < 200_000


def test_density_image_shows_every_item_where_it_is(em):
    """Each item lands in the pixel of its position (the image spans the given range, top row = top)."""
    import base64
    import io

    from PIL import Image

    xy = em.xy(0, "representation")
    rng = figures.full_range(em, "representation", 1)
    img = figures.items_image(em, "representation", rng, px=(400, 200))
    assert (img["x"], img["y"], img["sizex"], img["sizey"]) == (rng[0], rng[3], rng[1] - rng[0], rng[3] - rng[2])
    a = np.asarray(Image.open(io.BytesIO(base64.b64decode(img["source"].split(",", 1)[1]))).convert("RGBA"))
    scale = 400 // a.shape[1]
    w, h = a.shape[1], a.shape[0]
    cx = ((xy[:, 0] - rng[0]) / (rng[1] - rng[0]) * w).astype(int)
    cy = ((rng[3] - xy[:, 1]) / (rng[3] - rng[2]) * h).astype(int)
    assert scale >= 1 and np.all(a[cy, cx, 3] > 0)
    assert (a[..., 3] > 0).sum() <= len(xy)
    # the selection's image holds exactly its items' pixels
    fig, view = figures.scatter_figure(em, 1, items_max=10)
    sel = figures.selection_image(em, view, "L1:2")
    b = np.asarray(Image.open(io.BytesIO(base64.b64decode(sel["source"].split(",", 1)[1]))).convert("RGBA"))
    bw, bh = b.shape[1], b.shape[0]
    r = view["range"]
    m = em.members(1, 2)
    px = set(zip(((r[3] - xy[m, 1]) / (r[3] - r[2]) * bh).astype(int), ((xy[m, 0] - r[0]) / (r[1] - r[0]) * bw).astype(int)))
    assert set(zip(*np.nonzero(b[..., 3]))) == px


def test_the_explorer_works_on_a_columnar_model(tmp_path):
    """A model whose item arrays are memory-mapped from its items file (read-only views): the
    scatter, highlight, pane, tree and search work on it as on a model loaded from JSON."""
    from hercules_core import io

    h = make_hierarchy(make_text_dataset(120), ks=(12, 4))
    h.dataset.texts[7] = "A claim about unicorns"
    reduce_hierarchy(h, 2, 0)
    evaluate_all(h)
    io.save_model(h, tmp_path / "model.json", items="columnar")
    em = ExploreModel.load(tmp_path / "model.json")
    assert not em.h.levels[0].reductions["representation"].flags.writeable  # mapped, not copied
    fig, view = figures.scatter_figure(em, 1, "representation", color_level=2)
    assert len(fig["data"][figures.T_ITEMS]["x"]) == 120
    assert len(figures.highlight_patch(em, view, "L1:2").to_plotly_json()["operations"]) > 0
    assert "unicorns" in component_text(pane.cluster_pane(em, "L0:7"))
    assert [x["key"] for x in em.search("unicorn", wait=30)] == ["L0:7"]
    assert "unicorns" not in component_text(tree.tree(em)) and component_text(tree.tree(em, "L0:7"))  # opens the path
