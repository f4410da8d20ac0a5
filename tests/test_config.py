import json

import pytest

from hercules_core.config import HerculesConfig
from hercules_core.errors import ConfigError


def test_defaults_round_trip_through_json():
    cfg = HerculesConfig(level_cluster_counts=[100, 20, 5], topic_seed="health")
    again = HerculesConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert again.level_cluster_counts == (100, 20, 5)


def test_frozen():
    with pytest.raises(Exception):
        HerculesConfig().random_state = 3  # type: ignore[misc]


@pytest.mark.parametrize("kwargs, message", [
    ({"level_cluster_counts": (5, 20)}, "must decrease"),
    ({"level_cluster_counts": ()}, "empty"),
    ({"level_cluster_counts": (10, 0)}, "positive integers"),
    ({"representation_mode": "magic"}, "representation_mode must be one of direct, description"),
    ({"auto_k_method": "elbow"}, "auto_k_method"),
    ({"auto_k_min": 10, "auto_k_max": 5}, "larger than auto_k_max"),
    ({"llm_batch_reduction_factor": 1.0}, "> 1"),
    ({"n_reduction_components": 5}, "2 or 3"),
    ({"llm_concurrency": 0}, "llm_concurrency must be an integer >= 1"),
    ({"kmeans_backend": "gpu"}, "kmeans_backend"),
    ({"auto_k_branching": 1.0}, "auto_k_branching must be a number from 1.5 to 1000"),
    ({"auto_k_branching": float("inf")}, "auto_k_branching must be a number from 1.5 to 1000"),
    ({"auto_k_branching": 1e308}, "auto_k_branching must be a number from 1.5 to 1000"),
    ({"auto_k_branching": float("nan")}, "auto_k_branching must be a number from 1.5 to 1000"),
])
def test_invalid_values_say_what_is_wrong(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        HerculesConfig(**kwargs)


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match="Unknown configuration keys: levels"):
        HerculesConfig.from_dict({"levels": [3]})


def test_blank_topic_seed_is_none():
    assert HerculesConfig(topic_seed="  ").topic_seed is None
