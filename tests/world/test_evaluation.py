"""lion_core/world/evaluation.py: a student's score on world tasks, per family and level."""

from __future__ import annotations

from lion_core.world.evaluation import score_world
from lion_core.world.families import Task


def test_world_score_per_family_and_level() -> None:
    tasks = [
        Task("Reverse ab", "ba", "reverse", 1),
        Task("Reverse abcde", "edcba", "reverse", 2),
        Task("Copy ab", "ab", "copy", 1),
        Task("Copy abcdefghi", "abcdefghi", "copy", 2),
    ]
    score = score_world(tasks, ["ba", "wrong", " ab ", "abc"])
    assert score.accuracy == 0.5
    assert score.per_family == {"copy": 0.5, "reverse": 0.5}
    assert score.per_level == {"L1": 1.0, "L2": 0.0}
    assert score.per_family_level["reverse@L1"] == 1.0
