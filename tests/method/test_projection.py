"""lion_core/method/projection.py and benchmarks/cost.py: request counts follow the method (referee.sample
and the referee-free imitation baseline included); batch halves the price; shipped budgets match their
recipe's projected cost; a run's ledger rescales the projection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lion_core.api.journal import RoleUsage
from lion_core.config import LionConfig, RefereeSample, load_config
from lion_core.method import projection
from tests.support.paths import CONFIGS, REPO, benchmark

cost = benchmark("cost")
# A shipped budget must cover its projection with room to spare, and not be so far above it that it no
# longer guards anything: within [BAND_LOW, BAND_HIGH] × the projection (BUDGET_MARGIN, 1.2, inside).
BAND_LOW, BAND_HIGH = 1.1, 1.5
SHIPPED = [*sorted(CONFIGS.glob("*.yaml")), REPO / "lion_core" / "world" / "demo.yaml"]


def priced(config: LionConfig) -> bool:
    return any(e.price_input_per_1k or e.price_output_per_1k for e in config.endpoints().values())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_a_shipped_budget_covers_its_recipes_projected_cost(path: Path) -> None:
    config = load_config(path)
    if not priced(config):
        return  # a local or offline endpoint: nothing is paid, nothing to budget
    assert config.budget.max_usd is not None, f"{path.name} pays for requests and has no budget.max_usd"
    projected = projection.project(config).usd  # the paper's 52,002 seeds where the seed file is absent
    assert BAND_LOW * projected <= config.budget.max_usd <= BAND_HIGH * projected, (path.name, projected)


def test_the_openai_recipe_projects_the_benchmarks_figure() -> None:
    config = load_config(CONFIGS / "openai.yaml")
    p = projection.project(config)
    assert p.seed_pool == projection.PAPER_SEED_POOL  # data/alpaca_data.json is not shipped
    assert p.usd == pytest.approx(62.02, abs=0.01)  # benchmarks/results/cost.json, "this project, sync"
    assert projection.suggested_budget(p.usd) == config.budget.max_usd == 75


def test_counts_follow_the_method_at_paper_scale() -> None:
    m = projection.Ratios(keep_rate=0.5, repair_share=0.0, identical_share=0.25)
    recipe = projection.Recipe(52_000, 6_000, 3, skip_identical=False)
    ours = projection.requests(recipe, m)
    assert ours["teacher"] == 52_000 + 6_000 + 6_000  # each Train Pool once
    assert ours["referee"] == 2 * (52_000 + 58_000 + 64_000)  # the whole Cache Pool, both orders
    assert ours["generator"] == 3 * 6_000 * 2
    skipping = projection.Recipe(52_000, 6_000, 3, skip_identical=True)
    assert projection.requests(skipping, m)["referee"] == 0.75 * ours["referee"]
    final = projection.requests(projection.Recipe(52_000, 6_000, 3, False, final_imitation=True), m)
    assert final == {**ours, "teacher": 52_000 + 3 * 6_000}  # the last generated set answered too: 70K
    original = cost.original_requests(m)
    assert original["teacher"] == sum(cost.paper_recipe().cache_pools())  # the Cache Pool, every iteration


def test_a_sampled_referee_and_the_imitation_baseline_pay_for_what_they_judge() -> None:
    m = projection.Ratios(keep_rate=0.5, repair_share=0.0, identical_share=0.0)
    fixed = RefereeSample(size=1000, min_per_stratum=1)
    sampled = projection.Recipe(52_000, 6_000, 3, skip_identical=False, sample=fixed)
    # 1000 seeds; then the newest 6000 and 1000 older; then the newest 6000 and 1000 older over two
    # strata in proportion (52 : 6, each rounded up: 897 + 104)
    assert sampled.judged() == [1_000, 7_000, 7_001]
    assert projection.requests(sampled, m)["referee"] == 2 * 15_001
    assert sampled.student_answers() == 15_001  # the student answers only what is judged
    auto = projection.Recipe(52_000, 6_000, 3, sample=RefereeSample(parents_multiple=2.0))
    assert auto.judged() == [12_000, 12_000, 12_001]  # 2 × 3000 parents / the prior share 0.5
    config = LionConfig(loop={"selection": "uniform", "iterations": 3, "new_per_iteration": 6_000})
    imitation = projection.Recipe.of(config, 52_000)
    assert projection.requests(imitation, m)["referee"] == 0 and imitation.student_answers() == 0
    economy = projection.project(load_config(CONFIGS / "economy.yaml"))
    openai = projection.project(load_config(CONFIGS / "openai.yaml"))
    assert economy.roles["referee"].requests < openai.roles["referee"].requests / 4
    assert economy.usd < openai.usd / 4  # batch prices and a sample: under a quarter


def test_probing_selections_pay_for_their_siblings() -> None:
    config = LionConfig(
        loop={"iterations": 2, "new_per_iteration": 10, "selection": "fresh", "probe_sample": 5}
    )
    plain = projection.requests(projection.Recipe(100, 10, 2), projection.Ratios(keep_rate=1.0))
    probed = projection.requests(projection.Recipe.of(config, 100), projection.Ratios(keep_rate=1.0))
    per_iteration = 5  # probe_sample items a fresh sibling each: generator, teacher, both referee orders
    assert probed["generator"] - plain["generator"] == 2 * per_iteration
    assert probed["teacher"] - plain["teacher"] == 2 * per_iteration
    assert probed["referee"] - plain["referee"] == 2 * 2 * per_iteration


def test_answers_are_capped_by_max_tokens_and_the_seed_file_is_counted(tmp_path: Path) -> None:
    seeds = tmp_path / "seed.jsonl"
    seeds.write_text("".join(json.dumps({"instruction": f"Task {i}"}) + "\n" for i in range(30)))
    config = LionConfig(teacher={"max_tokens": 64}, pools={"seed_path": str(seeds), "max_seed": 20})
    assert projection.seed_pool_size(config) == 20
    assert projection.config_sizes(config).teacher[1] == 64  # not the assumed ANSWER_TOKENS
    config.pools.seed_path = tmp_path / "absent.json"
    config.pools.max_seed = None
    assert projection.seed_pool_size(config) == projection.PAPER_SEED_POOL


def test_a_runs_ledger_rescales_the_projection() -> None:
    config = LionConfig(
        teacher={"price_input_per_1k": 0.001, "price_output_per_1k": 0.002},
        referee={"price_input_per_1k": 0.001, "price_output_per_1k": 0.002},
        loop={"iterations": 1, "new_per_iteration": 10},
    )
    planned = projection.project(config, seed_pool=100)
    teacher = planned.roles["teacher"]
    per_request = 3 * teacher.usd / teacher.requests  # answers three times as dear as assumed
    usage = {"teacher": RoleUsage(requests=40, cache_hits=10, cost_usd=40 * per_request, unsettled=0)}
    seen = projection.observed(planned, usage)
    assert seen.roles["teacher"].requests == teacher.requests
    # a resumed run's cache hits are its own paid replies served again: not work done twice
    assert seen.roles["teacher"].usd == pytest.approx(teacher.requests * per_request)
    assert seen.roles["referee"] == planned.roles["referee"]  # nothing observed: as projected
    unsettled = {"teacher": RoleUsage(requests=1, unsettled=1, unsettled_max_usd=5.0)}
    assert projection.observed(planned, unsettled).usd >= 5.0  # the budget's worst case counts


def test_a_suggested_budget_is_the_margin_rounded_up() -> None:
    assert projection.suggested_budget(62.02) == 75  # 74.42 → 75
    assert projection.suggested_budget(188.27) == 230  # 225.92 → 230
    assert projection.round_up(0.01234) == pytest.approx(0.013)
    assert projection.round_up(74.0) == 74
