"""What every callback of one app needs, passed explicitly (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hercules_core import ModelFileError

from .explore_model import ExploreModel
from .runstore import LRU, ModelCache, effective_state, has_results, read_status, run_dir


@dataclass
class AppContext:
    runs_dir: Path
    include_test_models: bool = False
    cache: ModelCache = field(default_factory=lambda: ModelCache(ExploreModel.load))
    summaries: LRU = field(default_factory=lambda: LRU(16))  # the cost preview's data summaries

    def model(self, run_id) -> ExploreModel:
        """The explorer model of a finished run.

        ValueError for a bad id; ModelFileError (a message for the page, without server paths) when the
        run has no results (``runstore.has_results``: done, with or without warnings) — a failed run
        may hold a model.json next to a missing memberships.csv — or its model cannot be read; OSError if the file is missing.
        """
        rdir = run_dir(self.runs_dir, run_id)
        status = read_status(rdir)
        state = effective_state(status) if status else None
        if not has_results(state):
            why = status.get("error")
            raise ModelFileError(f"This run cannot be opened: it is {state or 'unknown'}"
                                 + (f" ({why})" if isinstance(why, str) and why else "") + ".")
        path = rdir / "model.json"
        try:
            return self.cache.get(path)
        except ModelFileError as e:
            text = str(e)
            for form, shown in ((str(path.resolve()), "model.json"), (str(path), "model.json"),
                                (str(rdir.resolve()), "the run"), (str(rdir), "the run")):
                text = text.replace(form, shown)
            raise ModelFileError(text) from None
