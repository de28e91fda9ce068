"""The run directory contract: every path a run writes, by name. Nothing else is state, and no other
module spells a file name of the run directory.

RUN/config.yaml, RUN/ledger.json, RUN/report.md, RUN/plots/, RUN/responses.sqlite (the response cache),
RUN/eval/<candidate>/, RUN/export/, RUN/.prefect-results/,
RUN/iter_K/{train_pool,cache_pool,teacher,student,judgements,hard,easy,generated,sft}.jsonl,
RUN/iter_K/judged_pool.jsonl (the Cache Pool items judged, when `referee.sample` judges a sample),
RUN/iter_K/pairs.jsonl (preference pairs: every scorable verdict with a positive gap),
RUN/iter_K/{dpo,self_answers}.jsonl and RUN/iter_K/student-preferred/ (the preference stage, sft+dpo),
RUN/iter_K/{probes,siblings,sibling_answers}.jsonl (probing selections),
RUN/iter_K/student/ (checkpoint), RUN/iter_K/summary.json (the iteration's statistics),
RUN/iter_K/manifest.json (written last: what lets a re-run skip the finished iteration);
what `lion demo` brings itself: RUN/tiny-student/, RUN/seed.jsonl, RUN/heldout.jsonl;
RUN/.lock: the lock a running `lion run`/`lion demo` holds (its pid inside), one run per directory;
RUN/batches/: the Batch API files of roles in `mode: batch` (beside the response cache that records them).
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from lion_core.config import ConfigError, EndpointConfig, LionConfig
from lion_core.records import RecordError, atomic_write_text, read_instructions

RESPONSES_FILE = "responses.sqlite"
LOCK_FILE = ".lock"
BATCHES_DIR = "batches"
ADAPTER_FILE = "adapter_config.json"
ITERATION_FILES = (
    "train_pool",
    "cache_pool",
    "teacher",
    "student",
    "judgements",
    "hard",
    "easy",
    "generated",
    "sft",
)


@dataclass(frozen=True)
class IterationDir:
    """Files of one iteration."""

    root: Path

    def file(self, name: str) -> Path:
        """iter_K/<name>.jsonl for one of ITERATION_FILES."""
        if name not in ITERATION_FILES:
            raise KeyError(f"{name!r} is not an iteration file; one of {ITERATION_FILES}")
        return self.root / f"{name}.jsonl"

    @property
    def student(self) -> Path:
        return self.root / "student"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def preferred(self) -> Path:
        """The checkpoint of the preference stage (student.objective: sft+dpo), when it ran."""
        return self.root / "student-preferred"

    @property
    def final_student(self) -> Path:
        """The checkpoint the iteration hands on (the next iteration's base, the held-out's subject): the
        preference stage's when it ran, else the imitation fine-tune's."""
        return self.preferred if self.preferred.is_dir() else self.student

    @property
    def dpo(self) -> Path:
        """The preference stage's training rows: {prompt (in the student's format), chosen, rejected}."""
        return self.root / "dpo.jsonl"

    @property
    def self_answers(self) -> Path:
        """The student's answers to the Train Pool, for self pairs when no referee judged (sft+dpo)."""
        return self.root / "self_answers.jsonl"

    @property
    def judged_pool(self) -> Path:
        """The Cache Pool items judged in this iteration, when `referee.sample` judged a sample."""
        return self.root / "judged_pool.jsonl"

    @property
    def losses_before(self) -> Path:
        """The loss of the iteration's base checkpoint on the teacher's answers (selection progress)."""
        return self.root / "losses_before.jsonl"

    @property
    def losses_after(self) -> Path:
        """The loss of the iteration's fine-tuned student on the teacher's answers (selection progress)."""
        return self.root / "losses_after.jsonl"

    @property
    def pairs(self) -> Path:
        """The iteration's preference pairs: teacher answer preferred to student answer (free data)."""
        return self.root / "pairs.jsonl"

    @property
    def siblings(self) -> Path:
        """The probed items' fresh siblings, as the student is asked them (selection fresh, learnable)."""
        return self.root / "siblings.jsonl"

    @property
    def sibling_answers(self) -> Path:
        """The student's answers to the siblings."""
        return self.root / "sibling_answers.jsonl"

    @property
    def manifest(self) -> Path:
        """What the finished iteration wrote and the inputs it started from (lion_core.run.resume)."""
        return self.root / "manifest.json"

    @property
    def probes(self) -> Path:
        """The probing strategies' fresh siblings and their verdicts (selection fresh, learnable)."""
        return self.root / "probes.jsonl"

    @property
    def sft(self) -> Path:
        """The round's {prompt, response} training pairs."""
        return self.file("sft")


@dataclass(frozen=True)
class RunDir:
    """Paths of a run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def responses(self) -> Path:
        """The response cache when the config sets no shared cache_dir (see `response_cache`)."""
        return self.root / RESPONSES_FILE

    def eval(self, candidate: str) -> Path:
        """Where `lion eval` writes the results of one candidate."""
        return self.root / "eval" / candidate

    @property
    def export(self) -> Path:
        """Where `lion export` writes the distilled dataset (alpaca/, messages/, data/, README.md)."""
        return self.root / "export"

    @property
    def preference_export(self) -> Path:
        """Where `lion export --format preference` writes the preference pairs (preference/, data/, card)."""
        return self.root / "export-preference"

    @property
    def demo_student(self) -> Path:
        """The tiny student `lion demo` builds."""
        return self.root / "tiny-student"

    @property
    def demo_seed(self) -> Path:
        return self.root / "seed.jsonl"

    @property
    def demo_heldout(self) -> Path:
        return self.root / "heldout.jsonl"

    @property
    def lock(self) -> Path:
        """The advisory lock file of the process running this directory (see RunLock)."""
        return self.root / LOCK_FILE

    @property
    def results(self) -> Path:
        """Prefect's persisted task results (what makes a re-run resume)."""
        return self.root / ".prefect-results"

    def iteration(self, k: int) -> IterationDir:
        return IterationDir(self.root / f"iter_{k}")

    def recorded_config(self) -> dict[str, Any]:
        """RUN/config.yaml as written by the last run ({} before the first)."""
        if not self.config.exists():
            return {}
        return yaml.safe_load(self.config.read_text(encoding="utf-8")) or {}

    def summaries(self) -> list[dict[str, Any]]:
        """summary.json of the finished iterations of this run, in order: iter_1, iter_2, … up to the
        first missing one, the one that stopped the loop, or the configured number of iterations, plus
        the final imitation round with loop.final_imitation (a directory re-used with fewer iterations
        or an earlier stop keeps older files beyond these)."""
        loop = self.recorded_config().get("loop", {})
        iterations = loop.get("iterations")
        if iterations is not None and loop.get("final_imitation"):
            iterations += 1  # the final imitation round's row
        found: list[dict[str, Any]] = []
        while iterations is None or len(found) < iterations:
            path = self.iteration(len(found) + 1).summary
            if not path.exists():
                break
            found.append(json.loads(path.read_text(encoding="utf-8")))
            if found[-1].get("stopped"):
                break
        return found


def response_cache(config: LionConfig) -> Path:
    """The response cache file: the shared cache_dir's, else the run directory's."""
    return (config.cache_dir / RESPONSES_FILE) if config.cache_dir else RunDir(config.run_dir).responses


def batch_files(cache_file: Path) -> Path:
    """Where the Batch API's input, output and error files of a response cache's batches are kept
    (RUN/batches/ for the run directory's cache); the batches themselves are recorded in the cache."""
    return Path(cache_file).parent / BATCHES_DIR


def check_same_seed(run: RunDir, pools: dict[str, Any]) -> None:
    """A run directory resumes the run it holds: raise ConfigError if its first pools were built from
    other seed settings (`pools` is the new config's pools section, as JSON)."""
    before = run.recorded_config().get("pools")
    if before is None or not run.iteration(1).file("cache_pool").exists():
        return
    changed = [f"pools.{k} was {before.get(k)!r}, now {v!r}" for k, v in pools.items() if before.get(k) != v]
    if changed:
        raise ConfigError(
            f"{run.config}: this run started from other seeds ({'; '.join(changed)}); "
            "a different seed pool needs a new run directory"
        )


class RunLockedError(RuntimeError):
    """Another process is running this run directory."""


class RunLock:
    """One run per run directory: an exclusive advisory lock (flock) on RUN/.lock, held by this process
    for the whole run. The OS releases it when the process ends, however it ends (SIGKILL included), so
    there is no stale lock to guess about; the file keeps the holder's pid for the error message.

    Taken again in a process that holds it already (`lion run` holds it, then its `distill` flow asks
    for it as a deployment run does), it is a no-op: the outer holder releases it."""

    _held: ClassVar[set[Path]] = set()  # run directories this process holds the lock of

    def __init__(self, run: RunDir) -> None:
        self.path = run.lock
        self._fd: int | None = None
        self._nested = False

    def acquire(self) -> RunLock:
        """Take the lock at once or raise RunLockedError naming the directory and the holder's pid."""
        key = self.path.resolve()
        if key in RunLock._held:
            self._nested = True
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(
                f"{self.path.parent}: another run is using this run directory (pid {holder}); "
                "wait for it to end or use another --run-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        RunLock._held.add(key)
        return self

    def release(self) -> None:
        if self._nested:
            self._nested = False
            return
        if self._fd is not None:
            RunLock._held.discard(self.path.resolve())
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self if (self._fd is not None or self._nested) else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_directory(field: str, path: Path) -> None:
    """A directory a run will create or use: raise ConfigError if it, or an ancestor, is not one."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"{field}: {path}: {existing} is not a directory")


def check_checkpoint(path: Path) -> None:
    """The student checkpoint's config (the base model's, for a LoRA adapter) and tokenizer load from
    `path`; raise ConfigError naming student.model_path and what failed."""
    from transformers import AutoConfig, AutoTokenizer  # only a run's pre-flight needs them

    try:
        base = path
        if (path / ADAPTER_FILE).is_file():
            base = Path(
                json.loads((path / ADAPTER_FILE).read_text(encoding="utf-8"))["base_model_name_or_path"]
            )
        AutoConfig.from_pretrained(base)
        AutoTokenizer.from_pretrained(path)
    except Exception as err:  # transformers raises OSError, ValueError, KeyError, JSONDecodeError, ...
        detail = (str(err).strip().splitlines() or [""])[0][:200]
        raise ConfigError(
            f"student.model_path: {path}: the checkpoint does not load ({type(err).__name__}: {detail})"
        ) from None


def preflight(config: LionConfig) -> None:
    """Everything a run needs, checked before any work is done or paid for and without writing
    anything; raises ConfigError naming the config field: API keys, the run and cache directories, the
    student checkpoint (its config and tokenizer load) and what the student's settings need of this
    machine (lion_core.student.checks: no QLoRA or FSDP without a GPU, ...), vLLM when it answers, the
    held-out set, the seed
    pool (read and validated, texts no longer than pools.max_text_chars, unless the run directory already
    holds its first pools, which must come from the same seeds)."""
    config.check_credentials()
    check_directory("run_dir", Path(config.run_dir))
    if config.cache_dir is not None:
        check_directory("cache_dir", Path(config.cache_dir))
    model = Path(config.student.model_path)
    if not any((model / name).is_file() for name in ("config.json", ADAPTER_FILE)):
        raise ConfigError(
            f"student.model_path: {model} is not a local checkpoint directory (no config.json or "
            f"{ADAPTER_FILE})"
        )
    heldout = config.evaluation.heldout_path
    if heldout is not None and not Path(heldout).is_file():
        raise ConfigError(f"evaluation.heldout_path: {heldout}: no such file")
    run = RunDir(config.run_dir)
    if run.iteration(1).file("cache_pool").exists():
        check_same_seed(run, config.pools.model_dump(mode="json"))
    else:
        try:
            read_instructions(
                config.pools.seed_path, config.pools.format, max_chars=config.pools.max_text_chars
            )
        except RecordError as err:
            raise ConfigError(f"pools.seed_path: {err}") from None
    check_checkpoint(model)
    from lion_core.student.checks import check_student  # torch and transformers: a run's pre-flight only

    check_student(config.student, model)
    if config.student.backend == "vllm":
        from lion_core.student.engine import check_vllm_python  # torch: only when vLLM is asked for

        if (problem := check_vllm_python(config.student)) is not None:
            raise ConfigError(problem)


REACH_TIMEOUT_S = 5.0  # the pre-flight request per endpoint: a server that answers at all does by then
ROLES = ("teacher", "referee", "generator")


def unreachable(base_url: str, timeout_s: float = REACH_TIMEOUT_S) -> str | None:
    """Why `base_url` cannot be reached (connection refused, unknown host, no answer in time), or None:
    one GET of its /models, without the key; any HTTP answer, an error status included, is an answer."""
    import httpx  # the openai SDK's HTTP client

    try:
        httpx.get(f"{base_url.rstrip('/')}/models", timeout=timeout_s)
    except httpx.TransportError as err:
        return f"{type(err).__name__}: {' '.join(str(err).split()) or 'no answer'}"
    return None


def check_endpoints(
    config: LionConfig, endpoints: dict[str, EndpointConfig] | None = None, timeout_s: float = REACH_TIMEOUT_S
) -> None:
    """The endpoints answer (each URL asked once, with a short timeout), before any work: raise
    ConfigError naming the field rather than retrying a server that is not there for minutes.
    `endpoints`: field name → endpoint (default the teacher's, referee's and generator's base_url)."""
    named = endpoints or {f"{role}.base_url": getattr(config, role) for role in ROLES}
    reasons: dict[str, str | None] = {}
    for field, endpoint in named.items():
        url = endpoint.base_url
        if url not in reasons:
            reasons[url] = unreachable(url, timeout_s)
        if reasons[url] is not None:
            hint = " (is the server running?)" if endpoint.is_local else ""
            raise ConfigError(f"{field}: {url} is not reachable{hint}: {reasons[url]}")


def write_json(path: Path, data: Any) -> None:
    """JSON written atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
