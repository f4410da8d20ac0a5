"""Curating a run's hierarchy from the explore page: merge, split, move, dissolve, undo and redo.

The library does the edits (``hercules_core.curate``: pure functions, and ``edit_model``, the locked
re-read-modify-write of the saved model); this module is the page's side of it:

- **Choosing clusters.** The page's usual selection (a click in the scatter, the tree, the sunburst,
  the pane or the search results: one key ``"L2:3"``) is added to an *edit selection* with "Add";
  a box or lasso selection in the scatter sets it to the bubbles inside. The edit selection holds
  cluster *ids* (``"L2_3"``), which an edit never reassigns; keys (indices) do shift after an edit.
  One mechanism for every view, and no modifier keys (Dash's click events do not carry them).
- **Stale views.** The page's run store carries ``structure`` (``ExploreModel.structure``) of what it
  drew. A key from a page drawn before an edit made elsewhere (another tab) is refused with
  :data:`STALE` and the page is redrawn; an edit request carries cluster ids, applied under the lock
  to the current file, or refused with :data:`STALE` when one of them is gone.
- **Re-titling.** After a structural edit the new structure is saved and shown at once; the touched
  clusters (``curate.to_retitle``) are marked "re-titling…" and re-summarised in a thread of this
  process with the run's own summariser (:func:`summarizer_for`). The LLM answers are produced
  outside the model lock (they land in the run's disk cache), then the re-titling is applied under
  the lock to the file as it is then (the same answers come back from the cache); clusters gone by
  then are skipped. Progress is ``retitle.json`` beside the model, which every server process reads
  (the page polls it).
- **Cost.** Before an edit whose re-titling calls an LLM (not keywords or the test fake), the page
  shows the number of calls and asks to confirm.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from hercules_core import HerculesError, InputError, io
from hercules_core.curate import OPS, SPLIT_K_MAX
from hercules_core.hierarchy import CLUSTER_ID_RE

from . import runstore
from .explore_model import ExploreModel, make_key

log = logging.getLogger("hercules.curate")

STALE = "This cluster changed in another tab; the view was refreshed."
MAX_SELECTED = 50
RETITLE_FILE = "retitle.json"
RETITLE_STALE_S = 600  # a re-titling whose process vanished: given up after this long
NO_CONFIRM_LLM = {"fake"}  # the test LLM: free, no confirmation


# ----------------------------------------------------------------------------- who, run store
def who() -> str:
    """The name in the edit log: "local" without a login; with the team password there are no user
    names, so "team-" and a short digest of the login session (tells two people apart, reveals nothing)."""
    try:
        from flask import current_app, session

        if "hercules_auth" in current_app.extensions:
            sid = session.get("hercules_sid")
            return "team-" + hashlib.sha256(str(sid).encode()).hexdigest()[:6] if sid else "team"
    except RuntimeError:  # outside a request (tests calling the functions)
        pass
    return "local"


def run_store(run: Any, em: ExploreModel) -> dict[str, Any]:
    """The next revision of the page's run store: every view re-renders from it."""
    rev = run.get("rev") if isinstance(run, dict) else None
    rev = rev if isinstance(rev, int) and not isinstance(rev, bool) and 0 <= rev < 10**9 else 0
    return {"run_id": run["run_id"], "rev": rev + 1, "structure": em.structure}


def is_stale(em: ExploreModel, run: Any) -> bool:
    """Whether the page was drawn from another structure than the model's (its keys name other clusters)."""
    return isinstance(run, dict) and run.get("structure") != em.structure


def open_run(ctx, run: Any) -> tuple[str, ExploreModel]:
    """(run id, model) of the page's run store; InputError saying what is wrong otherwise."""
    run_id = run.get("run_id") if isinstance(run, dict) else None
    if not runstore.valid_id(run_id):
        raise InputError("Not a valid run.")
    try:
        return run_id, ctx.model(run_id)
    except (OSError, HerculesError):
        raise InputError("This run has no model to edit.") from None


# ----------------------------------------------------------------------------- the edit selection
def clean_ids(em: ExploreModel, value: Any) -> list[str]:
    """The cluster ids of an edit-selection store that exist in the model (in order, no repeats)."""
    raw = value.get("ids") if isinstance(value, dict) else None
    out: list[str] = []
    for cid in raw if isinstance(raw, list) else []:
        if isinstance(cid, str) and CLUSTER_ID_RE.fullmatch(cid) and cid not in out and _exists(em, cid):
            out.append(cid)
        if len(out) >= MAX_SELECTED:
            break
    return out


def _exists(em: ExploreModel, cid: str) -> bool:
    try:
        return em.h.cluster(cid).level >= 1
    except (KeyError, ValueError, IndexError):
        return False


def cluster_id_of(em: ExploreModel, key: Any) -> str | None:
    parsed = em.parse(key)
    if parsed is None or parsed[0] == 0:
        return None
    return str(em.h.levels[parsed[0]].ids[parsed[1]])


def key_of(em: ExploreModel, cid: str) -> str | None:
    try:
        c = em.h.cluster(cid)
    except (KeyError, ValueError, IndexError):
        return None
    return make_key(c.level, c.index)


def add_to_selection(em: ExploreModel, run: Any, current: Any, selection: Any) -> tuple[list[str], str]:
    """The edit selection with the clicked cluster added, and a message ("" when fine)."""
    chosen = clean_ids(em, current)
    if is_stale(em, run):
        return [], STALE
    key = selection.get("key") if isinstance(selection, dict) else None
    cid = cluster_id_of(em, key)
    if cid is None:
        return chosen, "Click a cluster (level 1 or above) first, then Add."
    if cid in chosen:
        return chosen, ""
    if len(chosen) >= MAX_SELECTED:
        return chosen, f"At most {MAX_SELECTED} clusters can be chosen at once."
    return chosen + [cid], ""


def from_box(em: ExploreModel, run: Any, selected: Any, bubbles_trace: int) -> tuple[list[str], str]:
    """The bubbles inside a box or lasso selection of the scatter, as cluster ids."""
    if is_stale(em, run):
        return [], STALE
    points = selected.get("points") if isinstance(selected, dict) else None
    out: list[str] = []
    for p in points if isinstance(points, list) else []:
        if not isinstance(p, dict) or p.get("curveNumber") != bubbles_trace:
            continue
        custom = p.get("customdata")
        cid = cluster_id_of(em, custom[0] if isinstance(custom, list) and custom else None)
        if cid is not None and cid not in out:
            out.append(cid)
        if len(out) >= MAX_SELECTED:
            break
    return out, ""


# ----------------------------------------------------------------------------- what applies
def _members_count(em: ExploreModel, cid: str) -> int:
    c = em.h.cluster(cid)
    return len(em.h.children_of(c.level, c.index))


def siblings(em: ExploreModel, cid: str) -> list[str]:
    c = em.h.cluster(cid)
    lv = em.h.levels[c.level]
    if c.level == em.top:
        return [str(x) for j, x in enumerate(lv.ids) if j != c.index]
    parent = int(lv.parent[c.index])
    return [str(lv.ids[j]) for j in range(len(lv)) if j != c.index and int(lv.parent[j]) == parent]


def move_targets(em: ExploreModel, cid: str) -> list[dict[str, str]]:
    """The valid new parents of a cluster: the clusters one level up except its own parent."""
    c = em.h.cluster(cid)
    if c.level >= em.top:
        return []
    lv, up = em.h.levels[c.level], em.h.levels[c.level + 1]
    parent = int(lv.parent[c.index])
    return [{"label": f"{up.ids[j]} · {_short(up.titles[j])}", "value": str(up.ids[j])}
            for j in range(len(up)) if j != parent]


def _short(text: str, limit: int = 50) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[:limit - 1] + "…"


def toolbar(em: ExploreModel, chosen: list[str]) -> dict[str, Any]:
    """What the toolbar offers for the edit selection: which buttons apply (and why not), split's
    largest k, the move targets; plus undo/redo from the model's log."""
    levels = {em.h.cluster(c).level for c in chosen}
    one = chosen[0] if len(chosen) == 1 else None
    why: dict[str, str] = {}
    if len(chosen) < 2 or len(levels) != 1:
        why["merge"] = "Choose two or more clusters of the same level."
    split_max = 0
    if one is None:
        why["split"] = why["move"] = why["dissolve"] = "Choose exactly one cluster."
    else:
        split_max = min(_members_count(em, one), SPLIT_K_MAX)
        if split_max < 2:
            why["split"] = "This cluster has fewer than two members to split."
        if not move_targets(em, one):
            why["move"] = "Top-level clusters, and clusters whose level has a single parent, cannot move."
        if not siblings(em, one):
            why["dissolve"] = "This cluster has no sibling to take its members."
    undo_ok, redo_ok = history(em)
    if not undo_ok:
        why["undo"] = "Nothing to undo."
    if not redo_ok:
        why["redo"] = "Nothing to redo."
    return {"why": why, "split_max": split_max, "targets": move_targets(em, one) if one and "move" not in why else []}


def history(em: ExploreModel) -> tuple[bool, bool]:
    """(can undo, can redo): the model's edit log, and its stack of undone entries."""
    return bool(getattr(em.h, "edit_log", None)), bool(getattr(em.h, "redo_log", None))


# ----------------------------------------------------------------------------- edits
def edit_args(op: str, chosen: list[str], k: Any, target: Any) -> dict[str, Any]:
    """The library's arguments of ``op`` (``curate.apply_op``) for the edit selection (InputError when
    they do not fit)."""
    if op == "merge":
        return {"ids": list(chosen)}
    if op in ("undo", "redo"):
        return {}
    if len(chosen) != 1:
        raise InputError("Choose exactly one cluster for this edit.")
    if op == "split":
        if isinstance(k, bool) or not isinstance(k, (int, str)) or not str(k).isdigit() or not 2 <= int(k) <= SPLIT_K_MAX:
            raise InputError(f"Split needs a number of parts between 2 and {SPLIT_K_MAX}.")
        return {"id": chosen[0], "k": int(k)}
    if op == "move":
        if not isinstance(target, str) or not CLUSTER_ID_RE.fullmatch(target):
            raise InputError("Choose the new parent in the 'Move to…' list first.")
        return {"id": chosen[0], "parent": target}
    if op == "dissolve":
        return {"id": chosen[0]}
    raise InputError("Unknown edit.")


def named_ids(args: dict[str, Any]) -> list[str]:
    """The cluster ids an edit's arguments name."""
    ids_ = args.get("ids") if isinstance(args.get("ids"), list) else []
    return [str(c) for c in ids_] + [str(args[k]) for k in ("id", "parent") if isinstance(args.get(k), str)]


def llm_id_of(rdir: Path) -> str | None:
    """The registry id of the run's LLM (None for keywords, an imported model or a run without one)."""
    spec = runstore.read_json(rdir / "spec.json") or {}
    models = spec.get("models") if isinstance(spec, dict) else None
    llm = models.get("llm") if isinstance(models, dict) else None
    return llm if isinstance(llm, str) and llm not in ("", "none", "keywords") else None


def write_downloads(rdir: Path, h) -> None:
    """The downloads derived from the model, written under the model's lock after any edit (title or structure)."""
    io.save_memberships(h, rdir / "memberships.csv")
    io.save_hierarchy_text(h, rdir / "hierarchy.txt")
    io.save_evaluation(h.evaluation, rdir / "evaluation.json")


def request_edit(ctx, run: Any, op: Any, chosen_store: Any = None, k: Any = None, target: Any = None, *,
                 who_: str = "local", confirmed: bool = False) -> dict[str, Any]:
    """One edit request from the page.

    Returns ``{"state": ...}``: "error" (``message``; nothing written), "stale" (the page must be
    redrawn: ``run`` is the new store), "confirm" (``message`` is the LLM cost; ask, then call again
    with ``confirmed=True``), or "ok" (``message``, ``run``: the new store, ``key``: the cluster to
    select, ``ids``: the new edit selection, ``retitling``: the ids re-titled in the background).
    """
    from hercules_core import curate

    if op not in OPS:
        return {"state": "error", "message": "Unknown edit."}
    try:
        run_id, em = open_run(ctx, run)
    except InputError as e:
        return {"state": "error", "message": str(e)}
    if is_stale(em, run):
        return {"state": "stale", "message": STALE, "run": run_store(run, em)}
    raw = chosen_store.get("ids") if isinstance(chosen_store, dict) else []
    chosen = clean_ids(em, chosen_store)
    if op not in ("undo", "redo") and isinstance(raw, list) and len(chosen) != len(raw):
        return {"state": "stale", "message": STALE, "run": run_store(run, em)}  # one of them is gone
    try:
        args = edit_args(op, chosen, k, target)
    except InputError as e:
        return {"state": "error", "message": str(e)}
    rdir = runstore.run_dir(ctx.runs_dir, run_id)
    llm_id = llm_id_of(rdir)
    if op not in ("undo", "redo") and llm_id and llm_id not in NO_CONFIRM_LLM and not confirmed:
        try:  # what the re-titling would cost: the edit made in memory only (pure), then its figure
            preview = curate.apply_op(em.h, op, args)
            cost = curate.retitle_cost(preview.hierarchy, curate.to_retitle(preview.hierarchy, preview.entry),
                                       llm_id=llm_id)
        except HerculesError as e:
            return {"state": "error", "message": str(e)}
        calls = int(cost.get("llm_calls") or 0)
        if calls:
            tokens = int(cost.get("prompt_tokens") or 0) + int(cost.get("completion_tokens") or 0)
            return {"state": "confirm", "message": f"This {op} re-titles {cost.get('clusters', 0)} cluster(s) with "
                    f"the run's LLM ({llm_id}): {calls} LLM call{'s' if calls != 1 else ''}, about {tokens:,} tokens. "
                    "Go ahead?"}
    def saved(h) -> None:  # under the lock: the downloads, and the explorer's model from memory (no re-read)
        write_downloads(rdir, h)
        ctx.cache.put(rdir / "model.json", lambda: ExploreModel.from_hierarchy(h, str(rdir / "model.json")))

    try:
        change = curate.edit_model(rdir / "model.json", op, args, who=who_, on_saved=saved)
    except InputError as e:
        # an id that was there when the page drew it and is gone under the lock: another tab's edit
        fresh = ctx.model(run_id)
        if any(not _exists(fresh, cid) for cid in named_ids(args)):
            return {"state": "stale", "message": STALE, "run": run_store(run, fresh)}
        return {"state": "error", "message": str(e)}
    except HerculesError as e:
        return {"state": "error", "message": str(e)}
    except OSError as e:
        return {"state": "error", "message": f"The edit could not be saved ({e.strerror or 'disk error'}); "
                                             "nothing was changed."}
    em = ctx.model(run_id)
    entry = change.entry
    retitle = [] if op in ("undo", "redo") else list(curate.to_retitle(change.hierarchy, entry))
    if op not in ("undo", "redo"):  # the background half: titles, and the evaluation the edit made stale
        start_retitle(ctx, run_id, int(entry["seq"]), retitle, llm_id)
    created = [c for c in (entry.get("effect") or {}).get("created") or [] if _exists(em, c)]
    focus = next(iter(created), None) or next((c for c in named_ids(args) if _exists(em, c)), None)
    return {"state": "ok", "run": run_store(run, em), "key": key_of(em, focus) if focus else None,
            "ids": [focus] if focus else [], "retitling": retitle,
            "message": describe_entry(entry, op) + (f" Re-titling {len(retitle)} cluster"
                                                    f"{'s' if len(retitle) != 1 else ''}…" if retitle else "")}


def describe_entry(entry: dict[str, Any], done: str | None = None) -> str:
    """One line for an edit-log entry: "Merge L1_3, L1_5 → L1_12."; ``done`` "undo"/"redo" says so."""
    op = str(entry.get("op", "edit"))
    args = entry.get("args") if isinstance(entry.get("args"), dict) else {}
    effect = entry.get("effect") if isinstance(entry.get("effect"), dict) else {}
    if op == "retitle":
        text = f"Retitle {args.get('id', '')}: \u201c{_short(args.get('title', ''), 60)}\u201d"
    elif op == "resummarize":
        text = f"Re-titled {', '.join(map(str, args.get('ids') or []))[:120]}"
    else:
        named = ", ".join(named_ids(args))[:120]
        if op == "move" and args.get("parent"):
            named = f"{args.get('id')} under {args.get('parent')}"
        if op == "split":
            named = f"{args.get('id')} into {args.get('k')}"
        created = ", ".join(str(x) for x in effect.get("created") or [])[:80]
        text = f"{op.capitalize()} {named}".strip() + (f" \u2192 {created}" if created else "")
    if done in ("undo", "redo"):
        text = f"{'Undone' if done == 'undo' else 'Redone'}: {text}"
    return text + "."


# ----------------------------------------------------------------------------- background re-titling
_jobs: dict[str, threading.Thread] = {}
_jobs_lock = threading.Lock()


def retitle_status(rdir: Path) -> dict[str, Any]:
    """The run's re-titling (``{}`` when none ran); ``pending``: the ids still being re-titled.
    A re-titling whose process went away (no update for RETITLE_STALE_S) counts as failed."""
    st = runstore.read_json(rdir / RETITLE_FILE)
    if not isinstance(st, dict):
        return {}
    if st.get("state") == "running" and time.time() - float(st.get("ts") or 0) > RETITLE_STALE_S:
        st = dict(st, state="failed", message="The re-titling stopped (the server restarted?); run the edit's "
                                              "undo and redo, or edit the titles by hand.")
    if st.get("state") != "running":
        st["pending"] = []
    return st


def pending_ids(rdir: Path) -> set[str]:
    return {c for c in retitle_status(rdir).get("pending") or [] if isinstance(c, str)}


def _set_status(rdir: Path, **fields: Any) -> None:
    runstore.write_json_atomic(rdir / RETITLE_FILE, {**fields, "ts": time.time()})


def start_retitle(ctx, run_id: str, seq: int, cluster_ids: list[str], llm_id: str | None) -> None:
    """Re-summarise what edit ``seq`` touched, in a thread of this process (one at a time per run:
    a newer edit's job waits for the older one). Progress goes to ``retitle.json``."""
    rdir = runstore.run_dir(ctx.runs_dir, run_id)
    with _jobs_lock:
        before = _jobs.get(run_id)
        pending = sorted(set(cluster_ids) | (pending_ids(rdir) if before is not None and before.is_alive() else set()))
        _set_status(rdir, state="running", pending=pending, seq=seq)
        job = threading.Thread(target=_retitle, args=(rdir, seq, list(cluster_ids), llm_id, before),
                               name=f"retitle-{run_id[:8]}", daemon=True)
        _jobs[run_id] = job
    job.start()


def wait_retitle(run_id: str, timeout: float = 120.0) -> None:
    """Wait for the run's background re-titling (tests, the benchmark)."""
    with _jobs_lock:
        job = _jobs.get(run_id)
    if job is not None:
        job.join(timeout)


def run_summarizer(rdir: Path, h, llm_id: str | None):
    """The run's summariser as its fit built it (``hercules.build_summarizer``): the keyword summariser,
    and the run's LLM (through the shared disk cache) with it as the fallback, with the run's config
    (prompt style, topic seed, batching). Imported models have no LLM id: keywords."""
    import model_registry
    from hercules_core.cache import Cache, default_cache_dir, wrap
    from hercules_core.hercules import build_summarizer

    ds = h.dataset
    l0_texts = list(ds.texts) if ds.modality == "text" and ds.texts is not None else list(h.levels[0].descriptions)
    llm = model_registry.get_llm(llm_id) if llm_id is not None else None
    return build_summarizer(ds, l0_texts, h.config, None if llm is None else wrap(llm, Cache(default_cache_dir())),
                            run_log=io.RunLog(rdir / "run_log.jsonl", keep_records=False))


def _retitle(rdir: Path, seq: int, cluster_ids: list[str], llm_id: str | None, before: threading.Thread | None) -> None:
    from hercules_core import curate
    from hercules_core.edits import model_lock

    if before is not None:
        before.join()
    path = rdir / "model.json"
    try:
        h = io.load_model(path, verify=False)
        summarizer = run_summarizer(rdir, h, llm_id)
        curate.resummarize_model(path, seq, summarizer, on_saved=lambda g: write_downloads(rdir, g))
        # what still carries the placeholder title (another edit came after this one, or a replay
        # named more clusters than its last entry) is re-titled on the file as it is now, under the
        # lock. Not when the edit was undone (the undo restored the titles of before) or while there
        # is something to redo (a new entry would drop the redo stack).
        with model_lock(path):
            g = io.load_model(path, verify=False)
            kept = any(e.get("seq") == seq for e in g.edit_log) and not g.redo_log
            left = [c for c in cluster_ids if kept and _in(g, c) and g.cluster(c).source == curate.CURATED]
            if left:
                g = curate.resummarize(g, left, summarizer).hierarchy
                io.save_model(g, path, include_item_vectors=g.levels[0].vectors is not None, items="keep")
                write_downloads(rdir, g)
        done = True
    except Exception as e:  # noqa: BLE001 - a thread: what failed is said on the page, the log has the rest
        log.exception("re-titling failed")
        text = str(e) if isinstance(e, HerculesError) else f"{type(e).__name__}: {e}"
        done = False
    with _jobs_lock:
        newer = _jobs.get(rdir.name) is not threading.current_thread()
        if newer:  # a newer edit's job runs after this one and owns retitle.json
            return
        if done:
            n = len(cluster_ids)
            _set_status(rdir, state="done", pending=[], seq=seq,
                        message=f"Re-titled {n} cluster{'s' if n != 1 else ''}." if n else "Evaluation re-measured.")
        else:
            _set_status(rdir, state="failed", pending=[], seq=seq,
                        message=f"Re-titling failed ({text[:200]}); the clusters keep placeholder titles: "
                                "edit them by hand, or undo the edit.")


def _in(h, cid: str) -> bool:
    try:
        h.cluster(cid)
        return True
    except (KeyError, ValueError, IndexError):
        return False


# ----------------------------------------------------------------------------- replay onto another run
def replay_onto(ctx, run: Any, target: Any, *, who_: str = "local") -> dict[str, Any]:
    """Replay this run's edit log onto the run ``target`` (ids from the browser: checked) and save the
    result as a new run; ``{"state": "ok", "run_id", "report", "message"}`` or ``{"state": "error",
    "message"}``. The replayed clusters are re-titled in the background with the target's summariser."""
    from hercules_core import curate
    from hercules_run.pipeline import save_outputs

    try:
        run_id, em = open_run(ctx, run)
    except InputError as e:
        return {"state": "error", "message": str(e)}
    if not em.h.edit_log:
        return {"state": "error", "message": "This run has no edits to replay yet."}
    if not runstore.valid_id(target) or target == run_id:
        return {"state": "error", "message": "Choose another finished run of the same data to replay onto."}
    try:
        h_target = ctx.model(target).h
        h_new, report = curate.replay(em.h, h_target, who=who_)
    except HerculesError as e:
        return {"state": "error", "message": str(e)}
    except OSError:
        return {"state": "error", "message": "The target run has no model."}
    new_id = runstore.new_id()
    rdir = runstore.run_dir(ctx.runs_dir, new_id)
    rdir.mkdir(parents=True)
    save_outputs(h_new, rdir)
    runstore.write_json_atomic(rdir / "replay.json", report)
    target_status = runstore.read_status(runstore.run_dir(ctx.runs_dir, target))
    runstore.imported(rdir, data={"source": f"replay of {run_id[:8]} onto {target[:8]}", "modality":
                                  h_new.dataset.modality, "n_items": h_new.n_items},
                      settings=target_status.get("settings") or {},
                      clusters_per_level=[len(lv) for lv in h_new.levels[1:]])
    for name in ("spec.json",):  # the target's models: its re-titling uses the target's summariser
        spec = runstore.read_json(runstore.run_dir(ctx.runs_dir, target) / name)
        if spec is not None:
            runstore.write_json_atomic(rdir / name, spec)
    retitle = [c for c in report.get("retitle") or [] if _in(h_new, c)]
    if retitle and h_new.edit_log:
        start_retitle(ctx, new_id, int(h_new.edit_log[-1]["seq"]), retitle, llm_id_of(rdir))
    applied, total = int(report.get("applied", 0)), int(report.get("entries", 0))
    return {"state": "ok", "run_id": new_id, "report": report,
            "message": f"Replayed onto a new run: {applied} of {total} edits applied."}


def replay_view(out: dict[str, Any]):
    """The replay's outcome: a link to the new run and every entry applied or not, with the reason."""
    from dash import html

    if out.get("state") != "ok":
        return html.Span(out.get("message", ""), className="text-danger curate-replay-error")
    rows = []
    for r in out["report"].get("results") or []:
        ok = r.get("status") == "applied"
        entry = {"op": r.get("op"), "args": r.get("args") or {}}
        rows.append(html.Li([html.Span("applied" if ok else "not applied",
                                       className="badge me-1 " + ("bg-success" if ok else "bg-warning text-dark")),
                             describe_entry(entry), html.Span(f" {r.get('reason')}" if r.get("reason") else "",
                                                              className="text-muted")]))
    return html.Div([html.Span(out["message"], className="text-success curate-replay-ok me-1"),
                     html.A("Open it →", href=f"/explore?run={out['run_id']}"),
                     html.Ul(rows, className="list-unstyled mb-0 curate-replay-report")])


def replay_targets(ctx, run_id: str) -> list[dict[str, str]]:
    from .page_compare import run_options

    return [o for o in run_options(ctx) if o["value"] != run_id]


# ----------------------------------------------------------------------------- what the page shows
RETITLING = "re-titling…"
CHILDREN_CHANGED = "children changed since your edit"


def marks(em: ExploreModel, rdir: Path) -> dict[str, str]:
    """Badges of the tree and the pane: clusters being re-titled, and hand-edited clusters whose
    children changed since (the library flags them instead of overwriting the person's title)."""
    out = {cid: CHILDREN_CHANGED for cid, e in em.h.edits.items()
           if isinstance(e, dict) and e.get("children_changed")}
    out.update({cid: RETITLING for cid in pending_ids(rdir)})
    return out


def chips(em: ExploreModel, chosen: list[str]):
    from dash import html

    if not chosen:
        return html.Span("none chosen", className="small text-muted")
    out = []
    for cid in chosen:
        c = em.h.cluster(cid)
        out.append(html.Span([html.Span(cid, className="fw-semibold me-1"), _short(c.title, 30)],
                             className="badge bg-light text-dark border me-1 curate-chip", title=c.title,
                             **{"data-id": cid}))
    return out


def log_view(em: ExploreModel, limit: int = 15):
    """The newest edits first: when, who, what (plain text)."""
    from dash import html

    entries = [e for e in getattr(em.h, "edit_log", []) or [] if isinstance(e, dict)]
    if not entries:
        return html.Div("No edits yet.", className="text-muted")
    rows = []
    for e in reversed(entries[-limit:]):
        when = str(e.get("at", ""))[:19].replace("T", " ")
        rows.append(html.Li([html.Span(when, className="text-muted me-1"),
                             html.Span(str(e.get("who") or "?"), className="badge bg-light text-dark me-1"),
                             describe_entry(e)], className="curate-log-entry"))
    more = len(entries) - min(len(entries), limit)
    return html.Div([html.Ul(rows, className="list-unstyled mb-0"),
                     html.Div(f"… and {more} earlier", className="text-muted") if more else None])


# ----------------------------------------------------------------------------- callbacks
BUTTONS = {"merge": "CURATE_MERGE", "split": "CURATE_SPLIT", "move": "CURATE_MOVE", "dissolve": "CURATE_DISSOLVE",
           "undo": "CURATE_UNDO", "redo": "CURATE_REDO"}


def _message(text: str, ok: bool, run: Any = None):
    """A message as text; after an edit it carries the page's new revision (``data-rev``)."""
    from dash import html

    rev = run.get("rev") if isinstance(run, dict) else None
    return html.Span(text, className=("text-success curate-ok" if ok else "text-danger curate-error"),
                     **({"data-rev": str(rev)} if rev is not None else {}))


def register(app, ctx) -> None:
    from dash import Input, Output, State, ctx as dash_ctx, no_update
    from dash.exceptions import PreventUpdate

    from . import figures, ids
    from .page_explore import controls, load

    button_ids = {op: getattr(ids, name) for op, name in BUTTONS.items()}

    @app.callback(Output(ids.CURATE_SEL, "data"), Output(ids.CURATE_MSG, "children", allow_duplicate=True),
                  Output(ids.EXPLORE_RUN, "data", allow_duplicate=True),
                  Input(ids.CURATE_ADD, "n_clicks"), Input(ids.CURATE_CLEAR, "n_clicks"),
                  Input(ids.SCATTER, "selectedData"), State(ids.SELECTION, "data"), State(ids.CURATE_SEL, "data"),
                  State(ids.EXPLORE_RUN, "data"), prevent_initial_call=True)
    def _choose(_add, _clear, selected, selection, current, run):
        em = load(ctx, run)
        trig = dash_ctx.triggered_id
        if trig == ids.CURATE_CLEAR:
            return {"ids": []}, "", no_update
        if trig == ids.CURATE_ADD:
            chosen, msg = add_to_selection(em, run, current, selection)
        elif trig == ids.SCATTER:
            if not selected:
                raise PreventUpdate
            chosen, msg = from_box(em, run, selected, figures.T_BUBBLES)
        else:
            raise PreventUpdate
        stale = msg == STALE
        return {"ids": chosen}, (_message(msg, False) if msg else ""), (run_store(run, em) if stale else no_update)

    @app.callback(Output(ids.CURATE_CHIPS, "children"),
                  *[Output(button_ids[op], "disabled") for op in OPS], *[Output(button_ids[op], "title") for op in OPS],
                  Output(ids.CURATE_SPLIT_K, "max"), Output(ids.CURATE_MOVE_TO, "options"),
                  Output(ids.CURATE_LOG, "children"), Output(ids.CURATE_POLL, "disabled", allow_duplicate=True),
                  Output(ids.LEVEL, "options"), Output(ids.EXPLORE_HEADER, "children"),
                  Input(ids.CURATE_SEL, "data"), Input(ids.EXPLORE_RUN, "data"), prevent_initial_call="initial_duplicate")
    def _toolbar(current, run):
        em = load(ctx, run)
        chosen = clean_ids(em, current)
        t = toolbar(em, chosen)
        c = controls(ctx, run["run_id"]) or {}
        pending = bool(pending_ids(runstore.run_dir(ctx.runs_dir, run["run_id"])))
        # polling starts here for a re-titling under way when the page opens (another tab's edit); the
        # edit callback starts it for its own, and the polling itself stops it
        return (chips(em, chosen), *[op in t["why"] for op in OPS], *[t["why"].get(op, "") for op in OPS],
                max(t["split_max"], 2), t["targets"], log_view(em), False if pending else no_update,
                c.get("levels", no_update), c.get("title", no_update))

    @app.callback(Output(ids.CURATE_MSG, "children", allow_duplicate=True),
                  Output(ids.EXPLORE_RUN, "data", allow_duplicate=True),
                  Output(ids.SELECTION, "data", allow_duplicate=True),
                  Output(ids.CURATE_SEL, "data", allow_duplicate=True),
                  Output(ids.CURATE_PENDING, "data"), Output(ids.CURATE_CONFIRM, "is_open"),
                  Output(ids.CURATE_CONFIRM_TEXT, "children"),
                  Output(ids.CURATE_RETITLE_MSG, "children", allow_duplicate=True),
                  Output(ids.CURATE_POLL, "disabled", allow_duplicate=True),
                  *[Input(button_ids[op], "n_clicks") for op in OPS], Input(ids.CURATE_CONFIRM_OK, "n_clicks"),
                  State(ids.CURATE_SEL, "data"), State(ids.CURATE_SPLIT_K, "value"), State(ids.CURATE_MOVE_TO, "value"),
                  State(ids.EXPLORE_RUN, "data"), State(ids.CURATE_PENDING, "data"), prevent_initial_call=True)
    def _edit(*args):
        chosen, k, target, run, pending = args[-5:]
        trig = dash_ctx.triggered_id
        value = dash_ctx.triggered[0]["value"] if dash_ctx.triggered else None
        if not value:
            raise PreventUpdate
        confirmed = trig == ids.CURATE_CONFIRM_OK
        if confirmed:  # the edit the user agreed to pay for (checked again like any request)
            if not isinstance(pending, dict):
                raise PreventUpdate
            op, chosen, k, target = pending.get("op"), pending.get("chosen"), pending.get("k"), pending.get("target")
        else:
            op = next((o for o, b in button_ids.items() if b == trig), None)
        out = request_edit(ctx, run, op, chosen, k, target, who_=who(), confirmed=confirmed)
        state = out["state"]
        if state == "confirm":
            return (no_update, no_update, no_update, no_update,
                    {"op": op, "chosen": chosen, "k": k, "target": target}, True, out["message"], no_update, no_update)
        if state == "stale":
            return (_message(out["message"], False, out["run"]), out["run"], None, {"ids": []}, None, False,
                    no_update, "", no_update)
        if state == "error":
            return (_message(out["message"], False), no_update, no_update, no_update, None, False, no_update, no_update,
                    no_update)
        key = out["key"]
        return (_message(out["message"], True, out["run"]), out["run"], ({"key": key} if key else None),
                {"ids": out["ids"]}, None, False, no_update, "", op in ("undo", "redo"))  # poll until the titles are in

    @app.callback(Output(ids.CURATE_REPLAY_MSG, "children"), Input(ids.CURATE_REPLAY, "n_clicks"),
                  State(ids.EXPLORE_RUN, "data"), State(ids.CURATE_REPLAY_TARGET, "value"), prevent_initial_call=True)
    def _replay(n, run, target):
        if not n:
            raise PreventUpdate
        return replay_view(replay_onto(ctx, run, target, who_=who()))

    @app.callback(Output(ids.CURATE_CONFIRM, "is_open", allow_duplicate=True),
                  Output(ids.CURATE_PENDING, "data", allow_duplicate=True),
                  Input(ids.CURATE_CONFIRM_CANCEL, "n_clicks"), prevent_initial_call=True)
    def _cancel(n):
        if not n:
            raise PreventUpdate
        return False, None

    @app.callback(Output(ids.EXPLORE_RUN, "data", allow_duplicate=True), Output(ids.CURATE_RETITLE_MSG, "children"),
                  Output(ids.SELECTION, "data", allow_duplicate=True),
                  Output(ids.CURATE_POLL, "disabled", allow_duplicate=True),
                  Input(ids.CURATE_POLL, "n_intervals"), State(ids.EXPLORE_RUN, "data"), prevent_initial_call=True)
    def _poll(_n, run):
        em = load(ctx, run)
        st = retitle_status(runstore.run_dir(ctx.runs_dir, run["run_id"]))
        if st.get("pending"):
            raise PreventUpdate
        text = str(st.get("message") or "")
        # another tab's edit landed meanwhile: the selected key may name another cluster now
        return (run_store(run, em), (_message(text, st.get("state") == "done") if text else no_update),
                None if is_stale(em, run) else no_update, True)
