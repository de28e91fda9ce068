"""benchmarks/cost.py: batch mode halves the price, the rows it renders are the ones it saved, the
measured ratios of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lion_core.method import projection
from tests.support.paths import BENCHMARKS, benchmark

cost = benchmark("cost")


def test_batch_mode_costs_half_and_rows_render() -> None:
    s = projection.sizes()
    counts = projection.requests(cost.paper_recipe(), projection.Ratios())
    sync, batch = (
        cost.cost(cost.paper_config("sync"), counts, s),
        cost.cost(cost.paper_config("batch"), counts, s),
    )
    assert batch[2] == pytest.approx(sync[2] / 2)
    rows = cost.rows(projection.Ratios(), s, 5_000, 4e6, [2.0, 4.0])
    assert rows[0]["× original"] == "1.00" and float(rows[2]["× original"]) < 0.5
    sampled = next(r for r in rows if r["mode"] == "batch + referee.sample auto ×2")
    assert float(sampled["× original"]) <= 0.25  # issue 20's goal at gpt-4o-mini prices
    saved = json.loads((BENCHMARKS / "results" / "cost.json").read_text())
    assert [r["cost $"] for r in saved["rows"]] == [r["cost $"] for r in rows]  # one computation


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
