"""Export a run's preference pairs as a Hugging Face `datasets` dataset in the layout TRL's preference
trainers read (`prompt`, `chosen`, `rejected`), with a dataset card.

Run as:  lion export runs/demo --format preference [--out DIR] [--push-to-hub user/lion-demo-pairs]

Every iteration's RUN/iter_K/pairs.jsonl: for each judged Cache Pool item whose teacher answer the
referee scored higher (a positive two-order gap), the teacher's answer as `chosen` and the student's as
`rejected` — free data, the verdicts were already paid for. Written with `Dataset.save_to_disk`
(OUT/preference/, load with `datasets.load_from_disk`) and as Parquet (OUT/data/preference.parquet).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml
from datasets import Dataset

from lion_core.records import PreferencePair, atomic_write_text, read_jsonl
from lion_core.run.export import CARD, PARQUET_DIR, ExportError, last_iteration
from lion_core.run.rundir import RunDir

NAME = "preference"
COLUMNS = ("prompt", "chosen", "rejected", "margin", "label", "iteration", "id", "source")


@dataclass(frozen=True)
class ExportedPairs:
    """What `export_pairs` wrote."""

    out: Path
    rows: int
    per_iteration: dict[int, int]
    hard: int


def run_pairs(run: RunDir) -> list[PreferencePair]:
    """The pairs of every finished iteration, in order (an iteration without pairs.jsonl adds none)."""
    last = last_iteration(run)
    found = []
    for k in range(1, last + 1):
        path = run.iteration(k).pairs
        if path.exists():
            found += read_jsonl(path, PreferencePair)
    if not found:
        raise ExportError(f"{run.root}: no preference pairs (iter_K/pairs.jsonl) in iterations 1..{last}")
    return found


def pairs_card(run: RunDir, exported: ExportedPairs) -> str:
    """README.md: what a pair is, the columns, the counts, the licence note."""
    header = {
        "license": "other",
        "task_categories": ["text-generation"],
        "tags": ["lion", "distillation", "synthetic", "preference", "dpo"],
        "configs": [{"config_name": NAME, "data_files": f"{PARQUET_DIR}/{NAME}.parquet"}],
    }
    counts = ", ".join(f"iteration {k}: {n}" for k, n in sorted(exported.per_iteration.items()))
    return "\n".join(
        [
            "---",
            yaml.safe_dump(header, sort_keys=False).strip(),
            "---",
            f"# Lion preference pairs: {run.root.name}\n",
            "Preference pairs from the referee's verdicts of a run of Lion adversarial distillation (Jiang "
            "et al., EMNLP 2023, arXiv 2305.12870), exported by `lion export --format preference`: for each "
            "judged instruction whose teacher answer the referee scored higher than the student's (both "
            "orders averaged), `chosen` is the teacher's answer and `rejected` the student's.\n",
            f"- pairs: {exported.rows} ({counts}); {exported.hard} labelled hard (gap ≥ tau)",
            "- columns: `prompt` (instruction, and its input after a blank line), `chosen`, `rejected` — "
            "the layout TRL's preference trainers (DPOTrainer, …) read — and `margin` (the gap), `label` "
            "(hard | easy), `iteration`, `id`, `source` (referee)\n",
            "## Licence\n",
            "The chosen answers were written by the run's teacher model; use is subject to its provider's "
            "terms (some forbid using outputs to develop competing models). This card grants no licence.\n",
        ]
    )


def export_pairs(run_dir: Path, out: Path) -> ExportedPairs:
    """Write the preference dataset (save_to_disk and Parquet) and its card under `out`."""
    run = RunDir(run_dir)
    pairs = run_pairs(run)
    dataset = Dataset.from_list([{c: getattr(p, c) for c in COLUMNS} for p in pairs])
    (out / PARQUET_DIR).mkdir(parents=True, exist_ok=True)
    dataset.save_to_disk(str(out / NAME))
    dataset.to_parquet(str(out / PARQUET_DIR / f"{NAME}.parquet"))
    exported = ExportedPairs(
        out=out,
        rows=len(pairs),
        per_iteration=dict(Counter(p.iteration for p in pairs)),
        hard=sum(p.label == "hard" for p in pairs),
    )
    atomic_write_text(out / CARD, pairs_card(run, exported))
    return exported
