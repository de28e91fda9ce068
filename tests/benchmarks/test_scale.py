"""benchmarks/scale.py without running it: N in the paper's proportion, the config it writes, the
figures it reads from summary.json, the rows it keeps across invocations (fast, no subprocess)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lion_core.config import load_config
from tests.support.paths import benchmark

scale = benchmark("scale")


def test_new_per_iteration_follows_the_paper() -> None:
    assert scale.new_per_iteration(52_000) == 6_000
    assert scale.new_per_iteration(10_000) == 1_154
    assert scale.new_per_iteration(2_000) == 231
    assert scale.new_per_iteration(1) == 1


def test_config_is_the_paper_shape_on_the_world(tmp_path: Path) -> None:
    args = argparse.Namespace(iterations=3, max_steps=7)
    path = scale.scale_config(tmp_path, 2_000, "http://127.0.0.1:9", tmp_path / "student", args)
    config = load_config(path)
    assert config.loop.new_per_iteration == 231
    assert (config.loop.batch_size, config.loop.selection, config.loop.hard_easy_ratio) == (64, "paper", 1.0)
    assert (config.loop.iterations, config.student.max_steps) == (3, 7)
    assert config.teacher.base_url == config.referee.base_url == "http://127.0.0.1:9/v1"
    assert config.run_dir == tmp_path / "run"
    assert config.pools.seed_path == tmp_path / "seed.jsonl"


def summary(k: int, train: int, cache: int, generated: int) -> dict:
    stages = {"imitation": 2.0, "discrimination": 4.0, "generation": 1.0, "heldout": 0.5}
    usage = {"teacher": {"requests": train, "cache_hits": 1}, "referee": {"requests": 2 * cache}}
    return {
        "iteration": k,
        "train_pool": train,
        "cache_pool": cache,
        "generated": generated,
        "stage_seconds": stages,
        "usage": usage,
        "heldout": {"exact_match": 0.1},
    }


def test_figures_sum_over_iterations_and_divide_by_the_work() -> None:
    summaries = [summary(1, 100, 100, 10), summary(2, 10, 110, 10)]
    figures = scale.stage_figures(summaries, heldout_items=50)
    assert figures["stage_s"] == {"imitation": 4.0, "discrimination": 8.0, "generation": 2.0, "heldout": 1.0}
    units = {"imitation": 110, "discrimination": 210, "generation": 20, "heldout": 100}
    assert figures["stage_units"] == units
    assert figures["stage_ms_per_unit"]["generation"] == 100.0
    usage = scale.usage_figures(summaries, {"teacher": 110})
    assert usage["requests"] == {"teacher": 110, "referee": 420, "generator": 0}
    assert usage["cache_hits"] == 2


def test_a_run_of_one_size_keeps_the_others(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(scale, "RESULTS", tmp_path)
    old = [{"seed_pool": 2_000, "v": 1}, {"seed_pool": 52_000, "v": 1}]
    (tmp_path / "s.json").write_text(json.dumps({"rows": old}))
    rows = scale.merged("s", {"seed_pool": 10_000, "v": 2})
    assert [(r["seed_pool"], r["v"]) for r in rows] == [(2_000, 1), (10_000, 2), (52_000, 1)]
    assert scale.merged("s", {"seed_pool": 2_000, "v": 3})[0]["v"] == 3


def test_a_failed_size_renders_its_error() -> None:
    row = {"seed_pool": 52_000, "new_per_iteration": 6_000, "error": "lion world sample failed"}
    assert scale.time_row(row)["run"] == "lion world sample failed"
    assert scale.resource_row(row)["error"] == "lion world sample failed"
