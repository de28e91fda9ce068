"""benchmarks/replication.py: the miniature replication and its calibration run end to end (smoke size)
and write well-formed results: six arms through the loop body, paired differences against imitation
with intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lion_core.world import families as fam
from tests.support.paths import BENCHMARKS


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
