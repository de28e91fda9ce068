"""The `lion` command line.

Run as:
    lion demo --iterations 3            # the whole loop on the offline world, embedded Prefect
    lion run configs/openai.yaml        # real endpoints
    lion report runs/demo               # re-render a run's report
    lion world serve --port 8765        # the offline world's OpenAI-compatible server
"""

from __future__ import annotations

import typer

from flows import world_cli

app = typer.Typer(
    help="Lion adversarial distillation on Prefect.", no_args_is_help=True, add_completion=False
)
app.add_typer(world_cli.app, name="world")


if __name__ == "__main__":
    app()
