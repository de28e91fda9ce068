"""Export a run's distilled instruction set as a Hugging Face `datasets` dataset with a dataset card.

Run as:  lion export runs/demo --out runs/demo/export [--push-to-hub user/lion-demo [--dry-run]]

What is exported: the last judged Cache Pool (every instruction the teacher answered: the seeds and
each iteration's new ones) with the teacher's answers, the lineage of every instruction (origin,
iteration, parent_id) and, per iteration, the referee's label and gap. Two formats, each saved with
`Dataset.save_to_disk` (load with `datasets.load_from_disk`) and as Parquet for the Hub:

    OUT/alpaca/, OUT/data/alpaca.parquet       instruction, input, output + lineage columns
    OUT/messages/, OUT/data/messages.parquet   messages [{role: user}, {role: assistant}] + lineage
    OUT/README.md                              the dataset card (lineage, counts, config, licence note)

The last iteration's new instructions (RUN/iter_{N+1}) have no teacher answer yet; they are counted in
the card, not exported — unless `loop.final_imitation` answered (and trained on) them: then its round is
the last one, and every instruction is exported. Nothing secret is exported: a config names API key
variables, never keys.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from datasets import Dataset

from lion_core.records import Instruction, Judgement, Response, atomic_write_text, read_jsonl
from lion_core.run.rundir import RunDir

FORMATS = ("alpaca", "messages")
CARD = "README.md"
PARQUET_DIR = "data"


class ExportError(ValueError):
    """A run directory that cannot be exported (one line naming the file)."""


@dataclass(frozen=True)
class Exported:
    """What `export_run` wrote."""

    out: Path
    rows: int
    unanswered: int
    origins: dict[str, int]
    teacher_models: list[str]


def last_iteration(run: RunDir) -> int:
    """The last finished iteration (the one whose Cache Pool the teacher answered last)."""
    summaries = run.summaries()
    if not summaries:
        raise ExportError(f"{run.root}: no finished iteration (iter_K/summary.json); nothing to export")
    return summaries[-1]["iteration"]


def judgements_by_id(run: RunDir, last: int) -> dict[str, list[dict[str, Any]]]:
    """Per instruction id, the referee's label and gap in each iteration that judged it."""
    found: dict[str, list[dict[str, Any]]] = {}
    for k in range(1, last + 1):
        path = run.iteration(k).file("judgements")
        if not path.exists():  # loop.final_imitation's round judges nothing
            continue
        for j in read_jsonl(path, Judgement):
            found.setdefault(j.id, []).append({"iteration": k, "label": j.label, "gap": j.gap})
    return found


def rows(run: RunDir, last: int) -> list[dict[str, Any]]:
    """One row per answered instruction: text, the teacher's answer, lineage, per-iteration labels."""
    folder = run.iteration(last)
    answers = {r.id: r for r in read_jsonl(folder.file("teacher"), Response)}
    labels = judgements_by_id(run, last)
    out = []
    for item in read_jsonl(folder.file("cache_pool"), Instruction):
        answer = answers.get(item.id)
        if answer is None:
            raise ExportError(f"{folder.file('teacher')}: no teacher answer for Cache Pool item {item.id!r}")
        out.append(
            {
                "id": item.id,
                "instruction": item.instruction,
                "input": item.input,
                "output": answer.output,
                "origin": item.origin,
                "iteration": item.iteration,
                "parent_id": item.parent_id,
                "teacher_model": answer.model,
                "judgements": labels.get(item.id, []),
            }
        )
    return out


def unanswered(run: RunDir, last: int, answered: set[str]) -> int:
    """Instructions the last iteration generated, not yet answered by the teacher."""
    final = run.iteration(last + 1).file("cache_pool")
    if not final.exists():
        return 0
    return sum(1 for item in read_jsonl(final, Instruction) if item.id not in answered)


def as_messages(row: dict[str, Any]) -> dict[str, Any]:
    """A row in the messages (chat) format: the user's turn (instruction and input), the teacher's."""
    user = f"{row['instruction']}\n\n{row['input']}" if row["input"] else row["instruction"]
    lineage = {k: v for k, v in row.items() if k not in ("instruction", "input", "output")}
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": row["output"]}],
        **lineage,
    }


def dataset_card(run: RunDir, exported: Exported) -> str:
    """README.md of the exported dataset: origin, counts, lineage fields, the config, a licence note."""
    config = run.config.read_text(encoding="utf-8") if run.config.exists() else "{}\n"
    teacher = yaml.safe_load(config).get("teacher", {}) if config.strip() else {}
    origins = ", ".join(f"{n} {origin}" for origin, n in sorted(exported.origins.items()))
    header = {
        "license": "other",
        "task_categories": ["text-generation"],
        "tags": ["lion", "distillation", "synthetic"],
        "configs": [{"config_name": name, "data_files": f"{PARQUET_DIR}/{name}.parquet"} for name in FORMATS],
    }
    return "\n".join(
        [
            "---",
            yaml.safe_dump(header, sort_keys=False).strip(),
            "---",
            f"# Lion distilled instructions: {run.root.name}\n",
            "Instructions and teacher answers from a run of Lion adversarial distillation (Jiang et al., "
            "EMNLP 2023, arXiv 2305.12870), exported by `lion export`.\n",
            f"- rows: {exported.rows} ({origins})",
            f"- teacher: {', '.join(exported.teacher_models)} at `{teacher.get('base_url', '?')}`",
            f"- not included: {exported.unanswered} instructions generated by the last iteration, "
            "not yet answered by the teacher\n",
            "## Formats\n",
            "- `alpaca`: `instruction`, `input`, `output`",
            "- `messages`: `messages` = [user turn, assistant turn]\n",
            "Both carry the lineage: `id`, `origin` (seed | hard | easy: generated from a hard or an easy "
            "parent), `iteration` (0 for seeds), `parent_id`, `teacher_model`, and `judgements`: per "
            "iteration that judged the instruction, the referee's `label` (hard | easy | unscorable) "
            "and `gap` (teacher − student score).\n",
            "## Licence\n",
            "The answers (and the generated instructions) were written by the teacher and generator "
            "models named above. Their use is subject to those providers' terms (some forbid using "
            "outputs to develop competing models); check them before using or sharing this dataset. "
            "Seed instructions keep the licence of their source. This card grants no licence.\n",
            "## Config of the run (API keys are never part of it)\n",
            "```yaml",
            config.rstrip(),
            "```\n",
        ]
    )


def export_run(run_dir: Path, out: Path) -> Exported:
    """Write the alpaca and messages datasets (save_to_disk and Parquet) and the card under `out`."""
    run = RunDir(run_dir)
    last = last_iteration(run)
    data = rows(run, last)
    alpaca = Dataset.from_list(data)
    messages = Dataset.from_list([as_messages(r) for r in data])
    (out / PARQUET_DIR).mkdir(parents=True, exist_ok=True)
    for name, dataset in (("alpaca", alpaca), ("messages", messages)):
        dataset.save_to_disk(str(out / name))
        dataset.to_parquet(str(out / PARQUET_DIR / f"{name}.parquet"))
    exported = Exported(
        out=out,
        rows=len(data),
        unanswered=unanswered(run, last, {r["id"] for r in data}),
        origins=dict(Counter(r["origin"] for r in data)),
        teacher_models=sorted({r["teacher_model"] for r in data}),
    )
    atomic_write_text(out / CARD, dataset_card(run, exported))
    return exported


class HubApi(Protocol):
    """The two huggingface_hub.HfApi methods a push uses (a fake in tests: the Hub is not reachable)."""

    def create_repo(self, repo_id: str, **kwargs: Any) -> Any: ...

    def upload_folder(self, **kwargs: Any) -> Any: ...


def hub_files(out: Path) -> list[str]:
    """The files a push uploads: the card and the Parquet files (the save_to_disk folders stay local)."""
    return [CARD, *sorted(f"{PARQUET_DIR}/{p.name}" for p in (out / PARQUET_DIR).glob("*.parquet"))]


def push_to_hub(out: Path, repo_id: str, api: HubApi | None = None, private: bool = True) -> list[str]:
    """Create the dataset repository (if needed) and upload the card and the Parquet files."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    files = hub_files(out)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(out),
        repo_type="dataset",
        allow_patterns=files,
        commit_message="lion export",
    )
    return files
