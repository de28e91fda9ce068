"""benchmarks/replication.py: the miniature replication and its calibration run end to end (smoke size)
and write well-formed results: the declared protocol first, every default arm through the loop body,
paired differences against imitation with intervals, spend and equal-spend comparisons."""

from __future__ import annotations

import json
import shutil
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
    import replication_protocol as protocol

    shutil.copy(BENCHMARKS / "results" / "calibration.json", tmp_path)  # the oracle's frontier cells
    report = replication.main(["--smoke", "--seeds", "2", "--out", str(tmp_path), "--name", "smoke"])
    assert (tmp_path / "smoke.protocol.md").read_text() == protocol.PROTOCOL  # declared, and kept
    saved = json.loads((tmp_path / "smoke.json").read_text())
    assert saved["runs"] == json.loads(json.dumps(report["runs"]))
    runs = saved["runs"]
    arms = protocol.DEFAULT_ARMS
    assert {(r["arm"], r["mode"], r["seed"]) for r in runs} == {
        (arm, "cumulative", seed) for arm in arms for seed in (0, 1)
    }
    assert "lion_core.world.keyed" in saved["plugins"]
    by = {(r["arm"], r["seed"]): r for r in runs}
    for run in runs:
        assert len(run["curve"]) == replication.SMOKE.rounds + 1
        if run["arm"] != "imitation@lion":  # equal data: N new per round in every other arm
            assert run["new"] == [replication.SMOKE.new] * replication.SMOKE.rounds
        assert 0.0 <= run["final"]["accuracy"] <= 1.0
        assert set(run["final"]["per_level"]) == {"L1", "L2", "L3"}
        assert "code" in run["final"]["per_family"]  # the plugin family reached the workers' test set
        assert len(run["final"]["hits"]) == run["final"]["n"]
    for seed in (0, 1):  # the referee-free arms send no referee request; the matched arm buys more data
        for arm in ("imitation", "progress", "imitation+pref", "oracle", "imitation@lion"):
            assert by[(arm, seed)]["requests"]["referee"] == 0, arm
        assert by[("imitation@lion", seed)]["new_per_round"] > replication.SMOKE.new
    paired = {p["arm"]: p for p in saved["paired"]["cumulative"]}
    assert paired["imitation"]["per_seed"] == [0.0, 0.0]
    assert all(p["low"] <= p["mean"] <= p["high"] and len(p["per_seed"]) == 2 for p in paired.values())
    table = (tmp_path / "smoke.md").read_text()
    for arm in arms:
        assert f"| {arm} |" in table
    assert "95% CI" in table and "Primary metric" in table and "equal spend" in table
    assert "| H1 lion > imitation, equal data |" in table


def test_the_report_renders_for_any_subset_of_arms(tmp_path: Path, benchmarks) -> None:
    import replication_report

    saved = json.loads((BENCHMARKS / "results" / "replication.json").read_text())
    (tmp_path / "subset.json").write_text(
        json.dumps({**saved, "runs": [r for r in saved["runs"] if r["arm"] in ("lion", "fresh")]})
    )
    replication_report.render(tmp_path, "subset")  # no imitation arm: lion is the reference
    assert "Δ vs lion" in (tmp_path / "subset.md").read_text()


def test_world_plugins_add_to_the_default_families(benchmarks) -> None:
    import replication

    assert replication.plugins_of([]) == ["lion_core.world.keyed"]
    assert replication.plugins_of(["my.families"]) == ["lion_core.world.keyed", "my.families"]
    assert replication.plugins_of(["none", "my.families"]) == ["my.families"]
