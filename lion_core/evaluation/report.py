"""Evaluation reports: relative score per category, world exact match per family and level."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lion_core.records import atomic_write_text
from lion_core.run.report import data_uri, markdown_table

BAR_COLOR = "#4c72b0"
IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)/:]+\.png)\)")  # an image beside the report: ![alt](name.png)


def embed_images(markdown: str, folder: Path) -> str:
    """The report with its PNGs (named relative to `folder`) inline as data URIs, for the Prefect UI."""
    return IMAGE.sub(lambda m: f"![{m.group(1)}]({data_uri(folder / m.group(2))})", markdown)


def bar_plot(
    values: dict[str, float], title: str, ylabel: str, path: Path, reference: float | None = None
) -> Path:
    """A bar chart of labelled values, written atomically as PNG."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(values) + 2), 3.2))
    ax.bar(list(values), list(values.values()), color=BAR_COLOR)
    if reference is not None:
        ax.axhline(reference, color="grey", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


PROTOCOL_NAMES = {
    "vicuna": "vicuna, FastChat's GPT-4 review as in the paper",
    "lion": "lion, the referee's prompt",
}


def judge_section(score: dict[str, Any], out: Path) -> list[str]:
    protocol = PROTOCOL_NAMES.get(score.get("protocol", "lion"), score.get("protocol"))
    rows = [
        {"category": c, "questions": score["per_category_questions"][c], "relative score %": f"{v:.1f}"}
        for c, v in score["per_category"].items()
    ]
    rows.append(
        {
            "category": "**overall**",
            "questions": score["questions"] - score["unscorable"],
            "relative score %": f"**{score['overall']:.1f}**",
        }
    )
    plot = bar_plot(
        score["per_category"],
        "relative score per category",
        "% of reference",
        out / "relative.png",
        reference=100.0,
    )
    return [
        f"## Judge: relative score (candidate / reference, both orders; protocol {protocol})\n",
        markdown_table(rows),
        f"Unscorable questions (excluded): {score['unscorable']} of {score['questions']}.\n",
        f"![relative score]({plot.name})\n",
    ]


def world_section(
    world: dict[str, Any], teacher: dict[str, Any] | None, source: str | None, out: Path
) -> list[str]:
    rows = [
        {
            "family@level": k,
            "candidate EM %": f"{100 * v:.1f}",
            "teacher EM %": f"{100 * teacher['per_family_level'][k]:.1f}" if teacher else "–",
        }
        for k, v in world["per_family_level"].items()
    ]
    per = {k: 100 * v for k, v in world["per_family_level"].items()}
    plot = bar_plot(per, "world exact match per family and level", "exact match %", out / "world.png", 100.0)
    teacher_line = f"; teacher (oracle) {100 * teacher['accuracy']:.1f}%" if teacher else ""
    return [
        "## World: exact match\n",
        f"Candidate {100 * world['accuracy']:.1f}% of {world['n']}{teacher_line}; tasks from {source}.\n",
        markdown_table(rows),
        f"![world]({plot.name})\n",
    ]


def harness_section(harness: dict[str, dict[str, float]]) -> list[str]:
    rows = [{"task": t, **{k: f"{v:.4f}" for k, v in metrics.items()}} for t, metrics in harness.items()]
    return ["## lm-evaluation-harness\n", markdown_table(rows) if rows else "_no results_\n"]


def write_eval_report(result: dict[str, Any], out: Path) -> Path:
    """out/report.md (and its PNG plots) for one evaluation."""
    parts = [f"# Evaluation of `{result['candidate']}`\n"]
    if "judge" in result:
        parts += judge_section(result["judge"], out)
    if "world" in result:
        parts += world_section(result["world"], result.get("world_teacher"), result.get("world_source"), out)
    if "harness" in result:
        parts += harness_section(result["harness"])
    if "harness_error" in result:
        parts += ["## lm-evaluation-harness\n", f"Failed: {result['harness_error']}\n"]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path
