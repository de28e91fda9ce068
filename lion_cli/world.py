"""`lion world ...`: serve the offline world, sample its tasks, build its tiny student.

Run as:
    lion world serve --port 8765 --latency-ms 20 --fault-5xx 0.2
    lion world sample --n 5 --seed 0
    lion world student --out runs/tiny-student
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from random import Random

import typer
from rich.console import Console

# Nothing of the world is imported here: `lion --help` must not load the server (FastAPI, uvicorn) or
# the tiny student (torch, transformers). Each command imports what it uses.

app = typer.Typer(help="The offline world: an OpenAI-compatible server, task families, a tiny student.")
console = Console(stderr=True)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind (keep it local)."),
    port: int = typer.Option(8765, help="Port; 0 picks a free one."),
    latency_ms: float = typer.Option(0.0, help="Added latency per request."),
    fault_429: float = typer.Option(0.0, help="Share of requests answered 429 with Retry-After."),
    fault_5xx: float = typer.Option(0.0, help="Share of requests answered 503."),
    fault_timeout: float = typer.Option(0.0, help="Share of requests that hang (client times out)."),
    fault_malformed: float = typer.Option(0.0, help="Share of referee/generator replies that are malformed."),
    rate_limit_rpm: float = typer.Option(0.0, help="Server-side requests/min limit (0: none)."),
    rate_limit_tpm: float = typer.Option(
        0.0, help="Server-side tokens/min limit, tokens as the replies' usage counts them (0: none)."
    ),
    referee_bias: float = typer.Option(0.0, help="Score the referee adds to Assistant 1."),
    referee_noise: float = typer.Option(0.0, help="Std of the referee's score noise."),
    seed: int = typer.Option(0, help="Seed of faults and generated instructions."),
) -> None:
    """Serve /v1/chat/completions and /v1/models until interrupted."""
    from lion_core.world.roles import RoleSettings
    from lion_core.world.server import Faults, WorldServer

    faults = Faults(
        latency_ms=latency_ms,
        share_429=fault_429,
        share_5xx=fault_5xx,
        share_timeout=fault_timeout,
        share_malformed=fault_malformed,
        rate_limit_rpm=rate_limit_rpm or None,
        rate_limit_tpm=rate_limit_tpm or None,
    )
    server = WorldServer(RoleSettings(referee_bias=referee_bias, referee_noise=referee_noise), faults, seed)
    try:
        server.start(port=port, host=host)
    except OSError as err:
        console.print(f"[bold red]error:[/] cannot serve on {host}:{port}: {err} (try another --port)")
        raise typer.Exit(1) from None
    console.print(f"world server on [bold]{server.url}[/] (stats: http://{host}:{server.port}/world/stats)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


@app.command()
def sample(
    n: int = typer.Option(10, help="Number of tasks."),
    seed: int = typer.Option(0, help="Sampling seed."),
    family: list[str] = typer.Option(None, help="Families to draw from (repeatable); default all."),
    level: list[int] = typer.Option([1, 2], help="Difficulty levels (repeatable)."),
) -> None:
    """Print tasks as JSONL {instruction, input, output, family, difficulty}."""
    from lion_core.world.families import families, sample_tasks

    try:
        chosen = families(family or None)
    except KeyError as err:
        raise typer.BadParameter(err.args[0], param_hint="--family") from None
    top = max(f.max_level for f in chosen)
    if any(not 1 <= lvl <= top for lvl in level):
        raise typer.BadParameter(f"levels {level}: these families have levels 1–{top}", param_hint="--level")
    try:
        tasks = sample_tasks(n, Random(seed), family or None, level)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--n") from None
    for task in tasks:
        row = {"instruction": task.instruction, "input": "", "output": task.answer}
        print(json.dumps({**row, "family": task.family, "difficulty": task.level}))


EXACT_DIGITS = 9  # capacities up to this many digits are printed in full, larger ones as 1.2e+13


def _count(capacity: int | None) -> str:
    if capacity is None:
        return "?"
    return f"{capacity:,}" if capacity < 10**EXACT_DIGITS else f"{capacity:.1e}"


@app.command("families")
def list_families() -> None:
    """List the registered task families with an example each and the distinct instructions per level."""
    from lion_core.world.families import cell_capacity, families

    rng = Random(0)
    for fam in families():
        sizes = " / ".join(_count(cell_capacity(fam, lvl)) for lvl in range(1, fam.max_level + 1))
        example = fam.render(fam.make(rng, 1))
        console.print(f"[bold]{fam.name}[/] levels 1–{fam.max_level} ({sizes} distinct): {example!r}")


@app.command()
def student(
    out: Path = typer.Option(Path("runs/tiny-student"), help="Directory to save the checkpoint in."),
    seed: int = typer.Option(0, help="Initialisation seed."),
) -> None:
    """Build the tiny Llama student and its character tokenizer (save_pretrained)."""
    from lion_core.world.student import TinyStudentSpec, build_tiny_student  # torch, transformers

    path = build_tiny_student(out, TinyStudentSpec(seed=seed))
    console.print(f"tiny student saved to {path}")
