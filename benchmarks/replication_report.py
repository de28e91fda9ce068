"""The replication's tables: paired differences against imitation, details, families, calibrated classes,
API spend and equal-spend comparisons, the oracle's headroom, and referee.sample's agreement."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import agreement
from paired import item_se, seeds_for_power, t_interval
from replication_protocol import (
    ARM,
    ARMS,
    BATCH_FACTOR,
    EFFECT,
    GOAL,
    LEVELS,
    MODES,
    NON_INFERIORITY_MARGIN,
    PRICE_IN,
    PRICE_OUT,
    REFERENCE,
)

from lion_core.records import atomic_write_text


def pct(x: float) -> str:
    return f"{100 * x:+.1f}" if x else "0.0"


def paired(runs: list[dict[str, Any]], arm: str, reference: str = REFERENCE) -> dict[str, Any]:
    """The arm's per-seed differences against the reference arm (primary metric), with the 95% t
    interval, the paired SD, the item-level SE and the seeds needed for 80% power at EFFECT."""
    ref = {r["seed"]: r for r in runs if r["arm"] == reference}
    mine = sorted((r for r in runs if r["arm"] == arm and r["seed"] in ref), key=lambda r: r["seed"])
    diffs = [r["final"]["accuracy"] - ref[r["seed"]]["final"]["accuracy"] for r in mine]
    items = [[a - b for a, b in zip(r["final"]["hits"], ref[r["seed"]]["final"]["hits"])] for r in mine]
    centre, low, high = t_interval(diffs) if diffs else (0.0, 0.0, 0.0)  # no reference ran: no pairs
    sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    own = [r["final"]["accuracy"] for r in runs if r["arm"] == arm]
    return {
        "arm": arm,
        "seeds": len(diffs),
        "per_seed": diffs,
        "mean": centre,
        "low": low,
        "high": high,
        "sd": sd,
        "item_se": item_se(items),
        "seeds_for_power": seeds_for_power(sd, EFFECT),
        "accuracy": statistics.mean(own) if own else 0.0,
    }


def paired_table(runs: list[dict[str, Any]], arms: list[str], reference: str = REFERENCE) -> list[str]:
    """The primary table: each arm's macro exact match and its paired difference against the reference."""
    lines = [
        f"| arm | macro EM % | Δ vs {reference} (points) | 95% CI | per seed | paired SD | item SE | "
        "seeds for 80% power at +3 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in arms:
        p = paired(runs, arm, reference)
        seeds = " ".join(f"{100 * d:+.1f}" for d in p["per_seed"])
        lines.append(
            f"| {arm} | {100 * p['accuracy']:.1f} | {100 * p['mean']:+.2f} | "
            f"[{100 * p['low']:+.2f}, {100 * p['high']:+.2f}] | {seeds} | {100 * p['sd']:.2f} | "
            f"{100 * p['item_se']:.2f} | {p['seeds_for_power'] if arm != reference else '—'} |"
        )
    return lines


def mean_std(values: list[float]) -> str:
    """'mean ± std' in percent (std 0 with one seed)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def detail_table(runs: list[dict[str, Any]], arms: list[str]) -> list[str]:
    """Per arm: levels, the discrimination per round, new items kept per round, extra requests."""
    lines = [
        "| arm | L1 | L2 | L3 | hard share per round | quarantined per round | new kept per round | "
        "requests (teacher / referee / generator) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm in arms:
        rs = [r for r in runs if r["arm"] == arm]
        rounds = range(len(rs[0]["discrimination"]))
        share = " / ".join(
            f"{100 * statistics.mean(r['discrimination'][i]['hard_share'] for r in rs):.0f}%" for i in rounds
        )
        quarantined = " / ".join(
            str(round(statistics.mean(r["discrimination"][i].get("quarantined", 0) for r in rs)))
            for i in rounds
        )
        kept = " / ".join(f"{min(r['new'][i] for r in rs)}–{max(r['new'][i] for r in rs)}" for i in rounds)
        req = " / ".join(
            str(round(statistics.mean(r["requests"][k] for r in rs)))
            for k in ("teacher", "referee", "generator")
        )
        levels = " | ".join(
            mean_std([r["final"]["per_level"].get(f"L{lv}", 0.0) for r in rs]) for lv in LEVELS
        )
        lines.append(f"| {arm} | {levels} | {share} | {quarantined} | {kept} | {req} |")
    return lines


def family_table(runs: list[dict[str, Any]], arms: list[str]) -> list[str]:
    fams = sorted(runs[0]["final"]["per_family"])
    lines = ["| arm | " + " | ".join(fams) + " |", "|---|" + "---|" * len(fams)]
    for arm in arms:
        rs = [r for r in runs if r["arm"] == arm]
        lines.append(
            f"| {arm} | "
            + " | ".join(mean_std([r["final"]["per_family"][f] for r in rs]) for f in fams)
            + " |"
        )
    return lines


def stalled_share(run: dict[str, Any]) -> float:
    """Share of the run's new items spent on cells whose held-out accuracy never rose above round 0's."""
    first = run["cells"][0]
    never = {c for c in first if all(later.get(c, 0.0) <= first[c] for later in run["cells"][1:])}
    counts = [n for rnd in run["new_cells"] for n in rnd.values()]
    spent = sum(n for rnd in run["new_cells"] for c, n in rnd.items() if c in never)
    return spent / sum(counts) if counts else 0.0


def calibrated_classes(path: Path) -> dict[str, str]:
    """cell → learnt | frontier | out of reach, from benchmarks/results/calibration.json ({} if absent)."""
    if not path.exists():
        return {}
    return {row["cell"]: row["class"] for row in json.loads(path.read_text())["cells"]}


def class_table(runs: list[dict[str, Any]], arms: list[str], classes: dict[str, str]) -> list[str]:
    """Per arm: exact match on the calibrated classes' cells, and the share of new data spent on each."""
    names = ("learnt", "frontier", "out of reach")
    head = " | ".join(f"EM {n}" for n in names) + " | " + " | ".join(f"new data {n}" for n in names)
    lines = [f"| arm | {head} |", "|---|" + "---|" * 2 * len(names)]
    for arm in arms:
        rs = [r for r in runs if r["arm"] == arm]
        ems = []
        for name in names:
            cells = [c for c, k in classes.items() if k == name]
            ems.append(
                statistics.mean(
                    statistics.mean(r["final"]["per_family_level"].get(c, 0.0) for c in cells) for r in rs
                )
                if cells
                else 0.0
            )
        spent = []
        for name in names:
            shares = []
            for r in rs:
                counts = [(c, n) for rnd in r["new_cells"] for c, n in rnd.items()]
                total = sum(n for _, n in counts) or 1
                shares.append(sum(n for c, n in counts if classes.get(c) == name) / total)
            spent.append(statistics.mean(shares))
        cells = (
            " | ".join(f"{100 * v:.1f}" for v in ems) + " | " + " | ".join(f"{100 * v:.0f}%" for v in spent)
        )
        lines.append(f"| {arm} | {cells} |")
    return lines


def usd(tokens: dict[str, list[int]], roles: tuple[str, ...] = ("teacher", "referee", "generator")) -> float:
    """Synchronous USD of role → [input, output] tokens at gpt-4o-mini list prices."""
    return sum(tokens[r][0] * PRICE_IN + tokens[r][1] * PRICE_OUT for r in roles if r in tokens)


def spend(run: dict[str, Any]) -> float:
    """A run's synchronous API spend (every iteration; batch mode: × BATCH_FACTOR)."""
    return sum(usd(iteration) for iteration in run["tokens"])


def spend_table(runs: list[dict[str, Any]], arms: list[str], reference: str = REFERENCE) -> list[str]:
    """Each arm's API spend at gpt-4o-mini list prices (the world's token counts, as its usage reports
    them), what it buys, and the comparison at equal spend where a matched imitation arm ran."""
    if any("tokens" not in r for r in runs):
        return ["(no token counts in these results: spend is not reported)"]
    lines = [
        f"| arm | spend $ sync | spend $ batch | referee share | macro EM % | Δ vs {reference}, equal data | "
        "Δ vs imitation at equal spend | EM points per $ (sync) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    matched = {ARM[arm].matches: arm for arm in arms if ARM[arm].matches}
    for arm in arms:
        rs = [r for r in runs if r["arm"] == arm]
        usd_sync = statistics.mean(spend(r) for r in rs)
        referee = statistics.mean(sum(usd(i, ("referee",)) for i in r["tokens"]) / spend(r) for r in rs)
        p = paired(runs, arm, reference)
        equal_data = interval(p)
        equal_spend = "—"
        if arm in matched:
            q = paired(runs, arm, reference=matched[arm])
            equal_spend = interval(q)
        per_dollar = 100 * p["accuracy"] / usd_sync if usd_sync else 0.0
        lines.append(
            f"| {arm} | {usd_sync:.4f} | {BATCH_FACTOR * usd_sync:.4f} | {100 * referee:.0f}% | "
            f"{100 * p['accuracy']:.1f} | {equal_data if arm != reference else '—'} | {equal_spend} | "
            f"{per_dollar:,.0f} |"
        )
    return lines


def sampling_lines(runs: list[dict[str, Any]], arms: list[str]) -> list[str]:
    """referee.sample: each sampled arm's non-inferiority against lion (margin declared before the runs),
    what it judged, and the agreement of sampled with full judging at several sizes (agreement.py)."""
    lines = []
    for arm in (a for a in arms if ARM[a].sample is not None and "lion" in arms):
        lines += [non_inferiority(runs, arm), ""]
    found = agreement.agreement(runs)
    if found["settings"]:
        lines += [
            "Agreement with full judging, replayed on the lion arm's rounds (TV distance of the expected "
            f"hard parents over cells; noise floor, two full-judging seeds: {found['noise_floor']:.3f}):",
            "",
            "| sample setting | Cache Pool judged | TV vs full judging |",
            "|---|---|---|",
            *(
                f"| {name} | {100 * v['judged_share']:.0f}% | {v['tv']:.3f} |"
                for name, v in found["settings"].items()
            ),
        ]
    return lines


def non_inferiority(runs: list[dict[str, Any]], arm: str) -> str:
    """One line: the sampled arm against lion, the verdict at the declared margin, the share judged."""
    p = paired(runs, arm, reference="lion")
    verdict = "non-inferior" if p["low"] > NON_INFERIORITY_MARGIN else "NOT shown non-inferior"
    sampled = [r for r in runs if r["arm"] == arm]
    shares = [
        statistics.mean(
            r["discrimination"][i]["judged"] / r["discrimination"][i]["cache_pool"] for r in sampled
        )
        for i in range(len(sampled[0]["discrimination"]))
    ]
    return (
        f"Judging a sample ({arm} − lion, {p['seeds']} paired seeds): {interval(p)} points, margin "
        f"{100 * NON_INFERIORITY_MARGIN:+.1f} declared before the runs: **{verdict}**. Share of the Cache "
        f"Pool judged per round: {' / '.join(f'{100 * j:.0f}%' for j in shares)}."
    )


def interval(p: dict[str, Any]) -> str:
    """'+1.23 [−0.45, +2.91]' in points."""
    return f"{100 * p['mean']:+.2f} [{100 * p['low']:+.2f}, {100 * p['high']:+.2f}]"


def headroom_lines(runs: list[dict[str, Any]], arms: list[str]) -> list[str]:
    """Each arm's mean gain over imitation as a share of the oracle's (its headroom at this size)."""
    if "oracle" not in arms or REFERENCE not in arms:
        return []
    oracle = paired(runs, "oracle")
    if oracle["mean"] <= 0:
        return [f"The oracle does not beat imitation ({interval(oracle)} points): no headroom to share."]
    shares = " · ".join(
        f"{arm} {100 * paired(runs, arm)['mean'] / oracle['mean']:+.0f}%"
        for arm in arms
        if arm not in ("oracle", REFERENCE)
    )
    return [f"Share of the oracle's headroom ({interval(oracle)} points over imitation): {shares}."]


HYPOTHESES = (  # (name, arm, reference, what supports it)
    ("H1 lion > imitation, equal data", "lion", REFERENCE, "low > 0"),
    ("H2 lion > imitation@lion, equal spend", "lion", "imitation@lion", "low > 0"),
    ("H3 progress ≥ imitation + 3, equal spend", "progress", REFERENCE, "goal"),
    ("H4 lion+pref > lion", "lion+pref", "lion", "low > 0"),
    ("H5 imitation+pref > imitation, equal spend", "imitation+pref", REFERENCE, "low > 0"),
    ("H6 oracle > imitation (headroom)", "oracle", REFERENCE, "low > 0"),
)


def hypothesis_lines(runs: list[dict[str, Any]], arms: list[str]) -> list[str]:
    """The declared hypotheses (benchmarks/replication_protocol.py), each with its paired interval."""
    lines = ["| hypothesis | difference (points) | 95% CI above 0 | supported |", "|---|---|---|---|"]
    for name, arm, reference, rule in HYPOTHESES:
        if arm not in arms or reference not in arms:
            continue
        p = paired(runs, arm, reference)
        supported = p["low"] > 0 and (rule != "goal" or p["mean"] >= GOAL)
        lines.append(
            f"| {name} | {interval(p)} | {'yes' if p['low'] > 0 else 'no'} | {'yes' if supported else 'no'} |"
        )
    return lines if len(lines) > 2 else []


def summarize(runs: list[dict[str, Any]], arms: list[str], classes: dict[str, str] | None = None) -> str:
    """Markdown: per mode, the declared hypotheses, the paired table (primary), details, families, the
    share of new data on cells that never improved, spend, the oracle's headroom, referee.sample, and
    (with the calibration) the calibrated classes. Any subset of arms renders; the reference is
    imitation when it ran, else the first arm."""
    lines = []
    for mode in MODES:
        chosen = [r for r in runs if r["mode"] == mode]
        present = [a for a in arms if any(r["arm"] == a for r in chosen)]
        if not chosen:
            continue
        reference = REFERENCE if REFERENCE in present else present[0]
        waste = " · ".join(
            f"{arm} {100 * statistics.mean(stalled_share(r) for r in chosen if r['arm'] == arm):.0f}%"
            for arm in present
        )
        lines += [
            f"\n### Training data: {mode}\n",
            *hypothesis_lines(chosen, present),
            "",
            *paired_table(chosen, present, reference),
            "",
            *headroom_lines(chosen, present),
            "",
            *detail_table(chosen, present),
            "",
            *family_table(chosen, present),
            "",
            f"New data spent on cells that never improved over round 0: {waste}.",
            "",
            "API spend (gpt-4o-mini list prices; imitation calls no referee; an `imitation@X` arm is "
            "imitation with the new data per round that X's spend buys):",
            "",
            *spend_table(chosen, present, reference),
            "",
            *sampling_lines(chosen, present),
        ]
        if classes:
            lines += [
                "",
                "By calibrated class (benchmarks/results/calibration.json):",
                "",
                *class_table(chosen, present, classes),
            ]
    return "\n".join(lines) + "\n"


def render(out: Path, name: str) -> dict[str, Any]:
    """<name>.md from <name>.json (and the calibration's classes when present); prints the tables."""
    report = json.loads((out / f"{name}.json").read_text())
    arms = [a for a in ARMS if any(r["arm"] == a for r in report["runs"])]
    table = summarize(report["runs"], arms, calibrated_classes(out / "calibration.json"))
    atomic_write_text(
        out / f"{name}.md",
        f"Command: `{report['command']}` — wall time {report['wall_s'] / 60:.1f} min on "
        f"{report['machine']['cpus']} CPUs, {report['seeds']} seeds. Primary metric: macro exact match over "
        f"cells (family × level), paired against {REFERENCE} (declared before the runs: {name}.protocol.md)."
        f"\n{table}",
    )
    print(table)
    print(f"wall time: {report['wall_s'] / 60:.1f} min")
    return report
