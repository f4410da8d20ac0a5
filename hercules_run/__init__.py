"""The application layer above ``hercules_core`` and ``model_registry``: the run pipeline that both
front doors use (:mod:`hercules_run.pipeline`) and the command line (:mod:`hercules_run.cli`)."""

from .pipeline import CacheSettings, ModelIds, RunRequest, RunResult, run_pipeline, save_outputs

__all__ = ["CacheSettings", "ModelIds", "RunRequest", "RunResult", "run_pipeline", "save_outputs"]
