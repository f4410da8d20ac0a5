"""What every callback of one app needs, passed explicitly (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .explore_model import ExploreModel
from .runstore import LRU, ModelCache, run_dir


@dataclass
class AppContext:
    runs_dir: Path
    include_test_models: bool = False
    cache: ModelCache = field(default_factory=lambda: ModelCache(ExploreModel.load))
    summaries: LRU = field(default_factory=lambda: LRU(16))  # the cost preview's data summaries

    def model(self, run_id) -> ExploreModel:
        """The explorer model of a finished run (ValueError for a bad id, OSError/ModelFileError if missing)."""
        return self.cache.get(run_dir(self.runs_dir, run_id) / "model.json")
