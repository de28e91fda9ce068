"""The miniature replication benchmark runs end to end (smoke size) and writes well-formed results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_replication_smoke_run_is_well_formed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the worker processes import the benchmark too
    import replication

    report = replication.main(["--smoke", "--seeds", "2", "--out", str(tmp_path), "--name", "smoke"])
    saved = json.loads((tmp_path / "smoke.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(report["runs"]))
    runs = saved["runs"]
    assert {(r["arm"], r["mode"], r["seed"]) for r in runs} == {
        (arm, mode, seed) for arm in replication.ARMS for mode in replication.MODES for seed in (0, 1)
    }
    for run in runs:
        assert len(run["curve"]) == replication.SMOKE.rounds + 1
        assert len(run["discrimination"]) == replication.SMOKE.rounds
        assert 0.0 <= run["final"]["accuracy"] <= 1.0
        assert set(run["final"]["per_level"]) == {"L1", "L2"}
        assert 0.0 <= run["discrimination"][0]["hard_share"] <= 1.0
    imitation = [r for r in runs if r["arm"] == "imitation"]
    assert all(set(r["new_levels"][0]) <= {"L1", "L2"} for r in imitation)  # the seed distribution only
    table = (tmp_path / "smoke.md").read_text()
    for arm in replication.ARMS:
        assert f"| {arm} |" in table
    assert "± " in table
