"""The `lion` command line.

Run as:
    lion demo --iterations 3            # the whole loop on the offline world, embedded Prefect
    lion run configs/openai.yaml        # real endpoints (keys from the environment)
    lion report runs/demo               # re-render a run's report and table
    lion eval configs/demo.yaml --candidate runs/demo/iter_3/student --protocol vicuna --questions Q
    lion world serve --port 8765        # the offline world's OpenAI-compatible server
Re-running `lion demo` or `lion run` on the same run directory resumes; nothing is paid twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

# The embedded Prefect server would try to send usage telemetry; this tool must run offline quietly.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from lion_cli import world as world_cli

# Prefect waits 20 s for its embedded server, which a loaded machine can miss (seen at load ~14); a
# user's own setting wins (Prefect is imported later, inside the commands). README: "Start-up".
EMBEDDED_SERVER_STARTUP_S = 180
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(EMBEDDED_SERVER_STARTUP_S))

app = typer.Typer(
    help="Lion adversarial distillation on Prefect.", no_args_is_help=True, add_completion=False
)
app.add_typer(world_cli.app, name="world")
# Full width when the output is not a terminal (logs, `make demo | tee`), so the table does not fold.
console = Console(width=None if sys.stdout.isatty() else 200)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_BUDGET = 3
EXIT_BUSY = 4  # another process is running the same run directory
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as a shell reports it)
ITER_SCOPE = "iter_"  # the ledger's scope of iteration K is "iter_K" (lion_core/method/loop.py)

# Run beside Prefect's temporary server: waits until the `lion` process that started it ends, however it
# ends (its stdin pipe closes), then stops the server, so it never outlives its run. A pidfd names the
# server process itself, so a recycled pid is never signalled.
SERVER_REAPER = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
pid = int(sys.argv[1])
try:
    target = os.pidfd_open(pid)
    stop = lambda: signal.pidfd_send_signal(target, signal.SIGTERM)
except ProcessLookupError:
    sys.exit(0)
except AttributeError:  # no pidfd (not Linux): the pid itself
    stop = lambda: os.kill(pid, signal.SIGTERM)
sys.stdin.buffer.read()
try:
    stop()
except ProcessLookupError:
    pass
"""
# The reapers of this process: their pipes close when it exits (after Prefect stopped its server).
_REAPERS: list[subprocess.Popen] = []


def say_error(prefix: str, err: object) -> None:
    """One line on the console, however long (never wrapped, markup in the message printed as is)."""
    from rich.markup import escape

    console.print(f"[bold red]{prefix}:[/] {escape(' '.join(str(err).split()))}", soft_wrap=True)


def print_table(summaries: list[dict[str, Any]], title: str) -> None:
    """The per-iteration table (the same rows as the report and the Prefect artifact)."""
    from lion_core.run.report import table_rows

    rows = table_rows(summaries)
    table = Table(title=title)
    for column in rows[0] if rows else ["iter"]:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    console.print(table)
    if summaries and summaries[-1].get("stopped"):
        console.print(f"stopped after iteration {summaries[-1]['iteration']}: {summaries[-1]['stopped']}")


class QuietBudgetStop(logging.Filter):
    """Drops Prefect's log records of a budget stop (tracebacks, failed states): the CLI says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        from lion_core.api.budget import BudgetExceededError

        error = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        return not (
            isinstance(error, BudgetExceededError)
            or "BudgetExceededError" in message
            or "budget: max_" in message
        )


@contextmanager
def own_session() -> Iterator[None]:
    """Processes started meanwhile get a session of their own, out of the terminal's reach: Ctrl-C (a
    SIGINT to the terminal's foreground process group) does not kill them under the run that still
    talks to them; their output goes nowhere (the temporary server's shutdown, interrupting its event
    flush, would print tracebacks). Prefect starts its server with a plain subprocess.Popen, hence the
    substitution."""
    real = subprocess.Popen

    class OwnSession(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("start_new_session", True)
            kwargs.setdefault("stdout", subprocess.DEVNULL)
            kwargs.setdefault("stderr", subprocess.DEVNULL)
            super().__init__(*args, **kwargs)

    subprocess.Popen = OwnSession  # type: ignore[misc]
    try:
        yield
    finally:
        subprocess.Popen = real  # type: ignore[misc]


class QuietInterrupt(logging.Filter):
    """After Ctrl-C, drops Prefect's warnings and errors (crashed task and flow runs): the CLI says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        from lion_core.interrupt import STOP

        return not (STOP.is_set() and record.levelno >= logging.WARNING)


def tie_embedded_server() -> None:
    """Start Prefect's temporary server now (the first flow run would) and SERVER_REAPER beside it
    (nothing to do when PREFECT_API_URL names a server of the user's). The server runs in a session of
    its own, so that Ctrl-C stops the run cleanly instead of killing the server under it first; the
    reaper stops it when `lion` ends."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    with own_session():
        server.start()
    assert server.server_process is not None
    if not _REAPERS:
        reaper = [sys.executable, "-c", SERVER_REAPER, str(server.server_process.pid)]
        _REAPERS.append(subprocess.Popen(reaper, stdin=subprocess.PIPE))


class CtrlC:
    """What Ctrl-C does during `lion run`/`lion demo`: set the stop flag (lion_core.interrupt.STOP, which
    the fine-tune and the student's answers check between steps) and cancel the flow's task, as
    asyncio.run would; a second Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.task: asyncio.Task | None = None
        self.presses = 0

    def __call__(self, signum: int, frame: object) -> None:
        from lion_core.interrupt import STOP

        STOP.set()
        self.presses += 1
        if self.presses == 1 and self.loop is not None and self.task is not None and not self.task.done():
            self.loop.call_soon_threadsafe(self.task.cancel)
            return
        raise KeyboardInterrupt

    async def run(self, flow_call) -> Any:
        """Await `flow_call` as the task that Ctrl-C cancels."""
        self.loop, self.task = asyncio.get_running_loop(), asyncio.current_task()
        try:
            return await flow_call
        finally:
            self.loop = self.task = None


_CTRL_C = CtrlC()


@contextmanager
def interruptible(resume: str) -> Iterator[None]:
    """Ctrl-C in this block stops the run within seconds (see CtrlC) and exits 130 with one line saying
    how to resume; every file is written atomically and a stopped fine-tune saves nothing, so nothing
    is left half-written."""
    from lion_core.interrupt import STOP

    previous = signal.signal(signal.SIGINT, _CTRL_C)
    try:
        yield
    except BaseException as err:
        if not STOP.is_set() or isinstance(err, typer.Exit | SystemExit):
            raise
        console.print(
            f"interrupted: stopped on Ctrl-C, nothing half-written; resume with: {resume}",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    finally:
        signal.signal(signal.SIGINT, previous)


def run_flow(flow_call, budget_note: Callable[[Exception], str] | None = None) -> Any:
    """Run a flow coroutine on the embedded Prefect (or the server PREFECT_API_URL names); clean exits:
    one line and an exit code for bad input, a budget stop (its line ends with `budget_note(error)`)
    and an endpoint that kept failing (Ctrl-C: see `interruptible`)."""
    from lion_core.api.budget import BudgetExceededError
    from lion_core.chat import LLMError
    from lion_core.config import ConfigError
    from lion_core.records import RecordError

    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logging.getLogger(name).addFilter(QuietBudgetStop())
        logging.getLogger(name).addFilter(QuietInterrupt())
    from lion_core.interrupt import STOP, Interrupted

    tie_embedded_server()
    try:
        try:
            return asyncio.run(_CTRL_C.run(flow_call))
        except Exception as err:  # whatever a stopped flow raises on its way out is the stop
            if STOP.is_set():
                raise Interrupted(str(err)) from None
            raise
    except (ConfigError, RecordError) as err:
        say_error("error", err)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except BudgetExceededError as err:
        say_error("stopped before exceeding the budget", f"{err}{budget_note(err) if budget_note else ''}")
        raise typer.Exit(EXIT_BUDGET) from None
    except LLMError as err:
        say_error("an endpoint kept failing", err)
        raise typer.Exit(EXIT_FAILED) from None


def run_distill(config) -> list[dict[str, Any]]:
    """The distill flow; ledger.json is rebuilt from the journal afterwards, however the flow ended."""
    from flows.distill import distill

    try:
        return run_flow(distill(config), budget_note=lambda err: budget_stop_note(config, err))
    finally:
        run_ledger(config).save()


def observed_projection(config):
    """The recipe's projected cost (lion_core/api/projection.py), rescaled by what the run's ledger
    recorded so far (the plain projection before anything was sent)."""
    from lion_core.api.projection import observed, project
    from lion_core.run.rundir import RunDir

    first = RunDir(config.run_dir).iteration(1).file("train_pool")  # the seeds a started run took
    with first.open(encoding="utf-8") if first.is_file() else nullcontext([]) as lines:
        seeds = sum(1 for line in lines if line.strip()) or None
    return observed(project(config, seeds), run_ledger(config).roles)


def projection_line(config) -> str | None:
    """One line: the recipe's projected cost per role and the budget; None when no role has a price."""
    if not any(e.price_input_per_1k or e.price_output_per_1k for e in config.endpoints().values()):
        return None
    projection = observed_projection(config)
    roles = ", ".join(f"{role} ${cost.usd:,.2f}" for role, cost in projection.roles.items())
    budget = config.budget.max_usd
    return (
        f"projected cost of this recipe: ${projection.usd:,.2f} ({roles}; {projection.requests:,} requests "
        f"from {projection.seed_pool:,} seeds); budget.max_usd: "
        + (f"${budget:,.2f}" if budget is not None else "none")
    )


def budget_stop_note(config, err: Exception) -> str:
    """What a budget stop line adds: the iteration it stopped in, the recipe's projected total at the
    cost per request observed so far, and the budget to set to finish."""
    from lion_core.api.projection import suggested_budget

    scopes = run_ledger(config).scopes
    iterations = [int(s.removeprefix(ITER_SCOPE)) for s in scopes if s.removeprefix(ITER_SCOPE).isdigit()]
    where = f" in iteration {max(iterations)}" if iterations else ""
    projection = observed_projection(config)
    if getattr(err, "limit", "max_usd") == "max_tokens":
        total, field, per = projection.tokens, "max_tokens", "tokens"
        shown, to_set = f"{total:,.0f} tokens", f"{suggested_budget(total):,.0f}"
    elif projection.usd > 0:
        total, field, per = projection.usd, "max_usd", "cost"
        shown, to_set = f"${total:,.2f}", f"${suggested_budget(total):,g}"
    else:  # no prices: nothing to project in USD
        return where
    return (
        f"{where}; projected total {shown} at the {per} per request seen so far: set budget.{field} ≥ "
        f"{to_set} and re-run to resume (nothing is paid twice)"
    )


def run_ledger(config):
    """The run's ledger, a view of the journal in its response cache."""
    from lion_core.api.ledger import run_ledger as ledger_of
    from lion_core.run.rundir import RunDir, response_cache

    return ledger_of(RunDir(config.run_dir).ledger, response_cache(config))


def hold_run_dir(config):
    """The run directory's lock, taken now; exits at once with one line when another run holds it."""
    from lion_core.run.rundir import RunDir, RunLock, RunLockedError

    try:
        return RunLock(RunDir(config.run_dir)).acquire()
    except RunLockedError as err:
        say_error("error", err)
        raise typer.Exit(EXIT_BUSY) from None


def api_calls(config) -> tuple[int, int]:
    """(HTTP requests sent, replies served from the cache) so far, from the run's journal."""
    roles = run_ledger(config).roles.values()
    return sum(u.requests for u in roles), sum(u.cache_hits for u in roles)


def finish(config, summaries: list[dict[str, Any]], started: float, calls_before: tuple[int, int]) -> None:
    """The table, then what this invocation cost: a resumed run shows that it paid nothing twice."""
    from lion_core.run.rundir import RunDir

    print_table(summaries, f"Lion — {config.run_dir}")
    (sent, hits), (sent_before, hits_before) = api_calls(config), calls_before
    console.print(
        f"this run: {sent - sent_before} API requests sent, {hits - hits_before} replies from the cache"
    )
    console.print(
        f"report: {RunDir(config.run_dir).report}   wall time: {time.perf_counter() - started:.0f} s"
    )


@app.command()
def demo(
    run_dir: Path = typer.Option(Path("runs/demo"), help="Run directory (re-run it to resume)."),
    iterations: int = typer.Option(3, min=1, help="Adversarial iterations."),
    seed: int = typer.Option(0, help="Seed of the world, the student and the loop."),
    port: int = typer.Option(
        None,
        help="Port of the offline world server; default 8765, or a free port when 8765 is taken (the "
        "response cache knows the world by its seed and settings, not its port).",
    ),
) -> None:
    """Start the offline world, build the tiny student, run the loop on the embedded Prefect."""
    from lion_core.config import ConfigError
    from lion_core.run.rundir import check_directory

    started = time.perf_counter()
    try:
        check_directory("--run-dir", run_dir)
    except ConfigError as err:
        say_error("error", err)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    from flows.demo import DEFAULT_PORT, demo_config, prepare_world_files, start_world

    config = demo_config(run_dir, iterations, seed, port or DEFAULT_PORT)
    resume = ["lion", "demo", "--run-dir", str(run_dir), "--iterations", str(iterations)]
    resume += ["--seed", str(seed)] if seed else []
    try:
        server = start_world(config, port)
    except OSError as err:  # only an explicit --port that is taken; nothing is written
        say_error(
            f"cannot start the world server on 127.0.0.1:{port}", f"{err} (leave --port out for a free one)"
        )
        raise typer.Exit(EXIT_FAILED) from None
    try:
        config = demo_config(run_dir, iterations, seed, server.port)
        with hold_run_dir(config), interruptible(shlex.join(resume)):
            prepare_world_files(config)
            calls_before = api_calls(config)
            finish(config, run_distill(config), started, calls_before)
    finally:
        server.stop()


@app.command()
def run(
    config_path: Path = typer.Argument(..., metavar="CONFIG", help="YAML config (see configs/)."),
    run_dir: Path = typer.Option(None, help="Override the config's run directory."),
) -> None:
    """Run the distill flow with real endpoints; keys come from the environment."""
    from lion_core.config import ConfigError, load_config
    from lion_core.run.rundir import check_endpoints, preflight

    started = time.perf_counter()
    try:
        config = load_config(config_path)
        if run_dir is not None:
            config.run_dir = run_dir
        preflight(config)
        check_endpoints(config)  # one quick request each: a server that is not there fails now, in one line
    except ConfigError as err:
        say_error("error", err)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    resume = ["lion", "run", str(config_path), *(["--run-dir", str(run_dir)] if run_dir is not None else [])]
    with hold_run_dir(config), interruptible(shlex.join(resume)):
        calls_before = api_calls(config)
        projected = projection_line(config)
        if projected:
            console.print(projected, markup=False, soft_wrap=True)
        finish(config, run_distill(config), started, calls_before)


@app.command("eval")
def eval_(
    config_path: Path = typer.Argument(
        ..., metavar="CONFIG", help="YAML config: teacher (reference), judge, student settings."
    ),
    candidate: str = typer.Option(..., help="A student checkpoint directory, or an OpenAI-compatible URL."),
    candidate_model: str = typer.Option(None, help="Model name when the candidate is an endpoint."),
    questions: Path = typer.Option(
        None, help="Questions (FastChat or self-instruct JSONL) for the judge; default evaluation.questions."
    ),
    world: int = typer.Option(0, help="Exact match on this many held-out world tasks (0: skip)."),
    harness: str = typer.Option(
        None, help="lm-evaluation-harness tasks, comma-separated (e.g. bbh,agieval)."
    ),
    out: Path = typer.Option(None, help="Output directory (default RUN/eval/<candidate>)."),
    protocol: str = typer.Option(
        "lion",
        help="Judge protocol: 'vicuna' = the paper's (FastChat's GPT-4 review: per-category prompts, "
        "T 0.2, 'score1 score2' first line); 'lion' = the referee's prompt. Both judge both orders.",
    ),
) -> None:
    """Evaluate a candidate: judge relative score (lion or vicuna protocol), world exact match, lm-eval."""
    from lion_core.config import ConfigError, load_config
    from lion_core.evaluation.protocols import check_inputs

    started = time.perf_counter()
    try:
        config = load_config(config_path)
        config.check_credentials()
        questions = questions or config.evaluation.questions
        question_file = str(questions) if questions else None
        check_inputs(config, candidate, question_file, world, harness, protocol)
        from flows.evaluate import evaluate  # Prefect's flow modules only once the input is known good
        from flows.fanout import in_run_dir

        flow_call = in_run_dir(config, evaluate)(
            config,
            candidate,
            question_file,
            world,
            harness,
            candidate_model,
            str(out) if out else None,
            protocol=protocol,
        )
    except (ConfigError, ValueError) as err:
        say_error("error", err)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    result = run_flow(flow_call)
    print_eval(result)
    console.print(f"report: {result['report']}   wall time: {time.perf_counter() - started:.0f} s")
    if "harness_error" in result:
        raise typer.Exit(EXIT_FAILED)


def print_eval(result: dict[str, Any]) -> None:
    """Headline figures of an evaluation."""
    if "judge" in result:
        judge = result["judge"]
        title = f"relative score of {result['candidate']} (candidate / reference, both orders)"
        table = Table(title=f"{title}, protocol {judge.get('protocol', 'lion')}")
        table.add_column("category")
        table.add_column("relative %", justify="right")
        for category, value in judge["per_category"].items():
            table.add_row(category, f"{value:.1f}")
        table.add_row("[bold]overall[/]", f"[bold]{judge['overall']:.1f}[/]")
        console.print(table)
        console.print(f"unscorable: {judge['unscorable']} of {judge['questions']}")
    if "world" in result:
        console.print(
            f"world exact match: {100 * result['world']['accuracy']:.1f}% "
            f"(teacher {100 * result['world_teacher']['accuracy']:.1f}%) per level "
            f"{ {k: round(100 * v, 1) for k, v in result['world']['per_level'].items()} } "
            f"on {result['world']['n']} tasks from {result['world_source']}"
        )
    for task, metrics in result.get("harness", {}).items():
        console.print(f"{task}: {metrics}")
    if "harness_error" in result:
        console.print(f"[bold red]harness:[/] {result['harness_error']}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run directory.", exists=True, file_okay=False),
) -> None:
    """Re-render RUN/report.md and its plots; print the per-iteration table."""
    from lion_core.run.report import write_report
    from lion_core.run.rundir import RunDir

    run = RunDir(run_dir)
    summaries = run.summaries()
    if not summaries:
        console.print(f"[bold red]error:[/] {run_dir}: no finished iteration (iter_K/summary.json)")
        raise typer.Exit(EXIT_BAD_INPUT)
    path = write_report(run)
    print_table(summaries, f"Lion — {run_dir}")
    console.print(f"report: {path}")


@app.command()
def params(
    config_path: Path = typer.Argument(..., metavar="CONFIG", help="YAML config (see configs/)."),
    run_dir: Path = typer.Option(None, help="Override the config's run directory."),
) -> None:
    """Print a config as the `distill` deployment's parameters (JSON {"config": ...}):
    `lion params CONFIG | prefect deployment run 'distill/form' --params -`."""
    import json

    from lion_core.config import ConfigError, load_config

    try:
        config = load_config(config_path)
    except ConfigError as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    if run_dir is not None:
        config.run_dir = run_dir
    print(json.dumps({"config": config.model_dump(mode="json")}))


@app.command("export")
def export_(
    run_dir: Path = typer.Argument(..., metavar="RUN", help="A run directory.", exists=True, file_okay=False),
    out: Path = typer.Option(None, help="Output directory (default RUN/export)."),
    push_to_hub: str = typer.Option(None, help="Also upload the card and Parquet files to this Hub dataset."),
    public: bool = typer.Option(False, help="Create the Hub repository public (default private)."),
    dry_run: bool = typer.Option(False, help="With --push-to-hub: say what would be uploaded, send nothing."),
) -> None:
    """Export the distilled instructions with teacher answers and lineage as a `datasets` dataset
    (alpaca and messages formats) with a dataset card; optionally push it to the Hugging Face Hub."""
    from lion_core.records import RecordError
    from lion_core.run.export import ExportError, export_run, hub_files
    from lion_core.run.export import push_to_hub as push
    from lion_core.run.rundir import RunDir

    out = out or RunDir(run_dir).export
    try:
        exported = export_run(run_dir, out)
    except (ExportError, RecordError) as err:
        console.print(f"[bold red]error:[/] {err}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    console.print(
        f"exported {exported.rows} instructions with teacher answers to {out} "
        f"(alpaca/, messages/, data/*.parquet, README.md); {exported.unanswered} not yet answered"
    )
    if push_to_hub and dry_run:
        console.print(f"dry run: would upload {', '.join(hub_files(out))} to datasets/{push_to_hub}")
    elif push_to_hub:
        files = push(out, push_to_hub, private=not public)
        console.print(f"uploaded {', '.join(files)} to https://huggingface.co/datasets/{push_to_hub}")


@app.command()
def decontaminate(
    file: Path = typer.Argument(..., help="Instruction file (Alpaca JSON, JSONL, self-instruct, FastChat)."),
    eval_set: list[str] = typer.Option(
        None, help="Evaluation question file or package:NAME (repeatable); default Vicuna-80 and MT-Bench."
    ),
    ngram: int = typer.Option(13, min=1, help="n of the n-grams (13: the lm-evaluation-harness's)."),
    max_overlap: float = typer.Option(0.0, min=0.0, max=0.999, help="Largest share of shared n-grams."),
) -> None:
    """Check an instruction file against evaluation sets (n-gram overlap); exit 1 if any is contaminated."""
    from lion_core.config import DecontaminationConfig
    from lion_core.method.decontamination import EvalNgrams, check_file
    from lion_core.records import RecordError

    try:
        config = DecontaminationConfig(
            ngram=ngram, max_overlap=max_overlap, **({"eval_sets": eval_set} if eval_set else {})
        )
        total, found = check_file(file, EvalNgrams.from_files(config.eval_sets, ngram), max_overlap)
    except (RecordError, ValueError, OSError) as err:
        console.print(f"[bold red]error:[/] {' '.join(str(err).split())}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    for finding in found:
        console.print(f"{finding.id}\t{finding.overlap:.2f}\t{finding.instruction[:100]}", markup=False)
    console.print(f"{len(found)} of {total} instructions share {ngram}-grams with the evaluation sets")
    if found:
        raise typer.Exit(EXIT_FAILED)


if __name__ == "__main__":
    app()
