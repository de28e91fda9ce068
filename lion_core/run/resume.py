"""Resume without replay: a finished iteration whose files are intact and whose inputs are unchanged is
not run again.

When iteration k finishes, RUN/iter_K/manifest.json records a hash of its inputs (the settings that
change what it computes, its pools, the teacher answers and probes it inherits, its base checkpoint,
the contents of the held-out and decontamination sets, the prompt templates, the package version) and
the content hash of every file it wrote (its folder, its checkpoint's identity,
the next iteration's pools). A re-run checks both and takes the recorded summary instead of replaying
the iteration through the caches. Only a leading run of finished iterations is skipped: an iteration
that must run again changes what every later one starts from.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lion_core import prompts
from lion_core.config import LionConfig
from lion_core.run.rundir import RunDir, write_json
from lion_core.student.checkpoint import NOT_TRAINING, fingerprint

CHUNK_BYTES = 1 << 20
PACKAGE = "lion-prefect"  # its version is an input: another release may compute an iteration otherwise
# What does not change what an iteration computes: where things live, how fast and in what slices
# requests go out, what they cost, how many iterations follow. The pools are hashed as files, the
# checkpoint by its identity, the world through the endpoints' cache identity.
OPERATIONAL = {
    "run_dir": True,
    "cache_dir": True,
    "budget": True,
    "pools": True,
    "world": True,
    "evaluation": {"judge", "questions"},
    "student": {"model_path", *NOT_TRAINING},
    "loop": {
        "iterations",
        "final_imitation",  # what comes after the iterations; its own round is told apart by `final`
        "batch_size",
        "batches_in_flight",
        "task_retries",
        "task_retry_delay_s",
    },
}
ENDPOINT_OPERATIONAL = {
    "mode",
    "batch",
    "base_url",
    "cache_identity",
    "api_key_env",
    "concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "timeout_s",
    "max_retries",
    "price_input_per_1k",
    "price_output_per_1k",
}


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes (read in chunks: whole-pool files are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def method_settings(config: LionConfig) -> dict[str, Any]:
    """The settings that change what an iteration computes (the config without OPERATIONAL fields)."""
    settings = config.model_dump(mode="json", exclude=OPERATIONAL)
    for role, endpoint in config.endpoints().items():
        if role in settings:
            settings[role] = {
                **endpoint.model_dump(mode="json", exclude=ENDPOINT_OPERATIONAL),
                "identity": endpoint.identity,
            }
    return settings


def package_version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def prompt_templates() -> dict[str, str]:
    """Content hash of every prompt template the package ships (lion_core/prompts)."""
    folder = Path(prompts.__file__).parent
    return {p.name: file_hash(p) for p in sorted(folder.glob("*.txt"))}


def earlier_probes(run: RunDir, k: int) -> list[str | None]:
    """Content hash of iterations 1..k-1's probes (what the probing selections carry forward)."""
    paths = (run.iteration(j).probes for j in range(1, k))
    return [file_hash(p) if p.exists() else None for p in paths]


def iteration_inputs(config: LionConfig, run: RunDir, k: int, final: bool = False) -> str:
    """Hash of what iteration k starts from (`final`: loop.final_imitation's round, which is not the
    iteration k a run of more iterations would compute from the same pools)."""
    folder = run.iteration(k)
    base = Path(config.student.model_path) if k == 1 else run.iteration(k - 1).final_student
    heldout, decontamination = config.evaluation.heldout_path, config.decontamination
    parts = [
        method_settings(config),
        k,
        package_version(),
        prompt_templates(),
        file_hash(folder.file("train_pool")),
        file_hash(folder.file("cache_pool")),
        file_hash(run.iteration(k - 1).file("teacher")) if k > 1 else None,
        earlier_probes(run, k),
        fingerprint(base),
        file_hash(heldout) if heldout is not None else None,
        [file_hash(Path(p)) for p in decontamination.eval_sets] if decontamination.enabled else None,
    ]
    if final:
        parts.append("final imitation")
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def written_files(run: RunDir, k: int) -> dict[str, str]:
    """Content hash of every file iteration k wrote, by path relative to RUN (its checkpoint by its
    identity)."""
    folder, following = run.iteration(k), run.iteration(k + 1)
    checkpoints = [c for c in (folder.student, folder.preferred) if c.exists()]
    files = [
        p
        for p in sorted(folder.root.rglob("*"))
        if p.is_file() and not any(c in p.parents for c in checkpoints)
    ]
    files += [p for p in (following.file("train_pool"), following.file("cache_pool")) if p.exists()]
    hashes = {p.relative_to(run.root).as_posix(): file_hash(p) for p in files if p != folder.manifest}
    for checkpoint in checkpoints:
        hashes[checkpoint.relative_to(run.root).as_posix()] = fingerprint(checkpoint)
    return hashes


def record_finished(config: LionConfig, run: RunDir, k: int, final: bool = False) -> None:
    """Write iteration k's manifest (last, after its summary and the next iteration's pools)."""
    manifest = {"inputs": iteration_inputs(config, run, k, final), "files": written_files(run, k)}
    write_json(run.iteration(k).manifest, manifest)


def finished_summary(config: LionConfig, run: RunDir, k: int, final: bool = False) -> dict[str, Any] | None:
    """Iteration k's recorded summary when it finished with these inputs and its files are intact;
    None when it has to run (never finished, inputs changed, a file changed or went missing)."""
    folder = run.iteration(k)
    try:
        manifest = json.loads(folder.manifest.read_text(encoding="utf-8"))
        if manifest["inputs"] != iteration_inputs(config, run, k, final):
            return None
        if manifest["files"] != written_files(run, k):
            return None
        return json.loads(folder.summary.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError):
        return None
