"""HERCULES: hierarchical k-means with LLM-written titles and descriptions for every cluster.

The public API::

    from hercules_core import Hercules, HerculesConfig, prepare, save_model, load_model
"""

from .assign import AssignError, AssignResult, assign, save_assignments
from .config import HerculesConfig
from .data import prepare, read_table
from .dataset import Dataset
from .errors import (Cancelled, ConfigError, EmbeddingError, EndpointFatalError, HerculesError, InputError, LLMError,
                     LLMFatalError, ModelFileError)
from .evaluation import evaluate_all, evaluate_level
from .hercules import Hercules
from .hierarchy import Cluster, Hierarchy, Level
from .io import (RunLog, hierarchy_text, load_model, membership_frame, print_hierarchy, save_memberships,
                 save_model)

__all__ = [
    "AssignError", "AssignResult", "assign", "save_assignments",
    "Cancelled", "Cluster", "ConfigError", "Dataset", "EmbeddingError", "EndpointFatalError", "Hercules",
    "HerculesConfig", "HerculesError", "Hierarchy", "InputError", "LLMError", "LLMFatalError", "Level",
    "ModelFileError", "RunLog",
    "evaluate_all", "evaluate_level", "hierarchy_text", "load_model", "membership_frame", "prepare",
    "print_hierarchy", "read_table", "save_memberships", "save_model",
]
