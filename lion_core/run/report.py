"""Reports of a run: the per-iteration table, the hardest instructions, plots, RUN/report.md.

Everything is rendered from the iterations' summary.json files, so `lion report RUN` can redo it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from lion_core.records import Judgement, Response, atomic_write_text
from lion_core.run.rundir import ITERATION_FILES, RunDir

HARDEST_ROWS = 20
ANSWER_CHARS = 60
ROLES = ("teacher", "referee", "generator")
NOT_JUDGED = "–"  # the final imitation round's referee columns


def _usage(summary: dict[str, Any], role: str, key: str) -> float:
    return summary.get("usage", {}).get(role, {}).get(key, 0)


def table_rows(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One display row per iteration (the same table in the CLI, the artifacts and report.md)."""
    rows = []
    for s in summaries:
        heldout = s.get("heldout")
        final = s.get("final_imitation", False)  # imitation only: nothing judged
        rows.append(
            {
                "iter": f"{s['iteration']} (imitation)" if final else s["iteration"],
                "train pool": s["train_pool"],
                "cache pool": s["cache_pool"],
                "hard": NOT_JUDGED if final else s["hard"],
                "easy": NOT_JUDGED if final else s["easy"],
                "unscorable": NOT_JUDGED if final else s["unscorable"],
                "hard %": NOT_JUDGED if final else hard_percent(s),
                "mean gap": NOT_JUDGED if final else f"{s['mean_gap']:.2f}",
                "order flips %": f"{100 * s.get('order_disagreement', 0.0):.1f}",
                "2nd order relabels %": f"{100 * s.get('second_order_changes', 0.0):.1f}",
                "new kept": s.get("generated", 0),
                "novelty rej.": s.get("novelty_rejections", 0),
                "decontam. rej.": s.get("decontamination_rejections", 0),
                **{f"{role} req.": int(_usage(s, role, "requests")) for role in ROLES},
                "cache hits": int(sum(_usage(s, role, "cache_hits") for role in ROLES)),
                "tokens": int(
                    sum(_usage(s, r, "input_tokens") + _usage(s, r, "output_tokens") for r in ROLES)
                ),
                "cost $": f"{sum(_usage(s, role, 'cost_usd') for role in ROLES):.4f}",
                "held-out EM %": f"{100 * heldout['accuracy']:.1f}" if heldout else "–",
            }
        )
    return rows


def hard_percent(summary: dict[str, Any]) -> str:
    """The Cache Pool's hard share; with its confidence interval when only a sample was judged."""
    text = f"{100 * summary['hard_share']:.1f}"
    interval = summary.get("hard_share_ci")
    return f"{text} [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if interval else text


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A GitHub markdown table of rows with the same keys."""
    if not rows:
        return "_no iterations yet_\n"
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(row[h]) for h in head) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _short(text: str) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= ANSWER_CHARS else text[: ANSWER_CHARS - 1] + "…"


def hardest(
    judgements: Sequence[Judgement],
    teacher: Sequence[Response],
    student: Sequence[Response],
    n: int = HARDEST_ROWS,
) -> list[dict[str, Any]]:
    """The n instructions with the largest gap, with both answers shortened."""
    by_id_t = {r.id: r for r in teacher}
    by_id_s = {r.id: r for r in student}
    scored = sorted((j for j in judgements if j.gap is not None), key=lambda j: -j.gap)  # type: ignore[operator]
    return [
        {
            "id": j.id,
            "gap": f"{j.gap:.1f}",
            "instruction": _short(by_id_t[j.id].instruction),
            "teacher": _short(by_id_t[j.id].output),
            "student": _short(by_id_s[j.id].output),
        }
        for j in scored[:n]
    ]


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def _line_plot(its: list[int], lines: dict[str, list[float]], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(5.5 if len(lines) > 1 else 4.5, 3.2))
    for label, values in lines.items():
        ax.plot(its, values, marker="o", label=label)
    ax.set_xlabel("iteration")
    ax.set_title(title)
    ax.set_xticks(its)
    ax.grid(alpha=0.3)
    if len(lines) > 1:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return _save(fig, path)


def _loss_plot(summaries: Sequence[dict[str, Any]], path: Path) -> Path | None:
    """The fine-tune loss per optimizer step, iteration after iteration (each continues the previous
    checkpoint, so the curve is one training; a new round's data shows as a jump). None: no losses."""
    curves = [(s["iteration"], s.get("train", {}).get("losses") or []) for s in summaries]
    curves = [(k, losses) for k, losses in curves if losses]
    if not curves:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    start = 0
    for k, losses in curves:
        ax.plot(range(start + 1, start + len(losses) + 1), losses, linewidth=1, label=f"iteration {k}")
        start += len(losses)
    ax.set_xlabel("optimizer step (all iterations)")
    ax.set_ylabel("loss")
    ax.set_title("fine-tune loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot(summaries: Sequence[dict[str, Any]], out_dir: Path) -> list[Path]:
    """PNG plots: hard share and mean gap per iteration; the fine-tune loss curve; held-out exact match
    per family and level."""
    out_dir.mkdir(parents=True, exist_ok=True)
    its = [s["iteration"] for s in summaries]
    judged = [s for s in summaries if not s.get("final_imitation")]  # the final round judges nothing
    judged_its = [s["iteration"] for s in judged]
    paths = [
        _line_plot(
            judged_its,
            {"hard share": [s["hard_share"] for s in judged]},
            "hard share of the Cache Pool",
            out_dir / "hard_share.png",
        ),
        _line_plot(
            judged_its,
            {"mean gap": [s["mean_gap"] for s in judged]},
            "mean gap (teacher − student score)",
            out_dir / "mean_gap.png",
        ),
    ]
    loss = _loss_plot(summaries, out_dir / "train_loss.png")
    if loss is not None:
        paths.append(loss)
    if summaries and all(s.get("heldout") for s in summaries):
        for key, title, name in (
            ("per_family", "held-out exact match per family", "heldout_family.png"),
            ("per_level", "held-out exact match per level", "heldout_level.png"),
        ):
            names = sorted(summaries[-1]["heldout"][key])
            lines = {n: [s["heldout"][key].get(n, 0.0) for s in summaries] for n in names}
            paths.append(_line_plot(its, lines, title, out_dir / name))
    return paths


def file_links(run: RunDir, k: int) -> list[str]:
    """Markdown links (relative to the run directory) to iteration k's files, for RUN/report.md."""
    return [f"[{name}]({name})" for name in file_names(run, k)]


def file_names(run: RunDir, k: int) -> list[str]:
    """Iteration k's files that exist, relative to the run directory (iter_K/teacher.jsonl, …)."""
    folder = run.iteration(k).root
    names = [f"{n}.jsonl" for n in ITERATION_FILES] + ["student/", "summary.json"]
    return [f"{folder.name}/{name}" for name in names if (folder / name.rstrip("/")).exists()]


def data_uri(png: Path) -> str:
    """A PNG as a data URI: an image that renders wherever the markdown is shown (the Prefect UI
    serves no files of the run directory, so a relative path there is a dead link)."""
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def count_table(counts: dict[str, int], key: str) -> str:
    """A two-column markdown table of counts (plain cells, never a dict)."""
    if not counts:
        return "_none_\n"
    return markdown_table([{key: name, "count": n} for name, n in counts.items()])


def render(
    run: RunDir, summaries: Sequence[dict[str, Any]], plots: Sequence[Path], embed: bool = False
) -> str:
    """RUN/report.md: the table for all iterations, plots, notes and the files of every iteration.

    `embed` (the Prefect artifact): plots inline as data URIs and files named by their paths, not linked
    (the UI cannot open the run directory's files); otherwise links relative to RUN/report.md.
    """
    parts = [
        "# Lion run report\n",
        f"Run directory: `{run.root.resolve()}`\n",
        "## Iterations\n",
        markdown_table(table_rows(summaries)),
    ]
    stopped = [s for s in summaries if s.get("stopped")]
    if stopped:
        parts.append(f"Stopped after iteration {stopped[-1]['iteration']}: {stopped[-1]['stopped']}.\n")
    if plots:
        parts.append("## Plots\n")
        for p in plots:
            target = data_uri(p) if embed else p.relative_to(run.root).as_posix()
            parts.append(f"![{p.stem}]({target})\n")
    parts.append("## Files\n" if not embed else f"## Files (in `{run.root.resolve()}`)\n")
    for s in summaries:
        k = s["iteration"]
        files = [f"`{n}`" for n in file_names(run, k)] if embed else file_links(run, k)
        parts.append(f"- iteration {k}: " + ", ".join(files))
        for note in s.get("notes", []):
            parts.append(f"  - note: {note}")
    if run.ledger.exists():
        ledger = "`ledger.json`" if embed else f"[ledger.json]({run.ledger.name})"
        parts += ["", f"Usage and cost of the whole run: {ledger}\n"]
    return "\n".join(parts)


def write_report(run: RunDir) -> Path:
    """Render RUN/report.md and RUN/plots/*.png from the finished iterations."""
    return publish_report(run)[0]


def publish_report(run: RunDir) -> tuple[Path, str]:
    """RUN/report.md and its plots written; its path, and the same report for the Prefect UI (plots
    embedded, files named, nothing linked)."""
    summaries = run.summaries()
    plots = plot(summaries, run.plots) if summaries else []
    atomic_write_text(run.report, render(run, summaries, plots))
    return run.report, render(run, summaries, plots, embed=True)
