"""The miniature replication and its calibration run end to end (smoke size) and write well-formed
results: six arms through the loop body, paired differences against imitation with intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lion_core.world import families as fam

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def benchmarks(monkeypatch: pytest.MonkeyPatch):
    """The benchmark scripts importable (the worker processes import them too); the plugins they load
    are unloaded afterwards (registry and LION_WORLD_PLUGINS)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.delenv(fam.PLUGINS_ENV, raising=False)
    registered = dict(fam._REGISTRY)
    yield
    fam._REGISTRY.clear()
    fam._REGISTRY.update(registered)


def test_paired_statistics_interval_item_se_and_power() -> None:
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    from paired import item_se, seeds_for_power, t_interval

    centre, low, high = t_interval([0.01, 0.03, 0.02, 0.04])
    assert (
        centre == pytest.approx(0.025)
        and low < centre < high
        and high - centre == pytest.approx(centre - low)
    )
    assert item_se([[1, 0, -1, 0], [0, 0, 1, 0]]) > 0
    assert seeds_for_power(0.025, 0.03) == 8  # the pilot's worst paired SD: 8 seeds for 80% at +3 points
    assert seeds_for_power(0.01, 0.03) < seeds_for_power(0.025, 0.03)


@pytest.mark.slow
def test_replication_smoke_run_is_well_formed(tmp_path: Path, benchmarks) -> None:
    import replication

    report = replication.main(["--smoke", "--seeds", "2", "--out", str(tmp_path), "--name", "smoke"])
    saved = json.loads((tmp_path / "smoke.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(report["runs"]))
    runs = saved["runs"]
    assert {(r["arm"], r["mode"], r["seed"]) for r in runs} == {
        (arm, "cumulative", seed) for arm in replication.ARMS for seed in (0, 1)
    }
    assert "lion_core.world.keyed" in saved["plugins"]
    for run in runs:
        assert len(run["curve"]) == replication.SMOKE.rounds + 1
        assert run["new"] == [replication.SMOKE.new] * replication.SMOKE.rounds  # equal budget, every arm
        assert 0.0 <= run["final"]["accuracy"] <= 1.0
        assert set(run["final"]["per_level"]) == {"L1", "L2", "L3"}
        assert "code" in run["final"]["per_family"]  # the plugin family reached the workers' test set
        assert len(run["final"]["hits"]) == run["final"]["n"]
    probing = [r for r in runs if r["arm"] in ("fresh", "learnable")]
    assert all(r["discrimination"][0]["probed"] > 0 for r in probing)
    paired = {p["arm"]: p for p in saved["paired"]["cumulative"]}
    assert paired["imitation"]["per_seed"] == [0.0, 0.0]
    assert all(p["low"] <= p["mean"] <= p["high"] and len(p["per_seed"]) == 2 for p in paired.values())
    table = (tmp_path / "smoke.md").read_text()
    for arm in replication.ARMS:
        assert f"| {arm} |" in table
    assert "95% CI" in table and "Primary metric" in table
