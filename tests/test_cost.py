"""benchmarks/cost.py: the request counts follow the method; batch halves the price; the table renders."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import cost


def test_counts_follow_the_method_at_paper_scale() -> None:
    m = cost.Measured(keep_rate=0.5, repair_share=0.0, identical_share=0.25)
    original = cost.requests(True, m)
    ours = cost.requests(False, m)
    assert original["teacher"] == 52_000 + 58_000 + 64_000  # the whole Cache Pool, every iteration
    assert ours["teacher"] == 52_000 + 6_000 + 6_000  # each Train Pool once
    assert ours["referee"] == original["referee"] == 2 * (52_000 + 58_000 + 64_000)
    assert ours["generator"] == 3 * 6_000 * 2
    assert cost.requests(False, m, identical=True)["referee"] == 0.75 * ours["referee"]
    sampled = cost.requests(False, m, referee_share=0.0)["referee"]
    assert sampled == 2 * (52_000 + 6_000 + 6_000)  # only instructions judged for the first time


def test_batch_mode_costs_half_and_rows_render() -> None:
    s = cost.sizes(200, 80)
    counts = cost.requests(False, cost.Measured())
    assert cost.cost(counts, s, 0.5)[2] == pytest.approx(cost.cost(counts, s, 1.0)[2] / 2)
    rows = cost.rows(cost.Measured(), s, 5_000, 4e6, 0.2)
    assert rows[0]["× original"] == "1.00" and float(rows[2]["× original"]) < 0.5


def test_measured_from_a_run(tmp_path: Path) -> None:
    for k, identical in ((1, 10), (2, 20)):
        folder = tmp_path / f"iter_{k}"
        folder.mkdir()
        summary = {
            "cache_pool": 100,
            "generated": 40,
            "requested": 50,
            "identical": identical,
            "usage": {"referee": {"requests": 2 * (100 - identical)}},
        }
        (folder / "summary.json").write_text(json.dumps(summary))
    m = cost.measured_from(tmp_path)
    assert (m.keep_rate, m.repair_share, m.identical_share) == (0.8, 0.0, 0.15)
