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

import contextlib
import shlex
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import typer

from lion_cli import world as world_cli
from lion_cli.output import console, print_eval, print_table, say_error
from lion_cli.process import (
    EXIT_BAD_INPUT,
    EXIT_BUSY,
    EXIT_FAILED,
    VERBOSE,
    failing_writes,
    interruptible,
    run_flow,
    say_outcome,
)

app = typer.Typer(
    help="Lion adversarial distillation on Prefect.", no_args_is_help=True, add_completion=False
)
app.add_typer(world_cli.app, name="world")


@app.callback()
def main(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        help="Show Prefect's log records of expected stops too (tracebacks of a budget stop, a full disk, "
        "damaged state), which the one-line error otherwise stands for.",
    ),
) -> None:
    """Lion adversarial distillation on Prefect."""
    if verbose:
        VERBOSE.set()


ITER_SCOPE = "iter_"  # the ledger's scope of iteration K is "iter_K" (lion_core/method/loop.py)


def run_distill(config) -> list[dict[str, Any]]:
    """The distill flow; afterwards, however the flow ended, the requests it left in flight are closed
    as `unrecorded` and ledger.json is rebuilt from the journal (see close_ledger)."""
    from flows.distill import distill

    try:
        return run_flow(distill(config), budget_note=lambda err: budget_stop_note(config, err))
    finally:
        close_ledger(config)


def close_ledger(config) -> None:
    """The run's requests still in flight closed as `unrecorded` (at their worst case) and ledger.json
    rebuilt — quietly: on the way out of a failure (a full disk) it must not hide it; the next run
    settles what this one could not."""
    import sqlite3

    from lion_core.records import RecordError

    with contextlib.suppress(OSError, sqlite3.Error, RecordError):
        ledger = run_ledger(config)
        ledger.settle_unrecorded()
        ledger.save()


def check_state(config, cache_only: bool = False) -> None:
    """Damage in the run directory the run cannot get past (lion_core/run/state.py), before any
    request: one line saying how to recover, EXIT_BAD_INPUT."""
    from lion_core.records import DamagedStateError
    from lion_core.run.rundir import RunDir, response_cache
    from lion_core.run.state import check_cache, refuse_damage

    try:
        if cache_only:
            check_cache(response_cache(config), RunDir(config.run_dir))
        else:
            refuse_damage(config)
    except DamagedStateError as err:
        say_outcome("error", err)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def write_note(config, resume: str):
    """What the line of a failed write adds (lion_core.run.state.space_note; without the figures when
    the run directory cannot even be measured)."""
    from lion_core.run.state import space_note

    def note(err: OSError) -> str:
        try:
            return space_note(config, err.errno, resume)
        except OSError:
            return f"fix the disk, then re-run the same command to resume ({resume})"

    return note


def observed_projection(config):
    """The recipe's projected cost (lion_core/method/projection.py), rescaled by what the run's ledger
    recorded so far (the plain projection before anything was sent)."""
    from lion_core.method.projection import observed, project
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
    from lion_core.method.projection import suggested_budget

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
        again = shlex.join(resume)
        with failing_writes(write_note(config, again)), hold_run_dir(config), interruptible(again):
            check_state(config)
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
    again = shlex.join(resume)
    with failing_writes(write_note(config, again)), hold_run_dir(config), interruptible(again):
        check_state(config)
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
        None,
        help="Judge protocol (default: the config's evaluation.protocol): 'vicuna' = the paper's "
        "(FastChat's GPT-4 review: per-category prompts, T 0.2, 'score1 score2' first line; reference "
        "answers as FastChat's ChatGPT baseline); 'lion' = the referee's prompt. Both judge both orders.",
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
        from flows.evaluate import endpoints_used, evaluate  # Prefect's flows once the input is known good
        from flows.fanout import in_run_dir
    except (ConfigError, ValueError) as err:
        say_error("error", err)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    again = eval_command(config_path, candidate, candidate_model, questions, world, harness, out, protocol)
    with failing_writes(write_note(config, again)), hold_run_dir(config), interruptible(again):
        reachable(config, endpoints_used(config, candidate, question_file, protocol))
        check_state(config, cache_only=True)
        flow = in_run_dir(config, evaluate)
        output = str(out) if out else None
        call = flow(
            config, candidate, question_file, world, harness, candidate_model, output, protocol=protocol
        )
        result = run_flow(call)
    print_eval(result)
    console.print(f"report: {result['report']}   wall time: {time.perf_counter() - started:.0f} s")
    if "harness_error" in result:
        raise typer.Exit(EXIT_FAILED)


def reachable(config, endpoints) -> None:
    """Each endpoint answers (lion_core.run.rundir.check_endpoints), or one line and EXIT_BAD_INPUT."""
    from lion_core.config import ConfigError
    from lion_core.run.rundir import check_endpoints

    try:
        check_endpoints(config, endpoints)
    except ConfigError as err:
        say_error("error", err)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def eval_command(config_path: Path, candidate: str, *options: object) -> str:
    """The `lion eval` command line that repeats this one (its options in the order of `eval_`)."""
    names = ("--candidate-model", "--questions", "--world", "--harness", "--out", "--protocol")
    words = ["lion", "eval", str(config_path), "--candidate", candidate]
    for name, value in zip(names, options):
        if value not in (None, 0, ""):
            words += [name, str(value)]
    return shlex.join(words)


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
    out: Path = typer.Option(
        None, help="Output directory (default RUN/export, or RUN/export-preference with --format preference)."
    ),
    kind: str = typer.Option(
        "instructions",
        "--format",
        help="instructions: the distilled set (alpaca and messages); preference: the referee's verdicts as "
        "prompt/chosen/rejected pairs, the layout TRL's preference trainers read.",
    ),
    push_to_hub: str = typer.Option(None, help="Also upload the card and Parquet files to this Hub dataset."),
    public: bool = typer.Option(False, help="Create the Hub repository public (default private)."),
    dry_run: bool = typer.Option(False, help="With --push-to-hub: say what would be uploaded, send nothing."),
) -> None:
    """Export the distilled instructions with teacher answers and lineage (or, with --format preference,
    the preference pairs) as a `datasets` dataset with a dataset card; optionally push it to the Hub."""
    from lion_core.records import RecordError
    from lion_core.run.export import ExportError, hub_files
    from lion_core.run.export import push_to_hub as push

    if kind not in EXPORT_FORMATS:
        say_error("error", f"--format {kind!r}: one of {', '.join(EXPORT_FORMATS)}")
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        out, said = export_format(run_dir, out, kind)
    except (ExportError, RecordError) as err:
        say_error("error", err)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    console.print(said)
    if push_to_hub and dry_run:
        console.print(f"dry run: would upload {', '.join(hub_files(out))} to datasets/{push_to_hub}")
    elif push_to_hub:
        files = push(out, push_to_hub, private=not public)
        console.print(f"uploaded {', '.join(files)} to https://huggingface.co/datasets/{push_to_hub}")


EXPORT_FORMATS = ("instructions", "preference")


def export_format(run_dir: Path, out: Path | None, kind: str) -> tuple[Path, str]:
    """Export one format; (where it went, the line that says what was written)."""
    from lion_core.run.rundir import RunDir

    run = RunDir(run_dir)
    if kind == "preference":
        from lion_core.run.export_pairs import export_pairs

        out = out or run.preference_export
        pairs = export_pairs(run_dir, out)
        return out, (
            f"exported {pairs.rows} preference pairs ({pairs.hard} hard) to {out} "
            "(preference/, data/preference.parquet, README.md)"
        )
    from lion_core.run.export import export_run

    out = out or run.export
    exported = export_run(run_dir, out)
    return out, (
        f"exported {exported.rows} instructions with teacher answers to {out} "
        f"(alpaca/, messages/, data/*.parquet, README.md); {exported.unanswered} not yet answered"
    )


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


@app.command("config-reference")
def config_reference() -> None:
    """Print the configuration reference (every section and field of the config, as markdown)."""
    from lion_cli.reference import config_reference as render

    typer.echo(render(), nl=False)


if __name__ == "__main__":
    app()
